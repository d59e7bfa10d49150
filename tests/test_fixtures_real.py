"""Every real Claude Code and Codex sample ingests to the totals listed in SOURCES.md.

The expected numbers come from ../shared/fixtures/real/SOURCES.md (checked there against
ccusage 20.0.24 and by hand), not from sufd's own output.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import SufdEnv, shared_fixture

pytestmark = pytest.mark.integration


def _place_claude(env: SufdEnv, name: str) -> None:
    dest = env.home / ".claude" / "projects" / "sample-project"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixture("claude", name), dest / name)


def _place_codex(env: SufdEnv, name: str) -> None:
    dest = env.home / ".codex" / "sessions" / "2026" / "01" / "01"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixture("codex", name), dest / name)


def _daily(env: SufdEnv) -> dict:
    env.run("ingest")
    return json.loads(env.run("ctl", "report", "daily", "--json", "--timezone", "UTC").stdout)


def _models(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["period"], b["modelName"]): b for r in report["daily"] for b in r["modelBreakdowns"]}


def test_claude_1_streamed_lines_max_total_wins(sufd_env: SufdEnv) -> None:
    _place_claude(sufd_env, "dkimuson-1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl")
    report = _daily(sufd_env)
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
    _place_claude(sufd_env, "dkimuson-5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl")
    report = _daily(sufd_env)
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
    _place_claude(sufd_env, "ccusage-project-alpha-session-alpha-chat.jsonl")
    report = _daily(sufd_env)
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
    _place_claude(sufd_env, "agentsessions-stage0-claude-small.jsonl")
    report = _daily(sufd_env)
    with sufd_env.connect() as conn:
        nonzero = conn.execute(
            "SELECT input, output FROM events"
            " WHERE input + output + cache_write_5m + cache_write_1h + cache_read > 0"
        ).fetchall()
    assert len(nonzero) <= 1
    if nonzero:
        assert nonzero == [(10, 5)]
    assert report["totals"]["inputTokens"] == sum(r[0] for r in nonzero)


def test_codex_5_info_null_and_model_from_turn_context(sufd_env: SufdEnv) -> None:
    _place_codex(sufd_env, "agentsessions-stage0-codex-small.jsonl")
    report = _daily(sufd_env)
    models = _models(report)
    assert list(models) == [("2026-08-03", "gpt-5.6-luna")]
    b = models[("2026-08-03", "gpt-5.6-luna")]
    assert (b["inputTokens"], b["cacheReadTokens"], b["outputTokens"], b["reasoningTokens"]) == (
        12757,
        3584,
        81,
        63,
    )
    assert b["totalTokens"] == 16422
    assert b["events"] == 1
    with sufd_env.connect() as conn:
        (ts,) = conn.execute("SELECT ts FROM events").fetchone()
    assert ts == 1785754136000  # 2026-08-03T10:48:56Z


def test_codex_6_one_event(sufd_env: SufdEnv) -> None:
    _place_codex(sufd_env, "agentsessions-stage0-codex-large.jsonl")
    report = _daily(sufd_env)
    ((key, b),) = _models(report).items()
    assert key[1] == "gpt-5.2"
    assert (
        b["inputTokens"],
        b["cacheReadTokens"],
        b["outputTokens"],
        b["reasoningTokens"],
        b["totalTokens"],
    ) == (1211, 10880, 182, 128, 12273)


def test_codex_7_fallback_model(sufd_env: SufdEnv) -> None:
    _place_codex(sufd_env, "agentsessions-codex_053_rate_limit.jsonl")
    report = _daily(sufd_env)
    ((key, b),) = _models(report).items()
    assert key[1] == "gpt-5"
    assert (b["inputTokens"], b["cacheReadTokens"], b["outputTokens"], b["totalTokens"]) == (
        1211,
        10880,
        182,
        12273,
    )
    with sufd_env.connect() as conn:
        assert conn.execute("SELECT fallback_model FROM events").fetchall() == [(1,)]


def test_codex_8_two_days_two_models(sufd_env: SufdEnv) -> None:
    _place_codex(sufd_env, "ccusage-session-alpha.jsonl")
    report = _daily(sufd_env)
    models = _models(report)
    assert sorted(models) == [("2026-05-13", "gpt-5.2-codex"), ("2026-05-14", "gpt-5.3-codex")]
    a, b = models[("2026-05-13", "gpt-5.2-codex")], models[("2026-05-14", "gpt-5.3-codex")]
    assert (
        a["inputTokens"] + a["cacheReadTokens"],
        a["cacheReadTokens"],
        a["outputTokens"],
        a["reasoningTokens"],
        a["totalTokens"],
    ) == (1000, 250, 125, 75, 1200)
    assert (
        b["inputTokens"] + b["cacheReadTokens"],
        b["cacheReadTokens"],
        b["outputTokens"],
        b["reasoningTokens"],
        b["totalTokens"],
    ) == (2500, 500, 300, 200, 3000)
    # 1.75 / 0.175 / 14 USD per Mtok (SOURCES.md #8): 0.00310625 + 0.0077875
    assert a["cost"] == pytest.approx(0.00310625, rel=1e-9)
    assert b["cost"] == pytest.approx(0.0077875, rel=1e-9)
    assert report["totals"]["totalCost"] == pytest.approx(0.01089375, rel=1e-9)


def test_all_fixtures_together_reingest_is_idempotent(sufd_env: SufdEnv) -> None:
    for name in [p.name for p in shared_fixture("claude").iterdir()]:
        _place_claude(sufd_env, name)
    for name in [p.name for p in shared_fixture("codex").iterdir()]:
        _place_codex(sufd_env, name)
    first = _daily(sufd_env)
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
