"""Readers per kind of source file: each reads one file from its cursor and commits it.

:class:`~sufd.ingest.ingestor.Ingestor` decides which files to read, opens them and stands
between a bad file and the rest of the pass; a reader here turns what one open file holds
now into committed batches, the way its source's :attr:`~sufd.sources.Source.kind` says:

* :class:`LineReader`: an append-only line file, parsed from its cursor (or taken from a
  parse worker) and committed chunk by chunk, each chunk with the cursor after it;
* :class:`DocumentReader`: a whole file rewritten in place, parsed again in full;
* :class:`DatabaseReader`: an SQLite file, asked for what changed since its watermark.

Every one commits through the same :class:`Committer`: records and cursor in one ledger
transaction, then the commit hook.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sufd.ingest.parse import (
    BATCH_BYTES,
    BATCH_RECORDS,
    TAIL_BYTES,
    Chunk,
    fingerprint,
    parse_lines,
    price_record,
)
from sufd.ingest.runs import ByteFile
from sufd.ingest.summary import FileResult
from sufd.logger import get_logger
from sufd.prices.table import PriceTable
from sufd.settings import Settings
from sufd.sources import Malformed, Record, Source
from sufd.sources.base import FileContext
from sufd.store.batch import Batch, FileCursor, PricedRecord
from sufd.store.faults import StoreFault
from sufd.store.ledger import Ledger

if TYPE_CHECKING:
    from sufd.ingest.prefetch import Prefetcher

__all__ = [
    "CommitHook",
    "Committer",
    "DatabaseReader",
    "DocumentReader",
    "LineReader",
    "ledger_write",
    "read_start",
]

log = get_logger(__name__)

CommitHook = Callable[[str, list[PricedRecord], list[PricedRecord]], None]
# With a time slice (the daemon's change batches), as small: the slice is checked between
# batches.
SLICE_RECORDS = 2_000
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


class Committer:
    """Commits a batch with its file's cursor, counts it in the file's result, and hands what
    it inserted or replaced to the commit hook once it is committed."""

    def __init__(self, ledger: Ledger, on_commit: CommitHook | None) -> None:
        self.ledger = ledger
        self.on_commit = on_commit

    def commit(
        self,
        source: Source,
        batch: Batch,
        ctx: FileContext,
        end: int,
        size: int,
        result: FileResult,
    ) -> None:
        """Commit ``batch``, its cursor now at ``end`` in a file of ``size`` bytes read."""
        cursor = batch.cursor
        cursor.offset, cursor.size, cursor.state = end, size, dict(ctx.state)
        with ledger_write():
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


class LineReader:
    """An append-only source: parse each complete line after the cursor and commit it."""

    def __init__(
        self,
        settings: Settings,
        prices: PriceTable,
        committer: Committer,
        interrupt: threading.Event,
    ) -> None:
        self.settings = settings
        self.prices = prices
        self.committer = committer
        # Set on shutdown: stop after the current batch commit.
        self.interrupt = interrupt

    def read(
        self,
        source: Source,
        f: ByteFile,
        size: int,
        ctx: FileContext,
        cursor: FileCursor,
        result: FileResult,
        *,
        prefetch: Prefetcher | None,
        slice_s: float | None,
    ) -> None:
        """Read the open file ``f`` (``size`` bytes at its ``fstat``) on from its cursor.

        A file rewritten in place since the cursor (see :func:`before_cursor`) is read again
        from its first byte. With ``slice_s``, reading stops after the first commit past that
        many seconds and ``result.more`` says the rest is still to read. ``prefetch``: the
        chunks a parse worker may already have for exactly this start.
        """
        before = before_cursor(f, cursor)
        if before is None:
            result.reset = "rewritten"
            log.info(
                "ingest.file_reset", path=str(ctx.path), source=source.name, reason="rewritten"
            )
            ctx.state = source.new_state()
            cursor.offset, before = 0, b""
        start = cursor.offset
        chunks: Iterable[Chunk] | None = None
        if prefetch is not None:
            chunks = prefetch.take(ctx.path, start, os.fstat(f.fileno()), ctx.state)
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
                chunk_records=BATCH_RECORDS if slice_s is None else SLICE_RECORDS,
                before=before,
            )
        end = start
        deadline = None if slice_s is None else time.monotonic() + slice_s
        for chunk in chunks:
            ctx.state = chunk.state
            batch = Batch(cursor, chunk.records, chunk.malformed)
            # Only the last chunk records the size read: a cursor left short of it (stopped
            # by the slice or a shutdown) must not look fully read to the next pass.
            seen = max(size, chunk.end) if chunk.final else chunk.end
            cursor.tail = chunk.tail
            self.committer.commit(source, batch, ctx, chunk.end, seen, result)
            end = chunk.end
            if self.interrupt.is_set():
                break
            if deadline is not None and not chunk.final and time.monotonic() >= deadline:
                result.more = True
                break
        result.bytes_read = end - start


class _WholeReader:
    """What the document and database readers share: records parsed whole, then priced."""

    def __init__(self, settings: Settings, prices: PriceTable, committer: Committer) -> None:
        self.settings = settings
        self.prices = prices
        self.committer = committer

    def _priced(self, source: Source, records: list[Record]) -> list[PricedRecord]:
        mode, table = self.settings.cost_mode, self.prices
        return [price_record(rec, source, table, mode) for rec in records]


class DocumentReader(_WholeReader):
    """A whole-file source: re-parse it and upsert every record it holds now."""

    def read(
        self, source: Source, f: ByteFile, ctx: FileContext, cursor: FileCursor, result: FileResult
    ) -> None:
        """Read the open file ``f`` whole (up to :data:`MAX_DOCUMENT_BYTES`) and commit it."""
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
            batch.records = self._priced(source, records)
            batch.malformed.extend(ctx.malformed)
        self.committer.commit(source, batch, ctx, len(data), len(data), result)
        result.bytes_read = len(data)


class DatabaseReader(_WholeReader):
    """An SQLite source: ask the adapter what changed since its watermark."""

    def read(
        self,
        source: Source,
        root: Path | None,
        path: Path,
        cursor: FileCursor,
        st: os.stat_result,
        result: FileResult,
    ) -> None:
        """Read the database at ``path`` (``st``: its ``stat``) and commit what changed."""
        ctx = FileContext(path, root, dict(cursor.state) or source.new_state())
        records = source.read_database(path, ctx)
        if records is None:
            result.unchanged = True
            return
        cursor.dev, cursor.ino, cursor.mtime_ns = st.st_dev, st.st_ino, st.st_mtime_ns
        batch = Batch(cursor, self._priced(source, records))
        batch.malformed.extend(ctx.malformed)
        self.committer.commit(source, batch, ctx, st.st_size, st.st_size, result)


def read_start(
    source: Source, cursor: FileCursor, st: os.stat_result
) -> tuple[str | None, int] | None:
    """Where to read a file from: ``None`` when it is unchanged, else (reset reason, offset).

    Documents are rewritten whole (often by atomic rename, so a new inode each time) and
    their carried state belongs to the path. A line file that shrank or is another inode
    is read again from 0; upserts by key make that safe. (One rewritten in place, not
    shorter, is found only once open: see :func:`before_cursor`.)
    """
    same_file = (cursor.dev, cursor.ino) == (st.st_dev, st.st_ino)
    if same_file and (st.st_size, st.st_mtime_ns) == (cursor.size, cursor.mtime_ns):
        return None
    if source.kind == "lines" and cursor.offset and (not same_file or st.st_size < cursor.offset):
        return ("replaced" if not same_file else "truncated"), 0
    return None, cursor.offset


def before_cursor(f: ByteFile, cursor: FileCursor) -> bytes | None:
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


@contextlib.contextmanager
def ledger_write() -> Iterator[None]:
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
