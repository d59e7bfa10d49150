"""The long-running daemon: ``serve()`` = startup → main loop → shutdown.

One asyncio loop runs the control socket, the root watchers and a heartbeat. All writes to
the ledger happen on one dedicated writer thread (ingest jobs are queued to it), so the loop
keeps answering while a large catch-up runs. Signal handlers only set flags; the loop acts
on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sufd import __version__, logs
from sufd.control.protocol import ProtocolError
from sufd.daemon.commands import Commands
from sufd.daemon.cycle import IngestCycles
from sufd.daemon.keeper import StoreKeeper
from sufd.daemon.notify import Notifier
from sufd.daemon.runtime import AlreadyRunning, DaemonLocks, UnsafeRuntimeDir, prepare_runtime_dir
from sufd.daemon.state import Pauses
from sufd.errors import ConfigError
from sufd.ingest.ingestor import Ingestor
from sufd.logger import get_logger
from sufd.prices.table import PriceTable
from sufd.settings import KNOWN_SOURCES, Settings, load
from sufd.sources import enabled_sources
from sufd.store import private_dir
from sufd.store.ledger import Ledger
from sufd.watch.stalls import IoGuard
from sufd.watch.watcher import RootWatcher, until_tick

__all__ = ["Daemon", "SHUTDOWN_TIMEOUT_S"]

log = get_logger(__name__)

SHUTDOWN_TIMEOUT_S = 4.0
HEARTBEAT_S = 1.0
# Sources with a polled root are scanned this often (see Daemon._reconcile_polled).
POLLED_RECONCILE_S = 2.0
WATCH_STEP_MS = 25
# A change batch reads one file for at most this long before the other changed files get
# their turn (a transcript grown by gigabytes is read over several cycles).
FILE_SLICE_S = 0.25
# A read (or stat, open) on a source root that has not returned after this long holds up only
# that root: the writer goes on with the others (a hung network or FUSE mount; sufd.watch.stalls).
READ_STALL_S = 1.0


class Daemon:
    """The sufd daemon. Construct cheaply; :meth:`run` does the work.

    It composes the parts: the :class:`StoreKeeper` (the ledger and its one writer thread),
    the :class:`IngestCycles` (the pending work and the cycles that do it), the watchers,
    the :class:`Pauses`, and the :class:`Commands` the control socket serves.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        log_problem: str | None = None,
        locks: DaemonLocks | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.notifier = Notifier(settings.env)
        self.pauses = Pauses(settings.paths.state_dir / "state.json")
        self.started_at = time.time()
        self._started = time.monotonic()  # uptime: the wall clock may be set back
        self.phase = "starting"
        self.watchers: list[RootWatcher] = []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_requested = False
        # Taken already when ``sufd run --daemon`` locked before detaching.
        self._lock = locks or DaemonLocks.of(settings.paths)
        self._on_ready = on_ready
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sufd-writer")
        self._server: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watch_stop = asyncio.Event()
        self._last_reconcile = time.monotonic()
        self._last_polled_reconcile = time.monotonic()
        self._interrupt = threading.Event()
        self.exit_code = 0
        self.log_problem = log_problem
        self._runtime_problem: str | None = None
        self.keeper = StoreKeeper(
            settings.paths.db,
            self._writer,
            make_ingestor=self._make_ingestor,
            rescan=lambda reason: self.cycles.rescan_all(reason),
            wake=self._wake.set,
            replaced=lambda: self.cycles.ledger_replaced(),
        )
        self.cycles = IngestCycles(
            self.keeper,
            paused=self.pauses.active,
            wake=self._wake.set,
            stop=self._stop,
            interrupt=self._interrupt,
        )
        self._guard = IoGuard(READ_STALL_S, on_clear=self.cycles.mount_answered)
        self.commands = Commands(self, self.keeper, self.cycles, self.pauses, self._guard)

    @property
    def uptime_s(self) -> int:
        """Seconds since the daemon started (steady: the wall clock may be set back)."""
        return int(time.monotonic() - self._started)

    # -- lifecycle --------------------------------------------------------------------

    def run(self) -> int:
        """Run in the foreground until stopped; returns the process exit code."""
        asyncio.run(self.serve())
        return self.exit_code

    async def serve(self) -> None:
        """Startup, then serve until asked to stop, then shut down cleanly."""
        self.cycles.loop = asyncio.get_running_loop()
        await self.startup()
        try:
            await self._main_loop()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Lock, open and migrate the store, bind the socket, start watching, notify READY."""
        from sufd.control.server import ControlServer

        log.info("daemon.starting", version=__version__, pid=os.getpid())
        if self.log_problem:
            log.warning("log.file_unavailable", problem=self.log_problem)
        paths = self.settings.paths
        prepare_runtime_dir(paths.runtime_dir)
        private_dir(paths.state_dir)
        self._lock.acquire()
        try:
            await self.keeper.open_at_start()
            self.pauses.load()
            self._install_signals()
            self._server = ControlServer(
                paths.socket, self.commands.handlers(), self.commands.streams()
            )
            await self._server.start()
            self._start_watchers()
        except BaseException:
            self._lock.release()
            raise
        self.phase = "running"
        self.cycles.request_full(KNOWN_SOURCES, reason="startup")
        self.notifier.ready(self._status_line())
        if self._on_ready is not None:
            self._on_ready()
        log.info(
            "daemon.ready",
            socket=str(paths.socket),
            db=str(paths.db),
            watching=self.settings.watch_enabled,
            roots=len(self.watchers),
        )

    async def shutdown(self) -> None:
        """Stop watching, finish the current cycle, close the socket, release the lock."""
        self.phase = "stopping"
        self.notifier.stopping()
        log.info("daemon.stopping")
        try:
            self._watch_stop.set()
            self.cycles.close_clients()
            if self._server is not None:
                await self._server.close()
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=1.0)
            # The writer finishes its current file batch; a cursor never moves without its events.
            self._interrupt.set()
            try:
                await asyncio.wait_for(
                    self.keeper.in_writer(self.keeper.close_writer), timeout=SHUTDOWN_TIMEOUT_S
                )
            except TimeoutError:
                log.warning("daemon.writer_still_busy", timeout_s=SHUTDOWN_TIMEOUT_S)
            self.keeper.close()
            self._writer.shutdown(wait=False, cancel_futures=True)
        finally:
            self._lock.release()
        log.info("daemon.stopped", uptime_s=self.uptime_s)

    def request_stop(self) -> None:
        """Ask the loop to shut down (what SIGTERM/SIGINT do)."""
        self._stop.set()

    def handle_signal(self, signum: int) -> None:
        """The whole signal policy: record what was asked; the loop does it."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            log.info("daemon.signal", signal=signal.Signals(signum).name)
            self.request_stop()
        elif signum == signal.SIGHUP:
            self._reload_requested = True
            self._wake.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.handle_signal, sig)

    async def _main_loop(self) -> None:
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        if self.notifier.watchdog_interval_s is not None:
            self._tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))
        stop = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                wake = asyncio.create_task(self._wake.wait())
                await asyncio.wait({stop, wake}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                self._wake.clear()
                if self._stop.is_set():
                    break
                if self._reload_requested:
                    self._reload_requested = False
                    # A bad config is logged by reload(); the old configuration stays.
                    with contextlib.suppress(ProtocolError):
                        await self.reload()
                await self.keeper.step()
                if self.cycles.pending and self.keeper.ingestor is not None:
                    if not self.cycles.pending.full:
                        await self.cycles.settle(stop, self.settings.debounce_ms)
                        if self._stop.is_set():
                            break
                    cycle = asyncio.ensure_future(self.cycles.run())
                    await asyncio.wait({stop, cycle}, return_when=asyncio.FIRST_COMPLETED)
                    if not cycle.done():
                        # Stopping mid-cycle: the writer ends after its current batch commit.
                        self._interrupt.set()
                        await asyncio.wait({cycle}, timeout=SHUTDOWN_TIMEOUT_S)
                        break
                    cycle.result()
        finally:
            stop.cancel()

    def _make_ingestor(self, conn: sqlite3.Connection) -> Ingestor:
        """(writer thread) The ingestor for the current settings on the write connection."""
        prices = PriceTable.bundled().with_overrides(self.settings.price_overrides)
        return Ingestor(
            self.settings,
            Ledger(conn, price_version=prices.version),
            prices,
            on_commit=self.cycles.committed,
            interrupt=self._interrupt,
            slice_s=FILE_SLICE_S,
            guard=self._guard,
        )

    # -- watching ---------------------------------------------------------------------

    def _start_watchers(self) -> None:
        self._watch_stop = asyncio.Event()
        self.watchers = []
        if not self.settings.watch_enabled:
            return
        paused = self.pauses.active()
        for source in enabled_sources(self.settings):
            for root in source.roots(self.settings):
                w = RootWatcher(
                    source.name,
                    root,
                    self.cycles.request_paths,
                    owns=source.owns,
                    step_ms=WATCH_STEP_MS,
                    force_polling=self.settings.force_polling,
                    on_appeared=lambda name, _root: self.cycles.request_full(
                        (name,), reason="root appeared"
                    ),
                )
                if source.name in paused:
                    w.pause()
                self.watchers.append(w)
                self._tasks.append(
                    asyncio.create_task(w.run(self._watch_stop), name=f"watch:{root}")
                )

    async def _stop_watchers(self) -> None:
        self._watch_stop.set()
        tasks = [t for t in self._tasks if t.get_name().startswith("watch:")]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self._tasks = [t for t in self._tasks if t not in tasks]

    # -- heartbeat --------------------------------------------------------------------

    async def _watchdog(self) -> None:
        """``WATCHDOG=1`` every ``WATCHDOG_USEC / 2``, as systemd asks (the heartbeat is 1 s)."""
        interval = self.notifier.watchdog_interval_s
        assert interval is not None
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _heartbeat(self) -> None:
        last_status = ""
        while True:
            await asyncio.sleep(until_tick(HEARTBEAT_S))
            try:
                self._expire_pauses()
                self.keeper.watch(cycles_ran=bool(self.cycles.count))
                await self._runtime_watch()
                self._log_watch()
                interval = self.settings.reconcile_interval_s
                if time.monotonic() - self._last_reconcile >= interval:
                    self._last_reconcile = time.monotonic()
                    self.cycles.request_full(KNOWN_SOURCES, reason="reconcile")
                self._reconcile_polled()
                line = self._status_line()
                if line != last_status:
                    self.notifier.status(line)
                    last_status = line
            except Exception as exc:  # the heartbeat must survive anything it checks
                log.error("daemon.heartbeat_failed", error=f"{type(exc).__name__}: {exc}")

    def _reconcile_polled(self) -> None:
        """(heartbeat) Scan the sources of polled roots every :data:`POLLED_RECONCILE_S`.

        watchfiles' poller compares modification times to the second, so a file written
        twice within one second of its last look is missed until a scan. A scan of unchanged
        files costs a ``stat`` each, which the poller itself pays every 300 ms.
        """
        polled = {w.source for w in self.watchers if w.state == "polling"}
        now = time.monotonic()
        if polled and now - self._last_polled_reconcile >= POLLED_RECONCILE_S:
            self._last_polled_reconcile = now
            self.cycles.request_full(polled, reason="polled reconcile")

    async def _runtime_watch(self) -> None:
        """(heartbeat) Put the runtime dir, the lock and the socket back when a cleaner
        (systemd-tmpfiles, ``rm -rf``) removed them; stop if another daemon took over."""
        server, lock_ok = self._server, self._lock.intact()
        if lock_ok and (server is None or server.socket_ok()):
            self._runtime_problem = None
            return
        paths = self.settings.paths
        existed = paths.runtime_dir.is_dir()
        restored: list[str] = []
        try:
            prepare_runtime_dir(paths.runtime_dir)
            if not lock_ok:
                restored = self._lock.restore()
        except UnsafeRuntimeDir as exc:
            if str(exc) != self._runtime_problem:
                log.error("runtime.dir_unusable", path=str(paths.runtime_dir), error=str(exc))
            self._runtime_problem = str(exc)
            return
        except AlreadyRunning as exc:
            # Started while our lock file was gone: it has the socket too. One daemon is enough.
            log.error("runtime.lock_taken", error=str(exc), other_pid=exc.pid)
            self.request_stop()
            return
        self._runtime_problem = None
        if not existed:
            log.warning("runtime.dir_recreated", path=str(paths.runtime_dir))
        if not lock_ok:
            log.warning("runtime.lock_restored", locks=restored, pid=os.getpid())
        if server is not None and not server.socket_ok():
            await server.rebind()

    def _log_watch(self) -> None:
        """(heartbeat) Reopen a removed log file; report a log file that cannot be written,
        and when it can be again."""
        problem = logs.check_file()
        if problem == self.log_problem:
            return
        was, self.log_problem = self.log_problem, problem
        if problem is not None:
            log.warning("log.file_unavailable", problem=problem)
        else:
            log.info("log.file_recovered", problem_was=was)

    # -- pause ------------------------------------------------------------------------

    def _expire_pauses(self) -> None:
        expired = self.pauses.expired()
        if expired:
            log.info("watch.pause_expired", sources=expired)
            self.resume(expired)

    def pause(self, sources: list[str], until: float | None, reason: str, pid: int | None) -> None:
        """Pause these sources: their watchers, and their part of every cycle."""
        self.pauses.pause(sources, until, reason, pid)
        for w in self.watchers:
            if w.source in sources:
                w.pause()
        log.info("watch.paused", sources=sources, until=until, reason=reason)

    def resume(self, sources: list[str]) -> None:
        """Resume these sources, and read what changed while they were paused."""
        self.pauses.resume(sources)
        for w in self.watchers:
            if w.source in sources:
                w.resume()
        log.info("watch.resumed", sources=sources)
        self.cycles.request_full(sources, reason="resume")

    # -- reload -----------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Re-read the config; an invalid one keeps the running settings (and says why)."""
        self.notifier.reloading()
        try:
            new = load(self.config_path or self.settings.paths.config_file)
        except ConfigError as exc:
            log.error("config.reload_failed", error=str(exc))
            self.notifier.ready(self._status_line())
            raise ProtocolError(
                "config_invalid", f"{exc}; keeping the previous configuration"
            ) from exc
        if new.paths != self.settings.paths:
            log.warning("config.paths_changed_need_restart")
        self.settings = _keep_paths(new, self.settings)
        await self._stop_watchers()
        await self.keeper.in_writer(self.keeper.renew_ingestor)
        self._start_watchers()
        self.cycles.request_full(KNOWN_SOURCES, reason="reload")
        log.info("config.reloaded", roots=len(self.watchers))
        self.notifier.ready(self._status_line())
        return {"reloaded": True, "roots": len(self.watchers)}

    def _status_line(self) -> str:
        """The one-line summary for the service manager."""
        watching = sum(1 for w in self.watchers if w.state in ("watching", "polling"))
        paused = self.pauses.active()
        text = f"{self.phase}; watching {watching}/{len(self.watchers)} roots"
        if paused:
            text += f"; paused: {', '.join(sorted(paused))}"
        return text + f"; {self.cycles.totals['events']} new events since start"


def _keep_paths(new: Settings, old: Settings) -> Settings:
    return new._replace(paths=old.paths)
