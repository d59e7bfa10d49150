"""The one list of measures matches the schema the released migrations build (issue 13).

The migrations spell their columns out (a released migration is never edited), while the
write path, the aggregates and the queries build their SQL from
:data:`sufd.store.measures.MEASURES`. This holds the two together: a measure added to the
list without a migration, or a migration that adds one the list lacks, fails here rather
than as a wrong sum.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sufd.store import open_store
from sufd.store.aggregates import EVENT_MEASURES
from sufd.store.measures import MEASURES

# Each aggregate table: the columns before its measures, and those after them.
AGGREGATES = {
    "agg_time": (("bucket", "source", "project_id", "model_id"), ()),
    "agg_day": (("zone", "day", "source", "project_id", "model_id"), ()),
    "agg_session": (("session_id", "model_id"), ("first_ts", "last_ts")),
}


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, int]]:
    """``(name, declared type, not null)`` of each column, in order."""
    return [(r[1], r[2], r[3]) for r in conn.execute(f"PRAGMA table_info({table})")]


def test_every_aggregate_table_holds_the_measures_in_order(tmp_path: Path) -> None:
    """issue 13: one list of measures shared by schema, writes and queries."""
    conn = open_store(tmp_path / "ledger.sqlite3")
    try:
        for table, (keys, after) in AGGREGATES.items():
            columns = _columns(conn, table)
            assert [c[0] for c in columns] == [*keys, *MEASURES, *after], table
            measures = columns[len(keys) : len(keys) + len(MEASURES)]
            # Counts are exact integers; only cost is a float sum.
            assert all(c[2] for c in measures), table
            assert {c[0]: c[1] for c in measures} == {
                m: "REAL" if m == "cost" else "INTEGER" for m in MEASURES
            }, table
    finally:
        conn.close()


def test_events_store_the_measures_they_are_summed_from(tmp_path: Path) -> None:
    """issue 13: the measures an event row carries are columns of ``events`` of that name,
    and the others (a count, and two counts of cost kinds) are exactly the ones it lacks."""
    conn = open_store(tmp_path / "ledger.sqlite3")
    try:
        names = [c[0] for c in _columns(conn, "events")]
    finally:
        conn.close()
    assert [m for m in MEASURES if m in names] == list(EVENT_MEASURES)
    assert [m for m in MEASURES if m not in names] == ["events", "unpriced", "estimated"]
