"""Live watching of source roots, one watcher per root.

On Linux the root is watched with inotify read on the event loop (:mod:`sufd.watch.inotify`),
which costs nothing while idle; elsewhere, and for polling, with watchfiles.

Each :class:`RootWatcher` reports changed file paths to a callback and keeps its own state:
``watching``, ``missing`` (the directory does not exist yet; checked every heartbeat and
picked up when it appears), ``polling`` (the OS watch limit was hit, or polling was asked
for), ``failed`` (it cannot be watched, e.g. not readable: retried every 5 s, then caught up)
or ``paused``. A root that is deleted and created again is detected by its identity
(device, inode) on every heartbeat and watched anew, since the OS watch silently dies with
the old directory.

Watchers report changes as they come: they do not debounce. The daemon does, in one place
(it waits while the changed files keep changing, up to ``watch.debounce_ms``), for both
backends alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from sufd.logger import get_logger
from sufd.sources.base import symlinked_below
from sufd.watch import inotify

__all__ = ["RootWatcher", "until_tick"]

log = get_logger(__name__)

HEARTBEAT_MS = 1000
# Most configured roots never exist on a given machine; checking them is the daemon's main
# idle cost, so they are looked at less often than the live watches' heartbeat.
MISSING_CHECK_S = 2.0


class _StopFlag:
    """What watchfiles polls between steps: stop when the daemon stops or the root rebuilds."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self.rebuild = False

    def is_set(self) -> bool:
        return self.rebuild or self._stop.is_set()

    def set(self) -> None:
        self.rebuild = True


