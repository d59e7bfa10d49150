"""The one module that writes the ledger.

:meth:`Ledger.commit` applies one batch read from one file in a single transaction: the
events (inserted, or replacing the slot they dedup into), the aggregate deltas, the
malformed-line records and the file's new cursor. A crash at any instant therefore neither
loses nor double-counts: either all of it is visible, or none of it and the cursor has not
moved.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import operator
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from sufd.records import DedupPolicy, Record
from sufd.store.keyfilter import KeyFilter
from sufd.store.queries import AGG_COLUMNS
from sufd.store.zones import DayOf, local_day_sql

__all__ = [
    "Bulk",
    "COST_COMPUTED",
    "COST_ESTIMATED",
    "COST_STORED",
    "COST_UNPRICED",
    "Batch",
    "FileCursor",
    "Ledger",
    "PricedRecord",
    "atomic",
]

COST_COMPUTED, COST_STORED, COST_UNPRICED, COST_ESTIMATED = 0, 1, 2, 3
BUCKET_MS = 15 * 60 * 1000
K = TypeVar("K")
_IN_CHUNK = 500
# Inside a bulk transaction the WAL is folded into the file once it holds this many pages
# (40 MiB) instead of SQLite's 1,000: each flush of a first catch-up writes a few thousand
# pages, so the default checkpointed (and synced) after every one, copying index pages that
# the next flush rewrites anyway.
BULK_CHECKPOINT_PAGES = 10_000
# Neutral for min()/max(): a session touched only by a removal keeps its stored span.
_NO_SPAN = (2**62, -(2**62))


@contextlib.contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), rolled back on any exception.

    Inside an open transaction (see :meth:`Ledger.bulk`) it is a savepoint instead: its
    changes are undone on an exception and become durable with the outer commit.
    """
    if conn.in_transaction:
        conn.execute("SAVEPOINT sufd_atomic")
        try:
            yield conn
        except BaseException:
            # Some errors (disk full, I/O) make SQLite roll the whole transaction back.
            if conn.in_transaction:
                conn.execute("ROLLBACK TO sufd_atomic")
                conn.execute("RELEASE sufd_atomic")
            raise
        conn.execute("RELEASE sufd_atomic")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Bulk:
    """An open write transaction spanning many file batches (see :meth:`Ledger.bulk`).

    ``begun`` runs after each ``BEGIN``, ``committing`` just before each ``COMMIT``.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        begun: Callable[[], None],
        committing: Callable[[], None],
    ) -> None:
        self._conn = conn
        self._begun = begun
        self._committing = committing
        self._after: list[Callable[[], None]] = []

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when what was written so far is committed (dropped if it never is)."""
        self._after.append(fn)

    def flush(self) -> None:
        """Make everything so far durable and visible to readers, and go on."""
        self._commit()
        self._conn.execute("BEGIN IMMEDIATE")
        self._begun()

    def _commit(self) -> None:
        after, self._after = self._after, []
        if not self._conn.in_transaction:
            return  # SQLite rolled it back (disk full, I/O error): none of it is durable
        self._committing()
        self._conn.execute("COMMIT")
        for fn in after:
            fn()


@dataclass(slots=True)
class FileCursor:
    """Where ingest of one file stands: its identity, size and the offset read up to.

    ``tail`` (line files): a fingerprint of the bytes just before ``offset`` as they were
    read, to tell a file rewritten in place from one appended to (see
    ``sufd.ingest.ingestor.TAIL_BYTES``); ``None`` when not known.
    """

    file_id: int
    source: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    offset: int
    state: dict[str, Any]
    gone: bool = False
    tail: int | None = None


class PricedRecord(NamedTuple):
    """A record with its cost and how that cost was obtained (a tuple: one per event)."""

    record: Record
    cost: float
    cost_kind: int


@dataclass(slots=True)
class Batch:
    """What one read of one file produced, to be committed together with its cursor."""

    cursor: FileCursor
    records: list[PricedRecord] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class _Slot:
    """An event row as the resolver sees it: existing in the store or new in this batch."""

    rid: int | None
    rec: Record
    cost: float
    kind: int
    dims: tuple[int, int, int]  # session_id, project_id, model_id
    file_id: int | None
    before: tuple[Record, float, int, tuple[int, int, int]] | None = None
    dirty: bool = False
    stored_file: int | None = None  # the file the stored row is attributed to


