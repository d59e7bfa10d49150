"""Placing the real sample logs of ../shared/fixtures/real in an isolated HOME."""

from __future__ import annotations

import json
import shutil
from typing import Any

from tests.conftest import SufdEnv, shared_fixture


def place_claude(env: SufdEnv, name: str) -> None:
    dest = env.home / ".claude" / "projects" / "sample-project"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixture("claude", name), dest / name)


def place_codex(env: SufdEnv, name: str) -> None:
    dest = env.home / ".codex" / "sessions" / "2026" / "01" / "01"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixture("codex", name), dest / name)


def daily(env: SufdEnv) -> dict[str, Any]:
    env.run("ingest")
    report: dict[str, Any] = json.loads(
        env.run("ctl", "report", "daily", "--json", "--timezone", "UTC").stdout
    )
    return report


def by_model(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["period"], b["modelName"]): b for r in report["daily"] for b in r["modelBreakdowns"]}
