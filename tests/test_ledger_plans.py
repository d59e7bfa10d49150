"""The writer's statements stay on the rows they change: no commit reads all of ``events``.

A statement that scans the events table (or one of its indexes) from end to end costs
nothing on a small ledger and grows with the history: a daemon committing every second
would slow down month after month, and no timing test would notice in time. So every
statement a commit runs that reads ``events`` is traced and its query plan checked.
"""

from __future__ import annotations

from pathlib import Path

from sufd.ingest.parse import parse_lines
from sufd.prices.table import PriceTable
from sufd.sources import SOURCES
from sufd.sources.base import FileContext
from sufd.store import open_store
from sufd.store.batch import Batch
from sufd.store.ledger import Ledger
from tests.corpus import CorpusSpec, generate


def _commit_file(ledger: Ledger, table: PriceTable, name: str, path: Path) -> None:
    source = SOURCES[name]
    cursor = ledger.new_file(name, str(path))
    ctx = FileContext(path, None, source.new_state())
    with path.open("rb") as f:
        for chunk in parse_lines(
            source, f, 0, ctx, max_line=1 << 24, table=table, mode="auto",
            chunk_bytes=1 << 20, chunk_records=500,
        ):  # fmt: skip
            cursor.offset, cursor.state = chunk.end, chunk.state
            ledger.commit(source, Batch(cursor, chunk.records, chunk.malformed))


def test_commits_never_scan_the_events_table(tmp_path: Path) -> None:
    home = tmp_path / "home"
    generate(home, CorpusSpec(seed=11, claude_sessions=12, codex_sessions=6, days=3))
    files = sorted(
        ("codex" if "/.codex/" in str(p) else "claude", p) for p in home.rglob("*.jsonl")
    )
    assert len(files) > 10
    conn = open_store(tmp_path / "data" / "ledger.sqlite3")
    table = PriceTable.bundled()
    ledger = Ledger(conn, price_version=table.version)
    ledger.track_zone("UTC")
    for name, path in files[:-4]:  # a history to scan, if a statement were to
        _commit_file(ledger, table, name, path)

    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    for name, path in files[-4:]:  # plain commits: new events, aggregates, cursors
        _commit_file(ledger, table, name, path)
    with ledger.bulk():  # and the same inside a catch-up's transaction
        _commit_file(ledger, table, *files[0])  # everything again: replacements only
    conn.set_trace_callback(None)

    reading = {
        sql for sql in traced if " events" in sql and not sql.startswith("INSERT INTO events")
    }
    assert any("GROUP BY session_id" in sql for sql in reading), "the aggregation was not traced"
    scans = {}
    for sql in reading:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        if any(step.startswith("SCAN events") for step in plan):
            scans[sql[:120]] = plan
    conn.close()
    assert not scans, scans
