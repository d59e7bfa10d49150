"""Parsing in worker processes (``sufd ingest --workers N``) changes nothing in the ledger.

The same generated corpus (every trap of tests/corpus.py, large enough for the workers to
start) is ingested by the real CLI with ``--workers 1`` and ``--workers 2``; the ledgers are
compared event by event with the crash harness's comparison. A run that silently parsed
everything in the writer would prove nothing, so the number of files taken from the workers
is checked too. Then the guard that keeps a stale prefetch out: a file appended after a
worker parsed it must be parsed again by the writer.
"""

from __future__ import annotations

import json
import marshal
import multiprocessing
import shutil
import time
from pathlib import Path

import pytest

from sufd.ingest import PREFETCH_MIN_TOTAL_BYTES
from sufd.prefetch import Planned, Prefetcher, _Worker
from sufd.prices import PriceTable
from sufd.settings import load
from sufd.sources import SOURCES
from tests.chaos.ledger_compare import compare_ledgers
from tests.conftest import make_env
from tests.corpus import generate_to_size


def test_workers_give_the_same_ledger_as_one_process(tmp_path: Path) -> None:
    one = make_env(tmp_path / "one")
    generate_to_size(one.home, PREFETCH_MIN_TOTAL_BYTES + 8_000_000, seed=7)
    two = make_env(tmp_path / "two")
    shutil.rmtree(two.home)
    shutil.copytree(one.home, two.home, symlinks=True)

    single = json.loads(one.run("ingest", "--json", "--workers", "1").stdout)
    multi = json.loads(two.run("ingest", "--json", "--workers", "2").stdout)

    assert single["files_prefetched"] == 0
    # Most files are well above the size worth sending to a worker.
    assert multi["files_prefetched"] > multi["files_read"] // 2, multi
    for k in ("files_read", "bytes_read", "events_new", "events_replaced", "malformed_lines"):
        assert multi[k] == single[k], k
    comparison = compare_ledgers(two, one)
    assert comparison.mismatches == 0, comparison.as_dict()

    # A second pass reads nothing, whichever way the first one went.
    again = json.loads(two.run("ingest", "--json", "--workers", "2").stdout)
    assert again["files_read"] == 0 and again["files_prefetched"] == 0


def _planned(path: Path, root: Path, start: int = 0) -> Planned:
    st = path.stat()
    state = SOURCES["claude"].new_state()
    return Planned("claude", root, path, start, state, st.st_dev, st.st_ino, st.st_size)


def test_a_file_written_after_the_worker_read_it_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(tmp_path)
    generate_to_size(env.home, 2_000_000, seed=3)
    for k, v in env.env.items():
        monkeypatch.setenv(k, v)
    settings = load(None)
    claude = SOURCES["claude"]
    root = env.home / ".claude" / "projects"
    paths = sorted(root.rglob("*.jsonl"), key=lambda p: p.stat().st_size)[-3:]
    written, other, kept = paths
    # One worker, so that its results come in plan order: written, other, kept.
    prefetch = Prefetcher(settings, PriceTable.bundled(), 1, [_planned(p, root) for p in paths])
    try:
        (worker,) = prefetch._workers.values()
        assert worker.conn.poll(30)  # the worker has parsed the first file (and is sending it)
        time.sleep(0.2)
        with written.open("ab") as f:
            f.write(b'{"type":"user"}\n')
        assert prefetch.take(written, 0, written.stat(), claude.new_state()) is None
        # Another start or state than the writer's own is never used either.
        assert prefetch.take(other, 10, other.stat(), claude.new_state()) is None
        assert prefetch.take(other, 0, other.stat(), claude.new_state()) is None  # taken once
        assert prefetch.hits == 0

        chunks = prefetch.take(kept, 0, kept.stat(), claude.new_state())
        assert chunks is not None and prefetch.hits == 1
        assert chunks[-1].end == kept.stat().st_size
    finally:
        prefetch.close()


def test_results_come_in_plan_order_skipped_ones_are_dropped_and_a_dead_worker_ends() -> None:
    """The writer's end of one worker's pipe, with the test writing what a worker would."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    worker = _Worker.__new__(_Worker)
    worker.conn, worker._last, worker._ahead = reader, -1, None
    for index in (0, 2, 3, 7):
        writer.send_bytes(marshal.dumps((index, (index, 0, []))))
    assert worker.result(2) == (2, 0, [])  # 0 was not asked for (the file was unchanged)
    assert worker.result(5) is None  # never sent (not worth it); 7 is kept for later
    assert worker.result(7) == (7, 0, [])
    assert worker.result(3) is None  # already passed: the writer parses it itself
    writer.close()  # the worker ended (or died) before sending 9
    assert worker.result(9) is None
    assert worker.result(11) is None  # and stays so, without waiting
