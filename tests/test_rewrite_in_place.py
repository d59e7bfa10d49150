"""A line file rewritten in place (same inode, not shorter) is read again from its start
(issue 12 item 5).

An append-only file keeps a cursor: its identity and the offset read up to. A file that
shrank or is another inode was already read again from 0; one rewritten over the same inode
to at least its old length was read on from the old offset, so the lines before it were
never seen (and the line across it was garbled). Every test writes the lines itself and
compares the ledger with the usage those lines carry (:mod:`tests.daemon_harness`); the
events of the old content stay in the ledger as history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import sufd.ingest.ingestor
import sufd.ingest.readers
from sufd.ingest.ingestor import Ingestor, IngestStats
from sufd.ingest.runs import CHUNK_BYTES
from sufd.prices.table import PriceTable
from sufd.settings import load
from sufd.store import open_store
from sufd.store.ledger import Ledger
from tests.conftest import SufdEnv
from tests.daemon_harness import (
    ClaudeSession,
    CodexSession,
    Harness,
    Usage,
    append_lines,
    report_totals,
    totals_of,
    wait_until,
)

pytestmark = pytest.mark.integration


def rewrite_in_place(path: Path, *lines: bytes) -> None:
    """Write ``lines`` over ``path`` from byte 0, on the same inode, to at least its old size."""
    data = b"".join(line + b"\n" for line in lines)
    old = path.stat()
    assert len(data) >= old.st_size, "the scenario is a rewrite that is not shorter"
    with path.open("r+b") as f:
        f.write(data)
    new = path.stat()
    assert (new.st_dev, new.st_ino, new.st_size) == (old.st_dev, old.st_ino, len(data))


def _claude_lines(session: str, at: float, n: int, base: int) -> tuple[list[bytes], list[Usage]]:
    s = ClaudeSession(session)
    lines, usage = [], []
    for i in range(n):
        line, ev = s.assistant(at + i, input=base + 11 * i, output=base // 2 + 7 * i)
        lines.append(line)
        usage.append(ev)
    return lines, usage


def _ingest(h: Harness) -> None:
    proc = h.run_sufd("ingest")
    assert proc.returncode == 0, f"sufd ingest exited {proc.returncode}\n{proc.stderr}"


# ------------------------------------------------------------------------------------------
# sufd ingest, one run after the other (the scenario)


@pytest.mark.parametrize("shape", ["longer", "same size"])
def test_claude_file_rewritten_in_place_is_read_again(harness: Harness, shape: str) -> None:
    """Two usage lines, ingest; the same file rewritten with other lines, ingest: every new
    event is counted once, and the two old ones stay."""
    h = harness
    path = h.claude_file()
    old_lines, old = _claude_lines("s1", 0, 2, 1000)
    append_lines(path, *old_lines)
    _ingest(h)
    assert h.events_in_store() == Counter(old)

    # "s2" is as long as "s1" and the tokens have as many digits: two lines make exactly
    # the old size, three make more.
    new_lines, new = _claude_lines("s2", 600, 3 if shape == "longer" else 2, 2000)
    rewrite_in_place(path, *new_lines)
    _ingest(h)
    assert h.events_in_store() == Counter(old + new)
    assert report_totals(h.report("daily")) == totals_of(old + new)

    # Read to its end: a run with nothing new changes nothing.
    _ingest(h)
    assert h.events_in_store() == Counter(old + new)


def test_codex_file_rewritten_in_place_starts_from_fresh_carried_state(harness: Harness) -> None:
    """Codex carries the previous cumulative total from line to line; the rewritten file's
    first event repeats the old file's last total, which only a fresh state counts."""
    h = harness
    path = h.codex_file()
    one = CodexSession("0199aaaa-0000-7000-8000-000000000001")
    l1, e1 = one.token_count(10, input=1000, cached=200, output=300, reasoning=100)
    l2, e2 = one.token_count(20, input=1500, cached=500, output=400, reasoning=0)
    append_lines(path, one.meta(0), one.turn_context(1), l1, l2)
    _ingest(h)
    assert h.events_in_store() == Counter([e1, e2])

    two = CodexSession("0199bbbb-0000-7000-8000-000000000002")
    t = dict(one.totals)  # the old file's last cumulative total
    n1, f1 = two.token_count(
        600, input=t["input"], cached=t["cached"], output=t["output"], reasoning=t["reasoning"]
    )
    assert two.totals == one.totals
    n2, f2 = two.token_count(610, input=700, cached=0, output=80, reasoning=20)
    n3, f3 = two.token_count(620, input=900, cached=300, output=90, reasoning=0)
    rewrite_in_place(path, two.meta(590), two.turn_context(591), n1, n2, n3)
    _ingest(h)
    assert h.events_in_store() == Counter([e1, e2, f1, f2, f3])


# ------------------------------------------------------------------------------------------
# the Ingestor in process: the daemon's sliced reads, and the parse workers


@pytest.fixture
def ledger_of(isolated: SufdEnv) -> Iterator[Ingestor]:
    """A real ledger file in the isolated home, with an Ingestor over it; the caller sets
    ``workers`` and ``slice_s`` as the daemon or ``sufd ingest`` would."""
    settings = load(None)
    conn = open_store(settings.paths.db)
    try:
        prices = PriceTable.bundled()
        yield Ingestor(settings, Ledger(conn, price_version=prices.version), prices)
    finally:
        conn.close()


