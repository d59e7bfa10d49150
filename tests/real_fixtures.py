"""Placing the real sample logs of ../shared/fixtures/real in an isolated HOME."""

from __future__ import annotations

import json
import shutil

from tests.conftest import SufdEnv, shared_fixture


def place_claude(env: SufdEnv, name: str) -> None:
    dest = env.home / ".claude" / "projects" / "sample-project"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixture("claude", name), dest / name)


def place_codex(env: SufdEnv, name: str) -> None:
    dest = env.home / ".codex" / "sessions" / "2026" / "01" / "01"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixture("codex", name), dest / name)


def daily(env: SufdEnv) -> dict:
    env.run("ingest")
    return json.loads(env.run("ctl", "report", "daily", "--json", "--timezone", "UTC").stdout)


def by_model(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["period"], b["modelName"]): b for r in report["daily"] for b in r["modelBreakdowns"]}
