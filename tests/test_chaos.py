"""Reliability under crashes: whatever happens, the ledger ends up equal to the source files.

The real daemon is SIGKILLed over and over (at start-up and ledger migration, during the
catch-up of a large backlog, during a large ingest, while watching, right after pause/resume
commands) while writers append to Claude Code and Codex files, truncate, replace and rewrite
them, and rewrite Cline tasks and a Cursor database (:mod:`tests.chaos.harness`). The ledger
it ends with must equal a one-shot ``sufd ingest`` of the final files, event by event
(:mod:`tests.chaos.ledger_compare`). A daemon patched to commit the cursor before the events
must fail the same check: the harness can fail.

The long mode is ``python -m benchmarks.crash_bench --kills 1000``.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.chaos.harness import (
    SCENARIOS,
    TailFollower,
    Workload,
    build_plan,
    run_crash_campaign,
    schedule,
    write_cursor_first_patch,
)
from tests.corpus import CorpusSpec, generate, generate_to_size
from tests.daemon_harness import Harness, wait_until

pytestmark = pytest.mark.integration

CI_SEED = 20260
CI_KILLS = 60


def test_crash_campaign_ci(tmp_path: Path) -> None:
    """50 SIGKILLs in under 3 minutes on 2 cores; nothing lost, nothing counted twice."""
    started = time.monotonic()
    report = run_crash_campaign(tmp_path, CI_KILLS, CI_SEED, corpus_mb=36, backlog_mb=12)
    print(report.summary())
    assert not report.failures, "\n\n".join(report.failures[:3])
    assert report.writer["problems"] == []
    assert report.kills == CI_KILLS >= 50
    assert report.restarts >= CI_KILLS
    assert set(report.scenarios) == set(SCENARIOS), report.scenarios
    assert report.ledger_at_kill["created, not migrated"] >= 1, report.ledger_at_kill
    assert report.final["exit_code"] == 0
    assert report.reference["errors"] == []
    assert report.events_compared > 1_000
    assert {"claude", "codex"} <= set(report.comparison.by_source)
    assert report.mismatches == 0, report.summary()
    assert report.ok
    assert time.monotonic() - started < 180, f"took {time.monotonic() - started:.0f} s"


def test_crash_campaign_catches_cursor_committed_before_events(tmp_path: Path) -> None:
    """The same campaign against a daemon whose commit moves the cursor in a transaction of its
    own before the events (``sitecustomize`` on its PYTHONPATH): events are lost, and the
    comparison says so."""
    started = time.monotonic()
    patch = write_cursor_first_patch(tmp_path / "patch", delay_s=0.05)
    report = run_crash_campaign(
        tmp_path / "run",
        12,
        CI_SEED,
        corpus_mb=12,
        backlog_mb=4,
        daemon_pythonpath=[patch.parent],
    )
    print(report.summary())
    assert report.patched
    assert report.kills == 12 and not report.failures
    assert report.events_compared > 300
    assert report.mismatches > 0
    assert report.comparison.by_kind["event.missing"] > 0
    assert not report.ok
    assert time.monotonic() - started < 120


def test_plan_and_schedule_are_functions_of_the_seed(tmp_path: Path) -> None:
    """Same seed, same writes and kills; and applying every write leaves exactly the staging
    bytes (truncations are rewritten identically, replacements only add)."""
    staging = tmp_path / "staging"
    generate(staging, CorpusSpec(seed=5, claude_sessions=4, codex_sessions=3, content_scale=0.2))
    plans = [build_plan(staging, tmp_path / f"home{i}", random.Random("5:plan")) for i in (1, 2)]
    assert plans[0].ops == plans[1].ops
    kinds = {op.kind for op in plans[0].ops}
    assert {"append", "truncate", "replace", "rewrite"} <= kinds
    assert schedule(50, 7, 2) == schedule(50, 7, 2) != schedule(50, 8, 2)
    workload = Workload(plans[0], staging, tmp_path / "home1")
    while not workload.done:
        workload.step()
    workload.close()
    assert workload.verify() == []


def test_what_tail_announced_survives_a_kill(tmp_path: Path) -> None:
    """``sufctl tail`` streams events "as the daemon commits them": every event it announced
    must be in the ledger after a SIGKILL. Killed a few milliseconds after its start-up
    catch-up announced its first events, the daemon must have committed them."""
    staging = tmp_path / "staging"
    generate_to_size(staging, 20_000_000, seed=11)
    h = Harness(tmp_path / "daemon")
    tail = TailFollower()
    try:
        shutil.copytree(staging, h.home, dirs_exist_ok=True)
        d = h.start(settle=False)
        tail.follow(h.socket, d.pid)
        wait_until(lambda: tail.events, 30, interval=0.002, what="the first announced events")
        h.kill(d)
        tail.close()
        announced = {(source, key) for _, source, key, replaced in tail.events if not replaced}
        conn = sqlite3.connect(h.db)  # recovers the WAL as the next daemon would
        try:
            stored = set(conn.execute("SELECT source, key FROM events"))
        finally:
            conn.close()
    finally:
        h.close()
    lost = announced - stored
    assert announced and not lost, f"{len(lost)} of {len(announced)} announced events lost"
