"""Codex source: the real samples ingest to the totals in SOURCES.md.

The expected numbers come from ../shared/fixtures/real/SOURCES.md (checked there against
ccusage 20.0.24 and by hand), not from sufd's own output.
"""

from __future__ import annotations

import pytest

from tests.conftest import SufdEnv
from tests.real_fixtures import by_model, daily, place_codex

pytestmark = pytest.mark.integration


def test_codex_5_info_null_and_model_from_turn_context(sufd_env: SufdEnv) -> None:
    place_codex(sufd_env, "agentsessions-stage0-codex-small.jsonl")
    report = daily(sufd_env)
    models = by_model(report)
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
    place_codex(sufd_env, "agentsessions-stage0-codex-large.jsonl")
    report = daily(sufd_env)
    ((key, b),) = by_model(report).items()
    assert key[1] == "gpt-5.2"
    assert (
        b["inputTokens"],
        b["cacheReadTokens"],
        b["outputTokens"],
        b["reasoningTokens"],
        b["totalTokens"],
    ) == (1211, 10880, 182, 128, 12273)


def test_codex_7_fallback_model(sufd_env: SufdEnv) -> None:
    place_codex(sufd_env, "agentsessions-codex_053_rate_limit.jsonl")
    report = daily(sufd_env)
    ((key, b),) = by_model(report).items()
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
    place_codex(sufd_env, "ccusage-session-alpha.jsonl")
    report = daily(sufd_env)
    models = by_model(report)
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