@dataclass(slots=True)
class _Delta:
    """Aggregate changes of one batch: added events count +1, replaced ones -1 then +1."""

    time: dict[tuple[int, str, int, int], list[float]] = field(default_factory=dict)
    session: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    # Additions widen first/last activity; keys that lost an event are recomputed exactly.
    span: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    shrunk: set[tuple[int, int]] = field(default_factory=set)
    # Per file: events and cost the ledger holds from it (what status says of deleted files).
    held: dict[int, list[float]] = field(default_factory=dict)

    def hold(self, file_id: int | None, sign: int, cost: float) -> None:
        if file_id is not None:
            _accumulate(self.held, file_id, [sign, sign * cost])

    def add(
        self,
        source: str,
        rec: Record,
        cost: float,
        kind: int,
        dims: tuple[int, int, int],
        sign: int,
    ) -> None:
        session_id, project_id, model_id = dims
        # Spelled out: this runs once per event, and a getattr loop cost more than the rest.
        values = [
            sign,
            sign * rec.input,
            sign * rec.output,
            sign * rec.cache_write_5m,
            sign * rec.cache_write_1h,
            sign * rec.cache_read,
            sign * rec.reasoning,
            sign * rec.total,
            sign * cost,
            sign * (kind == COST_UNPRICED),
            sign * (kind == COST_ESTIMATED),
        ]
        ts = rec.ts_ms
        _accumulate(self.time, (ts // BUCKET_MS, source, project_id, model_id), values)
        skey = (session_id, model_id)
        _accumulate(self.session, skey, values)
        if sign < 0:
            self.shrunk.add(skey)
        else:
            span = self.span.get(skey)
            if span is None:
                self.span[skey] = (ts, ts)
            elif ts < span[0] or ts > span[1]:
                self.span[skey] = (min(span[0], ts), max(span[1], ts))


def _accumulate(acc_map: dict[K, list[float]], key: K, values: list[float]) -> None:
    acc = acc_map.get(key)
    if acc is None:
        acc_map[key] = list(values)
    else:
        acc[:] = map(operator.add, acc, values)


@functools.lru_cache(maxsize=8192)  # a batch hashes each group for its lookup and its row
def _grp(message_id: str | None) -> int | None:
    if message_id is None:
        return None
    return int.from_bytes(
        hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "big", signed=True
    )


_EVENT_COLS = (
    "id, key, grp, sidechain, has_speed, fast, ts, session_id, project_id, model_id, input, output,"
    " cache_write_5m, cache_write_1h, cache_read, reasoning, total, cost, cost_kind, file_id"
)


class Ledger:
    """The write side of the store; one instance per writing process."""

    def __init__(self, conn: sqlite3.Connection, *, price_version: str) -> None:
        self.conn = conn
        self._models: dict[str, int] = {}
        self._projects: dict[str, int] = {}
        self._sessions: dict[tuple[str, str], int] = {}
        self._bulk: Bulk | None = None
        self._day_of: dict[str, DayOf | None] = {}  # per tracked zone (None: unknown here)
        # Events with a larger id were inserted by the open transaction and are not in the
        # aggregates yet: they are summed from their final rows just before it commits.
        self._mark = 0
        # While a bulk transaction is open: per source, a filter of every key and group
        # stored, for sources that had no events when it was first asked about (None: it
        # had some, look everything up). See _maybe_stored.
        self._fresh: dict[str, KeyFilter | None] | None = None
        self._data_version = 0
        conn.execute(_NEW_TIME_TABLE)
        with atomic(conn):
            self.host_id = self._host()
            self.price_version_id = self._dim_id("price_versions", "version", price_version, {})

    # -- dimensions -------------------------------------------------------------------

    def _host(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'host_uuid'").fetchone()
        if row is None:
            host_uuid = str(uuid.uuid4())
            self.conn.execute("INSERT INTO meta (key, value) VALUES ('host_uuid', ?)", (host_uuid,))
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('created_ms', ?)",
                (str(int(time.time() * 1000)),),
            )
        else:
            host_uuid = row[0]
        self.conn.execute(
            "INSERT OR IGNORE INTO hosts (host_uuid, name) VALUES (?, ?)",
            (host_uuid, socket.gethostname()),
        )
        return int(
            self.conn.execute("SELECT id FROM hosts WHERE host_uuid = ?", (host_uuid,)).fetchone()[
                0
            ]
        )

    def _dim_id(self, table: str, column: str, value: str, cache: dict[str, int]) -> int:
        found = cache.get(value)
        if found is not None:
            return found
        row = self.conn.execute(f"SELECT id FROM {table} WHERE {column} = ?", (value,)).fetchone()
        if row is None:
            row = self.conn.execute(
                f"INSERT INTO {table} ({column}) VALUES (?) RETURNING id", (value,)
            ).fetchone()
        cache[value] = int(row[0])
        return cache[value]

    def _session_id(self, source: str, session: str, project_id: int) -> int:
        key = (source, session)
        found = self._sessions.get(key)
        if found is not None:
            return found
        row = self.conn.execute(
            "SELECT id FROM sessions WHERE source = ? AND session = ?", key
        ).fetchone()
        if row is None:
            row = self.conn.execute(
                "INSERT INTO sessions (source, session, project_id) VALUES (?, ?, ?) RETURNING id",
                (source, session, project_id),
            ).fetchone()
        self._sessions[key] = int(row[0])
        return self._sessions[key]

    def _dims(self, source: str, rec: Record) -> tuple[int, int, int]:
        project_id = self._dim_id("projects", "path", rec.project, self._projects)
        session_id = self._session_id(source, rec.session, project_id)
        model_id = self._dim_id("models", "name", rec.model or "", self._models)
        return session_id, project_id, model_id

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
        self.conn.execute("BEGIN IMMEDIATE")
        self._mark_new()
        bulk = self._bulk = Bulk(self.conn, self._mark_new, self._aggregate_new)
        self._fresh, self._data_version = {}, self._other_commits()
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {max(pages, BULK_CHECKPOINT_PAGES)}")
        try:
            yield bulk
            bulk._commit()
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._forget_dims()
            raise
        finally:
            self._bulk = self._fresh = None
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
                    self._mark_new()
                inserted, replaced = self._apply(source, batch)
                self._write_cursor(batch, len(inserted))
                if own:
                    self._aggregate_new()
        except BaseException:
            self._forget_dims()
            raise
        return inserted, replaced

    def _forget_dims(self) -> None:
        """Drop cached dimension ids: rows a rolled-back batch inserted are gone with it."""
        self._models.clear()
        self._projects.clear()
        self._sessions.clear()

    def _apply(
        self, source: DedupPolicy, batch: Batch
    ) -> tuple[list[PricedRecord], list[PricedRecord]]:
        records = batch.records
        keys = {pr.record.key for pr in records}
        grouped = [pr.record.group for pr in records if pr.record.group is not None]
        groups = set(grouped)
        name = source.name
        fresh = self._maybe_stored(name)
        if fresh is None:
            slots = self._existing_slots(source, keys, groups)
        else:
            slots = self._existing_slots(source, fresh.maybe(keys), fresh.maybe(groups))
            # Before the writes: should they fail, the filter only says "maybe" too often.
            fresh.add(keys)
            fresh.add(groups)
        pv, host = self.price_version_id, self.host_id
        if not slots and len(keys) == len(records) and len(groups) == len(grouped):
            # Nothing stored shares a key or group with these records, nor do two of them
            # (the usual batch of a catch-up): each is a new event, as _resolve would find.
            file_id, dims = batch.cursor.file_id, self._dims
            self._insert(
                [
                    (name, *_row(pr.record, pr.cost, pr.cost_kind, dims(name, pr.record), file_id),
                     pv, host)
                    for pr in records
                ]
            )  # fmt: skip
            return list(records), []
        new_slots = self._resolve(source, batch, slots)
        delta = _Delta()
        inserts = [(name, *_slot_row(s), pv, host) for s in new_slots]
        updates = []
        for s in slots:
            if not s.dirty or s.before is None:
                continue
            updates.append((*_slot_row(s), pv, s.rid))
            if s.rid is not None and s.rid > self._mark:
                continue  # not in the aggregates yet: its final row will be
            old_rec, old_cost, old_kind, old_dims = s.before
            delta.add(name, old_rec, old_cost, old_kind, old_dims, -1)
            delta.add(name, s.rec, s.cost, s.kind, s.dims, +1)
            delta.hold(s.stored_file, -1, old_cost)
            delta.hold(s.file_id, +1, s.cost)
        self._insert(inserts)
        if updates:
            self.conn.executemany(
                "UPDATE events SET key = ?, grp = ?, sidechain = ?, has_speed = ?, fast = ?,"
                " ts = ?,"
                " session_id = ?, project_id = ?, model_id = ?, input = ?, output = ?,"
                " cache_write_5m = ?, cache_write_1h = ?, cache_read = ?, reasoning = ?, total = ?,"
                " cost = ?, cost_kind = ?, fallback_model = ?, file_id = ?, offset = ?,"
                " price_version_id = ? WHERE id = ?",
                updates,
            )
        self._write_aggregates(delta)
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
            self.conn.executemany(
                "INSERT INTO events (source, key, grp, sidechain, has_speed, fast, ts, session_id,"
                " project_id, model_id, input, output, cache_write_5m, cache_write_1h, cache_read,"
                " reasoning, total, cost, cost_kind, fallback_model, file_id, offset,"
                " price_version_id, host_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _resolve(self, source: DedupPolicy, batch: Batch, slots: list[_Slot]) -> list[_Slot]:
        """Decide, record by record, which slot each record fills (ccusage's dedup order)."""
        by_key: dict[str, _Slot] = {s.rec.key: s for s in slots}
        by_group: dict[str, list[_Slot]] = {}
        for s in slots:
            if s.rec.group is not None:
                by_group.setdefault(s.rec.group, []).append(s)
        file_id = batch.cursor.file_id
        new_slots: list[_Slot] = []
        for pr in batch.records:
            rec = pr.record
            slot = by_key.get(rec.key)
            if slot is None and rec.group is not None and rec.group in by_group:
                slot = next(
                    (s for s in by_group[rec.group] if source.alias_match(rec, s.rec)), None
                )
            if slot is None:
                slot = _Slot(
                    None, rec, pr.cost, pr.cost_kind, self._dims(source.name, rec), file_id
                )
                new_slots.append(slot)
                by_key[rec.key] = slot
                if rec.group is not None:
                    by_group.setdefault(rec.group, []).append(slot)
                continue
            dims = self._replaces(source, pr, slot)
            if dims is None:
                continue
            if slot.rid is not None and slot.before is None:
                slot.before = (slot.rec, slot.cost, slot.kind, slot.dims)
            if slot.rec.key != rec.key:
                by_key.pop(slot.rec.key, None)
                by_key[rec.key] = slot
            slot.rec, slot.cost, slot.kind = rec, pr.cost, pr.cost_kind
            slot.dims = dims
            slot.file_id = file_id
            slot.dirty = True

        return new_slots

    def _replaces(
        self, source: DedupPolicy, pr: PricedRecord, slot: _Slot
    ) -> tuple[int, int, int] | None:
        """The new record's dimensions if it takes over ``slot``, else ``None``.

        The source's :meth:`~sufd.records.DedupPolicy.prefer` decides. Where files are
        rewritten in place (documents, databases: upserts by key), a record that ties with the
        stored one in both directions still replaces it when its model, session, project or
        cost kind is another (a model that arrives later, a stored cost that becomes a computed
        one): ``prefer`` compares values, and the stored event it is given has no names.
        """
        rec = pr.record
        if source.prefer(rec, pr.cost, slot.rec, slot.cost):
            return self._dims(source.name, rec)
        if source.kind == "lines" or source.prefer(slot.rec, slot.cost, rec, pr.cost):
            return None
        dims = self._dims(source.name, rec)
        return dims if dims != slot.dims or pr.cost_kind != slot.kind else None

    def _maybe_stored(self, source: str) -> KeyFilter | None:
        """Inside a bulk transaction, a filter of every key and group of ``source`` stored.

        A source that had no events when first asked about gets one: from then on, every
        event of it is one this ledger wrote, and each batch adds its keys and groups before
        it writes. Another process committing in between (between two flushes) voids them
        all. ``None``: look every key up.
        """
        if self._fresh is None:
            return None
        version = self._other_commits()
        if version != self._data_version:
            self._fresh = dict.fromkeys(self._fresh)
            self._data_version = version
        if source not in self._fresh:
            (held,) = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM events WHERE source = ?)", (source,)
            ).fetchone()
            self._fresh[source] = None if held else KeyFilter()
        return self._fresh[source]

    def _other_commits(self) -> int:
        """A number that changes whenever another connection commits to the file."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def _existing_slots(
        self, source: DedupPolicy, distinct_keys: Collection[str], distinct_groups: Collection[str]
    ) -> list[_Slot]:
        """The stored events with one of these keys, or in one of these groups."""
        keys, groups = list(distinct_keys), list(distinct_groups)
        rows: dict[int, tuple[Any, ...]] = {}
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT {_EVENT_COLS} FROM events WHERE source = ? AND key IN ({marks})",
                (source.name, *chunk),
            ):
                rows[row[0]] = row
        hashes = [_grp(g) for g in groups]
        for i in range(0, len(hashes), _IN_CHUNK):
            chunk_h = hashes[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk_h))
            for row in self.conn.execute(
                # Without statistics SQLite prefers the (source, key) index here, which scans
                # every event of the source for each batch: name the right one.
                f"SELECT {_EVENT_COLS} FROM events INDEXED BY events_grp"
                f" WHERE grp IN ({marks}) AND source = ?",
                (*chunk_h, source.name),
            ):
                rows[row[0]] = row
        return [_slot_from_row(row) for _, row in sorted(rows.items())]

    def _mark_new(self) -> None:
        """At the start of a write transaction: every event from here on is new in it."""
        self._mark = self._top_id()

    def _top_id(self) -> int:
        """The id of the newest event (0 for none)."""
        return int(self.conn.execute("SELECT coalesce(MAX(id), 0) FROM events").fetchone()[0])

    def _aggregate_new(self) -> None:
        """Add the events inserted since :meth:`_mark_new` to the aggregates, in SQL.

        Summing their final rows once per transaction costs a few statements however many
        events a catch-up inserts; deltas built in Python per event cost more than the
        inserts. (Rowids only grow: no event is ever deleted, so a new one is above the mark.)
        ``NOT INDEXED`` keeps each to the new rows: to group by session, SQLite would
        otherwise walk the whole ``events_session`` index, every commit.
        """
        conn, mark, top = self.conn, self._mark, self._top_id()
        if top <= mark:
            return
        conn.execute("DELETE FROM temp.new_time")
        conn.execute(
            f"INSERT INTO temp.new_time SELECT {_BUCKET_OF_TS}, source, project_id, model_id,"
            f" {_NEW_SUMS} FROM events NOT INDEXED WHERE id > ? GROUP BY 1, 2, 3, 4",
            (mark,),
        )
        conn.execute(_AGG_TIME_FROM_NEW)
        lo, hi = conn.execute("SELECT MIN(bucket), MAX(bucket) FROM temp.new_time").fetchone()
        for (name,) in conn.execute("SELECT zone FROM day_zones").fetchall():
            day_of = self._day_of_zone(name)
            if day_of is not None:
                day = local_day_sql(day_of.zone, lo, hi + 1)
                conn.execute(
                    f"INSERT INTO agg_day (zone, day, source, project_id, model_id, {_SUM_LIST})"
                    f" SELECT ?, {day} AS d, source, project_id, model_id, {_SUM_OF}"
                    " FROM temp.new_time WHERE true GROUP BY d, source, project_id, model_id"
                    f" {_add_sums(_DAY_KEYS)}",
                    (name,),
                )
        conn.execute(_AGG_SESSION_FROM_NEW, (mark,))
        conn.execute(
            "UPDATE files SET held_events = held_events + g.n, held_cost = held_cost + g.c"
            " FROM (SELECT file_id, COUNT(*) AS n, SUM(cost) AS c FROM events NOT INDEXED"
            " WHERE id > ? AND file_id IS NOT NULL GROUP BY file_id) AS g"
            " WHERE files.id = g.file_id",
            (mark,),
        )
        self._mark = top

    def _write_aggregates(self, delta: _Delta) -> None:
        if delta.time:
            self.conn.executemany(
                _AGG_TIME_UPSERT,
                [(*k, *_ints(v[:8]), v[8], int(v[9]), int(v[10])) for k, v in delta.time.items()],
            )
            self.conn.executemany(
                "DELETE FROM agg_time WHERE bucket = ? AND source = ? AND project_id = ?"
                " AND model_id = ? AND events = 0",
                [k for k, v in delta.time.items() if v[0] <= 0],
            )
            self._write_days(delta.time)
        if delta.session:
            self.conn.executemany(
                "INSERT INTO agg_session (session_id, model_id, events, input, output,"
                " cache_write_5m, cache_write_1h, cache_read, reasoning, total, cost, unpriced,"
                " estimated, first_ts, last_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (session_id, model_id) DO UPDATE SET"
                " events = events + excluded.events, input = input + excluded.input,"
                " output = output + excluded.output,"
                " cache_write_5m = cache_write_5m + excluded.cache_write_5m,"
                " cache_write_1h = cache_write_1h + excluded.cache_write_1h,"
                " cache_read = cache_read + excluded.cache_read,"
                " reasoning = reasoning + excluded.reasoning, total = total + excluded.total,"
                " cost = cost + excluded.cost, unpriced = unpriced + excluded.unpriced,"
                " estimated = estimated + excluded.estimated,"
                " first_ts = min(first_ts, excluded.first_ts),"
                " last_ts = max(last_ts, excluded.last_ts)",
                [
                    (*k, *_ints(v[:8]), v[8], int(v[9]), int(v[10]), *delta.span.get(k, _NO_SPAN))
                    for k, v in delta.session.items()
                ],
            )
        if delta.shrunk:
            # A replaced event may have held the session's first or last activity.
            self.conn.executemany(
                "UPDATE agg_session SET"
                " first_ts = (SELECT MIN(ts) FROM events WHERE session_id = ? AND model_id = ?),"
                " last_ts = (SELECT MAX(ts) FROM events WHERE session_id = ? AND model_id = ?)"
                " WHERE session_id = ? AND model_id = ? AND events > 0",
                [(*k, *k, *k) for k in delta.shrunk],
            )
            self.conn.executemany(
                "DELETE FROM agg_session WHERE session_id = ? AND model_id = ? AND events <= 0",
                list(delta.shrunk),
            )
        held = [(int(v[0]), v[1], k) for k, v in delta.held.items() if v[0] or v[1]]
        if held:
            self.conn.executemany(
                "UPDATE files SET held_events = held_events + ?, held_cost = held_cost + ?"
                " WHERE id = ?",
                held,
            )

    def _write_days(self, time_delta: dict[tuple[int, str, int, int], list[float]]) -> None:
        """The same changes per local day, for every zone tracked (read in this transaction:
        another writer may have started tracking one)."""
        for (name,) in self.conn.execute("SELECT zone FROM day_zones").fetchall():
            day_of = self._day_of_zone(name)
            if day_of is None:
                continue
            days: dict[tuple[str, int, str, int, int], list[float]] = {}
            for (bucket, source, project_id, model_id), values in time_delta.items():
                _accumulate(days, (name, day_of(bucket), source, project_id, model_id), values)
            self.conn.executemany(
                _AGG_DAY_UPSERT,
                [(*k, *_ints(v[:8]), v[8], int(v[9]), int(v[10])) for k, v in days.items()],
            )
            self.conn.executemany(
                "DELETE FROM agg_day WHERE zone = ? AND day = ? AND source = ? AND project_id = ?"
                " AND model_id = ? AND events = 0",
                [k for k, v in days.items() if v[0] <= 0],
            )

    def _day_of_zone(self, name: str) -> DayOf | None:
        if name not in self._day_of:
            try:
                self._day_of[name] = DayOf(ZoneInfo(name))
            except (ZoneInfoNotFoundError, ValueError):
                self._day_of[name] = None  # not in this machine's zone data: left as it is
        return self._day_of[name]

    def track_zone(self, name: str) -> None:
        """Keep sums per local day in the IANA zone ``name`` from now on, for the reports;
        the days so far are summed from ``agg_time`` at once.

        Raises:
            ZoneInfoNotFoundError: ``name`` is not a zone of this machine.
        """
        zone = ZoneInfo(name)
        with atomic(self.conn):
            if self.conn.execute("SELECT 1 FROM day_zones WHERE zone = ?", (name,)).fetchone():
                return
            self.conn.execute("INSERT INTO day_zones (zone) VALUES (?)", (name,))
            lo, hi = self.conn.execute("SELECT MIN(bucket), MAX(bucket) FROM agg_time").fetchone()
            if lo is None:
                return
            day = local_day_sql(zone, lo, hi + 1)
            self.conn.execute(
                f"INSERT INTO agg_day (zone, day, source, project_id, model_id, {_SUM_LIST})"
                f" SELECT ?, {day} AS d, source, project_id, model_id, {_SUM_OF}"
                " FROM agg_time GROUP BY d, source, project_id, model_id",
                (name,),
            )

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


_SUM_COLUMNS = AGG_COLUMNS  # the columns every aggregate table sums, in this order
_SUM_LIST = ", ".join(_SUM_COLUMNS)
_SUM_OF = ", ".join(f"SUM({c})" for c in _SUM_COLUMNS)


_TIME_KEYS = ("bucket", "source", "project_id", "model_id")
_DAY_KEYS = ("zone", "day", "source", "project_id", "model_id")


def _add_sums(keys: tuple[str, ...]) -> str:
    """The clause that adds an inserted row of sums to the existing row with the same keys."""
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(
        f"{c} = {c} + excluded.{c}" for c in _SUM_COLUMNS
    )


def _upsert_sums(table: str, keys: tuple[str, ...]) -> str:
    """An upsert adding a row of sums to ``table``'s row with the same ``keys``."""
    columns = (*keys, *_SUM_COLUMNS)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" {_add_sums(keys)}"
    )


