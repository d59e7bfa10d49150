"""The one module that writes the ledger.

:meth:`Ledger.commit` applies one batch read from one file in a single transaction: the
events (inserted, or replacing the slot they dedup into), the aggregate deltas, the
malformed-line records and the file's new cursor. A crash at any instant therefore neither
loses nor double-counts: either all of it is visible, or none of it and the cursor has not
moved.

It composes the store's parts: :mod:`~sufd.store.transaction` (the one transaction helper),
:mod:`~sufd.store.dedup` (which slot each record fills), :mod:`~sufd.store.aggregates` (the
sums, and which events are already in them) and :mod:`~sufd.store.dimensions`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from sufd.records import DedupPolicy, Record
from sufd.store.aggregates import EVENT_MEASURES, Aggregates, Delta
from sufd.store.batch import (
    Batch,
    FileCursor,
    PricedRecord,
)
from sufd.store.dedup import Dedup, Slot, group_hash
from sufd.store.dimensions import Dimensions
from sufd.store.transaction import Bulk, atomic

__all__ = ["Ledger"]

# Inside a bulk transaction the WAL is folded into the file once it holds this many pages
# (40 MiB) instead of SQLite's 1,000: each flush of a first catch-up writes a few thousand
# pages, so the default checkpointed (and synced) after every one, copying index pages that
# the next flush rewrites anyway.
BULK_CHECKPOINT_PAGES = 10_000


class Ledger:
    """The write side of the store; one instance per writing process."""

    def __init__(self, conn: sqlite3.Connection, *, price_version: str) -> None:
        self.conn = conn
        self._bulk: Bulk | None = None
        self._aggs = Aggregates(conn)
        self._dims = Dimensions(conn)
        self._dedup = Dedup(conn, self._dims)
        with atomic(conn):
            self.host_id = self._dims.host()
            self.price_version_id = self._dims.price_version(price_version)

    # -- cursors ----------------------------------------------------------------------

    def cursors(self, path: str | None = None) -> dict[str, FileCursor]:
        """Every known file's cursor (or just ``path``'s), keyed by path.

        One query for all of them keeps a no-change scan cheap.
        """
        sql = (
            "SELECT id, source, path, dev, ino, size, mtime_ns, offset, state, gone, tail"
            " FROM files"
        )
        rows = (
            self.conn.execute(sql + " WHERE path = ?", (path,)).fetchall()
            if path is not None
            else self.conn.execute(sql).fetchall()
        )
        return {
            r[2]: FileCursor(
                r[0],
                r[1],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                orjson.loads(r[8]) if r[8] else {},
                bool(r[9]),
                r[10],
            )
            for r in rows
        }

    @contextlib.contextmanager
    def bulk(self) -> Iterator[Bulk]:
        """One transaction around many file batches, flushed by the caller now and then.

        A catch-up over thousands of small files pays one commit per flush instead of two
        per file. Each batch keeps its events and cursor together (a savepoint), so the
        all-or-nothing guarantee per file is unchanged; a crash loses at most what was not
        yet flushed, and that is read again from the unmoved cursors.
        """
        (pages,) = self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        aggs = self._aggs
        bulk = self._bulk = Bulk(self.conn, aggs.mark_new, aggs.add_new).begin()
        self._dedup.open_bulk()
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {max(pages, BULK_CHECKPOINT_PAGES)}")
        try:
            yield bulk
            bulk.commit()
        except BaseException:
            bulk.rollback()
            self._dims.forget()
            raise
        finally:
            self._bulk = None
            self._dedup.close_bulk()
            with contextlib.suppress(sqlite3.Error):  # a dead connection has nothing to restore
                self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once what was just written is durable: now, or when the open bulk
        transaction commits (never, if it is rolled back). What ``on_commit`` announces
        (``sufctl tail``, status) must never be lost by a crash."""
        if self._bulk is not None and self.conn.in_transaction:
            self._bulk.after_commit(fn)
        else:
            fn()

    def new_file(self, source: str, path: str) -> FileCursor:
        """Register a file seen for the first time (cursor at 0)."""
        with atomic(self.conn):
            row = self.conn.execute(
                "INSERT INTO files (source, path, updated_ms) VALUES (?, ?, ?)"
                " ON CONFLICT(path) DO UPDATE SET gone = 0 RETURNING id",
                (source, path, int(time.time() * 1000)),
            ).fetchone()
        return FileCursor(int(row[0]), source, 0, 0, 0, 0, 0, {})

    def mark_error(self, cursor: FileCursor, error: str | None) -> None:
        """Record (or clear) why a file could not be read; its cursor does not move."""
        with atomic(self.conn):
            self.conn.execute(
                "UPDATE files SET error = ?, updated_ms = ? WHERE id = ?",
                (error, int(time.time() * 1000), cursor.file_id),
            )

    def mark_gone(self, file_ids: Sequence[int]) -> None:
        """Files that vanished from disk: their events stay, they are only flagged."""
        with atomic(self.conn):
            self.conn.executemany(
                "UPDATE files SET gone = 1 WHERE id = ?", [(i,) for i in file_ids]
            )

    def mark_present(self, file_ids: Sequence[int]) -> None:
        """Files flagged gone that are on disk again (restored, moved back)."""
        with atomic(self.conn):
            self.conn.executemany(
                "UPDATE files SET gone = 0 WHERE id = ?", [(i,) for i in file_ids]
            )

    # -- the write path ---------------------------------------------------------------

    def commit(
        self, source: DedupPolicy, batch: Batch
    ) -> tuple[list[PricedRecord], list[PricedRecord]]:
        """Apply a batch in one transaction.

        Returns the records that became new events and those that replaced an existing
        event (the final state of each slot this batch changed).
        """
        own = not self.conn.in_transaction  # else a savepoint in the open bulk transaction
        try:
            with atomic(self.conn):
                if own:
                    self._aggs.mark_new()
                inserted, replaced = self._apply(source, batch)
                self._write_cursor(batch, len(inserted))
                if own:
                    self._aggs.add_new()
        except BaseException:
            self._dims.forget()
            raise
        return inserted, replaced

    def _apply(
        self, source: DedupPolicy, batch: Batch
    ) -> tuple[list[PricedRecord], list[PricedRecord]]:
        records = batch.records
        keys = {pr.record.key for pr in records}
        grouped = [pr.record.group for pr in records if pr.record.group is not None]
        groups = set(grouped)
        name = source.name
        slots = self._dedup.stored(source, keys, groups)
        pv, host = self.price_version_id, self.host_id
        if not slots and len(keys) == len(records) and len(groups) == len(grouped):
            # Nothing stored shares a key or group with these records, nor do two of them
            # (the usual batch of a catch-up): each is a new event, as resolve would find.
            file_id, dims = batch.cursor.file_id, self._dims.of
            self._insert(
                [
                    (name, *_row(pr.record, pr.cost, pr.cost_kind, dims(name, pr.record), file_id),
                     pv, host)
                    for pr in records
                ]
            )  # fmt: skip
            return list(records), []
        new_slots = self._dedup.resolve(source, batch, slots)
        delta = Delta()
        inserts = [(name, *_slot_row(s), pv, host) for s in new_slots]
        updates = []
        mark = self._aggs.mark
        for s in slots:
            if not s.dirty or s.before is None:
                continue
            updates.append((*_slot_row(s), pv, s.rid))
            if s.rid is not None and s.rid > mark:
                continue  # not in the aggregates yet: its final row will be
            old_rec, old_cost, old_kind, old_dims = s.before
            delta.add(name, old_rec, old_cost, old_kind, old_dims, -1)
            delta.add(name, s.rec, s.cost, s.kind, s.dims, +1)
            delta.hold(s.stored_file, -1, old_cost)
            delta.hold(s.file_id, +1, s.cost)
        self._insert(inserts)
        if updates:
            self.conn.executemany(_UPDATE_EVENT, updates)
        self._aggs.write(delta)
        return (
            [PricedRecord(s.rec, s.cost, s.kind) for s in new_slots],
            [
                PricedRecord(s.rec, s.cost, s.kind)
                for s in slots
                if s.dirty and s.before is not None
            ],
        )

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.executemany(_INSERT_EVENT, rows)

    def track_zone(self, name: str) -> None:
        """Keep sums per local day in the IANA zone ``name`` from now on, for the reports;
        the days so far are summed from ``agg_time`` at once.

        Raises:
            ZoneInfoNotFoundError: ``name`` is not a zone of this machine.
        """
        self._aggs.track_zone(name)

    def _write_cursor(self, batch: Batch, inserted: int) -> None:
        c = batch.cursor
        now = int(time.time() * 1000)
        if batch.malformed:
            cur = self.conn.executemany(
                "INSERT OR IGNORE INTO malformed (file_id, offset, reason, seen_ms)"
                " VALUES (?, ?, ?, ?)",
                [(c.file_id, off, reason, now) for off, reason in batch.malformed],
            )
            new_bad = cur.rowcount
        else:
            new_bad = 0
        self.conn.execute(
            "UPDATE files SET dev = ?, ino = ?, size = ?, mtime_ns = ?, offset = ?, state = ?,"
            " tail = ?, events = events + ?, malformed = malformed + ?, error = ?, gone = 0,"
            " updated_ms = ? WHERE id = ?",
            (
                c.dev,
                c.ino,
                c.size,
                c.mtime_ns,
                c.offset,
                orjson.dumps(c.state).decode() if c.state else None,
                c.tail,
                inserted,
                max(new_bad, 0),
                batch.error,
                now,
                c.file_id,
            ),
        )