class RootWatcher:
    """Watches one root directory recursively and reports changed owned files."""

    def __init__(
        self,
        source: str,
        root: Path,
        on_change: Callable[[str, set[Path]], None],
        *,
        owns: Callable[[Path], bool],
        step_ms: int = 50,
        force_polling: bool = False,
        on_appeared: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.source = source
        self.root = root
        self.state = "starting"
        self.backend = _backend(force_polling)
        self.error: str | None = None
        self.changes_seen = 0
        self.last_change_at: float | None = None
        self._on_change = on_change
        self._on_appeared = on_appeared
        self._owns = owns
        self._step = step_ms
        self._force_polling = force_polling
        self._paused = asyncio.Event()
        self._flag: _StopFlag | None = None
        self._wakeup: asyncio.Event | None = None
        self._failed = False  # the last attempt to watch failed: catch up once it works
        # A live watch ended with its last events unread (a read error, the watch limit):
        # catch up once the next watch is armed.
        self._lost = False

    def describe(self) -> dict[str, object]:
        """The root's entry in ``sufctl status``."""
        return {
            "name": self.source,
            "path": str(self.root),
            "state": self.state,
            "backend": self.backend,
            "changes_seen": self.changes_seen,
            "error": self.error,
        }

    def pause(self) -> None:
        """Stop observing (the OS watch is torn down); idempotent."""
        self._paused.set()
        if self._flag is not None:
            self._flag.set()
        if self._wakeup is not None:
            self._wakeup.set()

    def resume(self) -> None:
        """Observe again; the caller runs a catch-up scan for what was written meanwhile."""
        self._paused.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set; never raises for filesystem trouble."""
        was_missing = False
        was_paused = False
        while not stop.is_set():
            if self._paused.is_set():
                self.state = "paused"
                was_paused = True
                await _sleep_or_stop(stop, HEARTBEAT_MS / 1000)
                continue
            ident = _identity(self.root)
            if ident is None:
                if self.state != "missing":
                    log.info("watch.root_missing", source=self.source, root=str(self.root))
                self.state = "missing"
                was_missing = True
                await _sleep_or_stop(stop, MISSING_CHECK_S)
                continue
            if was_missing or was_paused or self._lost:
                if was_missing:
                    log.info("watch.root_appeared", source=self.source, root=str(self.root))
                was_missing = was_paused = self._lost = False
                # A catch-up scan, queued now but run only after _watch() below has armed the
                # OS watch (no await in between): nothing written meanwhile goes unseen.
                if self._on_appeared is not None:
                    self._on_appeared(self.source, self.root)
            if _backend(self._force_polling) == "inotify":
                await self._watch_inotify(stop, ident)
            else:
                await self._watch(stop, ident)

    async def _watch_inotify(self, stop: asyncio.Event, ident: tuple[int, int]) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup = asyncio.Event()
        tree: inotify.InotifyTree | None = None
        try:
            tree = inotify.InotifyTree(self.root)
            self.state, self.backend = "watching", "inotify"
            self.error = _unreadable(tree)
            loop.add_reader(tree.fd, self._on_inotify, tree, wakeup)
            if self._failed:
                self._failed = False
                log.info("watch.recovered", source=self.source, root=str(self.root))
                # What was written while the root could not be watched (nor read).
                if self._on_appeared is not None:
                    self._on_appeared(self.source, self.root)
            replaced = False
            while not (stop.is_set() or wakeup.is_set()):
                await _wait_any(stop, wakeup, HEARTBEAT_MS / 1000)
                # A parent directory renamed away moves the root without an event on it.
                replaced = _identity(self.root) != ident
                if replaced:
                    break
            if (replaced or tree.root_gone) and not self._paused.is_set():
                log.info("watch.root_replaced", source=self.source, root=str(self.root))
                # The new directory's content was never seen by the dead watch.
                if self._on_appeared is not None:
                    self._on_appeared(self.source, self.root)
        except inotify.WatchLimitError as exc:
            self._fall_back_to_polling(exc)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.state, self.error = "failed", str(exc)
            self._failed = True
            log.error("watch.failed", source=self.source, root=str(self.root), error=str(exc))
            await _sleep_or_stop(stop, 5.0)
        finally:
            self._wakeup = None
            if tree is not None:
                if tree.fd >= 0:
                    loop.remove_reader(tree.fd)
                tree.close()

    def _on_inotify(self, tree: inotify.InotifyTree, wakeup: asyncio.Event) -> None:
        try:
            batch = tree.read()
        except inotify.WatchLimitError as exc:
            self._fall_back_to_polling(exc)
            wakeup.set()
            return
        except OSError as exc:
            self.error = str(exc)
            self._lost = True
            log.error("watch.failed", source=self.source, root=str(self.root), error=str(exc))
            wakeup.set()
            return
        # Deleted files too: ingest flags them gone at once (their events stay).
        paths = {p for p in batch.changed | batch.deleted if self._owns(p)}
        if paths:
            self.changes_seen += len(paths)
            self.last_change_at = asyncio.get_running_loop().time()
            self._on_change(self.source, paths)
        if batch.overflow:
            log.warning("watch.queue_overflow", source=self.source, root=str(self.root))
        if batch.lost:
            log.warning("watch.rearmed", source=self.source, root=str(self.root))
        if (batch.overflow or batch.lost or batch.dirs_gone) and self._on_appeared is not None:
            # Events were lost, or files left with their directory: a scan of the source
            # finds what changed (it costs one stat per unchanged file).
            self._on_appeared(self.source, self.root)
        if batch.root_gone:
            tree.root_gone = True
            wakeup.set()
        if batch.new_dirs or self.error:
            self.error = _unreadable(tree)

    def _fall_back_to_polling(self, exc: OSError) -> None:
        # Said at once: the watch in place no longer covers the whole root. What it missed
        # (new directories left unwatched, a read drained and dropped) is caught up once
        # polling has started.
        self.state, self.backend = "polling", "poll"
        self._force_polling = True
        self._lost = True
        self.error = f"{exc}; falling back to polling (raise fs.inotify.max_user_watches)"
        log.warning("watch.limit_polling", source=self.source, root=str(self.root), error=str(exc))

    async def _watch(self, stop: asyncio.Event, ident: tuple[int, int]) -> None:
        flag = self._flag = _StopFlag(stop)
        armed = False
        self.state = "polling" if self._force_polling else "watching"
        self.backend = "poll" if self._force_polling else "native"
        try:
            async for changes in awatch(
                self.root,
                watch_filter=self._filter,
                # watchfiles hands a batch over after one quiet step; its debounce caps how
                # long a batch may keep growing. Set to the step, the batch comes within two
                # steps of its first change: the daemon, not the watcher, folds bursts.
                debounce=self._step,
                step=self._step,
                stop_event=flag,
                rust_timeout=HEARTBEAT_MS,
                yield_on_timeout=True,
                force_polling=self._force_polling,
                poll_delay_ms=300,
                recursive=True,
                ignore_permission_denied=True,
            ):
                if not armed:
                    # watchfiles takes its first snapshot when the watch starts, some time
                    # after the state above was set: what was written between the daemon's
                    # last scan and that snapshot is in neither. Once the watch answers, one
                    # catch-up scan of the root closes that gap.
                    armed = True
                    if self._on_appeared is not None:
                        self._on_appeared(self.source, self.root)
                root_gone = any(c == Change.deleted and Path(p) == self.root for c, p in changes)
                # Deleted files too: ingest flags them gone at once (their events stay).
                paths = {q for _, p in changes if (q := self._in_root(Path(p))) is not None}
                paths.discard(self.root)
                if paths:
                    self.changes_seen += len(paths)
                    self.last_change_at = asyncio.get_running_loop().time()
                    self._on_change(self.source, paths)
                if self._paused.is_set() or root_gone or _identity(self.root) != ident:
                    if not self._paused.is_set():
                        log.info("watch.root_replaced", source=self.source, root=str(self.root))
                        # The new directory's content was never seen by the dead watch.
                        if self._on_appeared is not None:
                            self._on_appeared(self.source, self.root)
                    return
        except FileNotFoundError:
            return
        except OSError as exc:
            if "limit" in str(exc).lower() and not self._force_polling:
                self._fall_back_to_polling(exc)
                return
            self.error = str(exc)
            self._lost = True
            log.error("watch.failed", source=self.source, root=str(self.root), error=str(exc))
            await _sleep_or_stop(stop, 5.0)
        except Exception as exc:  # watchfiles' own runtime errors: rebuild rather than die
            self.error = f"{type(exc).__name__}: {exc}"
            self._lost = True
            log.error("watch.failed", source=self.source, root=str(self.root), error=self.error)
            await _sleep_or_stop(stop, 5.0)
        finally:
            self._flag = None

    def _in_root(self, path: Path) -> Path | None:
        """``path`` as the root's own tree names it, or ``None`` if it is outside the root.

        watchfiles follows directory symlinks below the root and may report a change to a
        file only under the symlink's path; ingest takes no path through a symlinked
        directory (the scan does not enter one), so such a path is named by its real one
        when that lies in the root.
        """
        if not symlinked_below(self.root, path.parent):
            return path
        real, top = os.path.realpath(path), os.path.realpath(self.root)
        if not real.startswith(top + os.sep):
            return None
        inside = self.root / os.path.relpath(real, top)
        return None if symlinked_below(self.root, inside.parent) else inside

    def _filter(self, change: Change, path: str) -> bool:
        # The root's own deletion is let through: a root recreated at once often gets the
        # same inode number back (ext4), so _identity() alone cannot tell.
        p = Path(path)
        return self._owns(p) or (change == Change.deleted and p == self.root)


def _unreadable(tree: inotify.InotifyTree) -> str | None:
    """The status warning for directories of the tree that cannot be read, if any."""
    if not tree.unreadable:
        return None
    first = min(tree.unreadable)
    more = f" (and {len(tree.unreadable) - 1} more)" if len(tree.unreadable) > 1 else ""
    return f"cannot read {first}: Permission denied{more}; its files are not ingested"


def _backend(force_polling: bool) -> str:
    if force_polling:
        return "poll"
    return "inotify" if inotify.available() else "native"


def until_tick(period: float) -> float:
    """Seconds to the next multiple of ``period`` on the loop's clock.

    Every periodic check in the daemon sleeps to such a tick, so all of them (one per
    root, and the heartbeat) wake the process together, once, instead of each on its own.
    """
    now = asyncio.get_running_loop().time()
    return period - (now % period) or period


async def _wait_any(a: asyncio.Event, b: asyncio.Event, period: float) -> None:
    waits = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(waits, timeout=until_tick(period), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


async def _sleep_or_stop(stop: asyncio.Event, period: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=until_tick(period))
