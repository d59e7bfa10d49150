"""Parsing in worker processes (``sufd ingest --workers N``) changes nothing in the ledger.

The same generated corpus (every trap of tests/corpus.py, large enough for the workers to
start) is ingested by the real CLI with ``--workers 1`` and ``--workers 2``; the ledgers are
compared event by event with the crash harness's comparison. A run that silently parsed
everything in the writer would prove nothing, so the number of files taken from the workers
is checked too. Then the guard that keeps a stale prefetch out: a file appended after a
worker parsed it must be parsed again by the writer.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import multiprocessing
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sufd.ingest.ingestor import PREFETCH_MIN_TOTAL_BYTES, Ingestor, IngestStats
from sufd.ingest.prefetch import AHEAD_BYTES, Planned, Prefetcher, _Results, _wait_for, _Worker
from sufd.prices.table import PriceTable
from sufd.settings import load
from sufd.sources import SOURCES
from sufd.store import open_store
from sufd.store.ledger import Ledger
from tests.chaos.ledger_compare import compare_ledgers
from tests.conftest import SufdEnv, make_env
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
        assert worker.results.conn.poll(30)  # it has parsed the first file (and is sending it)
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
    results = _Results(reader)
    every = [results]
    for index in (0, 2, 3, 7):
        writer.send_bytes(marshal.dumps((index, (index, 0, []))))
    assert _wait_for(results, 2, every) == (2, 0, [])  # 0 was not asked for (unchanged file)
    assert _wait_for(results, 5, every) is None  # never sent (not worth it); 7 is kept for later
    assert _wait_for(results, 7, every) == (7, 0, [])
    assert _wait_for(results, 3, every) is None  # already passed: the writer parses it itself
    writer.close()  # the worker ended (or died) before sending 9
    assert _wait_for(results, 9, every) is None
    assert _wait_for(results, 11, every) is None  # and stays so, without waiting


def test_garbage_from_a_worker_ends_its_results() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    results = _Results(reader)
    writer.send_bytes(marshal.dumps((0, (0, 0, []))))
    writer.send_bytes(b"not marshal data")
    writer.send_bytes(marshal.dumps((2, (2, 0, []))))
    assert _wait_for(results, 0, [results]) == (0, 0, [])
    assert _wait_for(results, 1, [results]) is None
    assert _wait_for(results, 2, [results]) is None  # nothing after garbage is trusted


def test_waiting_for_one_worker_reads_ahead_from_the_other_up_to_the_bound() -> None:
    """A worker whose pipe is full stops parsing. While the writer waits for a slow worker,
    it reads what a fast one has sent, so that one goes on, but holds at most AHEAD_BYTES
    of it (plus the result that crossed the bound)."""
    slow_reader, slow_writer = multiprocessing.Pipe(duplex=False)
    fast_reader, fast_writer = multiprocessing.Pipe(duplex=False)
    slow, fast = _Results(slow_reader), _Results(fast_reader)
    payload = b"x" * 100_000
    count = 3 * AHEAD_BYTES // len(payload)  # far more than a pipe holds
    sent = []

    def fast_worker() -> None:
        with contextlib.suppress(OSError):  # the test closed the reading end
            for index in range(1, 2 * count, 2):
                fast_writer.send_bytes(
                    marshal.dumps((index, (0, 0, [(0, {}, [], [payload], None)])))
                )
                sent.append(index)

    def slow_worker() -> None:
        # Sends once the fast one cannot send any more (or has sent all it could).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            before = len(sent)
            time.sleep(0.5)
            if len(sent) == before:
                break
        slow_writer.send_bytes(marshal.dumps((0, (0, 0, []))))

    threads = [
        threading.Thread(target=fast_worker, daemon=True),
        threading.Thread(target=slow_worker, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        assert _wait_for(slow, 0, [slow, fast]) == (0, 0, [])
        read_ahead = fast._queued
        sent_so_far = len(sent)
        one = len(marshal.dumps((1, (0, 0, [(0, {}, [], [payload], None)]))))
        assert AHEAD_BYTES <= read_ahead < AHEAD_BYTES + one
        # What was read ahead is not lost: every result comes in order.
        for index in range(1, 2 * count, 2):
            assert _wait_for(fast, index, [slow, fast]) == (0, 0, [(0, {}, [], [payload], None)]), (
                index
            )
    finally:
        fast_reader.close()  # a fast worker still sending gets an error instead of waiting
        for t in threads:
            t.join(timeout=30)
    assert sent_so_far >= AHEAD_BYTES // one  # the fast worker went on while the writer waited


def _ingest_in_process(env: SufdEnv, workers: int) -> IngestStats:
    settings = load(None)
    conn = open_store(settings.paths.db)
    try:
        prices = PriceTable.bundled()
        ledger = Ledger(conn, price_version=prices.version)
        return Ingestor(settings, ledger, prices, workers=workers).ingest_all()
    finally:
        conn.close()


def test_no_workers_while_other_threads_run(isolated: SufdEnv) -> None:
    """Forking a process with other threads is unsafe: the writer parses everything itself,
    and says so. (This used to try a clean start, which failed to pickle the settings.)"""
    generate_to_size(isolated.home, PREFETCH_MIN_TOTAL_BYTES + 4_000_000, seed=5)
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        with capture_logs() as logs:
            stats = _ingest_in_process(isolated, workers=2)
    finally:
        release.set()
        other.join()
    assert stats.prefetched == 0 and stats.inserted > 0 and not stats.errors
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "ingest.workers_unavailable"
    ]


def test_a_worker_that_cannot_start_leaves_the_parse_to_the_writer(
    isolated: SufdEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second worker's fork fails (say, at the process limit): the first is stopped,
    and the pass completes in the writer with the same events as with no workers."""
    generate_to_size(isolated.home, PREFETCH_MIN_TOTAL_BYTES + 4_000_000, seed=5)
    started: list[_Worker] = []
    real_init = _Worker.__init__

    def failing_init(self: _Worker, *args: Any) -> None:
        if started:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        real_init(self, *args)
        started.append(self)

    monkeypatch.setattr(_Worker, "__init__", failing_init)
    with capture_logs() as logs:
        stats = _ingest_in_process(isolated, workers=2)
    assert started and not started[0].proc.is_alive()
    assert stats.prefetched == 0 and not stats.errors
    assert any(e["event"] == "ingest.workers_unavailable" for e in logs)
    monkeypatch.setattr(_Worker, "__init__", real_init)
    monkeypatch.setenv("XDG_DATA_HOME", str(isolated.home.parent / "fresh-data"))
    assert _ingest_in_process(isolated, workers=1).inserted == stats.inserted
