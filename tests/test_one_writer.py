"""One ledger, one writer: no other process or client may make the daemon lose a commit.

Issue 12, items 1-3: another program opening and closing the ledger must never take the
daemon's locks or its write-ahead log away (item 1); ``sufd ingest`` asks a running daemon
to catch up instead of writing beside it (item 2); a daemon creates its ledger at start, and
reports on an empty ledger are empty, not errors (item 3).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sufd.errors import ControlError
from tests.daemon_harness import (
    ClaudeSession,
    Harness,
    append_lines,
    totals_of,
    wait_until,
)

pytestmark = pytest.mark.integration


def deleted_journals(pid: int, db: Path) -> list[str]:
    """The ledger's journals the process ``pid`` holds open although they were deleted."""
    out = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(db)) and target.endswith("(deleted)"):
            out.append(target)
    return out


def plain_reader(db: Path) -> None:
    """What the ``sqlite3`` shell or a backup script does: a read-write open, a read, a close.

    The close is what deletes the WAL when it believes it is the last connection.
    """
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('SELECT count(*) FROM events').fetchall()\n"
        "c.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=30)


def test_other_processes_never_take_the_daemons_wal(harness: Harness) -> None:
    """Issue 12 item 1: after other programs open and close the ledger (and the daemon's
    heartbeat has checked the file), the daemon still holds its WAL: a new event is in
    reports at once and survives a SIGKILL although its source file is deleted."""
    session = ClaudeSession()
    path = harness.claude_file()
    first, u1 = session.assistant(60, input=100, output=10)
    append_lines(path, session.user(0), first)
    daemon = harness.start()
    wait_until(lambda: harness.has_events([u1]), what="the first event")
    # Several heartbeats (1 s each) check the ledger file while readers come and go.
    for _ in range(3):
        plain_reader(harness.db)
        time.sleep(1.2)
    assert deleted_journals(daemon.pid, harness.db) == [], "the daemon's WAL was deleted"

    line, u2 = session.assistant(120, input=200, output=20)
    append_lines(path, line)
    wait_until(lambda: totals_of([u1, u2]) == _report_totals(harness), what="u2 in reports")
    path.unlink()  # nothing can be recovered by reading the source again
    harness.kill(daemon)
    assert sorted(harness.events_in_store().elements()) == sorted([u1, u2])
    conn = sqlite3.connect(harness.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def _report_totals(harness: Harness) -> dict[str, int] | None:
    proc = harness.ctl("report", "daily", "--json")
    if proc.returncode != 0:
        return None
    totals = json.loads(proc.stdout)["totals"]
    return {k: int(totals[k]) for k in totals_of([])}


def test_sufd_ingest_asks_the_running_daemon(harness: Harness) -> None:
    """Issue 12 item 2: with the daemon running, ``sufd ingest`` has the daemon (the one
    writer) catch up, and prints the same summary and exit code as a local run."""
    session = ClaudeSession()
    path = harness.claude_file()
    first, u1 = session.assistant(60, input=100, output=10)
    append_lines(path, session.user(0), first)
    # Without live watching, only a scan reads what is appended below.
    daemon = harness.start("--no-watcher")
    wait_until(lambda: harness.has_events([u1]), what="the first event")
    before = harness.status()["since_start"]["events"]
    written = [session.assistant(120 + i, input=10 + i, output=1) for i in range(3)]
    append_lines(path, *(line for line, _ in written))

    proc = harness.run_sufd("ingest")
    assert proc.returncode == 0, proc.stderr
    assert "3 new events" in proc.stdout, proc.stdout
    assert f"by the running daemon, pid {daemon.pid}" in proc.stdout
    # The daemon wrote them (its own count moved), and nothing was written twice.
    assert harness.status()["since_start"]["events"] == before + 3
    assert sorted(harness.events_in_store().elements()) == sorted([u1, *(u for _, u in written)])

    more, u5 = session.assistant(200, input=7, output=7)
    append_lines(path, more)
    proc = harness.run_sufd("ingest", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["events_new"] == 1
    assert summary["files"] == 1
    assert harness.status()["since_start"]["events"] == before + 4
    assert u5 in harness.events_in_store()


def test_sufd_ingest_writes_itself_without_a_daemon(harness: Harness) -> None:
    """Issue 12 item 2: with no daemon, ``sufd ingest`` writes the ledger as before."""
    session = ClaudeSession()
    line, u1 = session.assistant(60, input=100, output=10)
    append_lines(harness.claude_file(), session.user(0), line)
    proc = harness.run_sufd("ingest")
    assert proc.returncode == 0, proc.stderr
    assert "1 new events" in proc.stdout and "daemon" not in proc.stdout
    assert list(harness.events_in_store().elements()) == [u1]


def test_a_running_daemon_has_a_ledger_and_reports_are_empty(harness: Harness) -> None:
    """Issue 12 item 3: ``sufd run --daemon`` on a machine with no agent history: once it
    returns, the daemon has created the ledger and reports print an empty report (exit 0)."""
    proc = harness.run_detached(timeout=60)
    try:
        assert proc.returncode == 0, proc.stderr
        table = harness.ctl("report", "daily")
        assert table.returncode == 0, table.stderr
        assert "No usage recorded" in table.stdout
        as_json = harness.ctl("report", "daily", "--json")
        assert as_json.returncode == 0, as_json.stderr
        data = json.loads(as_json.stdout)
        assert data["daily"] == [] and data["totals"]["events"] == 0
        assert data["freshness"]["daemon"] == "running"
        assert harness.db.exists()
    finally:
        pid = wait_until(lambda: _ping(harness), 10, what="the detached daemon")
        harness.call("shutdown")
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, what="the daemon to stop")


def test_report_on_a_missing_ledger_while_the_daemon_serves_it(harness: Harness) -> None:
    """Issue 12 item 3: a daemon that could not create its ledger yet (here: removed under
    it, before it notices) still means an empty report, not "run sufd ingest"."""
    harness.start()
    # The ledger's directory is replaced by a file: the daemon cannot put the ledger back.
    data_dir = harness.db.parent
    for p in data_dir.iterdir():
        p.unlink()
    data_dir.rmdir()
    data_dir.write_text("not a directory")
    try:
        proc = harness.ctl("report", "daily", "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["daily"] == [] and report["freshness"]["daemon"] == "running"
    finally:
        data_dir.unlink()


def _ping(harness: Harness) -> int | None:
    try:
        return int(harness.call("ping")["pid"])
    except ControlError:
        return None