_AGG_TIME_UPSERT = _upsert_sums("agg_time", _TIME_KEYS)
_AGG_DAY_UPSERT = _upsert_sums("agg_day", _DAY_KEYS)

# The sums of one group of events, in the order of _SUM_COLUMNS.
_NEW_SUMS = (
    "COUNT(*), SUM(input), SUM(output), SUM(cache_write_5m), SUM(cache_write_1h),"
    " SUM(cache_read), SUM(reasoning), SUM(total), SUM(cost),"
    f" SUM(cost_kind = {COST_UNPRICED}), SUM(cost_kind = {COST_ESTIMATED})"
)
# ts // BUCKET_MS as Python floors it (SQLite's division truncates toward zero).
_BUCKET_OF_TS = (
    f"(CASE WHEN ts >= 0 THEN ts / {BUCKET_MS} ELSE (ts - {BUCKET_MS - 1}) / {BUCKET_MS} END)"
)
_NEW_TIME_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS new_time (bucket INTEGER, source TEXT,"
    f" project_id INTEGER, model_id INTEGER, {_SUM_LIST})"
)
_AGG_TIME_FROM_NEW = (
    f"INSERT INTO agg_time (bucket, source, project_id, model_id, {_SUM_LIST})"
    f" SELECT * FROM temp.new_time WHERE true {_add_sums(_TIME_KEYS)}"
)
_AGG_SESSION_FROM_NEW = (
    f"INSERT INTO agg_session (session_id, model_id, {_SUM_LIST}, first_ts, last_ts)"
    f" SELECT session_id, model_id, {_NEW_SUMS}, MIN(ts), MAX(ts)"
    " FROM events NOT INDEXED WHERE id > ?"
    " GROUP BY session_id, model_id"
    f" {_add_sums(('session_id', 'model_id'))}, first_ts = min(first_ts, excluded.first_ts),"
    " last_ts = max(last_ts, excluded.last_ts)"
)


