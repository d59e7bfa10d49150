"""Nothing another process or a client does may block the daemon's socket (issue 12).

A lock held on the ledger by another program stalls only the writer thread, which retries;
a client that asks for a catch-up and never reads stalls only its own stream.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tests.daemon_harness import ClaudeSession, Harness, append_lines, wait_until

pytestmark = pytest.mark.integration

HOLD_S = 8.0
_HOLD_LOCK = (
    "import sqlite3, sys, time\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "c.execute('ROLLBACK')\n"
)


def answers_quickly(h: Harness, times: int) -> None:
    for _ in range(times):
        assert h.call("status", timeout=2.0)["pid"]
        assert h.call("ping", timeout=2.0)["pong"] is True
        time.sleep(0.3)


def test_a_write_lock_held_by_another_program_stalls_only_the_writer(harness: Harness) -> None:
    """Another program holds the ledger's write lock for 8 s while an agent writes: the
    socket answers throughout (2 s client timeout), and the event lands once it lets go."""
    h = harness
    session = ClaudeSession()
    h.start()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(h.db), str(HOLD_S)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        line, usage = session.assistant(60, input=10, output=1)
        append_lines(h.claude_file(), session.user(0), line)
        answers_quickly(h, 10)  # about 5 s, inside the lock
        assert not h.has_events([usage]), "written while another program held the lock?"
    finally:
        holder.wait(30)
        assert holder.stdout is not None
        holder.stdout.close()
    wait_until(lambda: h.has_events([usage]), 70, what="the event once the lock was released")


def test_a_catch_up_client_that_never_reads_blocks_nothing(harness: Harness) -> None:
    """``sufd ingest``'s request sent by a client that then reads nothing: the catch-up
    runs, other clients are answered, and what agents write goes on landing."""
    h = harness
    session = ClaudeSession()
    h.start()
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    silent.connect(str(h.socket))
    try:
        silent.sendall(b'{"v":1,"id":"c","cmd":"ingest"}\n')
        for i in range(20):
            line, usage = session.assistant(60 + i, input=10 + i, output=1)
            append_lines(h.claude_file(), *([session.user(0)] if i == 0 else []), line)
            h.call("rescan", timeout=2.0)  # more full scans: more progress the client ignores
            answers_quickly(h, 1)
        wait_until(lambda: h.has_events([usage]), 10, what="the last event")
    finally:
        silent.close()
    answers_quickly(h, 2)
