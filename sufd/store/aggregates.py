"""The sums the reports read, kept current by every commit: one list of measures, and the
two ways a commit adds to them.

Every aggregate table (``agg_time`` per 15-minute UTC bucket, ``agg_day`` per local day of
each tracked zone, ``agg_session`` per session and model) holds the :data:`MEASURES`, in
that order. A commit adds to them in one of two ways, never both for one event:

* **New events** (rows inserted by the open transaction, above :attr:`Aggregates.mark`) are
  summed from their final rows in SQL just before the transaction commits
  (:meth:`Aggregates.add_new`): a catch-up pays a few statements, not one delta per event.
* **Replaced events** that were already summed are taken out and put back as a
  :class:`Delta` (-1 for the old row, +1 for the new), written by :meth:`Aggregates.write`.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sufd.records import Record
from sufd.store.batch import COST_ESTIMATED, COST_UNPRICED
from sufd.store.measures import BUCKET_MS, MEASURES
from sufd.store.transaction import atomic
from sufd.store.zones import DayOf, local_day_sql

__all__ = ["BUCKET_MS", "EVENT_MEASURES", "MEASURES", "Aggregates", "Delta"]

# Each measure as SQL over the event rows it sums; the others are event columns of that name.
_OF_EVENTS = {
    "events": "COUNT(*)",
    "unpriced": f"SUM(cost_kind = {COST_UNPRICED})",
    "estimated": f"SUM(cost_kind = {COST_ESTIMATED})",
}
# The measures an event row stores itself, as columns of the same name.
EVENT_MEASURES = tuple(m for m in MEASURES if m not in _OF_EVENTS)

K = TypeVar("K")
# Neutral for min()/max(): a session touched only by a removal keeps its stored span.
_NO_SPAN = (2**62, -(2**62))


@dataclass(slots=True)
class Delta:
    """Aggregate changes of one batch: added events count +1, replaced ones -1 then +1."""

    time: dict[tuple[int, str, int, int], list[float]] = field(default_factory=dict)
    session: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    # Additions widen first/last activity; keys that lost an event are recomputed exactly.
    span: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    shrunk: set[tuple[int, int]] = field(default_factory=set)
    # Per file: events and cost the ledger holds from it (what status says of deleted files).
    held: dict[int, list[float]] = field(default_factory=dict)

    def hold(self, file_id: int | None, sign: int, cost: float) -> None:
        """Count (``sign`` +1) or uncount (-1) one event of ``cost`` held from ``file_id``."""
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
        """Add (``sign`` +1) or take out (-1) one event's :data:`MEASURES`."""
        session_id, project_id, model_id = dims
        # Spelled out, in the order of MEASURES: this runs once per event, and a getattr
        # loop cost more than the rest.
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


class Aggregates:
    """Keeps ``agg_time``, ``agg_day``, ``agg_session`` and the per-file tallies current on
    the writer's connection ``conn``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # Events with a larger id were inserted by the open transaction and are not in the
        # aggregates yet: they are summed from their final rows just before it commits.
        self.mark = 0
        self._day_of: dict[str, DayOf | None] = {}  # per tracked zone (None: unknown here)
        conn.execute(_NEW_TIME_TABLE)

    def mark_new(self) -> None:
        """At the start of a write transaction: every event from here on is new in it."""
        self.mark = self._top_id()

    def _top_id(self) -> int:
        """The id of the newest event (0 for none)."""
        return int(self.conn.execute("SELECT coalesce(MAX(id), 0) FROM events").fetchone()[0])

    def add_new(self) -> None:
        """Add the events inserted since :meth:`mark_new` to the aggregates, in SQL.

        Summing their final rows once per transaction costs a few statements however many
        events a catch-up inserts; deltas built in Python per event cost more than the
        inserts. (Rowids only grow: no event is ever deleted, so a new one is above the mark.)
        ``NOT INDEXED`` keeps each to the new rows: to group by session, SQLite would
        otherwise walk the whole ``events_session`` index, every commit.
        """
        conn, mark, top = self.conn, self.mark, self._top_id()
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
        self.mark = top

    def write(self, delta: Delta) -> None:
        """Apply the changes of replaced events."""
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
                _AGG_SESSION_UPSERT,
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


def _ints(values: Sequence[float]) -> list[int]:
    return [int(v) for v in values]


_SUM_LIST = ", ".join(MEASURES)
_SUM_OF = ", ".join(f"SUM({c})" for c in MEASURES)


_TIME_KEYS = ("bucket", "source", "project_id", "model_id")
_DAY_KEYS = ("zone", "day", "source", "project_id", "model_id")
_SESSION_KEYS = ("session_id", "model_id")
# agg_session also keeps each session's first and last activity, widened by what is added.
_SPAN_COLUMNS = ("first_ts", "last_ts")
_WIDEN_SPAN = (
    ", first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts)"
)


def _add_sums(keys: tuple[str, ...]) -> str:
    """The clause that adds an inserted row of sums to the existing row with the same keys."""
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(
        f"{c} = {c} + excluded.{c}" for c in MEASURES
    )


def _upsert_sums(table: str, keys: tuple[str, ...], *, span: bool = False) -> str:
    """An upsert adding a row of sums (then, with ``span``, a first and last activity to
    widen) to ``table``'s row with the same ``keys``."""
    columns = (*keys, *MEASURES, *(_SPAN_COLUMNS if span else ()))
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" {_add_sums(keys)}{_WIDEN_SPAN if span else ''}"
    )


_AGG_TIME_UPSERT = _upsert_sums("agg_time", _TIME_KEYS)
_AGG_DAY_UPSERT = _upsert_sums("agg_day", _DAY_KEYS)
_AGG_SESSION_UPSERT = _upsert_sums("agg_session", _SESSION_KEYS, span=True)

# The sums of one group of events, in the order of MEASURES.
_NEW_SUMS = ", ".join(_OF_EVENTS.get(m, f"SUM({m})") for m in MEASURES)
# ts // BUCKET_MS as Python floors it (SQLite's division truncates toward zero).
_BUCKET_OF_TS = (
    f"(CASE WHEN ts >= 0 THEN ts / {BUCKET_MS} ELSE (ts - {BUCKET_MS - 1}) / {BUCKET_MS} END)"
)
_NEW_TIME_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS new_time (bucket INTEGER, source TEXT,"
    f" project_id INTEGER, model_id INTEGER, {_SUM_LIST})"
)
_AGG_TIME_FROM_NEW = (
    f"INSERT INTO agg_time ({', '.join(_TIME_KEYS)}, {_SUM_LIST})"
    f" SELECT * FROM temp.new_time WHERE true {_add_sums(_TIME_KEYS)}"
)
_AGG_SESSION_FROM_NEW = (
    f"INSERT INTO agg_session ({', '.join(_SESSION_KEYS)}, {_SUM_LIST}, first_ts, last_ts)"
    f" SELECT session_id, model_id, {_NEW_SUMS}, MIN(ts), MAX(ts)"
    " FROM events NOT INDEXED WHERE id > ?"
    " GROUP BY session_id, model_id"
    f" {_add_sums(_SESSION_KEYS)}{_WIDEN_SPAN}"
)