# An event's columns from ``key`` to ``offset``, in the order of _row.
_ROW_COLUMNS = (
    "key",
    "grp",
    "sidechain",
    "has_speed",
    "fast",
    "ts",
    "session_id",
    "project_id",
    "model_id",
    *EVENT_MEASURES,
    "cost_kind",
    "fallback_model",
    "file_id",
    "offset",
)
_INSERT_COLUMNS = ("source", *_ROW_COLUMNS, "price_version_id", "host_id")
_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_INSERT_COLUMNS))})"
)
_UPDATE_EVENT = (
    "UPDATE events SET "
    + ", ".join(f"{c} = ?" for c in (*_ROW_COLUMNS, "price_version_id"))
    + " WHERE id = ?"
)


def _slot_row(s: Slot) -> tuple[Any, ...]:
    return _row(s.rec, s.cost, s.kind, s.dims, s.file_id)


def _row(
    r: Record, cost: float, kind: int, dims: tuple[int, int, int], file_id: int | None
) -> tuple[Any, ...]:
    """An event's columns from ``key`` to ``offset``, in the order of ``_ROW_COLUMNS``."""
    session_id, project_id, model_id = dims
    return (
        r.key,
        group_hash(r.group),
        int(r.sidechain),
        int(r.has_speed),
        int(r.fast),
        r.ts_ms,
        session_id,
        project_id,
        model_id,
        r.input,
        r.output,
        r.cache_write_5m,
        r.cache_write_1h,
        r.cache_read,
        r.reasoning,
        r.total,
        cost,
        kind,
        int(r.fallback_model),
        file_id,
        r.offset,
    )
