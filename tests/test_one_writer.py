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

from tests.daemon_harness import (
    ClaudeSession,
    Harness,
    Usage,
    append_lines,
    harness_fixture,
    totals_of,
    wait_until,
)

__all__ = ["harness_fixture"]

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


def store_events(db: Path) -> list[Usage]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT source, ts, input, output, cache_write_5m + cache_write_1h, cache_read,"
            " reasoning, total FROM events"
        ).fetchall()
    finally:
        conn.close()
    return [Usage(*row) for row in rows]


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
    assert sorted(store_events(harness.db)) == sorted([u1, u2])
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
