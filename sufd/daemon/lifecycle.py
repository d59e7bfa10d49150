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
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from sufd import __version__, logs
from sufd.control.protocol import CAPABILITIES, PROTOCOL, ProtocolError
from sufd.control.statusline import format_line
from sufd.daemon.keeper import StoreKeeper
from sufd.daemon.notify import Notifier
from sufd.daemon.runtime import AlreadyRunning, DaemonLocks, UnsafeRuntimeDir, prepare_runtime_dir
from sufd.daemon.state import Pause, State, load_state, save_state
from sufd.errors import ConfigError
from sufd.ingest.ingestor import Ingestor, IngestStats
from sufd.logger import get_logger
from sufd.prices.table import PriceTable
from sufd.settings import KNOWN_SOURCES, Settings, load
from sufd.sources import enabled_sources
from sufd.store import health, open_store, private_dir, queries
from sufd.store.ledger import Ledger, PricedRecord
from sufd.watch.stalls import IoGuard, Stall
from sufd.watch.watcher import RootWatcher, until_tick

__all__ = ["Daemon", "SHUTDOWN_TIMEOUT_S"]

log = get_logger(__name__)

SHUTDOWN_TIMEOUT_S = 4.0
HEARTBEAT_S = 1.0
SETTLE_S = 0.03
WATCH_STEP_MS = 25
TAIL_QUEUE = 2000
# A change batch reads one file for at most this long before the other changed files get
# their turn (a transcript grown by gigabytes is read over several cycles).
FILE_SLICE_S = 0.25
# A read (or stat, open) on a source root that has not returned after this long holds up only
# that root: the writer goes on with the others (a hung network or FUSE mount; sufd.watch.stalls).
READ_STALL_S = 1.0
# A source database found locked is read again after this long, doubling up to the maximum:
# the lock may end without a write, and then no change notice comes.
BUSY_RETRY_S = 0.1
BUSY_RETRY_MAX_S = 5.0
BUSY_RETRIES = 10  # about 30 s of retries in all
# A change of the wall clock against the steady one larger than this is a jump (NTP slews
# by far less per heartbeat).
CLOCK_JUMP_S = 2.0
# How often a full scan sends its progress to the ``sufd ingest`` clients it serves.
PROGRESS_EVERY_S = 0.1
# Linux: counts suspend. Elsewhere CLOCK_MONOTONIC (on macOS it counts sleep too).
_STEADY_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


@dataclass
class _Cycle:
    """The last ingest cycle, for ``status``."""

    kind: str = ""
    files: int = 0
    events: int = 0
    replaced: int = 0
    bytes: int = 0
    duration_ms: int = 0
    lag_ms: int | None = None
    at: float | None = None
    errors: int = 0


@dataclass
class _Pending:
    paths: set[Path] = field(default_factory=set)
    full: set[str] = field(default_factory=set)
    since: float | None = None

    def __bool__(self) -> bool:
        return bool(self.paths or self.full)


