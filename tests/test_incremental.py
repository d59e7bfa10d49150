"""Incremental ingest equals one-shot ingest (acceptance item of issue 2).

The reference is always an independent run: a fresh ledger built by one ``sufd ingest`` of the
final files (plus, where files lost content, a fresh ledger of the content that vanished; sufd
never retracts an event, see ``Ledger.mark_gone`` and DESIGN "a file that vanishes keeps its
events"), or arithmetic on lines written here. Nothing is copied from sufd's own output of the
run under test.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SufdEnv, make_env
from tests.corpus import SENTINEL, CorpusSpec, append_chunks, generate
from tests.keys import portable_key

pytestmark = pytest.mark.integration

BUCKET_MS = 900_000
COST_UNPRICED, COST_ESTIMATED = 2, 3
SPEC = CorpusSpec(
    seed=20260, claude_sessions=8, codex_sessions=8, turns_per_session=(3, 12), content_scale=0.3
)
CLAUDE_DIR = Path(".claude/projects/-home-dev-src-inc")
CODEX_DIR = Path(".codex/sessions/2026/03/07")

# Every column of ``events``; the test fails when the schema grows so that a new column is
# either compared or deliberately listed as provenance.
EVENT_COLUMNS = {
    "id", "source", "key", "grp", "sidechain", "has_speed", "fast", "ts", "session_id",
    "project_id", "model_id", "input", "output", "cache_write_5m", "cache_write_1h",
    "cache_read", "reasoning", "total", "cost", "cost_kind", "price_version_id",
    "fallback_model", "host_id", "file_id", "offset",
}  # fmt: skip
_EVENTS_SQL = """
SELECT e.source, e.key, e.grp, e.sidechain, e.has_speed, e.fast, e.ts, s.source, s.session,
       sp.path, p.path, m.name, e.input, e.output, e.cache_write_5m, e.cache_write_1h,
       e.cache_read, e.reasoning, e.total, e.cost, e.cost_kind, pv.version, e.fallback_model,
       f.path, e.offset