def _ints(values: Sequence[float]) -> list[int]:
    return [int(v) for v in values]


def _slot_row(s: _Slot) -> tuple[Any, ...]:
    return _row(s.rec, s.cost, s.kind, s.dims, s.file_id)


def _row(
    r: Record, cost: float, kind: int, dims: tuple[int, int, int], file_id: int | None
) -> tuple[Any, ...]:
    """An event's columns from ``key`` to ``offset``, in the order the statements use."""
    session_id, project_id, model_id = dims
    return (
        r.key,
        _grp(r.group),
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


def _slot_from_row(row: tuple[Any, ...]) -> _Slot:
    (rid, key, grp, sidechain, has_speed, fast, ts, session_id, project_id, model_id,
     inp, out, cw5, cw1, cr, reasoning, total, cost, kind, file_id) = row  # fmt: skip
    group = key.split(":", 1)[0] if grp is not None else None
    rec = Record(
        key=key,
        ts_ms=ts,
        session="",
        project="",
        model=None,
        price_model=None,
        pricing="anthropic",
        input=inp,
        output=out,
        cache_write_5m=cw5,
        cache_write_1h=cw1,
        cache_read=cr,
        reasoning=reasoning,
        total=total,
        fast=bool(fast),
        group=group,
        sidechain=bool(sidechain),
        has_speed=bool(has_speed),
    )
    dims = (session_id, project_id, model_id)
    return _Slot(rid, rec, cost, kind, dims, file_id, stored_file=file_id)