class Daemon(StoreKeeper):
    """The sufd daemon. Construct cheaply; :meth:`run` does the work."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        watcher_factory: Callable[..., RootWatcher] = RootWatcher,
        log_problem: str | None = None,
        locks: DaemonLocks | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self._watcher_factory = watcher_factory
        self.notifier = Notifier(settings.env)
        self.state_path = settings.paths.state_dir / "state.json"
        self.state = State()
        self.started_at = time.time()
        self._started = time.monotonic()  # uptime: the wall clock may be set back
        self._wall_offset = _wall_offset()
        self.phase = "starting"
        self.watchers: list[RootWatcher] = []
        self.cycle = _Cycle()
        self.cycles = 0
        self.totals = {"events": 0, "replaced": 0, "malformed": 0, "errors": 0}
        self.last_event_ms: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._pending = _Pending()
        self._reload_requested = False
        # Taken already when ``sufd run --daemon`` locked before detaching.
        self._lock = locks or DaemonLocks.of(settings.paths)
        self._on_ready = on_ready
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sufd-writer")
        self._ingestor: Ingestor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._server: Any = None
        self._tails: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._watch_stop = asyncio.Event()
        self._last_reconcile = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interrupt = threading.Event()
        self.exit_code = 0
        self.log_problem = log_problem
        self._runtime_problem: str | None = None
        self._init_store_keeping()
        self._guard = IoGuard(READ_STALL_S, on_clear=self._mount_answered)
        self._busy_retries: dict[Path, int] = {}
        self._publishing = threading.Lock()
        self._to_publish: list[tuple[str, list[PricedRecord], list[PricedRecord]]] = []
        # ``sufd ingest`` clients waiting for the next full scan, and those it is serving.
        self._catchup_waiting: list[asyncio.Queue[dict[str, Any] | None]] = []
        self._catchup_serving: list[asyncio.Queue[dict[str, Any] | None]] = []
        # Files done / total of the full scan in progress (None between scans), and whether a
        # full scan has completed since start or since the ledger was rebuilt.
        self.scan_progress: tuple[int, int] | None = None
        self.caught_up = False

    # -- lifecycle --------------------------------------------------------------------

    def run(self) -> int:
        """Run in the foreground until stopped; returns the process exit code."""
        asyncio.run(self.serve())
        return self.exit_code

    async def serve(self) -> None:
        """Startup, then serve until asked to stop, then shut down cleanly."""
        self._loop = asyncio.get_running_loop()
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
            await self._open_store_at_start()
            self.state = load_state(self.state_path)
            self._install_signals()
            self._server = ControlServer(paths.socket, self._handlers(), self._streams())
            await self._server.start()
            self._start_watchers()
        except BaseException:
            self._lock.release()
            raise
        self.phase = "running"
        self.request_full(KNOWN_SOURCES, reason="startup")
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
            for q in [*self._tails, *self._catchup_waiting, *self._catchup_serving]:
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(None)
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
                    self._in_writer(self._close_writer), timeout=SHUTDOWN_TIMEOUT_S
                )
            except TimeoutError:
                log.warning("daemon.writer_still_busy", timeout_s=SHUTDOWN_TIMEOUT_S)
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None
            if self._write_conn is None and not self._checking:
                self._unpin_all()
            self._writer.shutdown(wait=False, cancel_futures=True)
        finally:
            self._lock.release()
        log.info("daemon.stopped", uptime_s=int(time.monotonic() - self._started))

    def _close_writer(self) -> None:
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

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
                await self._store_step()
                if self._pending and self._ingestor is not None:
                    if not self._pending.full:
                        await self._settle(stop)
                        if self._stop.is_set():
                            break
                    cycle = asyncio.ensure_future(self._run_cycle())
                    await asyncio.wait({stop, cycle}, return_when=asyncio.FIRST_COMPLETED)
                    if not cycle.done():
                        # Stopping mid-cycle: the writer ends after its current batch commit.
                        self._interrupt.set()
                        await asyncio.wait({cycle}, timeout=SHUTDOWN_TIMEOUT_S)
                        break
                    cycle.result()
        finally:
            stop.cancel()

    # -- writer thread ----------------------------------------------------------------

    async def _in_writer(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    def _open_writer(self) -> None:
        self._write_conn = open_store(self.settings.paths.db)
        self._pin_ledger()
        self._new_ingestor(self._write_conn)

    def _new_ingestor(self, conn: sqlite3.Connection) -> None:
        """(writer thread) The ingestor for the current settings on the write connection."""
        prices = PriceTable.bundled().with_overrides(self.settings.price_overrides)
        self._ingestor = Ingestor(
            self.settings,
            Ledger(conn, price_version=prices.version),
            prices,
            on_commit=self._committed,
            interrupt=self._interrupt,
            slice_s=FILE_SLICE_S,
            guard=self._guard,
        )

    def _committed(
        self, source: str, inserted: list[PricedRecord], replaced: list[PricedRecord]
    ) -> None:
        # Runs on the writer thread: hand the events to the loop. One commit of a catch-up
        # calls this once per file; they reach the loop as one batch, so that a tail client
        # is judged by how far behind it was before, not by the size of this batch.
        with self._publishing:
            self._to_publish.append((source, inserted, replaced))
            if len(self._to_publish) > 1:
                return  # already scheduled
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish)

    def _publish(self) -> None:
        with self._publishing:
            batch, self._to_publish = self._to_publish, []
        items: list[dict[str, Any]] = []
        now = time.time()
        for source, inserted, replaced in batch:
            # Counted as they are announced, so that status never trails what tail said.
            self.totals["events"] += len(inserted)
            self.totals["replaced"] += len(replaced)
            for pr in inserted + replaced:
                ts = pr.record.ts_ms
                if ts > self.last_event_ms.get(source, 0):
                    self.last_event_ms[source] = ts
            if self._tails:
                items += [_event_json(source, pr, False, now) for pr in inserted]
                items += [_event_json(source, pr, True, now) for pr in replaced]
        for q in list(self._tails):
            if q.qsize() >= TAIL_QUEUE:  # still that far behind from earlier commits
                self._tails.discard(q)
                q.put_nowait(None)
                log.warning("tail.client_too_slow")
                continue
            for item in items:
                q.put_nowait(item)

    def _retry_busy(self, busy: list[Path], asked: set[Path]) -> None:
        loop = asyncio.get_running_loop()
        for path in busy:
            n = self._busy_retries.get(path, 0)
            if n >= BUSY_RETRIES:
                # Still locked: left to the next change or reconcile, which start over.
                del self._busy_retries[path]
                continue
            self._busy_retries[path] = n + 1
            delay = min(BUSY_RETRY_S * 2**n, BUSY_RETRY_MAX_S)
            loop.call_later(delay, self.request_paths, "", {path})
        for path in asked.difference(busy):
            self._busy_retries.pop(path, None)

    def _mount_answered(self, source: str, root: str) -> None:
        # On the guard's helper thread: a root held up by a stalled call is readable again;
        # read all of its source from the committed cursors (what was skipped meanwhile).
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
                self._loop.call_soon_threadsafe(
                    lambda: self.request_full([source], reason="mount_answered")
                )

    def request_paths(self, source: str, paths: set[Path]) -> None:
        """Called by the watchers with changed files."""
        if not self._pending:
            self._pending.since = time.monotonic()
        self._pending.paths |= paths
        self._wake.set()

    def request_full(self, sources: Collection[str], *, reason: str) -> None:
        """Queue a scan of every file of these sources (catch-up, reconcile, rescan)."""
        if not self._pending:
            self._pending.since = time.monotonic()
        self._pending.full |= set(sources)
        log.debug("ingest.scan_requested", sources=sorted(sources), reason=reason)
        self._wake.set()

    async def _run_cycle(self) -> None:
        pending, self._pending = self._pending, _Pending()
        paused = self._paused_sources()
        full = pending.full - paused
        paths = pending.paths
        ingestor = self._ingestor
        assert ingestor is not None
        waiters: list[asyncio.Queue[dict[str, Any] | None]] = []
        if pending.full:
            waiters, self._catchup_waiting = self._catchup_waiting, []
            self._catchup_serving = waiters
        progress = self._scan_progress_hook(waiters)

        def job() -> IngestStats:
            stats = IngestStats()
            if full:
                try:
                    part = ingestor.ingest_all(progress, only=full)
                finally:
                    self.scan_progress = None
                _merge(stats, part)
            owners = ingestor.sources
            rest = {p for p in paths if not any(s.name in full and s.owns(p) for s in owners)}
            if rest:
                _merge(stats, ingestor.ingest_paths(rest, skip=paused))
            return stats

        started = time.monotonic()
        try:
            stats: IngestStats = await self._in_writer(job)
        except Exception as exc:  # e.g. the disk is full: keep serving, retry on the next change
            self._catchup_done(
                waiters, {"error": f"the ledger could not be written: {type(exc).__name__}: {exc}"}
            )
            self.totals["errors"] += 1
            # What was not committed is read again by the next full scan.
            self._pending.full |= full | {
                s.name for s in ingestor.sources if any(s.owns(p) for p in paths)
            }
            fault = health.diagnose(exc, self.settings.paths.db)
            if fault is not None:
                await self._store_failed(fault, "while writing")
                return
            log.error("ingest.cycle_failed", error=f"{type(exc).__name__}: {exc}")
            return
        done = time.monotonic()
        self.cycles += 1
        self._store_ok()
        if pending.full >= set(KNOWN_SOURCES) and not self._interrupt.is_set():
            self.caught_up = True
        if self._interrupt.is_set():
            self._catchup_done(waiters, None)  # stopping: the catch-up did not finish
        else:
            skipped = sorted(pending.full & paused)
            self._catchup_done(waiters, {"done": stats.as_dict(), "paused": skipped})
        if stats.more:  # files read for their time slice: on with them after the others
            self.request_paths("", set(stats.more))
        self._retry_busy(stats.busy, paths)
        self.cycle = _Cycle(
            kind="scan" if full else "changes",
            files=stats.files_read,
            events=stats.inserted,
            replaced=stats.replaced,
            bytes=stats.bytes_read,
            duration_ms=int((done - started) * 1000),
            lag_ms=int((done - pending.since) * 1000) if pending.since else None,
            at=time.time(),
            errors=len(stats.errors),
        )
        self.totals["malformed"] += stats.malformed
        self.totals["errors"] += len(stats.errors)
        if stats.files_read or stats.errors or stats.stalled:
            log.info(
                "ingest.cycle",
                kind=self.cycle.kind,
                files=stats.files_read,
                events=stats.inserted,
                replaced=stats.replaced,
                bytes=stats.bytes_read,
                malformed=stats.malformed,
                errors=len(stats.errors),
                stalled=stats.stalled,
                duration_ms=self.cycle.duration_ms,
                lag_ms=self.cycle.lag_ms,
            )

    def _scan_progress_hook(
        self, waiters: list[asyncio.Queue[dict[str, Any] | None]]
    ) -> Callable[[IngestStats, int], None]:
        """The progress callback of a full scan (writer thread): files done / total for
        status and reports, and progress lines for the ``sufd ingest`` clients it serves."""
        loop = asyncio.get_running_loop()
        sent = [0.0]

        def progress(stats: IngestStats, total: int) -> None:
            self.scan_progress = (stats.files, total)
            now = time.monotonic()
            if not waiters or (now - sent[0] < PROGRESS_EVERY_S and stats.files < total):
                return
            sent[0] = now
            item = {
                "progress": {
                    "files": stats.files,
                    "total": total,
                    "bytes_read": stats.bytes_read,
                    "events_new": stats.inserted,
                }
            }
            with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
                loop.call_soon_threadsafe(_put_all, waiters, item)

        return progress

    def _catchup_done(
        self, waiters: list[asyncio.Queue[dict[str, Any] | None]], item: dict[str, Any] | None
    ) -> None:
        _put_all(waiters, item)
        if self._catchup_serving is waiters:
            self._catchup_serving = []

    # -- watching ---------------------------------------------------------------------

    def _start_watchers(self) -> None:
        self._watch_stop = asyncio.Event()
        self.watchers = []
        if not self.settings.watch_enabled:
            return
        paused = self._paused_sources()
        for source in enabled_sources(self.settings):
            for root in source.roots(self.settings):
                w = self._watcher_factory(
                    source.name,
                    root,
                    self.request_paths,
                    owns=source.owns,
                    debounce_ms=self.settings.debounce_ms,
                    step_ms=WATCH_STEP_MS,
                    force_polling=self.settings.force_polling,
                    on_appeared=lambda name, _root: self.request_full(
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

    async def _settle(self, stop: asyncio.Task[Any]) -> None:
        """Debounce a change batch: wait while the changed files keep changing.

        watchfiles ends a batch after one quiet step, and further writes to a file already in
        the batch do not count as new changes, so a streamed reply would arrive in several
        batches. Waiting until the files stop changing for one ``SETTLE_S`` check, and never
        beyond ``debounce_ms`` after the first change, folds a burst into one cycle while a
        lone append is ingested after one check.
        """
        since = self._pending.since or time.monotonic()
        deadline = since + self.settings.debounce_ms / 1000
        before = _signature(self._pending.paths)
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.wait({stop}, timeout=min(SETTLE_S, left))
            if self._stop.is_set():
                return
            now = _signature(self._pending.paths)
            if now == before:
                return
            before = now

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
                self._store_watch()
                await self._runtime_watch()
                self._log_watch()
                interval = self.settings.reconcile_interval_s
                if time.monotonic() - self._last_reconcile >= interval:
                    self._last_reconcile = time.monotonic()
                    self.request_full(KNOWN_SOURCES, reason="reconcile")
                line = self._status_line()
                if line != last_status:
                    self.notifier.status(line)
                    last_status = line
            except Exception as exc:  # the heartbeat must survive anything it checks
                log.error("daemon.heartbeat_failed", error=f"{type(exc).__name__}: {exc}")

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

    def _paused_sources(self) -> set[str]:
        self._clock_watch()
        return {name for name, p in self.state.paused.items() if not p.expired()}

    def _clock_watch(self) -> None:
        """A pause ``--for`` N lasts N seconds of real time (suspend included) whatever is
        done to the wall clock: when the clock is set, its deadline moves with it."""
        offset = _wall_offset()
        jump, self._wall_offset = offset - self._wall_offset, offset
        if abs(jump) < CLOCK_JUMP_S:
            return
        log.warning("clock.jumped", by_s=round(jump, 1), paused=sorted(self.state.paused))
        timed = [p for p in self.state.paused.values() if p.until is not None]
        for p in timed:
            assert p.until is not None
            p.since, p.until = p.since + jump, p.until + jump
        if timed:
            save_state(self.state_path, self.state)

    def _expire_pauses(self) -> None:
        self._clock_watch()
        expired = [name for name, p in self.state.paused.items() if p.expired()]
        if expired:
            log.info("watch.pause_expired", sources=expired)
            self._resume(expired)

    def _pause(self, sources: list[str], until: float | None, reason: str, pid: int | None) -> None:
        now = time.time()
        for name in sources:
            self.state.paused[name] = Pause(since=now, until=until, reason=reason, by_pid=pid)
        save_state(self.state_path, self.state)
        for w in self.watchers:
            if w.source in sources:
                w.pause()
        log.info("watch.paused", sources=sources, until=until, reason=reason)

    def _resume(self, sources: list[str]) -> None:
        for name in sources:
            self.state.paused.pop(name, None)
        save_state(self.state_path, self.state)
        for w in self.watchers:
            if w.source in sources:
                w.resume()
        log.info("watch.resumed", sources=sources)
        self.request_full(sources, reason="resume")

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

        def rebuild() -> None:
            if self._write_conn is None:
                return  # the store is down: it is reopened with the new settings
            self._new_ingestor(self._write_conn)

        await self._in_writer(rebuild)
        self._start_watchers()
        self.request_full(KNOWN_SOURCES, reason="reload")
        log.info("config.reloaded", roots=len(self.watchers))
        self.notifier.ready(self._status_line())
        return {"reloaded": True, "roots": len(self.watchers)}

    # -- control handlers -------------------------------------------------------------

    def _handlers(self) -> dict[str, Any]:
        return {
            "hello": self._hello,
            "ping": self._ping,
            "status": self._status_with_store,
            "pause-watcher": self._cmd_pause,
            "resume-watcher": self._cmd_resume,
            "rescan": self._cmd_rescan,
            "reload": self._cmd_reload,
            "shutdown": self._cmd_shutdown,
            "statusline": self._cmd_statusline,
        }

    def _streams(self) -> dict[str, Any]:
        return {"tail": self._tail, "ingest": self._cmd_ingest}

    async def _hello(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "capabilities": list(CAPABILITIES),
            "db": str(self.settings.paths.db),
            "scan": self._scan_state(),
        }

    def _scan_state(self) -> dict[str, Any]:
        """Whether the ledger is complete: a full scan has run since start (or since the
        ledger was rebuilt); while the first one runs, its files done / total."""
        progress = self.scan_progress
        return {
            "caught_up": self.caught_up,
            "files_done": progress[0] if progress and not self.caught_up else None,
            "files_total": progress[1] if progress and not self.caught_up else None,
        }

    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "pid": os.getpid()}

    def _status_line(self) -> str:
        watching = sum(1 for w in self.watchers if w.state in ("watching", "polling"))
        paused = self._paused_sources()
        text = f"{self.phase}; watching {watching}/{len(self.watchers)} roots"
        if paused:
            text += f"; paused: {', '.join(sorted(paused))}"
        return text + f"; {self.totals['events']} new events since start"

    async def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        conn = self._ledger_reader()
        summary = queries.ledger_summary(conn)
        per_source = queries.source_totals(conn)
        history = queries.history(conn)
        paused = self._paused_sources()
        sources = []
        for source in enabled_sources(self.settings):
            name = source.name
            roots = [w.describe() for w in self.watchers if w.source == name]
            if not self.settings.watch_enabled:
                roots = [
                    {"name": name, "path": str(r), "state": "not-watching", "backend": None}
                    for r in source.roots(self.settings)
                ]
            totals = per_source.get(name, {})
            last_ms = max(self.last_event_ms.get(name, 0), int(totals.get("last_ms", 0)))
            sources.append(
                {
                    "name": name,
                    "state": "paused" if name in paused else _source_state(roots),
                    "roots": roots,
                    "files_tracked": summary.get(name, {}).get("files", 0),
                    "files_gone": summary.get(name, {}).get("files_gone", 0),
                    "files_in_error": summary.get(name, {}).get("files_in_error", 0),
                    "malformed_lines": summary.get(name, {}).get("malformed_lines", 0),
                    "events": int(totals.get("events", 0)),
                    "last_event_at": _iso(last_ms) if last_ms else None,
                    "history": history.get(name, queries.History()).as_dict(),
                }
            )
        db = self.settings.paths.db
        store_bytes = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
        stalls = self._guard.stalls()
        degraded = [w.source for w in self.watchers if w.state == "polling" or w.error]
        degraded += [s.source for s in stalls]
        state = "paused" if paused and paused >= {s["name"] for s in sources} else "watching"
        if not self.settings.watch_enabled:
            state = "running-unwatched"
        if degraded:
            state = "degraded"
        return {
            "state": state if self.phase == "running" else self.phase,
            "pid": os.getpid(),
            "db": str(db),
            "uptime_s": int(time.monotonic() - self._started),
            "version": __version__,
            "protocol": PROTOCOL,
            "watcher": self.settings.watch_enabled,
            "sources": sources,
            "pause": {
                name: {"since": p.since, "until": p.until, "reason": p.reason, "by_pid": p.by_pid}
                for name, p in self.state.paused.items()
            },
            "last_cycle": self.cycle.__dict__,
            "cycles": self.cycles,
            "since_start": dict(self.totals),
            "store": {"path": str(db), "bytes": store_bytes},
            "scan": self._scan_state(),
            "history": queries.History.total(history.values()).as_dict(),
            "malformed_lines": sum(summary.get(s, {}).get("malformed_lines", 0) for s in summary),
            "paths": self.settings.paths.as_dict(),
            "warnings": [w.error for w in self.watchers if w.error]
            + _unreadable(conn)
            + [_stall_warning(s) for s in stalls]
            + ([self.log_problem] if self.log_problem else []),
        }

    def _sources_arg(self, args: dict[str, Any]) -> list[str]:
        raw = args.get("sources") or []
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise ProtocolError("bad_request", "'sources' must be a list of source names")
        unknown = [s for s in raw if s not in KNOWN_SOURCES]
        if unknown:
            raise ProtocolError(
                "bad_request", f"unknown source {unknown[0]!r} (known: {', '.join(KNOWN_SOURCES)})"
            )
        return list(raw) or list(KNOWN_SOURCES)

    async def _cmd_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        sources = self._sources_arg(args)
        duration = args.get("for_s")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0
        ):
            raise ProtocolError("bad_request", "'for_s' must be a positive number of seconds")
        reason = args.get("reason") or ""
        if not isinstance(reason, str):
            raise ProtocolError("bad_request", "'reason' must be a string")
        pid = args.get("pid") if isinstance(args.get("pid"), int) else None
        until = time.time() + float(duration) if duration is not None else None
        self._pause(sources, until, reason[:200], pid)
        return {"paused": sources, "until": until}

    async def _cmd_resume(self, args: dict[str, Any]) -> dict[str, Any]:
        sources = self._sources_arg(args)
        self._resume(sources)
        return {"resumed": sources}

    async def _cmd_rescan(self, args: dict[str, Any]) -> dict[str, Any]:
        sources = self._sources_arg(args)
        self.request_full(sources, reason="rescan")
        if self._store_retry_at is not None:  # the user says the fault is fixed: retry now
            self._store_retry_at = time.monotonic()
        return {"scheduled": sources}

    async def _cmd_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.reload()

    async def _cmd_shutdown(self, args: dict[str, Any]) -> dict[str, Any]:
        asyncio.get_running_loop().call_later(0.05, self.request_stop)
        return {"stopping": True, "pid": os.getpid()}

    async def _cmd_statusline(self, args: dict[str, Any]) -> dict[str, Any]:
        conn = self._read_conn
        if conn is None or self._read_broken:
            raise ProtocolError("store_unavailable", "the ledger is being rebuilt; try again")
        session = args.get("session_id")
        now = time.time()
        # The client's local day (its TZ may differ from the daemon's); the daemon's own
        # when the client gives none. A client from before day_end_ms: a 24-hour day.
        start, end = args.get("day_start_ms"), args.get("day_end_ms")
        if not _is_int(start):
            from sufd.control.statusline import day_bounds_ms

            start, end = day_bounds_ms(now)
        elif not _is_int(end) or end <= start:
            end = start + 86_400_000
        numbers = queries.statusline(
            conn,
            session if isinstance(session, str) else None,
            day_ms=(start, end),
            now_ms=int(now * 1000),
        )
        return {**numbers, "text": format_line(numbers), "db": str(self.settings.paths.db)}

    async def _cmd_ingest(self, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``sufd ingest`` with the daemon running: the daemon, the one writer, runs a full
        scan of every source that is not paused, and streams its progress and summary."""
        if self._ingestor is None or self.store.problem is not None:
            problem = self.store.problem
            why = f"{problem.reason}: {problem.detail}" if problem else "the ledger is not open"
            yield {"error": f"the daemon cannot write the ledger now ({why}); it retries by itself"}
            return
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._catchup_waiting.append(q)
        self.request_full(KNOWN_SOURCES, reason="sufd ingest")
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item
                if "done" in item or "error" in item:
                    return
        finally:
            with contextlib.suppress(ValueError):
                self._catchup_waiting.remove(q)

    async def _tail(self, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # _publish bounds it
        self._tails.add(q)
        try:
            while True:
                item = await q.get()
                if item is None or q not in self._tails:
                    return
                yield item
        finally:
            self._tails.discard(q)


def _put_all(
    queues: list[asyncio.Queue[dict[str, Any] | None]], item: dict[str, Any] | None
) -> None:
    for q in queues:
        q.put_nowait(item)


def _signature(paths: set[Path]) -> dict[Path, tuple[int, int, int] | None]:
    """Identity, size and mtime of each path: what changes when a file is written."""
    out: dict[Path, tuple[int, int, int] | None] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out[path] = None
        else:
            out[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def _wall_offset() -> float:
    """The wall clock minus a clock that counts suspend but is never set: it changes only
    when the wall clock is set (by hand, or stepped by NTP)."""
    return time.time() - time.clock_gettime(_STEADY_CLOCK)


def _unreadable(conn: sqlite3.Connection) -> list[str]:
    """Status warnings naming the files that could not be read (permissions, not a file)."""
    shown, count = queries.files_in_error(conn)
    out = [f"cannot read {path}: {error}" for path, error in shown]
    if count > len(shown):
        out.append(f"... and {count - len(shown)} more files that cannot be read")
    return out


def _merge(into: IngestStats, part: IngestStats) -> None:
    into.files += part.files
    into.files_read += part.files_read
    into.bytes_read += part.bytes_read
    into.inserted += part.inserted
    into.replaced += part.replaced
    into.malformed += part.malformed
    into.errors += part.errors
    into.gone += part.gone
    into.more += part.more
    into.stalled += part.stalled
    into.busy += part.busy


def _stall_warning(stall: Stall) -> str:
    waited = time.monotonic() - stall.since
    return (
        f"reading {stall.path} has not returned for {waited:.0f} s (a slow or hung mount?); "
        f"the files under {stall.root} wait until it does"
    )


def _source_state(roots: list[dict[str, Any]]) -> str:
    states = {r["state"] for r in roots}
    for candidate in ("watching", "polling", "not-watching", "starting", "failed"):
        if candidate in states:
            return candidate
    return "missing"


def _keep_paths(new: Settings, old: Settings) -> Settings:
    return new._replace(paths=old.paths)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _event_json(source: str, pr: PricedRecord, replaced: bool, now: float) -> dict[str, Any]:
    r = pr.record
    return {
        "source": source,
        "key": r.key,
        "ts": _iso(r.ts_ms),
        "session": r.session,
        "project": r.project,
        "model": r.model,
        "input": r.input,
        "output": r.output,
        "cache_write": r.cache_write_5m + r.cache_write_1h,
        "cache_read": r.cache_read,
        "reasoning": r.reasoning,
        "total": r.total,
        "cost": pr.cost,
        "cost_kind": pr.cost_kind,
        "replaced": replaced,
        "committed_at": now,
    }
