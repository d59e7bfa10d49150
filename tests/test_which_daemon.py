"""Which daemon am I talking to? (issue 12 item 10)

One daemon per ledger file, refused clearly for a second one whatever its runtime dir;
users without a private runtime dir (no ``XDG_RUNTIME_DIR``) share one fallback directory,
where each ledger's daemon gets a socket of its own; ``sufctl`` only talks to the daemon of
the ledger its own settings name; a broken config is an error (78), never a fallback to
default paths that may lead to another configuration's daemon.

Every daemon is the real ``sufd run`` (:mod:`tests.daemon_harness`). The shared fallback
directory is a private temporary one (``SUFD_SHARED_RUNTIME_DIR``), never the machine's
``/tmp/sufd-UID``: each test checks where the socket resolves before starting anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sufd.daemon.runtime import read_lock_pid
from tests.daemon_harness import (
    ClaudeSession,
    Harness,
    Usage,
    append_lines,
    kill_lock_holders,
    wait_until,
)

pytestmark = pytest.mark.integration

EXIT_OTHER_LEDGER, EXIT_RUNNING, EXIT_CONFIG = 6, 75, 78
BROKEN_TOML = '[sources.codex\nenabled = "no\n'


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Harness]:
    """A second isolated user (HOME, XDG dirs, ledger), independent of ``harness``."""
    h = Harness(tmp_path / "other")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A private stand-in for the shared ``/tmp/sufd-UID`` fallback (0700, short path)."""
    path = Path(tempfile.mkdtemp(prefix="sufd-sh-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sufd_paths(h: Harness) -> dict[str, str]:
    proc = h.run_sufd("paths", "--json")
    assert proc.returncode == 0, proc.stderr
    paths: dict[str, str] = json.loads(proc.stdout)
    return paths


def without_private_runtime_dir(h: Harness, shared: Path) -> None:
    """Make ``h`` a user with no ``XDG_RUNTIME_DIR``, whose fallback is ``shared``."""
    del h.env.env["XDG_RUNTIME_DIR"]
    h.env.env["SUFD_SHARED_RUNTIME_DIR"] = str(shared)
    socket = Path(sufd_paths(h)["socket"])
    # Checked before any daemon starts, so a daemon never touches the machine's /tmp/sufd-UID.
    assert socket.parent == shared, f"the socket resolves to {socket}, not into {shared}"
    h.runtime_dir, h.socket = shared, socket


def claude_usage(h: Harness, session: str = "s1", input: int = 100_000) -> Usage:
    """Append one assistant line with usage to a Claude transcript of ``h``'s HOME."""
    line, usage = ClaudeSession(session).assistant(1.0, input=input, output=50_000)
    append_lines(h.claude_file(session=session), line)
    return usage


def test_two_homes_without_runtime_dir_each_have_their_daemon(
    harness: Harness, other: Harness, shared: Path
) -> None:
    """Two HOMEs that both fall back to the shared runtime dir: each daemon starts, owns a
    socket of its own there and serves its own ledger; sufctl of each reaches its own."""
    a, b = harness, other
    without_private_runtime_dir(a, shared)
    without_private_runtime_dir(b, shared)
    assert a.socket != b.socket, "one socket for two ledgers"

    da, db = a.start(), b.start()
    mine, theirs = claude_usage(a, "sa", 100_000), claude_usage(b, "sb", 200_000)
    wait_until(lambda: a.has_events([mine]), 10.0, what=lambda: a.diagnostics(da))
    wait_until(lambda: b.has_events([theirs]), 10.0, what=lambda: b.diagnostics(db))
    assert list(a.events_in_store()) == [mine]
    assert list(b.events_in_store()) == [theirs]

    for h, d in ((a, da), (b, db)):
        proc = h.ctl("status", "--json")
        assert proc.returncode == 0, proc.stderr
        st = json.loads(proc.stdout)
        assert (st["pid"], st["db"]) == (d.pid, str(h.db))
    assert da.alive() and db.alive()


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    """Another private runtime dir; whatever daemon a failed refusal left there is killed."""
    path = Path(tempfile.mkdtemp(prefix="sufd-t2-", dir="/tmp"))
    try:
        yield path
    finally:
        kill_lock_holders(path / "sufd.lock")
        shutil.rmtree(path, ignore_errors=True)


def refused_message(h: Harness, pid: int) -> str:
    return f"sufd is already running for the ledger {h.db} (pid {pid}"


def test_second_daemon_on_a_ledger_is_refused_with_75(harness: Harness) -> None:
    """A second ``sufd run`` of the same configuration: 75, naming the pid and the ledger."""
    h = harness
    first = h.start()
    proc = h.run_sufd("run", "--foreground")
    assert proc.returncode == EXIT_RUNNING, proc.stderr
    assert refused_message(h, first.pid) in proc.stderr, proc.stderr
    assert first.alive() and h.call("hello")["pid"] == first.pid


def test_another_runtime_dir_is_not_another_daemon_of_the_ledger(
    harness: Harness, elsewhere: Path
) -> None:
    """The lock belongs to the ledger: a daemon given another runtime dir (another socket)
    is refused all the same while one serves the ledger."""
    h = harness
    first = h.start()
    second = h.spawn(env={"SUFD_RUNTIME_DIR": str(elsewhere)})
    try:
        rc = second.proc.wait(10)
    except subprocess.TimeoutExpired:
        h.fail("a second daemon runs on the same ledger", second)
    assert rc == EXIT_RUNNING, second.output()
    assert refused_message(h, first.pid) in second.output()
    assert first.alive() and read_lock_pid(h.lock) == first.pid


def test_second_run_daemon_is_refused_before_detaching(harness: Harness, elsewhere: Path) -> None:
    """``sufd run --daemon`` while a daemon serves the ledger (through the same socket or
    another): exit 75 with the message on the terminal, not a silent 0."""
    h = harness
    first = h.start()
    try:
        for env in ((), (("SUFD_RUNTIME_DIR", str(elsewhere)),)):
            detached = h.run_detached(dict(env))
            assert detached.returncode == EXIT_RUNNING, (
                f"sufd run --daemon {env}: exit {detached.returncode}: {detached.stderr!r}"
            )
            assert refused_message(h, first.pid) in detached.stderr, detached.stderr
        assert first.alive() and h.call("hello")["pid"] == first.pid
        assert read_lock_pid(h.lock) == first.pid
        assert not (elsewhere / "sufd.lock").exists()
    except AssertionError:
        # Code that detaches before locking leaves a child behind, which takes the lock once
        # `first` is gone: stop `first` now and kill that child, not to leak a daemon.
        h.kill(first)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: read_lock_pid(h.lock) not in (None, first.pid), 10.0)
        kill_lock_holders(h.lock)
        raise


def test_reload_with_a_broken_config_exits_78_and_reloads_nothing(
    harness: Harness, other: Harness
) -> None:
    """Another HOME shares this one's runtime dir (its config names a runtime dir of its
    own). Its broken config must not make ``sufctl reload`` fall back to the default paths,
    which lead to this daemon: exit 78 naming the file, and no daemon reloads."""
    a, b = harness, other
    b.env.env["XDG_RUNTIME_DIR"] = str(a.short)
    b.write_config(f'[paths]\nruntime_dir = "{b.runtime_dir}"\n')
    da, db = a.start(), b.start()

    b.write_config(BROKEN_TOML)
    proc = b.ctl("reload")
    assert proc.returncode == EXIT_CONFIG, f"exit {proc.returncode}: {proc.stdout}{proc.stderr}"
    assert str(b.config_file) in proc.stderr and "invalid TOML" in proc.stderr, proc.stderr
    assert "reloaded" not in proc.stdout

    for name in ("status", "report"):
        args = ("report", "daily") if name == "report" else (name,)
        assert b.ctl(*args).returncode == EXIT_CONFIG, name

    # Control: a reload that does happen is in the log (so "none" above means none).
    assert a.ctl("reload").returncode == 0
    wait_until(lambda: a.log_events("config.reloaded"), 5.0, what="a's own reload logged")
    assert len(a.log_events("config.reloaded")) == 1, "the broken config reloaded this daemon"
    assert b.log_events("config.reloaded") == []
    assert da.alive() and db.alive()


def test_status_shows_the_ledger_path(harness: Harness) -> None:
    """``sufctl status`` names the ledger the daemon serves, in the table and in JSON."""
    h = harness
    d = h.start()
    table = h.ctl("status")
    assert table.returncode == 0, table.stderr
    assert f"ledger      {h.db}" in table.stdout.splitlines(), table.stdout
    st = json.loads(h.ctl("status", "--json").stdout)
    assert (st["pid"], st["db"]) == (d.pid, str(h.db))


def test_sufctl_refuses_the_daemon_of_another_ledger(harness: Harness, other: Harness) -> None:
    """Another HOME whose socket resolves to where this daemon listens: sufctl says that
    daemon serves another ledger (exit 6, nothing sent), ``sufd run`` and ``sufd start`` of
    that HOME name the daemon holding the socket (75), and its status line is not ours."""
    a, b = harness, other
    b.env.env["XDG_RUNTIME_DIR"] = str(a.short)
    assert Path(sufd_paths(b)["socket"]) == a.socket
    da = a.start()
    usage = claude_usage(a, "s1")
    wait_until(lambda: a.has_events([usage]), 10.0, what=lambda: a.diagnostics(da))

    for args in (("status",), ("ping",), ("reload",), ("rescan",)):
        proc = b.ctl(*args)
        assert proc.returncode == EXIT_OTHER_LEDGER, f"{args}: {proc.returncode} {proc.stderr}"
        assert f"serves the ledger {a.db}, not {b.db}" in proc.stderr, proc.stderr
    as_json = json.loads(b.ctl("status", "--json").stdout)
    assert as_json["state"] == "other-ledger" and as_json["daemon_db"] == str(a.db)
    assert a.log_events("config.reloaded") == [], "sufctl reloaded the daemon of another ledger"

    try:
        run = b.run_sufd("run", "--foreground")
        assert run.returncode == EXIT_RUNNING, run.stderr
        assert f"is in use by another sufd (pid {da.pid}, serving the ledger {a.db})" in run.stderr
        start = b.run_sufd("start")
        assert start.returncode == EXIT_RUNNING, f"{start.stdout}{start.stderr}"
        assert f"serves the ledger {a.db}, not {b.db}" in start.stderr, start.stderr
    finally:
        kill_lock_holders(Path(os.path.realpath(b.db) + ".lock"))
    assert da.alive() and a.call("hello")["pid"] == da.pid

    status_json = json.dumps({"session_id": "s1", "model": {"display_name": "Sonnet"}})
    for h, expected in ((a, "sufd · Sonnet · session $1.05"), (b, "sufd · no ledger yet")):
        line = subprocess.run(
            [sys.executable, "-m", "sufd.cli.statusline"],
            env=h.user_env(),
            input=status_json,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert line.startswith(expected), f"{h.home}: {line!r}"