FROM events e
JOIN sessions s ON s.id = e.session_id
JOIN projects sp ON sp.id = s.project_id
JOIN projects p ON p.id = e.project_id
JOIN models m ON m.id = e.model_id
LEFT JOIN price_versions pv ON pv.id = e.price_version_id
LEFT JOIN files f ON f.id = e.file_id
"""
_AGG_VALUES = (
    "events, input, output, cache_write_5m, cache_write_1h, cache_read, reasoning, total,"
    " cost, unpriced, estimated"
)
# ------------------------------------------------------------------------------------------
# reading a ledger back, by names rather than surrogate ids


@dataclass
class Snapshot:
    """A ledger's content keyed by natural keys; file paths relative to the env's HOME.

    ``agg_session`` holds the sums; ``spans`` the (first_ts, last_ts) of the same rows, kept
    apart so a wrong span does not hide what else a test checks.
    """

    events: dict[tuple[str, str], tuple[Any, ...]]
    where: dict[tuple[str, str], tuple[str, int]]  # (relative path, offset) of each event
    agg_time: dict[tuple[Any, ...], tuple[Any, ...]]
    agg_session: dict[tuple[Any, ...], tuple[Any, ...]]
    agg_day: dict[tuple[Any, ...], tuple[Any, ...]]  # per local day, every tracked zone
    spans: dict[tuple[Any, ...], tuple[int, int]]
    malformed: dict[tuple[str, int], str]
    files: dict[str, tuple[Any, ...]]


def _rel(path: str | None, home: Path) -> str:
    assert path is not None
    return str(Path(path).relative_to(home))


def snapshot(env: SufdEnv) -> Snapshot:
    conn = env.connect()
    try:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
        assert cols == EVENT_COLUMNS, "events gained/lost columns: update this test"
        events, where = {}, {}
        for row in conn.execute(_EVENTS_SQL):
            rel = _rel(row[-2], env.home)
            key = (row[0], portable_key(row[1], row[-2], rel))
            assert key not in events
            events[key] = row[2:-2]
            where[key] = (rel, row[-1])
        agg_time = {
            r[:4]: r[4:]
            for r in conn.execute(
                f"SELECT a.bucket, a.source, p.path, m.name, {_AGG_VALUES} FROM agg_time a"
                " JOIN projects p ON p.id = a.project_id JOIN models m ON m.id = a.model_id"
            )
        }
        agg_day = {
            r[:5]: r[5:]
            for r in conn.execute(
                f"SELECT a.zone, a.day, a.source, p.path, m.name, {_AGG_VALUES} FROM agg_day a"
                " JOIN projects p ON p.id = a.project_id JOIN models m ON m.id = a.model_id"
            )
        }
        session_rows = conn.execute(
            f"SELECT s.source, s.session, p.path, m.name, {_AGG_VALUES}, first_ts, last_ts"
            " FROM agg_session a JOIN sessions s ON s.id = a.session_id"
            " JOIN projects p ON p.id = s.project_id JOIN models m ON m.id = a.model_id"
        ).fetchall()
        malformed = {
            (_rel(r[0], env.home), r[1]): r[2]
            for r in conn.execute(
                "SELECT f.path, m.offset, m.reason"
                " FROM malformed m JOIN files f ON f.id = m.file_id"
            )
        }
        files = {
            _rel(r[0], env.home): r[1:]
            for r in conn.execute(
                "SELECT path, source, size, offset, state, malformed, error, gone FROM files"
            )
        }
    finally:
        conn.close()
    agg_session = {r[:4]: r[4:-2] for r in session_rows}
    spans = {r[:4]: r[-2:] for r in session_rows}
    return Snapshot(events, where, agg_time, agg_session, agg_day, spans, malformed, files)


def _close(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Equal, floats within 1e-12 relative (sums accumulated in a different order)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) or isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15):
                return False
        elif x != y:
            return False
    return True


def _assert_rows_close(got: dict[Any, tuple[Any, ...]], want: dict[Any, tuple[Any, ...]]) -> None:
    extra = {k: got[k] for k in got if k not in want}
    missing = {k: want[k] for k in want if k not in got}
    assert not extra and not missing, f"rows only stored: {extra}; only expected: {missing}"
    bad = {k: (got[k], want[k]) for k in want if not _close(got[k], want[k])}
    assert not bad, f"{len(bad)} rows differ (got, want): {list(bad.items())[:5]}"


def _line_at(home: Path, rel: str, offset: int) -> bytes:
    with (home / rel).open("rb") as f:
        f.seek(offset)
        return f.readline()


def assert_same_ledger(got: Snapshot, got_home: Path, want: Snapshot, want_home: Path) -> None:
    """Events column by column, aggregate sums, malformed lines and cursors are the same.

    An event's provenance (file, offset) may legitimately differ only where the same line is
    present verbatim in two files (a resumed Claude session, a Codex archived copy): the first
    copy read wins the tie, and read order differs. That is checked on the raw files.
    Session spans are compared separately (:func:`assert_same_spans`).
    """
    assert sorted(got.events) == sorted(want.events)
    diff = {
        k: (got.events[k], want.events[k]) for k in want.events if got.events[k] != want.events[k]
    }
    assert not diff, f"{len(diff)} events differ (got, want): {list(diff.items())[:5]}"
    for k, loc in want.where.items():
        if got.where[k] != loc:
            dup = _line_at(got_home, *got.where[k])
            assert dup == _line_at(want_home, *loc), (k, got.where[k], loc)
    _assert_rows_close(got.agg_time, want.agg_time)
    _assert_rows_close(got.agg_session, want.agg_session)
    _assert_rows_close(got.agg_day, want.agg_day)
    assert got.malformed == want.malformed
    assert got.files == want.files


def assert_same_spans(got: Snapshot, want: Snapshot) -> None:
    """``agg_session`` first/last activity (the session report's ``lastActivity``)."""
    diff = {k: (got.spans.get(k), v) for k, v in want.spans.items() if got.spans.get(k) != v}
    assert sorted(got.spans) == sorted(want.spans)
    assert not diff, f"{len(diff)} session spans differ (got, want): {list(diff.items())[:5]}"


def _recompute(env: SufdEnv) -> tuple[dict[Any, Any], ...]:
    """(agg_time, agg_session, spans) as stored, then as recomputed from ``events``."""
    conn = env.connect()
    try:
        rows = conn.execute(
            "SELECT ts, source, project_id, model_id, session_id, input, output, cache_write_5m,"
            " cache_write_1h, cache_read, reasoning, total, cost, cost_kind FROM events"
        ).fetchall()
        stored_time = {
            r[:4]: r[4:]
            for r in conn.execute(
                f"SELECT bucket, source, project_id, model_id, {_AGG_VALUES} FROM agg_time"
            )
        }
        session_rows = conn.execute(
            f"SELECT session_id, model_id, {_AGG_VALUES}, first_ts, last_ts FROM agg_session"
        ).fetchall()
    finally:
        conn.close()
    assert rows, "no events at all: the comparison would be vacuous"
    by_time: dict[tuple[Any, ...], list[Any]] = {}
    by_session: dict[tuple[Any, ...], list[Any]] = {}
    spans: dict[tuple[Any, ...], tuple[int, int]] = {}
    zero = [0] * 8 + [0.0, 0, 0]
    for ts, source, project, model, session, *tokens, cost, kind in rows:
        values = [1, *tokens, cost, int(kind == COST_UNPRICED), int(kind == COST_ESTIMATED)]
        for acc, key in ((by_time, (ts // BUCKET_MS, source, project, model)),
                         (by_session, (session, model))):  # fmt: skip
            acc[key] = [a + b for a, b in zip(acc.get(key, zero), values, strict=True)]
        lo, hi = spans.get((session, model), (ts, ts))
        spans[(session, model)] = (min(lo, ts), max(hi, ts))
    stored_session = {r[:2]: r[2:-2] for r in session_rows}
    stored_spans = {r[:2]: r[-2:] for r in session_rows}
    recomputed_time = {k: tuple(v) for k, v in by_time.items()}
    recomputed_session = {k: tuple(v) for k, v in by_session.items()}
    return (stored_time, recomputed_time, stored_session, recomputed_session, stored_spans, spans)


def assert_aggregates_recomputed(env: SufdEnv) -> None:
    """``agg_time``, the sums of ``agg_session`` and what each file holds (``files``) equal
    a full recompute from ``events``."""
    stored_time, want_time, stored_session, want_session, _, _ = _recompute(env)
    _assert_rows_close(stored_time, want_time)
    _assert_rows_close(stored_session, want_session)
    conn = env.connect()
    try:
        held = {r[0]: r[1:] for r in conn.execute("SELECT id, held_events, held_cost FROM files")}
        want: dict[int, tuple[int, float]] = {}
        for file_id, cost in conn.execute("SELECT file_id, cost FROM events"):
            n, c = want.get(file_id, (0, 0.0))
            want[file_id] = (n + 1, c + cost)
    finally:
        conn.close()
    _assert_rows_close({k: v for k, v in held.items() if v[0] or abs(v[1]) > 1e-9}, want)


def assert_spans_recomputed(env: SufdEnv) -> None:
    """Each ``agg_session`` row spans exactly its events' first and last timestamps."""
    *_, stored, want = _recompute(env)
    diff = {k: (stored.get(k), v) for k, v in want.items() if stored.get(k) != v}
    assert sorted(stored) == sorted(want), "agg_session rows without events"
    assert not diff, f"{len(diff)} spans differ (stored, from events): {list(diff.items())[:5]}"


def ingest(env: SufdEnv) -> dict[str, Any]:
    """``sufd ingest --json``: must exit 0 and report no unreadable file."""
    proc = env.run("ingest", "--json")
    assert SENTINEL not in proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    assert summary["errors"] == []
    return summary


def report(env: SufdEnv, kind: str = "daily") -> dict[str, Any]:
    """The report's figures (``freshness`` says when each ledger last committed: it differs
    between two ledgers of the same files and is tested on its own)."""
    proc = env.run("ctl", "report", kind, "--json", "--timezone", "UTC")
    out: dict[str, Any] = json.loads(proc.stdout)
    out.pop("freshness")
    return out


def one_shot(base: Path, files: dict[Path, bytes]) -> tuple[SufdEnv, Snapshot]:
    """A fresh env holding exactly ``files`` (relative to HOME), ingested once."""
    env = make_env(base)
    for rel, data in files.items():
        (env.home / rel).parent.mkdir(parents=True, exist_ok=True)
        (env.home / rel).write_bytes(data)
    ingest(env)
    assert_aggregates_recomputed(env)
    return env, snapshot(env)


def assert_no_sentinel(env: SufdEnv) -> None:
    for suffix in ("", "-wal"):
        path = Path(f"{env.db}{suffix}")
        if path.exists():
            assert SENTINEL.encode() not in path.read_bytes()


# ------------------------------------------------------------------------------------------
# hand-written lines (so expected values are arithmetic on what was written)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


T0 = 1_772_870_400_000  # 2026-03-07T08:00:00Z


def claude_line(
    mid: str | None,
    ts: int,
    inp: int,
    out: int,
    *,
    session: str = "s-inc-1",
    rid: str | None = None,
    cache_read: int = 0,
) -> bytes:
    message: dict[str, Any] = {
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": f"réponse {SENTINEL} 東京 ✓"}],
        "usage": {
            "input_tokens": inp,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read,
            "output_tokens": out,
        },
    }
    if mid is not None:
        message["id"] = mid
    return _dumps(
        {
            "parentUuid": None,
            "isSidechain": False,
            "cwd": "/home/dev/src/inc",
            "sessionId": session,
            "version": "2.0.30",
            "type": "assistant",
            "message": message,
            "requestId": rid or f"req_{mid}",
            "timestamp": _iso(ts),
        }
    )


def claude_user(ts: int) -> bytes:
    return _dumps(
        {
            "type": "user",
            "sessionId": "s-inc-1",
            "cwd": "/home/dev/src/inc",
            "message": {"role": "user", "content": f"naïve prompt {SENTINEL} データ"},
            "timestamp": _iso(ts),
        }
    )


def codex_meta(session: str, cwd: str) -> bytes:
    payload = {"id": session, "cwd": cwd, "originator": "codex_cli_rs"}
    return _dumps({"timestamp": _iso(T0), "type": "session_meta", "payload": payload})


def codex_turn(model: str, ts: int) -> bytes:
    payload = {"cwd": "/home/dev/src/codex", "model": model, "summary": f"{SENTINEL} λ"}
    return _dumps({"timestamp": _iso(ts), "type": "turn_context", "payload": payload})


def codex_count(ts: int, total: tuple[int, int, int, int]) -> bytes:
    """A token_count with only the cumulative total (delta computed against carried state)."""
    inp, cached, out, reasoning = total
    usage = {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + out,
    }
    payload = {"type": "token_count", "info": {"total_token_usage": usage}}
    return _dumps({"timestamp": _iso(ts), "type": "event_msg", "payload": payload})


def _sum_tokens(snap: Snapshot) -> tuple[int, int]:
    """(input + cache_read, output) over all events: input excludes cached input."""
    inp = sum(v[10] + v[14] for v in snap.events.values())
    out = sum(v[11] for v in snap.events.values())
    return inp, out


def _union(*snaps: Snapshot) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Events of several reference ledgers; a key present in more than one must agree."""
    events: dict[Any, Any] = {}
    where: dict[Any, Any] = {}
    for snap in snaps:
        for k, v in snap.events.items():
            if k in events:
                assert (events[k], where[k]) == (v, snap.where[k]), k
            events[k], where[k] = v, snap.where[k]
    return events, where


# ------------------------------------------------------------------------------------------
# 1. chunked appends + many ingest runs == one ingest of the final files


@dataclass
class Cuts:
    """Where files stood (mid-line, mid usage line, mid UTF-8 char) when an ingest ran;
    ``kinds`` counts distinct (file, size) cuts of each kind."""

    runs: int = 0
    seen: set[tuple[Path, int]] = field(default_factory=set)
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def classify(self, data: bytes, pos: int) -> set[str]:
        if pos in (0, len(data)) or data[pos - 1] == 0x0A:
            return set()
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        line = data[start : end if end >= 0 else len(data)]
        found = {"mid_line"}
        if b'"usage":{' in line:
            found.add("claude_usage_line")
        if b'"token_count"' in line and b'"total_token_usage"' in line:
            found.add("codex_usage_line")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return found  # a garbage trap line: a split there is not a split character
        if 0x80 <= data[pos] < 0xC0:
            found.add("mid_utf8")
        return found


TARGETS = {"claude_usage_line": 4, "codex_usage_line": 3, "mid_utf8": 2}


def _chunk_counts(files: dict[Path, Path], seeds: dict[Path, int], scratch: Path) -> int:
    total = 0
    for rel, src in files.items():
        total += sum(1 for _ in append_chunks(src, scratch, random.Random(seeds[rel])))
    scratch.unlink()
    return total


def feed_in_chunks(src_home: Path, env: SufdEnv, rng: random.Random, runs: int) -> Cuts:
    """Copy every file of ``src_home`` into ``env.home`` by interleaved random chunks, running
    ``sufd ingest`` every few chunks and whenever a chunk ends at a wanted kind of cut."""
    files = {p.relative_to(src_home): p for p in sorted(src_home.rglob("*")) if p.is_file()}
    data = {rel: src.read_bytes() for rel, src in files.items()}
    seeds = {rel: rng.getrandbits(32) for rel in files}
    batch = max(1, _chunk_counts(files, seeds, env.home / "scratch") // runs)
    feeders: dict[Path, Iterator[None]] = {
        rel: append_chunks(src, env.home / rel, random.Random(seeds[rel]))
        for rel, src in files.items()
    }
    cuts, wanted, pending = Cuts(), dict(TARGETS), 0
    while feeders:
        rel = rng.choice(sorted(feeders))
        if next(feeders[rel], StopIteration) is StopIteration:
            del feeders[rel]
            continue
        pending += 1
        here = cuts.classify(data[rel], (env.home / rel).stat().st_size)
        if pending >= batch or any(wanted.get(k, 0) > 0 for k in here):
            for k in here:
                wanted[k] = wanted.get(k, 0) - 1
            _ingest_and_record(env, data, cuts)
            pending = 0
    return cuts


def _ingest_and_record(env: SufdEnv, data: dict[Path, bytes], cuts: Cuts) -> None:
    for rel, content in data.items():
        path = env.home / rel
        size = path.stat().st_size if path.exists() else 0
        if (rel, size) not in cuts.seen:
            cuts.seen.add((rel, size))
            for kind in cuts.classify(content, size):
                cuts.kinds[kind] += 1
    ingest(env)
    cuts.runs += 1


@dataclass
class Pair:
    """The same corpus: ``one`` ingested once, ``inc`` grown in chunks and ingested often."""

    one: SufdEnv
    inc: SufdEnv
    cuts: Cuts


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    base = tmp_path_factory.mktemp("incremental")
    one = make_env(base / "one")
    stats = generate(one.home, SPEC)
    assert stats.claude_usage_lines > 100 and stats.codex_token_count_lines > 30
    assert 2_000_000 < stats.bytes < 12_000_000
    ingest(one)
    inc = make_env(base / "inc")
    cuts = feed_in_chunks(one.home, inc, random.Random(4242), runs=24)
    ingest(inc)
    return Pair(one, inc, cuts)


def test_incremental_runs_cut_lines_where_it_matters(pair: Pair) -> None:
    """The chunked feed really stopped mid-line, mid usage line (both sources) and in the
    middle of multi-byte characters when ingest ran, within the asked number of runs."""
    assert 20 <= pair.cuts.runs <= 40, pair.cuts.runs
    for kind, n in TARGETS.items():
        assert pair.cuts.kinds[kind] >= n, dict(pair.cuts.kinds)
    assert pair.cuts.kinds["mid_line"] >= 40, dict(pair.cuts.kinds)


def test_incremental_ledger_equals_one_shot(pair: Pair) -> None:
    one, inc = snapshot(pair.one), snapshot(pair.inc)
    assert len(one.events) > 100 and one.malformed  # traps included, not vacuous
    assert {k[0] for k in one.events} == {"claude", "codex"}
    assert_same_ledger(inc, pair.inc.home, one, pair.one.home)
    assert_aggregates_recomputed(pair.one)
    assert_aggregates_recomputed(pair.inc)
    assert_no_sentinel(pair.inc)


def _shape(obj: Any) -> Any:
    """``obj`` with every float replaced by a placeholder: rows, keys and integers to compare
    exactly (the floats are compared by :func:`_json_diff`; rounding them to a number of
    digits fails whenever two equal sums straddle a rounding boundary)."""
    if isinstance(obj, float):
        return float
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shape(v) for v in obj]
    return obj


def _json_diff(got: Any, want: Any, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        keys = sorted(set(got) | set(want))
        return [d for k in keys for d in _json_diff(got.get(k), want.get(k), f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        pairs = enumerate(zip(got, want, strict=True))
        return [d for i, (g, w) in pairs for d in _json_diff(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        # Aggregate costs are float sums: a replacement applied as (x + old) + (new - old)
        # may differ from x + new in the last bit. Events are compared bit for bit elsewhere.
        close = math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15)
        return [] if close else [f"{path}: {got!r} != {want!r}"]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


def test_incremental_daily_report_identical(pair: Pair) -> None:
    want = report(pair.one)
    assert want["daily"], "empty report: the comparison would be vacuous"
    got = report(pair.inc)
    assert _shape(got) == _shape(want)  # same rows, keys and tokens
    assert not _json_diff(got, want), _json_diff(got, want)  # and costs to 1e-12 relative


def test_incremental_session_spans_equal_one_shot(pair: Pair) -> None:
    """First/last activity per session and model, and the session report built on them."""
    assert_same_spans(snapshot(pair.inc), snapshot(pair.one))
    assert_spans_recomputed(pair.one)
    assert_spans_recomputed(pair.inc)
    got, want = report(pair.inc, "session"), report(pair.one, "session")
    assert _shape(got) == _shape(want)
    assert not _json_diff(got, want), _json_diff(got, want)


# ------------------------------------------------------------------------------------------
# 2. idempotency


def test_second_ingest_reads_nothing(tmp_path: Path) -> None:
    env = make_env(tmp_path / "e")
    stats = generate(env.home, SPEC)
    first = ingest(env)
    assert first["bytes_read"] > 0.99 * stats.bytes  # all but partial last lines
    before = snapshot(env)
    second = ingest(env)
    assert (second["events_new"], second["events_replaced"]) == (0, 0)
    assert (second["bytes_read"], second["files_read"], second["malformed_lines"]) == (0, 0, 0)
    after = snapshot(env)
    assert after == before


# ------------------------------------------------------------------------------------------
# 3. partial last line


def test_partial_last_line_counts_once_when_completed(tmp_path: Path) -> None:
    rel = CLAUDE_DIR / "partial.jsonl"
    lines = [
        claude_user(T0),
        claude_line("msg_p1", T0 + 1_000, 10, 100),
        claude_line("msg_p2", T0 + 2_000, 20, 200, cache_read=3_000),
    ]
    last = claude_line("msg_p3", T0 + 3_000, 30, 300)
    # Cut inside the usage object and, separately, inside a multi-byte character.
    usage_cut = last.index(b'"usage":{') + 20
    utf8_cut = last.index("東".encode()) + 1
    env = make_env(tmp_path / "env")
    path = env.home / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(lines) + last[:utf8_cut])
    assert ingest(env)["events_new"] == 2
    with path.open("ab") as f:
        f.write(last[utf8_cut:usage_cut])
    assert ingest(env)["events_new"] == 0
    with path.open("ab") as f:
        f.write(last[usage_cut:])
    assert ingest(env)["events_new"] == 1
    assert ingest(env)["events_new"] == 0

    _, want = one_shot(tmp_path / "ref", {rel: b"".join(lines) + last})
    got = snapshot(env)
    assert_same_ledger(got, env.home, want, tmp_path / "ref" / "home")
    assert_aggregates_recomputed(env)
    assert sorted(k for _, k in got.events) == sorted(f"msg_p{i}:req_msg_p{i}" for i in (1, 2, 3))
    assert _sum_tokens(got) == (10 + 20 + 3_000 + 30, 100 + 200 + 300)
    assert not got.malformed


# ------------------------------------------------------------------------------------------
# 4. truncation


def _claude_file(prefix: str, n: int, t: int, *, stream: bool = False) -> list[bytes]:
    """``n`` replies (one a streamed reply of two lines, growing output) after a prompt."""
    out = [claude_user(t)]
    for i in range(n):
        mid = f"msg_{prefix}{i}"
        if stream and i == 1:
            out.append(claude_line(mid, t + 1_000 * i + 1, 5 + i, 7))
        out.append(claude_line(mid, t + 1_000 * i + 500, 5 + i, 70 + i))
    return out


def test_truncated_then_regrown_keeps_vanished_events_once(tmp_path: Path) -> None:
    rel1, rel2 = CLAUDE_DIR / "trunc1.jsonl", CLAUDE_DIR / "trunc2.jsonl"
    orig1 = b"".join(_claude_file("t1_", 6, T0, stream=True))
    orig2 = b"".join(_claude_file("t2_", 6, T0, stream=True))
    # A valid prefix: the prompt, reply 0 and both lines of the streamed reply 1.
    prefix1 = b"".join(_claude_file("t1_", 6, T0, stream=True)[:4])
    prefix2 = b"".join(_claude_file("t2_", 6, T0, stream=True)[:4])
    regrown1 = prefix1 + b"".join(_claude_file("t1b_", 3, T0 + 3_600_000)[1:])
    regrown2 = prefix2 + claude_line("msg_t2c", T0 + 7_200_000, 1, 2)
    assert len(regrown1) > len(orig1) // 2 and len(regrown2) < len(orig2)

    env = make_env(tmp_path / "env")
    (env.home / CLAUDE_DIR).mkdir(parents=True)
    (env.home / rel1).write_bytes(orig1)
    (env.home / rel2).write_bytes(orig2)
    assert ingest(env)["events_new"] == 12
    # File 1: truncated, ingested while short (the reset re-reads the prefix: nothing new,
    # nothing replaced), then re-grown differently.
    with (env.home / rel1).open("r+b") as f:
        f.truncate(len(prefix1))
    summary = ingest(env)
    assert (summary["events_new"], summary["events_replaced"]) == (0, 0)
    assert summary["bytes_read"] == len(prefix1)
    with (env.home / rel1).open("ab") as f:
        f.write(regrown1[len(prefix1) :])
    assert ingest(env)["events_new"] == 3
    # File 2: truncated and re-grown (still shorter than what was read) between two runs.
    (env.home / rel2).write_bytes(regrown2)  # same inode: "wb" truncates in place
    summary = ingest(env)
    assert (summary["events_new"], summary["events_replaced"]) == (1, 0)

    # Expected: one-shot of the final files plus, never retracted, one-shot of the originals.
    _, before = one_shot(tmp_path / "before", {rel1: orig1, rel2: orig2})
    _, after = one_shot(tmp_path / "after", {rel1: regrown1, rel2: regrown2})
    events, where = _union(before, after)
    got = snapshot(env)
    assert got.events == events
    assert got.where == where
    assert len(events) == 12 + 3 + 1
    assert got.files == after.files
    assert_aggregates_recomputed(env)
    # Arithmetic: each reply's tokens once (the streamed reply at its largest line).
    expected_in = 2 * sum(5 + i for i in range(6)) + sum(5 + i for i in range(3)) + 1
    expected_out = 2 * sum(70 + i for i in range(6)) + sum(70 + i for i in range(3)) + 2
    assert _sum_tokens(got) == (expected_in, expected_out)


def test_truncated_to_zero_and_rewritten_equals_one_shot(tmp_path: Path) -> None:
    """Every corpus file (all traps) emptied and rewritten with the same bytes: in place with a
    run while empty, in place without one, and as a new inode; nothing new, nothing twice."""
    env = make_env(tmp_path / "env")
    generate(env.home, SPEC)
    ingest(env)
    want = snapshot(env)
    files = sorted(p for p in env.home.rglob("*.jsonl") if p.is_file())
    content = {p: p.read_bytes() for p in files}
    for p in files:
        p.write_bytes(b"")
    summary = ingest(env)
    assert (summary["events_new"], summary["bytes_read"]) == (0, 0)
    for p in files:
        p.write_bytes(content[p])
    summary = ingest(env)
    assert (summary["events_new"], summary["events_replaced"]) == (0, 0)
    assert summary["bytes_read"] == want_bytes(want)
    for p in files:  # emptied and refilled between two runs: same size, nothing to read
        p.write_bytes(b"")
        p.write_bytes(content[p])
    summary = ingest(env)
    assert (summary["events_new"], summary["events_replaced"]) == (0, 0)
    for p in files:  # a new inode with the same bytes: re-read from 0, all already known
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(content[p])
        os.replace(tmp, p)
    summary = ingest(env)
    assert (summary["events_new"], summary["events_replaced"]) == (0, 0)
    assert summary["bytes_read"] == want_bytes(want)
    got = snapshot(env)
    assert_same_ledger(got, env.home, want, env.home)
    assert_aggregates_recomputed(env)


def want_bytes(snap: Snapshot) -> int:
    """Bytes up to the last newline of every file, from the files' own cursors (the one-shot
    reference run): what a full re-read must read again."""
    return sum(v[2] for v in snap.files.values())


# ------------------------------------------------------------------------------------------
# 5. replacement by a new inode


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_replaced_by_same_content_plus_more(tmp_path: Path) -> None:
    rel = CLAUDE_DIR / "grow.jsonl"
    crel = CODEX_DIR / "rollout-2026-03-07T08-00-00-grow.jsonl"
    claude = _claude_file("g", 4, T0, stream=True)
    # A keyless line (no message.id: keyed by file and offset) must not count twice either.
    claude.append(claude_line(None, T0 + 9_000, 3, 4, rid="req_keyless"))
    more = _claude_file("h", 2, T0 + 60_000)[1:]
    codex = [
        codex_meta("cx-grow", "/home/dev/src/codex"),
        codex_turn("gpt-5", T0 + 1_000),
        codex_count(T0 + 2_000, (1_000, 200, 50, 10)),
        codex_count(T0 + 3_000, (3_000, 1_200, 80, 10)),
    ]
    codex_more = [codex_count(T0 + 4_000, (3_500, 1_300, 100, 20))]
    env = make_env(tmp_path / "env")
    for r, lines in ((rel, claude), (crel, codex)):
        (env.home / r).parent.mkdir(parents=True, exist_ok=True)
        (env.home / r).write_bytes(b"".join(lines))
    assert ingest(env)["events_new"] == 5 + 2
    _replace(env.home / rel, b"".join(claude + more))
    _replace(env.home / crel, b"".join(codex + codex_more))
    summary = ingest(env)
    assert (summary["events_new"], summary["events_replaced"]) == (2 + 1, 0)

    final = {rel: b"".join(claude + more), crel: b"".join(codex + codex_more)}
    _, want = one_shot(tmp_path / "ref", final)
    got = snapshot(env)
    assert_same_ledger(got, env.home, want, tmp_path / "ref" / "home")
    assert_aggregates_recomputed(env)
    claude_in = sum(5 + i for i in range(4)) + 3 + sum(5 + i for i in range(2))
    claude_out = sum(70 + i for i in range(4)) + 4 + sum(70 + i for i in range(2))
    assert _sum_tokens(got) == (claude_in + 3_500, claude_out + 100)


def test_replaced_by_different_content_keeps_old_events(tmp_path: Path) -> None:
    rel = CLAUDE_DIR / "swap.jsonl"
    old = b"".join(_claude_file("old", 3, T0))
    new = b"".join(_claude_file("new", 2, T0 + 86_400_000))
    env = make_env(tmp_path / "env")
    (env.home / rel).parent.mkdir(parents=True)
    (env.home / rel).write_bytes(old)
    assert ingest(env)["events_new"] == 3
    _replace(env.home / rel, new)
    assert ingest(env)["events_new"] == 2
    _, before = one_shot(tmp_path / "before", {rel: old})
    _, after = one_shot(tmp_path / "after", {rel: new})
    events, where = _union(before, after)
    got = snapshot(env)
    assert (got.events, got.where) == (events, where)
    assert_aggregates_recomputed(env)
    assert _sum_tokens(got) == (5 + 6 + 7 + 5 + 6, 70 + 71 + 72 + 70 + 71)


def test_replaced_keyless_lines_are_new_events(tmp_path: Path) -> None:
    """Lines without message.id are never deduplicated (ccusage) and are keyed by file and
    offset. A replacement with different content puts different keyless lines at the same
    offsets: they are new usage, and the old ones are kept."""
    rel = CLAUDE_DIR / "keyless.jsonl"
    old1, old2 = claude_line(None, T0, 10, 100, rid="k1"), claude_line(None, T0 + 1, 10, 100)
    new1, new2 = claude_line(None, T0 + 5, 12, 190, rid="k2"), claude_line(None, T0 + 6, 99, 900)
    assert len(old1) == len(new1)  # the second lines start at the same offset too
    old, new = old1 + old2, new1 + new2
    env = make_env(tmp_path / "env")
    (env.home / rel).parent.mkdir(parents=True)
    (env.home / rel).write_bytes(old)
    ingest(env)
    _replace(env.home / rel, new)
    ingest(env)
    got = snapshot(env)
    # Four requests were written and none of them is a copy of another.
    assert _sum_tokens(got) == (10 + 10 + 12 + 99, 100 + 100 + 190 + 900)
    assert len(got.events) == 4
    assert_aggregates_recomputed(env)


def test_codex_state_resets_when_file_is_replaced(tmp_path: Path) -> None:
    """Codex deltas come from carried state (previous cumulative total, model, session, cwd).
    A rollout replaced by another session must start from a clean state: otherwise its first
    totals are diffed against the old file's (large) ones and its model, session and project
    are inherited."""
    rel = CODEX_DIR / "rollout-2026-03-07T08-00-00-swap.jsonl"
    old = [
        codex_meta("cx-old", "/home/dev/src/old"),
        codex_turn("gpt-5.4", T0 + 1_000),
        codex_count(T0 + 2_000, (50_000, 10_000, 2_000, 500)),
        codex_count(T0 + 3_000, (90_000, 40_000, 3_000, 600)),
    ]
    new = [  # no session_meta, no turn_context: session from the file name, model fallback
        codex_count(T0 + 10_000, (4_000, 1_000, 300, 0)),
        codex_count(T0 + 11_000, (7_000, 2_000, 400, 50)),
    ]
    env = make_env(tmp_path / "env")
    (env.home / rel).parent.mkdir(parents=True)
    (env.home / rel).write_bytes(b"".join(old))
    assert ingest(env)["events_new"] == 2
    _replace(env.home / rel, b"".join(new))
    assert ingest(env)["events_new"] == 2
    _, before = one_shot(tmp_path / "before", {rel: b"".join(old)})
    _, after = one_shot(tmp_path / "after", {rel: b"".join(new)})
    events, where = _union(before, after)
    got = snapshot(env)
    assert (got.events, got.where) == (events, where)
    assert got.files == after.files  # the carried state is the new file's
    assert_aggregates_recomputed(env)
    # Arithmetic on the totals written: each session's last cumulative total.
    assert _sum_tokens(got) == (90_000 + 7_000, 3_000 + 400)
    new_events = [v for k, v in got.events.items() if k in after.events]
    assert {(v[6], v[8], v[9]) for v in new_events} == {(rel.stem, "unknown", "gpt-5")}


# ------------------------------------------------------------------------------------------
# 6. session spans (agg_session.first_ts / last_ts, the session report's lastActivity)


def _sidechain_replay(mid: str, ts: int) -> bytes:
    """A sub-agent's sidechain line replaying the parent's message id with a new request id,
    another model and more tokens (Claude Code writes these; ccusage keeps the parent's)."""
    line = json.loads(claude_line(mid, ts, 40, 400, rid="req_replay", cache_read=20_000))
    line["isSidechain"] = True
    line["message"]["model"] = "claude-haiku-4-5-20251001"
    return _dumps(line)


def test_session_span_after_sidechain_replay_is_replaced(tmp_path: Path) -> None:
    """One ingest: the sub-agent file (``<session>/subagents/…``) sorts before its parent
    ``<session>.jsonl``, so the replay is stored first and then replaced by the parent line.
    The replaced event must leave no trace in ``agg_session``."""
    env = make_env(tmp_path / "env")
    parent = env.home / CLAUDE_DIR / "s-inc-1.jsonl"
    agent = env.home / CLAUDE_DIR / "s-inc-1" / "subagents" / "agent-a1.jsonl"
    agent.parent.mkdir(parents=True)
    parent.write_bytes(claude_user(T0) + claude_line("msg_par", T0 + 1_000, 5, 50))
    agent.write_bytes(_sidechain_replay("msg_par", T0 + 60_000))
    summary = ingest(env)
    assert (summary["events_new"], summary["events_replaced"]) == (1, 1)
    snap = snapshot(env)
    assert _sum_tokens(snap) == (5, 50)  # the parent line only
    assert_aggregates_recomputed(env)
    assert_spans_recomputed(env)
    sessions = report(env, "session")["sessions"]
    assert [s["lastActivity"][:19] for s in sessions] == [_iso(T0 + 1_000)[:19]]


def test_session_span_of_streamed_reply_read_in_two_runs(tmp_path: Path) -> None:
    """A streamed reply whose lines straddle two ingest runs: the first line (earlier
    timestamp, fewer tokens) is replaced by the second, as in a one-shot read."""
    rel = CLAUDE_DIR / "stream.jsonl"
    first = claude_line("msg_st", T0 + 1_000, 5, 7)
    last = claude_line("msg_st", T0 + 9_000, 5, 70)
    env = make_env(tmp_path / "env")
    (env.home / rel).parent.mkdir(parents=True)
    (env.home / rel).write_bytes(first)
    ingest(env)
    with (env.home / rel).open("ab") as f:
        f.write(last)
    assert ingest(env)["events_replaced"] == 1
    ref, want = one_shot(tmp_path / "ref", {rel: first + last})
    got = snapshot(env)
    assert_same_ledger(got, env.home, want, ref.home)
    assert_aggregates_recomputed(env)
    assert_spans_recomputed(ref)
    assert_same_spans(got, want)
    assert report(env, "session") == report(ref, "session")
