"""Acceptance test for "exact against ccusage": sufd's daily report equals ccusage's.

A generated corpus with every trap (tests/corpus.py) is ingested by ``sufd ingest`` in an isolated
home; ``sufctl report daily --json --timezone ZONE`` must then equal
``ccusage daily --json --offline --timezone ZONE`` (the pinned release, see tests/ccusage.py) for
UTC, America/Los_Angeles (the corpus spans its DST switch) and Asia/Kathmandu (+05:45): the same
days, the same models per day, the four token classes and totalTokens exactly, costs to 1e-9.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest

from tests.ccusage import run_ccusage
from tests.conftest import SufdEnv, make_env
from tests.corpus import TRAP_NAMES, CorpusSpec, CorpusStats, generate

pytestmark = pytest.mark.integration

ZONES = ("UTC", "America/Los_Angeles", "Asia/Kathmandu")
# ~7 MB (3.5 MB of it the huge tool_result line): every trap, every day (15 Claude sessions, 10 of
# them spread one per day), a few seconds to ingest.
SPEC = CorpusSpec(
    seed=20260308,
    claude_sessions=15,
    codex_sessions=8,
    turns_per_session=(3, 12),
    content_scale=0.4,
)
TOKENS = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[SufdEnv, CorpusStats]:
    """The corpus, written into an isolated home and ingested once by sufd."""
    env = make_env(tmp_path_factory.mktemp("parity"))
    stats = generate(env.home, SPEC)
    env.run("ingest")
    return env, stats


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _compare_models(day: str, want: list[dict[str, Any]], got: list[dict[str, Any]]) -> list[str]:
    problems = []
    want_by = {m["modelName"]: m for m in want}
    got_by = {m["modelName"]: m for m in got}
    if len(got_by) != len(got):
        problems.append(f"{day}: a model is listed twice in {sorted(m['modelName'] for m in got)}")
    if set(want_by) != set(got_by):
        problems.append(
            f"{day}: models differ: only ccusage {sorted(set(want_by) - set(got_by))}, "
            f"only sufd {sorted(set(got_by) - set(want_by))}"
        )
    for name in sorted(set(want_by) & set(got_by)):
        w, g = want_by[name], got_by[name]
        for key in TOKENS:
            if w[key] != g.get(key):
                problems.append(f"{day} {name} {key}: ccusage {w[key]}, sufd {g.get(key)}")
        if not _close(w["cost"], g.get("cost", math.nan)):
            problems.append(f"{day} {name} cost: ccusage {w['cost']!r}, sufd {g.get('cost')!r}")
    return problems


def compare_daily(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Every difference between two ``daily --json`` reports that matters for parity."""
    problems = []
    want_days = {row["period"]: row for row in want["daily"]}
    got_days = {row["period"]: row for row in got["daily"]}
    if set(want_days) != set(got_days):
        problems.append(
            f"days differ: only ccusage {sorted(set(want_days) - set(got_days))}, "
            f"only sufd {sorted(set(got_days) - set(want_days))}"
        )
    for day in sorted(set(want_days) & set(got_days)):
        w, g = want_days[day], got_days[day]
        for key in (*TOKENS, "totalTokens"):
            if w[key] != g.get(key):
                problems.append(f"{day} {key}: ccusage {w[key]}, sufd {g.get(key)}")
        if not _close(w["totalCost"], g.get("totalCost", math.nan)):
            problems.append(
                f"{day} totalCost: ccusage {w['totalCost']!r}, sufd {g.get('totalCost')!r}"
            )
        if sorted(w["modelsUsed"]) != sorted(g.get("modelsUsed", [])):
            problems.append(
                f"{day} modelsUsed: ccusage {w['modelsUsed']}, sufd {g.get('modelsUsed')}"
            )
        problems += _compare_models(day, w["modelBreakdowns"], g.get("modelBreakdowns", []))
    for key in (*TOKENS, "totalTokens"):
        if want["totals"][key] != got.get("totals", {}).get(key):
            problems.append(
                f"totals {key}: ccusage {want['totals'][key]}, sufd {got.get('totals')}"
            )
    if not _close(want["totals"]["totalCost"], got.get("totals", {}).get("totalCost", math.nan)):
        problems.append(
            f"totals totalCost: ccusage {want['totals']['totalCost']!r}, sufd {got.get('totals')}"
        )
    return problems


def test_corpus_contains_every_trap(ingested: tuple[SufdEnv, CorpusStats]) -> None:
    _, stats = ingested
    assert [name for name in TRAP_NAMES if stats.traps[name] < 1] == []


def test_ccusage_sees_every_day(ingested: tuple[SufdEnv, CorpusStats]) -> None:
    """Guards the corpus, not sufd: ccusage must accept it and find usage on every day."""
    env, _ = ingested
    report = run_ccusage(env.home, "daily", "--timezone", "UTC")
    days = {row["period"]: row for row in report["daily"]}
    span = [(SPEC.start + timedelta(days=d)).date().isoformat() for d in range(SPEC.days)]
    assert [d for d in span if d not in days or days[d]["totalTokens"] <= 0] == []
    assert {a for row in report["daily"] for a in row["metadata"]["agents"]} == {"claude", "codex"}
    assert report["totals"]["totalCost"] > 0


@pytest.mark.parametrize("zone", ZONES)
def test_daily_report_equals_ccusage(ingested: tuple[SufdEnv, CorpusStats], zone: str) -> None:
    env, _ = ingested
    want = run_ccusage(env.home, "daily", "--timezone", zone)
    got = json.loads(env.run("ctl", "report", "daily", "--json", "--timezone", zone).stdout)
    problems = compare_daily(want, got)
    assert not problems, f"{len(problems)} differences in {zone}:\n" + "\n".join(problems[:60])
