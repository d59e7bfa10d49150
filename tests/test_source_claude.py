"""Claude Code source: the real samples ingest to the totals in SOURCES.md.

The expected numbers come from ../shared/fixtures/real/SOURCES.md (checked there against
ccusage 20.0.24 and by hand), not from sufd's own output.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sufd.sources.base import FileContext
from sufd.sources.claude import ClaudeCode, _has_null_field
from tests.conftest import SufdEnv, shared_fixture
from tests.real_fixtures import daily, place_claude, place_codex

pytestmark = pytest.mark.integration


def test_claude_1_streamed_lines_max_total_wins(sufd_env: SufdEnv) -> None:
    place_claude(sufd_env, "dkimuson-1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl")
    report = daily(sufd_env)
    assert [r["period"] for r in report["daily"]] == ["2025-09-03"]
    t = report["totals"]
    assert (
        t["inputTokens"],
        t["outputTokens"],
        t["cacheCreationTokens"],
        t["cacheReadTokens"],
    ) == (93, 953, 12698, 103219)
    assert t["totalTokens"] == 116963
    assert t["events"] == 7  # 15 usage lines, 7 unique (message.id, requestId)
    assert t["totalCost"] == pytest.approx(0.093157, abs=5e-7)


def test_claude_2_sidechain_lines(sufd_env: SufdEnv) -> None:
    place_claude(sufd_env, "dkimuson-5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl")
    report = daily(sufd_env)
    assert [r["period"] for r in report["daily"]] == ["2025-09-07"]
    t = report["totals"]
    assert (
        t["inputTokens"],
        t["outputTokens"],
        t["cacheCreationTokens"],
        t["cacheReadTokens"],
    ) == (129, 3629, 47747, 324259)
    assert t["totalTokens"] == 375764
    assert t["events"] == 20
    assert t["totalCost"] == pytest.approx(0.331151, abs=5e-7)


def test_claude_3_cost_usd_and_fast(sufd_env: SufdEnv) -> None:
    place_claude(sufd_env, "ccusage-project-alpha-session-alpha-chat.jsonl")
    report = daily(sufd_env)
    days = {r["period"]: r for r in report["daily"]}
    assert sorted(days) == ["2026-01-09", "2026-01-10"]
    assert days["2026-01-09"]["events"] == 2 and days["2026-01-10"]["events"] == 1
    t = report["totals"]
    assert (
        t["inputTokens"],
        t["outputTokens"],
        t["cacheCreationTokens"],
        t["cacheReadTokens"],
    ) == (600, 250, 75, 70)
    assert t["totalCost"] == pytest.approx(0.12 + 0.34 + 0.56, rel=1e-12)
    assert "claude-opus-4-20250514-fast" in {m for r in report["daily"] for m in r["modelsUsed"]}


def test_claude_4_schema_coverage_does_not_crash(sufd_env: SufdEnv) -> None:
    place_claude(sufd_env, "agentsessions-stage0-claude-small.jsonl")
    report = daily(sufd_env)
    with sufd_env.connect() as conn:
        nonzero = conn.execute(
            "SELECT input, output FROM events"
            " WHERE input + output + cache_write_5m + cache_write_1h + cache_read > 0"
        ).fetchall()
    assert len(nonzero) <= 1
    if nonzero:
        assert nonzero == [(10, 5)]
    assert report["totals"]["inputTokens"] == sum(r[0] for r in nonzero)


def test_all_fixtures_together_reingest_is_idempotent(sufd_env: SufdEnv) -> None:
    for name in [p.name for p in shared_fixture("claude").iterdir()]:
        place_claude(sufd_env, name)
    for name in [p.name for p in shared_fixture("codex").iterdir()]:
        place_codex(sufd_env, name)
    first = daily(sufd_env)
    again = sufd_env.run("ingest", "--json")
    summary = json.loads(again.stdout)
    assert (
        summary["events_new"] == 0
        and summary["events_replaced"] == 0
        and summary["bytes_read"] == 0
    )
    assert "Nothing new" in sufd_env.run("ingest").stdout
    second = json.loads(
        sufd_env.run("ctl", "report", "daily", "--json", "--timezone", "UTC").stdout
    )
    assert first == second


# ccusage's rule as a regular expression: a line where one of these fields is literally null
# is dropped. The parser finds them without one (it cost 8 µs per line); same answer.
_NULL_RULE = re.compile(
    rb'"(?:id|cwd|model|speed|costUSD|version|sessionId|requestId|isApiErrorMessage'
    rb'|cache_read_input_tokens|cache_creation_input_tokens)":null'
)
_NULL_PIECES = st.sampled_from(
    [b'"id":null', b'"ids":null', b'"xid":null', b'\\"id":null', b'"model":null', b'":null',
     b'"cwd":nul', b'"requestId":null', b'"', b"id", b":null", b"{", b"}", b",", b"x", b"\\"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(_NULL_PIECES, max_size=12).map(b"".join))
def test_null_field_check_matches_ccusage_rule(line: bytes) -> None:
    assert _has_null_field(line) == bool(_NULL_RULE.search(line))


@pytest.mark.parametrize(
    ("sidechain", "speed", "flags"),
    [(True, "fast", (True, True, True)), (False, "standard", (False, True, False)),
     (True, None, (True, False, False))],
)  # fmt: skip
def test_every_field_of_a_usage_line_lands_in_its_place(
    tmp_path: Path, sidechain: bool, speed: str | None, flags: tuple[bool, bool, bool]
) -> None:
    """A line whose values all differ, read field by field (the record is built positionally
    for speed; a swap of two fields of one type would pass many totals unnoticed). The flag
    combinations tell each boolean field from the others."""
    usage: dict[str, object] = {
        "input_tokens": 11,
        "output_tokens": 22,
        "cache_creation_input_tokens": 33,
        "cache_read_input_tokens": 44,
        "cache_creation": {"ephemeral_5m_input_tokens": 13, "ephemeral_1h_input_tokens": 20},
    }
    if speed is not None:
        usage["speed"] = speed
    line = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "cwd": "/work/proj",
        "sessionId": "sess-1",
        "version": "2.1.3",
        "message": {"id": "msg_A", "model": "claude-opus-4-6", "usage": usage},
        "requestId": "req_B",
        "costUSD": 0.5,
        "timestamp": "2026-03-04T05:06:07.089Z",
    }
    path = tmp_path / "proj" / "sess-1.jsonl"
    ctx = FileContext(path, tmp_path, {})
    rec = ClaudeCode().parse_line(json.dumps(line, separators=(",", ":")).encode(), 777, ctx)
    assert rec is not None
    want_sidechain, want_has_speed, want_fast = flags
    assert dataclasses.asdict(rec) == {
        "key": "msg_A:req_B",
        "ts_ms": 1772600767089,  # date -ud 2026-03-04T05:06:07.089Z +%s%3N
        "session": "sess-1",
        "project": "/work/proj",
        "model": "claude-opus-4-6-fast" if want_fast else "claude-opus-4-6",
        "price_model": "claude-opus-4-6",
        "pricing": "anthropic",
        "input": 11,
        "output": 22,
        "cache_write_5m": 13,
        "cache_write_1h": 20,
        "cache_read": 44,
        "reasoning": 0,
        "total": 11 + 22 + 13 + 20 + 44,
        "stored_cost": 0.5,
        "fast": want_fast,
        "fallback_model": False,
        "offset": 777,
        "group": "msg_A",
        "sidechain": want_sidechain,
        "has_speed": want_has_speed,
        "extra_output": 0,
        "estimated": False,
    }
