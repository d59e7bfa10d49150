"""Every report says how fresh it is (issue 12 item 4).

Reports read the ledger, which is only as complete as what was ingested. With the daemon
stopped while agents write, or during the daemon's first catch-up, a report's numbers are
partial; the JSON says so in ``freshness`` and the table prints one footer line, only then.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.daemon_harness import (
    ClaudeSession,
    Harness,
    append_lines,
    wait_until,
)

pytestmark = pytest.mark.integration

FOOTER = "Incomplete:"


def report(harness: Harness, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = harness.ctl("report", "daily", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_stopped_daemon_and_changed_sources_are_said(harness: Harness) -> None:
    """Issue 12 item 4: the daemon is stopped and an agent wrote since: the report says
    its numbers are incomplete (table footer and JSON); after ``sufd ingest`` it does not."""
    session = ClaudeSession()
    path = harness.claude_file()
    line, _ = session.assistant(60, input=100, output=10)
    append_lines(path, session.user(0), line)
    assert harness.run_sufd("ingest").returncode == 0

    fresh = json.loads(report(harness, "--json").stdout)["freshness"]
    assert fresh["daemon"] == "not-running"
    assert fresh["sourcesChangedSinceLastCommit"] is False
    assert fresh["complete"] is True
    assert fresh["lastCommit"] is not None
    assert FOOTER not in report(harness).stdout  # nothing is off: no footer

    time.sleep(0.05)  # the write below must be later than the ledger's last commit
    later, _ = session.assistant(120, input=5, output=5)
    append_lines(path, later)
    fresh = json.loads(report(harness, "--json").stdout)["freshness"]
    assert fresh["daemon"] == "not-running"
    assert fresh["sourcesChangedSinceLastCommit"] is True
    assert fresh["complete"] is False
    table = report(harness).stdout
    footer = [ln for ln in table.splitlines() if ln.startswith(FOOTER)]
    assert len(footer) == 1 and "not running" in footer[0], table

    # A new file the ledger has never seen counts as a change too.
    assert harness.run_sufd("ingest").returncode == 0
    assert FOOTER not in report(harness).stdout
    other = ClaudeSession("s2")
    new_line, _ = other.assistant(60, input=1, output=1)
    append_lines(harness.claude_file(session="s2"), new_line)
    assert json.loads(report(harness, "--json").stdout)["freshness"]["complete"] is False


def test_running_daemon_is_fresh(harness: Harness) -> None:
    """Issue 12 item 4: a running, caught-up daemon means a complete report, no footer."""
    session = ClaudeSession()
    line, _ = session.assistant(60, input=100, output=10)
    append_lines(harness.claude_file(), session.user(0), line)
    daemon = harness.start()
    fresh = json.loads(report(harness, "--json").stdout)["freshness"]
    assert fresh["daemon"] == "running" and fresh["daemonPid"] == daemon.pid
    assert fresh["catchingUp"] is None and fresh["complete"] is True
    assert FOOTER not in report(harness).stdout


def test_first_catch_up_is_said_with_files_done_of_total(harness: Harness) -> None:
    """Issue 12 item 4: while the daemon's first catch-up runs, reports say how far it is
    (files done of the total) and that their numbers are incomplete."""
    files = 1500
    for i in range(files):
        session = ClaudeSession(f"s{i}")
        lines = [session.user(0)]
        lines += [session.assistant(60 + k, input=1, output=2)[0] for k in range(20)]
        append_lines(harness.claude_file(project=f"-p{i % 40}", session=f"s{i}"), *lines)
    harness.start(settle=False)
    seen: list[dict[str, int]] = []
    tables: list[str] = []

    def finished() -> bool:
        fresh = json.loads(report(harness, "--json").stdout)["freshness"]
        if fresh["catchingUp"] is None:
            return True
        seen.append(fresh["catchingUp"])
        assert fresh["complete"] is False
        if len(tables) < 2:
            tables.append(report(harness).stdout)
        return False

    wait_until(finished, 60, interval=0.0, what="the first catch-up")
    assert seen, "no report saw the catch-up (it finished before the first report)"
    assert all(s["filesTotal"] in (files, None) for s in seen), seen
    assert any(s["filesTotal"] == files and 0 <= s["filesDone"] < files for s in seen), seen
    assert tables and all(
        sum(ln.startswith(FOOTER) for ln in t.splitlines()) == 1 for t in tables
    ), tables
    assert any(f"of {files:,} files" in t for t in tables), tables
    final = json.loads(report(harness, "--json").stdout)
    assert final["freshness"]["complete"] is True
    assert final["totals"]["events"] == files * 20