def _events(ingestor: Ingestor) -> Counter[Usage]:
    rows = ingestor.ledger.conn.execute(
        "SELECT source, ts, input, output, cache_write_5m + cache_write_1h, cache_read,"
        " reasoning, total FROM events"
    ).fetchall()
    return Counter(Usage(*row) for row in rows)


def _resets(logs: Sequence[Mapping[str, Any]]) -> list[Any]:
    return [e.get("reason") for e in logs if e["event"] == "ingest.file_reset"]


def test_sliced_reads_and_appends_go_on_and_a_rewrite_after_them_is_caught(
    isolated: SufdEnv, ledger_of: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon reads a file a slice at a time and then each append: none of that may be
    taken for a rewrite (a wrong fingerprint would read the file again, slice after slice),
    and a rewrite after them still is one."""
    ingestor = ledger_of
    ingestor.slice_s = 0.0  # stop after each committed chunk...
    monkeypatch.setattr(sufd.ingest.readers, "SLICE_RECORDS", 2)  # ...of two records
    path = isolated.home / ".claude" / "projects" / "-home-dev-proj" / "s1.jsonl"
    old_lines, old = _claude_lines("s1", 0, 7, 1000)
    append_lines(path, *old_lines)

    read: list[IngestStats] = []
    with capture_logs() as logs:
        while not read or read[-1].more:
            assert len(read) < 10, "the slices do not get to the end of the file"
            read.append(ingestor.ingest_paths([path]))
        assert len(read) == 4 and sum(s.bytes_read for s in read) == path.stat().st_size
        # A line shorter than the fingerprinted span, across the boundary of the reader's
        # blocks: the fingerprint takes in the end of the block before. Then a usage line.
        pad = b'{"type":"summary","summary":"' + b"x" * (CHUNK_BYTES - 8 - 32) + b'"}'
        crossing = append_lines(path, pad, b'{"type":"summary"}')
        assert ingestor.ingest_paths([path]).bytes_read == crossing
        more_lines, more = _claude_lines("s3", 100, 1, 5000)
        grown = append_lines(path, *more_lines)
        assert ingestor.ingest_paths([path]).bytes_read == grown
    assert _resets(logs) == []
    assert _events(ingestor) == Counter(old + more)

    ingestor.slice_s = None
    new_lines, new = _claude_lines("s2", 600, 9, 2000)
    rewrite_in_place(path, pad, *new_lines)  # as long again
    with capture_logs() as logs:
        stats = ingestor.ingest_paths([path])
    assert _resets(logs) == ["rewritten"]
    assert stats.bytes_read == path.stat().st_size and stats.malformed == 0
    assert _events(ingestor) == Counter(old + more + new)


def test_parse_workers_neither_miss_a_rewrite_nor_see_one_in_an_append(
    isolated: SufdEnv, ledger_of: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sufd ingest --workers 2``: the cursor a worker's parse leaves behind lets the next
    pass read on after an append, and a rewrite is read again whatever a worker parsed."""
    ingestor = ledger_of
    ingestor.workers = 2
    monkeypatch.setattr(sufd.ingest.ingestor, "PREFETCH_MIN_TOTAL_BYTES", 0)
    path = isolated.home / ".claude" / "projects" / "-home-dev-proj" / "s1.jsonl"
    # Each part well above what is worth sending to a worker (32 KiB).
    first_lines, first = _claude_lines("s1", 0, 80, 1000)
    append_lines(path, *first_lines)
    with capture_logs() as logs:
        stats = ingestor.ingest_all()
        assert stats.prefetched == 1 and stats.inserted == 80
        second_lines, second = _claude_lines("s3", 200, 80, 3000)
        grown = append_lines(path, *second_lines)
        stats = ingestor.ingest_all()
        assert stats.prefetched == 1 and stats.bytes_read == grown
    assert _resets(logs) == []
    assert _events(ingestor) == Counter(first + second)

    new_lines, new = _claude_lines("s2", 600, 170, 2000)
    rewrite_in_place(path, *new_lines)
    with capture_logs() as logs:
        stats = ingestor.ingest_all()
    assert _resets(logs) == ["rewritten"]
    assert stats.bytes_read == path.stat().st_size and stats.malformed == 0
    assert _events(ingestor) == Counter(first + second + new)


# ------------------------------------------------------------------------------------------
# the daemon


def test_daemon_reads_again_a_file_rewritten_while_it_watches(harness: Harness) -> None:
    h = harness
    path = h.claude_file()
    append_lines(path, ClaudeSession("s1").user(0))
    h.start()
    old_lines, old = _claude_lines("s1", 0, 2, 1000)
    append_lines(path, *old_lines)
    wait_until(
        lambda: h.events_in_store() == Counter(old),
        5.0,
        what=lambda: f"the two appended events; store has {h.events_in_store()}",
    )

    new_lines, new = _claude_lines("s2", 600, 3, 2000)
    rewrite_in_place(path, *new_lines)
    wait_until(
        lambda: h.events_in_store() == Counter(old + new),
        5.0,
        what=lambda: (
            f"the rewrite's three events; store has {h.events_in_store()}\n" + h.diagnostics()
        ),
    )
    assert [r.get("reason") for r in h.log_events("ingest.file_reset")] == ["rewritten"]
