"""What the ingest side hands the ledger: one file's batch of priced records and its cursor.

Plain data, shared by the write path (:mod:`sufd.store.ledger`), slot resolution
(:mod:`sufd.store.dedup`) and the aggregates (:mod:`sufd.store.aggregates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sufd.records import Record

__all__ = [
    "COST_COMPUTED",
    "COST_ESTIMATED",
    "COST_STORED",
    "COST_UNPRICED",
    "Batch",
    "FileCursor",
    "PricedRecord",
]

# How an event's cost was obtained (the ``cost_kind`` column).
COST_COMPUTED, COST_STORED, COST_UNPRICED, COST_ESTIMATED = 0, 1, 2, 3


@dataclass(slots=True)
class FileCursor:
    """Where ingest of one file stands: its identity, size and the offset read up to.

    ``tail`` (line files): a fingerprint of the bytes just before ``offset`` as they were
    read, to tell a file rewritten in place from one appended to (see
    ``sufd.ingest.parse.TAIL_BYTES``); ``None`` when not known.
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
