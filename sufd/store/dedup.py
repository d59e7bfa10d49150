"""Which event slot each record of a batch fills: the stored events it may dedup into, and
the order in which records claim them (ccusage's).

A record fills the slot of the stored or earlier event with its key, else one of its group
that the source's :meth:`~sufd.records.DedupPolicy.alias_match` accepts, else a new slot;
whether it then replaces what the slot holds is the source's
:meth:`~sufd.records.DedupPolicy.prefer`. Inside a bulk catch-up, a :class:`KeyFilter` of
what this process wrote spares the lookups of keys that cannot be stored.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sufd.records import DedupPolicy, Record
from sufd.store.aggregates import EVENT_MEASURES
from sufd.store.batch import Batch, PricedRecord
from sufd.store.dimensions import Dimensions
from sufd.store.keyfilter import KeyFilter

__all__ = ["Dedup", "Slot", "group_hash"]

_IN_CHUNK = 500


@dataclass(slots=True)
class Slot:
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


@functools.lru_cache(maxsize=8192)  # a batch hashes each group for its lookup and its row
def group_hash(message_id: str | None) -> int | None:
    """The ``grp`` column of a record's group (``None``: no group)."""
    if message_id is None:
        return None
    return int.from_bytes(
        hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "big", signed=True
    )


class Dedup:
    """Finds and resolves slots on the writer's connection ``conn``; ``dims`` gives a new
    record its dimension ids."""

    def __init__(self, conn: sqlite3.Connection, dims: Dimensions) -> None:
        self.conn = conn
        self._dims = dims
        # While a bulk transaction is open: per source, a filter of every key and group
        # stored, for sources that had no events when it was first asked about (None: it
        # had some, look everything up). See _maybe_stored.
        self._fresh: dict[str, KeyFilter | None] | None = None
        self._data_version = 0

    def open_bulk(self) -> None:
        """A bulk transaction began: from here, filters may stand in for lookups."""
        self._fresh, self._data_version = {}, self._other_commits()

    def close_bulk(self) -> None:
        """The bulk transaction ended: look every key up again."""
        self._fresh = None

    def stored(
        self, source: DedupPolicy, keys: Collection[str], groups: Collection[str]
    ) -> list[Slot]:
        """The stored events a batch with these keys and groups may dedup into."""
        fresh = self._maybe_stored(source.name)
        if fresh is None:
            return self._existing_slots(source, keys, groups)
        slots = self._existing_slots(source, fresh.maybe(keys), fresh.maybe(groups))
        # Before the writes: should they fail, the filter only says "maybe" too often.
        fresh.add(keys)
        fresh.add(groups)
        return slots

    def resolve(self, source: DedupPolicy, batch: Batch, slots: list[Slot]) -> list[Slot]:
        """Decide, record by record, which slot each record fills (ccusage's dedup order).

        Updates the stored ``slots`` a record takes over (``dirty``, with what they held
        ``before``) and returns the new slots.
        """
        by_key: dict[str, Slot] = {s.rec.key: s for s in slots}
        by_group: dict[str, list[Slot]] = {}
        for s in slots:
            if s.rec.group is not None:
                by_group.setdefault(s.rec.group, []).append(s)
        file_id = batch.cursor.file_id
        new_slots: list[Slot] = []
        for pr in batch.records:
            rec = pr.record
            slot = by_key.get(rec.key)
            if slot is None and rec.group is not None and rec.group in by_group:
                slot = next(
                    (s for s in by_group[rec.group] if source.alias_match(rec, s.rec)), None
                )
            if slot is None:
                slot = Slot(
                    None, rec, pr.cost, pr.cost_kind, self._dims.of(source.name, rec), file_id
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
        self, source: DedupPolicy, pr: PricedRecord, slot: Slot
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
            return self._dims.of(source.name, rec)
        if source.kind == "lines" or source.prefer(slot.rec, slot.cost, rec, pr.cost):
            return None
        dims = self._dims.of(source.name, rec)
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
    ) -> list[Slot]:
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
        hashes = [group_hash(g) for g in groups]
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


# What a slot is read from, in the order _slot_from_row unpacks.
_EVENT_COLS = ", ".join(
    (
        "id, key, grp, sidechain, has_speed, fast, ts, session_id, project_id, model_id",
        *EVENT_MEASURES,
        "cost_kind, file_id",
    )
)


def _slot_from_row(row: tuple[Any, ...]) -> Slot:
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
    return Slot(rid, rec, cost, kind, dims, file_id, stored_file=file_id)
