"""A first catch-up skips most key lookups, and the ledger it writes is the same.

Inside a bulk transaction the ledger answers "is this key or group stored?" for a source it
found empty from a filter of what it wrote itself (``sufd.store.keyfilter``). The oracle is
the same files committed one transaction each, where every key is looked up in SQLite.
"""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

from sufd.ingest.parse import parse_lines
from sufd.prices.table import PriceTable
from sufd.sources import SOURCES
from sufd.sources.base import FileContext
from sufd.store import open_store
from sufd.store.batch import Batch, PricedRecord
from sufd.store.keyfilter import KeyFilter
from sufd.store.ledger import Ledger
from tests.corpus import CorpusSpec, generate

_EVENT = (
    "source, key, grp, sidechain, has_speed, fast, ts, input, output, cache_write_5m,"
    " cache_write_1h, cache_read, reasoning, total, cost, cost_kind, offset"
)


def test_filter_never_misses_what_was_added_and_rarely_answers_for_the_rest() -> None:
    rng = random.Random(5)
    added = [f"msg_{rng.getrandbits(80):x}:req_{rng.getrandbits(80):x}" for _ in range(50_000)]
    others = [f"msg_{rng.getrandbits(80):x}" for _ in range(100_000)]
    keys = KeyFilter()
    keys.add(added)
    assert keys.maybe(added) == added
    # One bit per string in 2**24: about 50,000 / 2**24 = 0.3 % of the others share one.
    assert len(keys.maybe(others)) < 0.01 * len(others)
    assert KeyFilter().maybe(added) == []


def _files(home: Path) -> list[tuple[str, Path]]:
    return sorted(("codex" if "/.codex/" in str(p) else "claude", p) for p in home.rglob("*.jsonl"))


def _batches(table: PriceTable, name: str, path: Path) -> list[tuple[list[PricedRecord], int]]:
    source = SOURCES[name]
    ctx = FileContext(path, None, source.new_state())
    with path.open("rb") as f:
        return [
            (chunk.records, chunk.end)
            for chunk in parse_lines(
                source, f, 0, ctx, max_line=1 << 24, table=table, mode="auto",
                chunk_bytes=1 << 20, chunk_records=300,
            )
        ]  # fmt: skip


def _commit_all(ledger: Ledger, table: PriceTable, files: list[tuple[str, Path]]) -> None:
    for name, path in files:
        cursor = ledger.new_file(name, str(path))
        for records, end in _batches(table, name, path):
            cursor.offset = end
            ledger.commit(SOURCES[name], Batch(cursor, records, []))


def _contents(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        "events": conn.execute(f"SELECT {_EVENT} FROM events ORDER BY source, key").fetchall(),
        "agg_time": conn.execute("SELECT * FROM agg_time ORDER BY 1, 2, 3, 4").fetchall(),
        "agg_session": conn.execute("SELECT * FROM agg_session ORDER BY 1, 2").fetchall(),
        "held": conn.execute(
            "SELECT path, held_events, held_cost FROM files ORDER BY 1"
        ).fetchall(),
    }


def _assert_same_rows(got: list[tuple[object, ...]], want: list[tuple[object, ...]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for x, y in zip(g, w, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15), (g, w)
            else:
                assert x == y, (g, w)


def test_a_first_bulk_catch_up_equals_commits_that_look_every_key_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stats = generate(home, CorpusSpec(seed=21, claude_sessions=16, codex_sessions=6, days=3))
    # The traps that make a lookup find something: the same key or message in two files.
    assert stats.traps["claude_cross_file_duplicate"] and stats.traps["claude_sidechain_replay"]
    files = _files(home)
    table = PriceTable.bundled()

    one_by_one = open_store(tmp_path / "a" / "ledger.sqlite3")
    _commit_all(Ledger(one_by_one, price_version=table.version), table, files)

    bulk_conn = open_store(tmp_path / "b" / "ledger.sqlite3")
    ledger = Ledger(bulk_conn, price_version=table.version)
    lookups: list[str] = []
    bulk_conn.set_trace_callback(lookups.append)
    with ledger.bulk() as bulk:
        for i in range(0, len(files), 5):
            _commit_all(ledger, table, files[i : i + 5])
            bulk.flush()
    bulk_conn.set_trace_callback(None)

    commits = sum(len(_batches(table, *f)) for f in files)
    key_lookups = [sql for sql in lookups if "AND key IN (" in sql]
    # Without the filter every commit looks its keys up; with it, only the few that may
    # be stored (the duplicates planted, and a filter collision now and then).
    assert 0 < len(key_lookups) < commits // 4, (len(key_lookups), commits)
    got, want = _contents(bulk_conn), _contents(one_by_one)
    assert got["events"] == want["events"]
    for table_name in ("agg_time", "agg_session", "held"):  # sums of costs, in another order
        _assert_same_rows(got[table_name], want[table_name])

    # A later catch-up finds the source's events stored: it looks every key up again.
    with ledger.bulk():
        _commit_all(ledger, table, files[:5])
    assert _contents(bulk_conn)["events"] == want["events"]


def test_a_commit_by_another_process_between_flushes_voids_the_filter(tmp_path: Path) -> None:
    """Between a flush's ``COMMIT`` and its next ``BEGIN IMMEDIATE`` another writer (a
    daemon, a second ``sufd ingest``) may get the lock. What it stored must be found."""
    home = tmp_path / "home"
    generate(home, CorpusSpec(seed=4, claude_sessions=4, codex_sessions=0, days=1, traps=False))
    (name, first), (_, second) = _files(home)[:2]
    table = PriceTable.bundled()
    path = tmp_path / "data" / "ledger.sqlite3"
    conn = open_store(path)
    ledger = Ledger(conn, price_version=table.version)
    other = Ledger(open_store(path), price_version=table.version)

    with ledger.bulk():
        _commit_all(ledger, table, [(name, first)])
        # What Bulk.flush does, with the other writer in between.
        conn.execute("COMMIT")
        _commit_all(other, table, [(name, second)])
        conn.execute("BEGIN IMMEDIATE")
        # The same file again, under another path: every key is now stored by `other`.
        copy = tmp_path / "copy.jsonl"
        copy.write_bytes(second.read_bytes())
        _commit_all(ledger, table, [(name, copy)])

    events = conn.execute("SELECT count(*), count(DISTINCT key) FROM events").fetchone()
    assert events[0] == events[1]
    (copied,) = conn.execute(
        "SELECT count(*) FROM events JOIN files ON files.id = events.file_id WHERE path = ?",
        (str(copy),),
    ).fetchone()
    assert copied == 0  # each of its records tied with the stored one, which stays
