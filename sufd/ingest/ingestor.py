"""Ingest: read what is new in source files, price it, and commit it with the file's cursor.

:meth:`Ingestor.ingest_file` is the one place that catches broad exceptions: a file that
cannot be read or parsed is logged and recorded, its cursor stays where it was, and ingest
goes on with the next file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar
from zoneinfo import ZoneInfoNotFoundError

from sufd.errors import SourceBusy
from sufd.ingest.parse import (
    BATCH_BYTES,
    BATCH_RECORDS,
    TAIL_BYTES,
    Chunk,
    fingerprint,
    parse_lines,
    price_record,
)
from sufd.ingest.reader import ByteFile
from sufd.ingest.summary import summary_line
from sufd.logger import get_logger
from sufd.prices.table import PriceTable
from sufd.settings import Settings, local_zone
from sufd.sources import Malformed, Source, enabled_sources
from sufd.sources.base import FileContext, symlinked_below
from sufd.store.health import StoreFault
from sufd.store.ledger import (
    Batch,
    FileCursor,
    Ledger,
    PricedRecord,
)
from sufd.watch.stalls import GuardedFile, IoGuard, Stalled

if TYPE_CHECKING:
    from sufd.ingest.prefetch import Prefetcher

__all__ = ["CommitHook", "FileResult", "IngestStats", "Ingestor"]

log = get_logger(__name__)

CommitHook = Callable[[str, list[PricedRecord], list[PricedRecord]], None]
_T = TypeVar("_T")
# With a time slice (the daemon's change batches), as small: the slice is checked between
# batches.
SLICE_RECORDS = 2_000
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
# A catch-up commits every this many bytes read (and at the end).
BULK_FLUSH_BYTES = 64 * 1024 * 1024
# ... and at least this often: a crash (or a crash loop) loses at most this much work, and
# what `sufctl tail` announces during a long catch-up is at most this late.
BULK_FLUSH_S = 0.25
# Worker processes pay for themselves only on a large catch-up (a first ingest).
PREFETCH_MIN_TOTAL_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class FileResult:
    """What one pass over one file did."""

    path: Path
    source: str
    bytes_read: int = 0
    inserted: int = 0
    replaced: int = 0
    malformed: int = 0
    unchanged: bool = False
    reset: str | None = None
    error: str | None = None
    more: bool = False  # stopped at the end of its time slice: the rest is read later
    stalled: bool = False  # its mount did not answer in time: read again once it does
    busy: bool = False  # a database locked or changing under the read: try again shortly


@dataclass(slots=True)
class IngestStats:
    """Totals of one ingest run, for the summary line and the logs."""

    files: int = 0
    files_read: int = 0
    bytes_read: int = 0
    inserted: int = 0
    replaced: int = 0
    malformed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    gone: int = 0
    prefetched: int = 0
    started: float = field(default_factory=time.monotonic)
    more: list[Path] = field(default_factory=list)  # files to read on from their cursor
    stalled: int = 0  # files (or roots) left for a mount that does not answer
    busy: list[Path] = field(default_factory=list)  # databases to try again shortly

    def add(self, result: FileResult) -> None:
        """Fold one file's result into the totals."""
        self.files += 1
        if not result.unchanged:
            self.files_read += 1
        self.bytes_read += result.bytes_read
        self.inserted += result.inserted
        self.replaced += result.replaced
        self.malformed += result.malformed
        if result.error:
            self.errors.append((str(result.path), result.error))
        if result.more:
            self.more.append(result.path)
        if result.stalled:
            self.stalled += 1
        if result.busy:
            self.busy.append(result.path)

    @property
    def duration_ms(self) -> int:
        """Wall time since the run started."""
        return int((time.monotonic() - self.started) * 1000)

    def as_dict(self) -> dict[str, object]:
        """The summary as JSON-ready data (``sufd ingest --json``)."""
        return {
            "files": self.files,
            "files_read": self.files_read,
            "bytes_read": self.bytes_read,
            "events_new": self.inserted,
            "events_replaced": self.replaced,
            "malformed_lines": self.malformed,
            "files_gone": self.gone,
            "files_prefetched": self.prefetched,
            "errors": [{"path": p, "error": e} for p, e in self.errors],
            "duration_ms": self.duration_ms,
        }

    def summary_line(self) -> str:
        """One sentence for the end of ``sufd ingest``."""
        return summary_line(self.as_dict())


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
        self.on_commit = on_commit
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
            bytes=stats.bytes_read,
            events=stats.inserted,
            replaced=stats.replaced,
            malformed=stats.malformed,
            errors=len(stats.errors),
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
        start = self._read_start(source, cursor, st)
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
                with _ledger_write():
                    cursor = self.ledger.new_file(source.name, str(path))
                cursors[str(path)] = cursor
            self._read(source, root, path, cursor, result)
            if cursor.gone:
                # Back on disk (restored, moved back): read unchanged, nothing else clears it.
                with _ledger_write():
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
                    with _ledger_write():
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

    @staticmethod
    def _read_start(
        source: Source, cursor: FileCursor, st: os.stat_result
    ) -> tuple[str | None, int] | None:
        """Where to read a file from: ``None`` when it is unchanged, else (reset reason, offset).

        Documents are rewritten whole (often by atomic rename, so a new inode each time) and
        their carried state belongs to the path. A line file that shrank or is another inode
        is read again from 0; upserts by key make that safe. (One rewritten in place, not
        shorter, is found only once open: see :meth:`_before_cursor`.)
        """
        same_file = (cursor.dev, cursor.ino) == (st.st_dev, st.st_ino)
        if same_file and (st.st_size, st.st_mtime_ns) == (cursor.size, cursor.mtime_ns):
            return None
        if (
            source.kind == "lines"
            and cursor.offset
            and (not same_file or st.st_size < cursor.offset)
        ):
            return ("replaced" if not same_file else "truncated"), 0
        return None, cursor.offset

    def _read(
        self, source: Source, root: Path | None, path: Path, cursor: FileCursor, result: FileResult
    ) -> None:
        key = (source.name, str(root if root is not None else path))
        st = self._io(key, str(path), os.stat, path)
        if not stat.S_ISREG(st.st_mode):
            raise _NotAFile(path, st.st_mode)
        if source.kind == "database":
            self._read_database(source, root, path, cursor, st, result)
            return
        start = self._read_start(source, cursor, st)
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
                self._read_document(source, f, ctx, cursor, result)
                return
            before = self._before_cursor(f, cursor)
            if before is None:
                result.reset = "rewritten"
                log.info(
                    "ingest.file_reset", path=str(path), source=source.name, reason="rewritten"
                )
                ctx.state = source.new_state()
                cursor.offset, before = 0, b""
            self._read_lines(source, f, fst.st_size, ctx, cursor, result, before)

    @staticmethod
    def _before_cursor(f: ByteFile, cursor: FileCursor) -> bytes | None:
        """The bytes just before a line file's cursor, or ``None`` if they are no longer
        those it was read up to: the file was rewritten in place (or cut short since the
        ``stat``). One small read per file read; the bytes go on to fingerprint the commits.
        """
        if not cursor.offset:
            return b""
        want = min(cursor.offset, TAIL_BYTES)
        f.seek(cursor.offset - want)
        before = _read_up_to(f, want)
        if len(before) < want:
            return None
        if cursor.tail is not None and fingerprint(before) != cursor.tail:
            return None
        return before

    def _read_lines(
        self,
        source: Source,
        f: ByteFile,
        size: int,
        ctx: FileContext,
        cursor: FileCursor,
        result: FileResult,
        before: bytes,
    ) -> None:
        """An append-only source: parse each complete line after the cursor and commit it.

        ``before``: the bytes just before the cursor (see :func:`parse_lines`).
        """
        start = cursor.offset
        chunks: Iterable[Chunk] | None = None
        if self._prefetch is not None:
            chunks = self._prefetch.take(ctx.path, start, os.fstat(f.fileno()), ctx.state)
        if chunks is None:
            chunks = parse_lines(
                source,
                f,
                start,
                ctx,
                max_line=self.settings.max_line_bytes,
                table=self.prices,
                mode=self.settings.cost_mode,
                chunk_bytes=BATCH_BYTES,
                chunk_records=BATCH_RECORDS if self._slice is None else SLICE_RECORDS,
                before=before,
            )
        end = start
        deadline = None if self._slice is None else time.monotonic() + self._slice
        for chunk in chunks:
            ctx.state = chunk.state
            batch = Batch(cursor, chunk.records, chunk.malformed)
            # Only the last chunk records the size read: a cursor left short of it (stopped
            # by the slice or a shutdown) must not look fully read to the next pass.
            seen = max(size, chunk.end) if chunk.final else chunk.end
            cursor.tail = chunk.tail
            self._commit(source, batch, ctx, chunk.end, seen, result)
            end = chunk.end
            if self.interrupt.is_set():
                break
            if deadline is not None and not chunk.final and time.monotonic() >= deadline:
                result.more = True
                break
        result.bytes_read = end - start

    def _read_document(
        self, source: Source, f: ByteFile, ctx: FileContext, cursor: FileCursor, result: FileResult
    ) -> None:
        """A whole-file source: re-parse it and upsert every record it holds now."""
        data = _read_up_to(f, MAX_DOCUMENT_BYTES + 1)
        batch = Batch(cursor)
        if len(data) > MAX_DOCUMENT_BYTES:
            batch.malformed.append((0, f"document larger than {MAX_DOCUMENT_BYTES} bytes"))
        else:
            try:
                records = source.parse_document(data, ctx)
            except Malformed as bad:
                batch.malformed.append((0, bad.reason))
                records = []
            mode, table = self.settings.cost_mode, self.prices
            batch.records = [price_record(rec, source, table, mode) for rec in records]
            batch.malformed.extend(ctx.malformed)
        self._commit(source, batch, ctx, len(data), len(data), result)
        result.bytes_read = len(data)

    def _read_database(
        self,
        source: Source,
        root: Path | None,
        path: Path,
        cursor: FileCursor,
        st: os.stat_result,
        result: FileResult,
    ) -> None:
        """An SQLite source: ask the adapter what changed since its watermark."""
        ctx = FileContext(path, root, dict(cursor.state) or source.new_state())
        records = source.read_database(path, ctx)
        if records is None:
            result.unchanged = True
            return
        cursor.dev, cursor.ino, cursor.mtime_ns = st.st_dev, st.st_ino, st.st_mtime_ns
        mode, table = self.settings.cost_mode, self.prices
        batch = Batch(cursor, [price_record(rec, source, table, mode) for rec in records])
        batch.malformed.extend(ctx.malformed)
        self._commit(source, batch, ctx, st.st_size, st.st_size, result)

    def _commit(
        self,
        source: Source,
        batch: Batch,
        ctx: FileContext,
        end: int,
        size: int,
        result: FileResult,
    ) -> Batch:
        cursor = batch.cursor
        cursor.offset, cursor.size, cursor.state = end, size, dict(ctx.state)
        with _ledger_write():
            inserted, replaced = self.ledger.commit(source, batch)
        result.inserted += len(inserted)
        result.replaced += len(replaced)
        if self.on_commit is not None and (inserted or replaced):
            hook, name = self.on_commit, source.name
            # Inside a catch-up's bulk transaction: announce only once it is committed.
            self.ledger.after_commit(lambda: hook(name, inserted, replaced))
        result.malformed += len(batch.malformed)
        if batch.malformed:
            log.info(
                "ingest.malformed_lines",
                path=str(ctx.path),
                source=source.name,
                count=len(batch.malformed),
                first_offset=batch.malformed[0][0],
                reason=batch.malformed[0][1],
            )
        return Batch(cursor)


@contextlib.contextmanager
def _ledger_write() -> Iterator[None]:
    """A write to the ledger: its SQLite errors are the store's (disk full, corrupt...), not
    the source file's, so they leave the ingest boundary as :class:`StoreFault`."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreFault(exc) from exc


def _read_up_to(f: ByteFile, limit: int) -> bytes:
    """At most ``limit`` bytes, to the end of the file (a read may return less than asked)."""
    parts: list[bytes] = []
    got = 0
    while got < limit and (part := f.read(limit - got)):
        parts.append(part)
        got += len(part)
    return b"".join(parts)


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
