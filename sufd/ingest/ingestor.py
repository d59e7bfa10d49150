"""Ingest: read what is new in source files, price it, and commit it with the file's cursor.

The :class:`Ingestor` orchestrates a pass: which files to read (a survey of every root, or a
watcher's change batch), the cursors, the parse workers of a large catch-up, files gone from
disk. It opens each file and hands it to the reader of its kind (:mod:`sufd.ingest.readers`).

:meth:`Ingestor.ingest_file` is the one place that catches broad exceptions: a file that
cannot be read or parsed is logged and recorded, its cursor stays where it was, and ingest
goes on with the next file.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar
from zoneinfo import ZoneInfoNotFoundError

from sufd.errors import SourceBusy
from sufd.ingest.readers import (
    CommitHook,
    Committer,
    DatabaseReader,
    DocumentReader,
    LineReader,
    ledger_write,
    read_start,
)
from sufd.ingest.summary import FileResult, IngestStats
from sufd.logger import get_logger
from sufd.prices.table import PriceTable
from sufd.settings import Settings, local_zone
from sufd.sources import Source, enabled_sources
from sufd.sources.base import FileContext, symlinked_below
from sufd.store.batch import FileCursor
from sufd.store.faults import StoreFault
from sufd.store.ledger import Ledger
from sufd.watch.stalls import GuardedFile, IoGuard, Stalled

if TYPE_CHECKING:
    from sufd.ingest.prefetch import Prefetcher

__all__ = ["CommitHook", "FileResult", "IngestStats", "Ingestor"]

log = get_logger(__name__)

_T = TypeVar("_T")
# A catch-up commits every this many bytes read (and at the end).
BULK_FLUSH_BYTES = 64 * 1024 * 1024
# ... and at least this often: a crash (or a crash loop) loses at most this much work, and
# what `sufctl tail` announces during a long catch-up is at most this late.
BULK_FLUSH_S = 0.25
# Worker processes pay for themselves only on a large catch-up (a first ingest).
PREFETCH_MIN_TOTAL_BYTES = 16 * 1024 * 1024


class Ingestor:
    """Reads source files into the ledger; one instance per writing process."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        prices: PriceTable,
        *,
        on_commit: CommitHook | None = None,
        interrupt: threading.Event | None = None,
        workers: int = 1,
        slice_s: float | None = None,
        guard: IoGuard | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.prices = prices
        self.sources = enabled_sources(settings)
        # Set by the daemon on shutdown: stop after the current batch commit.
        self.interrupt = interrupt or threading.Event()
        # ingest_paths reads at most this long from one file, then goes on to the next (a
        # file grown by gigabytes must not hold up the others); the rest is in ``more``.
        self.slice_s = slice_s
        self._slice: float | None = None
        # Processes parsing ahead of the writer in a large catch-up (see sufd.ingest.prefetch).
        self.workers = workers
        self._cursors: dict[str, FileCursor] | None = None
        self._prefetch: Prefetcher | None = None
        # The daemon's: file-system calls on a root that may hang (see sufd.watch.stalls).
        self.guard = guard
        committer = Committer(ledger, on_commit)
        self._lines = LineReader(settings, prices, committer, self.interrupt)
        self._document = DocumentReader(settings, prices, committer)
        self._database = DatabaseReader(settings, prices, committer)
        zone = local_zone(settings)
        try:
            # Reports in this zone (the default one) then read per-day sums.
            ledger.track_zone(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            log.warning("ingest.zone_unknown", zone=zone, error=f"{type(exc).__name__}: {exc}")

    def ingest_all(
        self,
        progress: Callable[[IngestStats, int], None] | None = None,
        *,
        only: Collection[str] | None = None,
    ) -> IngestStats:
        """A catch-up pass over everything (what the daemon runs at start and to reconcile).

        Unchanged files cost one ``stat`` each. ``only`` limits the pass to these sources.
        """
        stats = IngestStats()
        self._slice = None
        found, stats_of, held_up = self._survey_roots(only)
        stats.stalled = len(held_up)
        if self._cursors is None:
            # Kept between passes: this instance is the only writer of cursors, and the cache
            # is dropped whenever a commit fails (below and in ingest_file).
            self._cursors = self.ledger.cursors()
        seen: set[str] = set()
        self._prefetch = self._start_prefetch(found, stats_of)
        try:
            with self.ledger.bulk() as bulk:
                flushed, flushed_at = 0, time.monotonic()
                for source, root, path in found:
                    if self.interrupt.is_set():
                        return stats
                    key = str(path)
                    seen.add(key)
                    if self._unchanged(source, key, stats_of[path]):
                        stats.files += 1
                        continue
                    stats.add(self.ingest_file(source, root, path))
                    if (
                        stats.bytes_read - flushed >= BULK_FLUSH_BYTES
                        or time.monotonic() - flushed_at >= BULK_FLUSH_S
                    ):
                        bulk.flush()
                        flushed, flushed_at = stats.bytes_read, time.monotonic()
                    if progress is not None:
                        progress(stats, len(found))
        except BaseException:
            # Cursors in memory may be ahead of what was committed: reload them next time.
            self._cursors = None
            raise
        finally:
            if self._prefetch is not None:
                stats.prefetched = self._prefetch.hits
                self._prefetch.close()
                self._prefetch = None

        stats.gone = self._sweep_gone(seen, only, held_up)
        log.info(
            "ingest.done",
            files=stats.files,
            files_read=stats.files_read,
            **stats.log_fields(),
            duration_ms=stats.duration_ms,
        )
        return stats

    def _survey_roots(
        self, only: Collection[str] | None
    ) -> tuple[list[tuple[Source, Path, Path]], dict[Path, os.stat_result | None], list[str]]:
        """Every file of every root (with its ``stat``), and the roots whose mount did not
        answer in time (the daemon's guard): those are left as they are this pass."""
        found: list[tuple[Source, Path, Path]] = []
        stats_of: dict[Path, os.stat_result | None] = {}
        held_up: list[str] = []
        for source in self.sources:
            if only is not None and source.name not in only:
                continue
            for root in source.roots(self.settings):
                try:
                    listed = self._io((source.name, str(root)), str(root), _survey, source, root)
                except Stalled:
                    held_up.append(str(root))
                    continue
                for path, st in listed:
                    found.append((source, root, path))
                    stats_of[path] = st
        return found, stats_of, held_up

    def _sweep_gone(self, seen: set[str], only: Collection[str] | None, held_up: list[str]) -> int:
        """Flag the tracked files no longer on disk (their events stay); how many."""
        assert self._cursors is not None
        gone = [
            c
            for p, c in self._cursors.items()
            if p not in seen
            and not c.gone
            and (only is None or c.source in only)
            and not any(p.startswith(r + os.sep) for r in held_up)
            and _vanished(p)
        ]
        if gone:
            self.ledger.mark_gone([c.file_id for c in gone])
            for c in gone:
                c.gone = True
        return len(gone)

    def _plan(
        self, source: Source, path: Path, st: os.stat_result
    ) -> tuple[int, dict[str, Any]] | None:
        """Where the writer will start reading a line file, and with what state; or None."""
        if source.kind != "lines" or not stat.S_ISREG(st.st_mode):
            return None
        cursor = (self._cursors or {}).get(str(path))
        if cursor is None:
            return 0, source.new_state()
        start = read_start(source, cursor, st)
        if start is None:
            return None
        reset, offset = start
        return offset, (dict(cursor.state) if not reset else {}) or source.new_state()

    def _start_prefetch(
        self,
        found: list[tuple[Source, Path, Path]],
        stats_of: dict[Path, os.stat_result | None],
    ) -> Prefetcher | None:
        """Workers for the line files of this pass, if there are enough bytes to parse."""
        if self.workers <= 1:
            return None
        from sufd.ingest.prefetch import MIN_PREFETCH_BYTES, Planned, Prefetcher, WorkersUnavailable

        plan: list[Planned] = []
        for source, root, path in found:
            st = stats_of[path]
            if st is None or (todo := self._plan(source, path, st)) is None:
                continue
            start, state = todo
            plan.append(
                Planned(source.name, root, path, start, state, st.st_dev, st.st_ino, st.st_size)
            )
        worth = sum(max(0, p.size - p.start - MIN_PREFETCH_BYTES) for p in plan)
        if worth < PREFETCH_MIN_TOTAL_BYTES:
            return None
        try:
            return Prefetcher(self.settings, self.prices, self.workers, plan)
        except WorkersUnavailable as exc:
            log.warning("ingest.workers_unavailable", error=str(exc))
            return None

    def _unchanged(self, source: Source, key: str, st: os.stat_result | None) -> bool:
        """The reconcile sweep's fast path: same identity, size and mtime as the cursor."""
        cursor = self._cursors.get(key) if self._cursors is not None else None
        if cursor is None or cursor.gone or source.kind == "database" or st is None:
            return False  # databases have their own check (their -wal changes, not the file)
        return stat.S_ISREG(st.st_mode) and (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        ) == (cursor.dev, cursor.ino, cursor.size, cursor.mtime_ns)

    def ingest_paths(self, paths: Iterable[Path], *, skip: Collection[str] = ()) -> IngestStats:
        """Ingest just these files (a watcher's change batch).

        Paths no enabled source owns, and those of sources in ``skip``, are ignored.
        """
        stats = IngestStats()
        self._slice = self.slice_s
        if self._cursors is None:
            self._cursors = self.ledger.cursors()
        targets = {s.target(p) for p in paths for s in self.sources if s.owns(p)}
        for path in sorted(targets):
            match = self._owner(path)
            if match is None or match[0].name in skip:
                continue
            try:
                where = self._io((match[0].name, str(match[1])), str(path), _where, match[1], path)
            except Stalled:
                stats.stalled += 1  # the whole root is read again once its mount answers
                continue
            if where == "outside":
                continue
            if where == "here":
                stats.add(self.ingest_file(match[0], match[1], path))
            else:
                stats.gone += self._mark_gone(path)
        return stats

    def _io(self, key: tuple[str, str], path: str, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, through the guard when there is one."""
        if self.guard is None:
            return fn(*args)
        return self.guard.call(key, path, fn, *args)

    def _mark_gone(self, path: Path) -> int:
        """A file the watcher saw deleted: flag it (its events stay); 1 if newly flagged."""
        cursor = (self._cursors or {}).get(str(path))
        if cursor is None or cursor.gone:
            return 0
        self.ledger.mark_gone([cursor.file_id])
        cursor.gone = True
        return 1

    def _owner(self, path: Path) -> tuple[Source, Path] | None:
        for source in self.sources:
            if not source.owns(path):
                continue
            for root in source.roots(self.settings):
                if path.is_relative_to(root):
                    return source, root
        return None

    def ingest_file(self, source: Source, root: Path | None, path: Path) -> FileResult:
        """Read what is new in one file. Never raises for a bad file: the error is recorded."""
        result = FileResult(path, source.name)
        cursors = self._cursors if self._cursors is not None else {}
        cursor = cursors.get(str(path))
        try:
            if cursor is None:
                with ledger_write():
                    cursor = self.ledger.new_file(source.name, str(path))
                cursors[str(path)] = cursor
            self._read(source, root, path, cursor, result)
            if cursor.gone:
                # Back on disk (restored, moved back): read unchanged, nothing else clears it.
                with ledger_write():
                    self.ledger.mark_present([cursor.file_id])
                cursor.gone = False
        except StoreFault:
            # Not this file's fault: stop, and read cursors from the store again next time
            # (cached ones may have moved with a transaction that was rolled back).
            self._cursors = None
            raise
        except Stalled:
            # Not this file's fault either, and not an error to record on it: the guard has
            # logged it, and the root is read again from the committed cursors once it answers.
            result.stalled = True
            cursors.pop(str(path), None)
            cursors.update(self.ledger.cursors(str(path)))
            return result
        except Exception as exc:  # the ingest boundary: foreign input must not stop the loop
            if isinstance(exc, FileNotFoundError) and _vanished(path):
                # Moved or deleted after the change was seen: not an error; its events stay.
                log.info("ingest.file_vanished", path=str(path), source=source.name)
                try:
                    cursors.pop(str(path), None)
                    cursors.update(self.ledger.cursors(str(path)))
                    with ledger_write():
                        self._mark_gone(path)
                except Exception as store_exc:
                    log.error("ingest.mark_gone_failed", path=str(path), error=_describe(store_exc))
                return result
            result.error = _describe(exc)
            result.busy = isinstance(exc, SourceBusy)
            log.warning(
                "ingest.file_failed", path=str(path), source=source.name, error=result.error
            )
            try:
                # The cached cursor may have moved before a commit failed: take the stored one.
                cursors.pop(str(path), None)
                cursors.update(self.ledger.cursors(str(path)))
                if cursor is not None:
                    self.ledger.mark_error(cursor, result.error)
            except Exception as store_exc:
                log.error("ingest.mark_error_failed", path=str(path), error=_describe(store_exc))
        return result

    def _read(
        self, source: Source, root: Path | None, path: Path, cursor: FileCursor, result: FileResult
    ) -> None:
        """Open one file as its kind needs (through the guard when there is one) and hand it
        to the reader of that kind."""
        key = (source.name, str(root if root is not None else path))
        st = self._io(key, str(path), os.stat, path)
        if not stat.S_ISREG(st.st_mode):
            raise _NotAFile(path, st.st_mode)
        if source.kind == "database":
            self._database.read(source, root, path, cursor, st, result)
            return
        start = read_start(source, cursor, st)
        if start is None:
            result.unchanged = True
            return
        result.reset = start[0]
        if result.reset:
            log.info("ingest.file_reset", path=str(path), source=source.name, reason=result.reset)
            cursor.offset, cursor.state = 0, {}
        ctx = FileContext(path, root, dict(cursor.state) or source.new_state())
        f: BinaryIO | GuardedFile
        if self.guard is None:
            f = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115 (closed below)
        else:
            f = GuardedFile(self.guard, key, str(path))
        with f:
            # Identity is taken from the open file, so a swap between stat and open is caught
            # on the next pass rather than mixing two files under one cursor.
            fst = f.fstat() if isinstance(f, GuardedFile) else os.fstat(f.fileno())
            if not stat.S_ISREG(fst.st_mode):  # swapped for a named pipe since the stat
                raise _NotAFile(path, fst.st_mode)
            if source.kind == "lines" and (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                ctx.state = source.new_state()
                cursor.offset = 0
            cursor.dev, cursor.ino, cursor.mtime_ns = fst.st_dev, fst.st_ino, fst.st_mtime_ns
            if source.kind == "document":
                self._document.read(source, f, ctx, cursor, result)
                return
            self._lines.read(
                source,
                f,
                fst.st_size,
                ctx,
                cursor,
                result,
                prefetch=self._prefetch,
                slice_s=self._slice,
            )


def _survey(source: Source, root: Path) -> list[tuple[Path, os.stat_result | None]]:
    """The files of one root, each with its ``stat`` (``None`` where that failed): one call
    for the whole root, so that the daemon can put one deadline on it."""
    listed: list[tuple[Path, os.stat_result | None]] = []
    for path in source.scan(root):
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError:
            st = None
        listed.append((path, st))
    return listed


def _open_nonblocking(path: str, flags: int) -> int:
    """``open()``'s opener: a named pipe put where a transcript was must not block the writer
    (in ``open`` waiting for a writer, or in ``read``); on a regular file it changes nothing."""
    return os.open(path, flags | os.O_NONBLOCK)


def _where(root: Path, path: Path) -> Literal["here", "gone", "outside"]:
    """Whether a changed file is in its root as the scan sees it, gone from disk, or reached
    through a symlinked directory (a polling watcher follows them): not in the root then."""
    if symlinked_below(root, path.parent):
        return "outside"
    return "gone" if _vanished(path) else "here"


def _vanished(path: str | Path) -> bool:
    """Whether ``path`` is gone from disk: not merely unreadable (a directory on the way
    without search permission says EACCES, and its files must not be flagged gone)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


class _NotAFile(OSError):
    def __init__(self, path: Path, mode: int) -> None:
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        super().__init__(f"{path} is {kind}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _NotAFile):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"
