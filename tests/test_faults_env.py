"""Faults of the daemon's surroundings, injected into the real daemon (issue 6, item 2).

Each test runs ``sufd run --foreground`` (:mod:`tests.daemon_harness`) on a temp HOME, breaks
something around it for real (permissions, directories removed, a named pipe, a file grown by
a gigabyte, the wall clock moved), and asserts the documented outcome: the daemon stays up,
says what is wrong in ``sufctl status`` and in a stable log event, keeps ingesting what it
can, and once the fault is gone catches up without losing or doubling an event.

Tests run as root, and root reads and writes whatever the file modes say. Where a fault is a
file mode, the daemon runs without ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH``
(``setpriv``): still uid 0, so it owns its files and passes its own socket's peer check, but
the kernel applies file modes to it as to any user. (Dropping to another uid instead would
need the venv, under root's 0700 home, and every temp dir made reachable for that uid.)

=========================  ==================================================================
Fault                      Outcome
=========================  ==================================================================
Log dir not writable at    The daemon starts and ingests; records go to stderr (journald)
start                      only. ``log.file_unavailable`` there; status warns ``cannot write
                           the log file in <dir>: Permission denied``. The heartbeat retries
                           every second: once writable, the file is opened and its first
                           record is ``log.file_recovered``.
Log dir replaced by a      The heartbeat sees the open file is no longer at the path: status
file while running         warns ``<dir> is not a directory``, ``log.file_unavailable`` on
                           stderr, ingest goes on; once the file is gone the directory is
                           made again and logging resumes there (``log.file_recovered``).
Log dir made read-only     Records still go to the open file, but it could not be rotated:
while running              rotation is held off and status warns ``log directory <dir> is not
                           writable``; cleared (``log.file_recovered``) once it is writable.
Log dir removed            The file is opened again at once in a new directory
                           (``log.file_reopened``); no warning remains.
Runtime dir removed        Within a heartbeat (1 s) the directory is made again (0700), the
(``rm -rf``, tmpfiles)     lock file is re-created and locked with the pid, and the socket
                           bound again: ``runtime.dir_recreated``, ``runtime.lock_restored``,
                           ``control.socket_rebound``; ``sufctl status`` answers again.
Runtime dir removed, and   The new daemon holds the new lock and socket: the old one logs
another daemon started     ``runtime.lock_taken`` and exits 0 without touching them.
A file or a directory      Ingest goes on with everything else. The file's read fails
made unreadable while      (``ingest.file_failed``) and status warns ``cannot read <path>:
running (chmod 000)        PermissionError: Permission denied``; files under a directory
                           without search permission are not flagged gone. The mode restored
                           (inotify ``IN_ATTRIB``), what was written meanwhile is ingested.
A root unreadable at       Its watch fails (``watch.failed``, root state ``failed``, status
start; a directory in it   ``degraded`` with the root's path), retried every 5 s; once it
unreadable at start        works, a catch-up scan. A directory in a root that cannot be
                           watched: status warns ``cannot read <dir>``; its mode restored, it
                           is watched and its files read.
A named pipe named like    Only regular files are opened (a ``stat`` check, then ``O_NONBLOCK``
a transcript               and an ``fstat`` check), so a pipe with a writer attached never
                           blocks the writer thread; status names it; appends elsewhere land
                           at once.
A slow mount: a second     The daemon's stat/open/read calls on source files go through
root on FUSE whose reads   ``sufd.watch.stalls.IoGuard``: after ``READ_STALL_S`` (1 s) the writer
hang (``tests.slowfs``)    goes on without that root (``ingest.read_stalled``); status is
                           ``degraded`` and warns ``reading <path> has not returned for N s``;
                           appends to other roots land within 2 s, scans included. SIGTERM
                           meanwhile: the daemon shuts down and lets go of socket and lock (a
                           new one starts at once), but the process ends only when the read
                           returns (the kernel waits uninterruptibly). Once the mount answers:
                           ``ingest.read_resumed``, the root is read from its cursors.
A transcript grown by      A line over ``max_line_bytes`` (64 MiB; here a 1 GiB sparse hole)
1 GiB, then by 40,000      is skipped unread past the limit and recorded as malformed; peak
lines                      RSS grows by about that limit, not by the file. A change batch
                           reads one file for at most 0.25 s (``FILE_SLICE_S``), then the
                           other changed files get their turn; the rest follows in the next
                           cycles, so other files' appends land in well under a second.
                           (A single huge line still takes as long as reading it: ~2 s/GiB.)
Wall clock set forward a   Debounce, reconcile, heartbeat and watchdog use the monotonic
day, then back two days    clock and keep their pace. A ``pause-watcher --for`` deadline
(libfaketime)              moves with the clock (``clock.jumped``), so the pause lasts its
                           duration in real time. "Today" in the status line follows the new
                           date; uptime stays monotonic. No event lost or doubled.
=========================  ==================================================================
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import (
    BASE_TS,
    ClaudeSession,
    CodexSession,
    Harness,
    Usage,
    append_lines,
    wait_until,
)
from tests.slowfs import slow_mount

pytestmark = pytest.mark.integration

# Drop only the capabilities that let root ignore file modes.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


@pytest.fixture(name="unprivileged")
def unprivileged_fixture(tmp_path: Path) -> Iterator[Harness]:
    """A harness whose daemon cannot override file modes."""
    if os.geteuid() != 0:
        h = Harness(tmp_path)  # file modes apply to it already
    elif shutil.which("setpriv") is not None:
        h = Harness(tmp_path)
        h.launcher = NO_DAC  # setpriv execs the daemon: same pid, subject to file modes
    else:
        pytest.skip("running as root without setpriv: the daemon would ignore file modes")
    try:
        yield h
    finally:
        for path in (h.tmp, h.short):  # modes a test left closed must not stop the clean-up
            for p in [path, *path.rglob("*")] if path.exists() else []:
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o700)
        h.close()


# ------------------------------------------------------------------------------------------
# helpers


class Turns:
    """Appends new Claude requests to one session file; remembers what it wrote."""

    made = 0

    def __init__(self, h: Harness, session: str, project: str = "-home-dev-proj") -> None:
        self.h = h
        self.path = h.claude_file(project=project, session=session)
        self.session = ClaudeSession(session)
        self.written: list[Usage] = []
        Turns.made += 1
        self.base = 100_000 * Turns.made  # token counts tell the sessions' events apart

    def add(self, count: int = 1) -> list[Usage]:
        """``count`` new requests, appended in one write."""
        lines: list[bytes] = []
        events: list[Usage] = []
        for _ in range(count):
            n = len(self.written) + len(events)
            line, ev = self.session.assistant(
                60 * n + 1, input=self.base + n, output=7, cache_read=3
            )
            lines.append(line)
            events.append(ev)
        append_lines(self.path, *lines)
        self.written += events
        return events


def exactly_once(h: Harness, events: list[Usage]) -> None:
    """The ledger holds these events and nothing else, each once."""
    store = h.events_in_store()
    doubled = {e: n for e, n in store.items() if n != 1}
    assert not doubled, f"events stored more than once: {doubled}"
    assert sorted(store) == sorted(events), (
        f"missing {len(set(events) - set(store))}, unexpected {len(set(store) - set(events))}"
    )


def status(h: Harness) -> dict[str, Any]:
    """``sufctl status --json`` (the real client)."""
    proc = h.ctl("status", "--json")
    assert proc.returncode == 0, f"sufctl status exited {proc.returncode}: {proc.stderr}"
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def status_text(h: Harness) -> str:
    """``sufctl status`` as a user reads it."""
    proc = h.ctl("status")
    assert proc.returncode == 0, f"sufctl status exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def warnings_of(h: Harness) -> list[str]:
    """The daemon's current warnings (by the control socket: cheaper than sufctl)."""
    return [str(w) for w in h.status()["warnings"]]


def wait_warning(h: Harness, text: str, timeout: float = 5.0) -> str:
    """The first status warning containing ``text``."""
    return wait_until(
        lambda: next((w for w in warnings_of(h) if text in w), None),
        timeout,
        what=lambda: f"a status warning with {text!r}; have {warnings_of(h)}",
    )


def wait_no_warning(h: Harness, text: str, timeout: float = 5.0) -> None:
    """No status warning contains ``text`` (any more)."""
    wait_until(
        lambda: not any(text in w for w in warnings_of(h)),
        timeout,
        what=lambda: f"the warning {text!r} to clear; have {warnings_of(h)}",
    )


# ------------------------------------------------------------------------------------------
# 1. the log directory


def test_log_dir_not_writable_at_start(unprivileged: Harness) -> None:
    h = unprivileged
    log_dir = h.log_file.parent
    log_dir.mkdir(parents=True, mode=0o700)
    turns = Turns(h, "s1")
    turns.add(3)
    log_dir.chmod(0o500)
    d = h.start()
    h.wait_events(turns.written, 10, "the start-up catch-up")

    problem = f"cannot write the log file in {log_dir}: Permission denied"
    assert problem in warnings_of(h)
    assert f"warning     {problem}" in status_text(h)
    unavailable = d.stderr_events("log.file_unavailable")
    assert unavailable and unavailable[0]["problem"] == problem, d.output()
    assert not h.log_file.exists()

    during = turns.add(2)
    h.wait_events(during, 5, "an append while the log cannot be written")
    assert d.stderr_events("ingest.cycle"), "records go to stderr meanwhile"

    log_dir.chmod(0o700)
    recovered = h.wait_log("log.file_recovered")
    assert recovered[0]["problem_was"] == problem
    wait_no_warning(h, "log file")
    after = turns.add(1)
    h.wait_events(after, 5, "an append after the log is back")
    h.wait_log("ingest.cycle")
    assert stat.S_IMODE(h.log_file.stat().st_mode) == 0o600
    assert d.alive()
    exactly_once(h, turns.written)


def test_log_dir_replaced_by_a_file(harness: Harness) -> None:
    h = harness
    turns = Turns(h, "s1")
    turns.add(2)
    d = h.start()
    h.wait_events(turns.written, 10, "the start-up catch-up")
    log_dir = h.log_file.parent

    shutil.rmtree(log_dir)
    log_dir.write_text("not a directory\n")
    problem = f"cannot write the log file: {log_dir} is not a directory"
    wait_warning(h, problem)
    assert f"warning     {problem}" in status_text(h)
    wait_until(lambda: d.stderr_events("log.file_unavailable"), 5, what=d.output)
    during = turns.add(3)
    h.wait_events(during, 5, "an append while the log dir is a file")

    log_dir.unlink()
    recovered = h.wait_log("log.file_recovered")
    assert recovered[0]["problem_was"] == problem
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    wait_no_warning(h, "log file")
    after = turns.add(1)
    h.wait_events(after, 5, "an append after the log dir is back")
    h.wait_log("ingest.cycle")
    assert d.alive()
    exactly_once(h, turns.written)


def test_log_dir_made_read_only_while_running(unprivileged: Harness) -> None:
    h = unprivileged
    turns = Turns(h, "s1")
    turns.add(2)
    d = h.start()
    h.wait_events(turns.written, 10, "the start-up catch-up")
    log_dir = h.log_file.parent

    log_dir.chmod(0o500)
    problem = f"log directory {log_dir} is not writable: sufd.log is not rotated"
    wait_warning(h, problem)
    during = turns.add(2)
    h.wait_events(during, 5, "an append while the log dir is read-only")
    # The open file still takes records (it just could not be rotated).
    h.wait_log("log.file_unavailable", problem=problem)

    log_dir.chmod(0o700)
    h.wait_log("log.file_recovered", problem_was=problem)
    wait_no_warning(h, "log directory")
    assert d.alive()
    exactly_once(h, turns.written)


def test_log_dir_removed_while_running(harness: Harness) -> None:
    h = harness
    turns = Turns(h, "s1")
    turns.add(2)
    d = h.start()
    h.wait_events(turns.written, 10, "the start-up catch-up")

    shutil.rmtree(h.log_file.parent)
    h.wait_log("log.file_reopened", path=str(h.log_file))
    during = turns.add(2)
    h.wait_events(during, 5, "an append after the log dir was removed")
    h.wait_log("ingest.cycle")
    assert not any("log" in w for w in warnings_of(h))
    assert d.alive()
    exactly_once(h, turns.written)


# ------------------------------------------------------------------------------------------
# 2. the runtime directory


def test_runtime_dir_removed_by_a_cleaner(harness: Harness) -> None:
    h = harness
    turns = Turns(h, "s1")
    turns.add(2)
    d = h.start()
    h.wait_events(turns.written, 10, "the start-up catch-up")
    assert h.lock.read_text().strip() == str(d.pid)

    shutil.rmtree(h.runtime_dir)
    t0 = time.monotonic()
    wait_until(lambda: h.ctl("status").returncode == 0, 5, interval=0.1, what=h.diagnostics)
    print(f"sufctl status answers again after {time.monotonic() - t0:.1f} s")
    assert stat.S_IMODE(h.runtime_dir.stat().st_mode) == 0o700
    assert h.lock.read_text().strip() == str(d.pid)
    h.wait_log("runtime.dir_recreated", path=str(h.runtime_dir))
    h.wait_log("runtime.lock_restored", pid=d.pid)
    h.wait_log("control.socket_rebound")

    # The restored lock is held: a second daemon refuses to start.
    second = h.run_sufd("run", "--foreground", timeout=20)
    assert second.returncode != 0 and f"pid {d.pid}" in second.stderr, second.stderr
    during = turns.add(2)
    h.wait_events(during, 5, "an append after the runtime dir came back")

    rc, _ = h.stop(d)
    assert rc == 0, h.diagnostics(d)
    assert not h.socket.exists() and not h.lock.exists()
    exactly_once(h, turns.written)


def test_runtime_dir_removed_is_no_opening_for_a_second_daemon_of_the_ledger(
    harness: Harness,
) -> None:
    """The lock of the ledger lives beside it, not in the runtime dir: while a cleaner's
    removal leaves the frozen (SIGSTOP) daemon without socket, a second daemon of the same
    ledger is still refused, and the first one, woken, serves again (issue 12 item 10)."""
    h = harness
    first = h.start()
    first.signal(19)  # SIGSTOP
    try:
        shutil.rmtree(h.runtime_dir)
        second = h.spawn()
        rc = second.proc.wait(15)
    finally:
        first.signal(18)  # SIGCONT
    assert rc == 75 and f"pid {first.pid}" in second.output(), second.output()
    wait_until(lambda: h.ctl("status").returncode == 0, 5, interval=0.1, what=h.diagnostics)
    assert h.call("hello")["pid"] == first.pid
    assert h.lock.read_text().strip() == str(first.pid)
    h.wait_log("control.socket_rebound")
    assert first.alive()


def test_runtime_dir_removed_and_another_daemon_started(harness: Harness) -> None:
    """Frozen (SIGSTOP) over its heartbeat, the first daemon cannot put the socket's lock
    back before the daemon of another ledger, given the same runtime dir, takes it: on
    waking it must leave, not steal the socket."""
    h = harness
    first = h.start()
    first.signal(19)  # SIGSTOP
    try:
        shutil.rmtree(h.runtime_dir)
        second = h.start(env={"SUFD_DB": str(h.tmp / "another" / "ledger.sqlite3")})
    finally:
        first.signal(18)  # SIGCONT
    rc = first.proc.wait(10)
    assert rc == 0, h.diagnostics(first)
    taken = h.wait_log("runtime.lock_taken")
    assert taken[0]["other_pid"] == second.pid
    assert h.call("hello")["pid"] == second.pid
    assert h.lock.read_text().strip() == str(second.pid)
    assert h.socket.exists()
    assert second.alive()


# ------------------------------------------------------------------------------------------
# 3. a source root that cannot be read


def codex_turns(h: Harness) -> tuple[Path, list[Usage], Callable[[], Usage]]:
    """A Codex rollout with one request, and a function that appends one more."""
    codex = CodexSession()
    path = h.codex_file()
    line, ev = codex.token_count(5, input=500, cached=100, output=50, reasoning=20)
    append_lines(path, codex.meta(0), codex.turn_context(0), line)
    written = [ev]

    def more() -> Usage:
        line, ev = codex.token_count(
            60 * len(written) + 5, input=9, cached=1, output=4, reasoning=0
        )
        append_lines(path, line)
        written.append(ev)
        return ev

    return path, written, more


def files_gone(h: Harness) -> int:
    """Files the daemon has flagged as no longer on disk, all sources."""
    return sum(int(s["files_gone"]) for s in h.status()["sources"])


def test_unreadable_file_and_directory_while_running(unprivileged: Harness) -> None:
    """chmod 000 on a transcript, and on another project's directory, under the running
    daemon: the rest keeps being ingested, status names both paths, nothing is flagged gone,
    and once the modes are back what was written meanwhile is ingested, once."""
    h = unprivileged
    a, b = Turns(h, "sa"), Turns(h, "sb", project="-home-dev-other")
    a.add(2)
    b.add(2)
    _, codex, more_codex = codex_turns(h)
    d = h.start()
    h.wait_events(a.written + b.written + codex, 10, "the start-up catch-up")

    a.path.chmod(0o000)
    b.path.parent.chmod(0o000)
    hidden = a.add(2) + b.add(2)
    h.wait_events([more_codex()], 5, "the Codex append, next to the unreadable files")
    for path in (a.path, b.path):
        wait_warning(h, f"cannot read {path}: PermissionError: Permission denied")
    text = status_text(h)
    assert f"cannot read {a.path}" in text and f"cannot read {b.path}" in text, text
    failed = {r["path"] for r in h.log_events("ingest.file_failed")}
    assert {str(a.path), str(b.path)} <= failed, failed
    assert not any(h.events_in_store()[e] for e in hidden)
    h.call("rescan")  # a full sweep too: unreadable is not deleted
    h.wait_events([more_codex()], 5, "a Codex append after the rescan")
    assert files_gone(h) == 0, h.status()["sources"]

    a.path.chmod(0o600)
    b.path.parent.chmod(0o700)
    t0 = time.monotonic()
    h.wait_events(hidden, 5, "what was written while unreadable, once readable again")
    print(f"caught up {time.monotonic() - t0:.2f} s after the modes were restored")
    wait_no_warning(h, "cannot read")
    assert d.alive()
    exactly_once(h, a.written + b.written + codex)


def test_unreadable_root_and_directory_at_start(unprivileged: Harness) -> None:
    """The Claude root unreadable when the daemon starts, and, in a second round, only one
    project directory in it: Codex is ingested meanwhile, status names what cannot be read,
    and the content is ingested once the mode is restored."""
    h = unprivileged
    a, b = Turns(h, "sa"), Turns(h, "sb", project="-home-dev-other")
    a.add(3)
    b.add(2)
    _, codex, more_codex = codex_turns(h)
    root = a.path.parent.parent
    root.chmod(0o000)
    d = h.start()
    h.wait_events(codex, 10, "Codex, next to the unreadable Claude root")
    wait_warning(h, f"Permission denied: '{root}'")
    st = status(h)
    claude = next(s for s in st["sources"] if s["name"] == "claude")
    assert any(
        r["path"] == str(root) and r["state"] == "failed" and r["error"] for r in claude["roots"]
    ), claude
    assert claude["state"] == "failed", claude
    assert st["state"] == "degraded", st
    assert not any(e.source == "claude" for e in h.events_in_store())

    root.chmod(0o700)
    h.wait_events(a.written + b.written, 8, "the Claude root, once readable")
    wait_until(lambda: status(h)["state"] == "watching", 5, what=lambda: str(status(h)))
    h.wait_events([more_codex(), *a.add(1)], 5, "appends after the root came back")
    rc, _ = h.stop(d)
    assert rc == 0

    b.path.parent.chmod(0o000)
    hidden = b.add(2)
    d = h.start()
    wait_warning(h, f"cannot read {b.path.parent}: Permission denied")
    h.wait_events([more_codex(), *a.add(1)], 5, "appends next to the unreadable directory")
    assert not any(h.events_in_store()[e] for e in hidden)
    assert files_gone(h) == 0

    b.path.parent.chmod(0o700)
    h.wait_events(hidden, 5, "the directory's new content, once readable")
    wait_no_warning(h, "cannot read")
    later = b.add(1)
    h.wait_events(later, 5, "an append in the directory, watched now")
    assert d.alive()
    exactly_once(h, a.written + b.written + codex)


def test_named_pipe_named_like_a_transcript(harness: Harness) -> None:
    """``pipe.jsonl`` is a FIFO, held open by a writer: a reader that opened it would wait
    for data forever. sufd opens only regular files (and with O_NONBLOCK, should one be
    swapped in after the check): appends to the real transcripts keep landing at once."""
    h = harness
    a = Turns(h, "sa")
    a.add(2)
    fifo = a.path.parent / "pipe.jsonl"
    os.mkfifo(fifo, 0o600)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # RDWR: opening does not wait
    try:
        d = h.start()
        h.wait_events(a.written, 10, "the transcript next to the pipe")
        wait_warning(h, f"cannot read {fifo}: {fifo} is not a regular file")
        os.write(writer, b'{"type":"assistant","message":')  # data in the pipe, never read
        h.call("rescan")
        for _ in range(3):
            t0 = time.monotonic()
            h.wait_events(a.add(1), 2, "an append next to the pipe")
            print(f"append landed in {time.monotonic() - t0:.3f} s")
        assert d.alive()
        fifo.unlink()
        wait_no_warning(h, "cannot read")
    finally:
        os.close(writer)
    exactly_once(h, a.written)


def test_slow_mount_holds_up_only_its_root(harness: Harness, tmp_path: Path) -> None:
    """A second Claude root on a FUSE mount whose reads hang (``tests.slowfs``): the read
    that hangs holds up that root alone. After ``READ_STALL_S`` the writer goes on, status
    names the file, appends to the other root keep landing, a new daemon can take over after a
    SIGTERM meanwhile, and once the mount answers what was written there is read without loss
    or doubling."""
    h = harness
    with slow_mount(tmp_path / "fuse") as mount:
        h.daemon_env["CLAUDE_CONFIG_DIR"] = f"{h.home / '.claude'},{mount.mountpoint}"
        a = Turns(h, "sa")
        b = Turns(h, "sb")
        b.path = mount.source / "projects" / "-home-dev-proj" / "sb.jsonl"
        seen = mount.mountpoint / "projects" / "-home-dev-proj" / "sb.jsonl"
        a.add(2)
        b.add(2)
        d = h.start()
        h.wait_events(a.written + b.written, 10, "both roots, the mount still fast")
        h.call("reload")  # the guard must survive the ingestor being rebuilt by a reload

        mount.slow()
        held = b.add(2)  # written behind the mount's back: found by a scan, not by inotify
        h.call("rescan")
        stalled = f"reading {seen} has not returned for"
        warning = wait_warning(h, stalled)
        assert f"the files under {mount.mountpoint / 'projects'} wait" in warning, warning
        assert status(h)["state"] == "degraded"
        assert h.wait_log("ingest.read_stalled", path=str(seen))
        for _ in range(3):
            h.call("rescan")  # a full scan too must pass the held-up root by at once
            h.wait_events(a.add(1), 2, "an append to the other root while the mount hangs")
        assert d.alive()
        assert not any(h.events_in_store()[e] for e in held)

        # A thread in a FUSE read that userspace already took waits uninterruptibly, even
        # through SIGKILL: the process cannot end before the mount answers. The daemon still
        # shuts down (ledger closed, socket and lock let go), so a new one can start at once.
        old = d
        old.signal(signal.SIGTERM)
        h.wait_log("daemon.stopped")
        wait_until(lambda: not h.socket.exists(), 5, what="the old daemon's socket to go")
        d = h.start(settle=False)
        wait_warning(h, stalled)
        h.wait_events(a.add(1), 2, "an append after a restart with the mount still hung")

        mount.fast()
        assert old.proc.wait(10) == 0, h.diagnostics(old)  # its read returned: now it ends
        h.wait_events(held, 5, "the mount's new lines, once it answers")
        wait_no_warning(h, "has not returned")
        assert h.wait_log("ingest.read_resumed", path=str(seen))
        later = b.add(1)
        h.call("rescan")
        h.wait_events(later, 5, "a later append on the mount (found by a rescan)")
        assert d.alive()
    exactly_once(h, a.written + b.written)


# ------------------------------------------------------------------------------------------
# 4. a source file that grows by gigabytes

GIB = 1 << 30


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_file_grows_by_a_gigabyte(harness: Harness) -> None:
    """A transcript extended by a 1 GiB line (a sparse hole: NUL bytes, then a newline) and
    then by 40,000 ordinary lines. The huge line is recorded as malformed and skipped (never
    held in memory), every later line is ingested, and other files keep being ingested
    meanwhile: a change batch reads one file for at most a time slice before the others."""
    h = harness
    big, other = Turns(h, "big"), Turns(h, "other")
    big.add(2)
    other.add(1)
    d = h.start()
    h.wait_events(big.written + other.written, 10, "the start-up catch-up")
    base = vm_hwm(d.pid)

    hole_at = big.path.stat().st_size
    with big.path.open("r+b") as f:
        f.truncate(hole_at + GIB)
    append_lines(big.path, b"")  # the newline that ends the huge line
    after_hole = big.add(2)
    t0 = time.monotonic()
    h.wait_events(other.add(1), 10, "the other file while the huge line is read")
    print(f"other file, behind a 1 GiB line: {time.monotonic() - t0:.2f} s")
    h.wait_events(after_hole, 20, "the lines after the huge one")
    print(f"the lines after the huge one: {time.monotonic() - t0:.2f} s")
    bad = h.wait_log("ingest.malformed_lines", path=str(big.path))
    assert bad[0]["first_offset"] == hole_at and bad[0]["count"] == 1, bad
    assert bad[0]["reason"] == f"line longer than {64 * 1024 * 1024} bytes", bad
    claude = next(s for s in h.status()["sources"] if s["name"] == "claude")
    assert claude["malformed_lines"] == 1, claude

    # 40,000 lines in one write: the writer reads them over many slices, not in one go.
    s = big.session
    lines = []
    for i in range(40_000):
        line, ev = s.assistant(i, input=i + 1, output=2, cache_read=1)
        lines.append(line)
        big.written.append(ev)
    append_lines(big.path, *lines)
    t0 = time.monotonic()
    more = other.add(1)
    h.wait_events(more, 2, "the other file while 40,000 lines are read")
    landed = time.monotonic() - t0
    stored = h.events_in_store()
    left = sum(1 for e in big.written if not stored[e])
    print(f"other file after {landed:.2f} s, with {left} of the 40,000 lines still to read")
    assert left, "the 40,000 lines were read before the other file's append"
    wait_until(lambda: h.has_events(big.written), 40, interval=0.5, what=lambda: "the 40,000 lines")
    print(f"all 40,000 lines in {time.monotonic() - t0:.2f} s")

    peak = vm_hwm(d.pid)
    print(f"VmHWM {base / 2**20:.0f} MiB at start, {peak / 2**20:.0f} MiB at the end")
    # What reading holds: one line up to max_line_bytes (64 MiB), then it is skipped.
    assert peak < base + 160 * 2**20, f"VmHWM {peak / 2**20:.0f} MiB"
    assert d.alive()
    exactly_once(h, big.written + other.written)


# ------------------------------------------------------------------------------------------
# 5. clock jumps

DAY = 86_400


def libfaketime() -> str:
    """libfaketime's preload library (Debian's ``faketime`` package; ``.ci/run`` installs it)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    return str(found[0])


class FakeClock:
    """The daemon's wall clock, moved by rewriting libfaketime's offset file; its monotonic
    and boot-time clocks stay real (``FAKETIME_DONT_FAKE_MONOTONIC``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.set(0)

    def env(self) -> dict[str, str]:
        """The daemon's environment for it. The offset file is read again at most once a
        second: with ``FAKETIME_NO_CACHE`` every wall-clock call read it, which slowed the
        daemon enough (its logging and SQLite ask the time constantly) to starve the control
        socket and make the pause timings flaky."""
        return {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set(self, offset: int) -> None:
        """The daemon's wall clock is the real one plus ``offset`` seconds from now on."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+d}\n")
        tmp.replace(self.path)
        self.offset = offset

    def now(self) -> float:
        """What the daemon's ``time.time()`` says now."""
        return time.time() + self.offset


def request_at(h: Harness, session: str, epoch_s: float) -> Usage:
    """One new Claude request dated ``epoch_s``, alone in its own session file."""
    line, ev = ClaudeSession(session).assistant(
        epoch_s - BASE_TS.timestamp(), input=1000, output=500, cache_read=100
    )
    append_lines(h.claude_file(session=session), line)
    return ev


def statusline(h: Harness, session: str | None = None) -> dict[str, Any]:
    """The daemon's status-line numbers, with "today" by the daemon's own clock."""
    return h.call("statusline", {"session_id": session} if session else {})


def test_clock_jumps(harness: Harness) -> None:
    """The daemon's wall clock set a day forward, then two days back, while it runs (under
    libfaketime). Debounce, reconcile sweeps, the heartbeat and the watchdog run on the
    monotonic clock and do not notice; a ``pause-watcher --for`` lasts its duration in real
    time (its deadline moves with the clock: ``clock.jumped``); "today" in the status line
    follows the new date; nothing is lost or counted twice."""
    h = harness
    clock = FakeClock(h.tmp / "faketime")
    written = [request_at(h, "d0", time.time())]
    d = h.start(
        env={
            **clock.env(),
            "TZ": "UTC",
            "WATCHDOG_USEC": "1000000",  # WATCHDOG=1 every 0.5 s
            "SUFD_RECONCILE_INTERVAL_S": "1",
        }
    )
    h.wait_events(written, 10, "the start-up catch-up")
    cost0 = statusline(h, "d0")["session_cost"]
    assert cost0 > 0 and statusline(h)["today_cost"] == pytest.approx(cost0)

    def forward_and_back(jump: int, pause_s: int, session: str) -> float:
        """Pause Claude for ``pause_s``, move the clock by ``jump``, append while paused;
        returns how long the pause lasted in real time."""
        proc = h.ctl("pause-watcher", "claude", "--for", f"{pause_s}s")
        assert proc.returncode == 0, proc.stderr
        paused_at = time.monotonic()
        mark = h.notify.mark()
        jumps = len(h.log_events("clock.jumped"))
        expired = len(h.log_events("watch.pause_expired"))
        clock.set(clock.offset + jump)
        jumped = wait_until(lambda: h.log_events("clock.jumped")[jumps:], 3, what="clock.jumped")[0]
        assert abs(jumped["by_s"] - jump) < 3, jumped
        pause = h.status()["pause"]["claude"]
        assert 0 < pause["until"] - clock.now() <= pause_s, (pause, clock.now())
        written.append(request_at(h, session, clock.now()))
        time.sleep(1.0)
        assert not h.events_in_store()[written[-1]], "ingested while paused"
        wait_until(
            lambda: h.log_events("watch.pause_expired")[expired:],
            pause_s + 3,
            what=lambda: f"watch.pause_expired\n{h.diagnostics()}",
        )
        lasted = time.monotonic() - paused_at
        h.wait_events(written, 5, "what was written during the pause")
        # The monotonic timers kept their pace: watchdog every 0.5 s (half of that is
        # enough here: a loaded machine delays some), a sweep every second or two.
        beats = h.notify.times("WATCHDOG=1", since=mark)
        assert len(beats) >= lasted - 1, (len(beats), lasted)
        before = len(h.log_events("ingest.done"))  # every sweep ends with one
        wait_until(
            lambda: len(h.log_events("ingest.done")) >= before + 2,
            8,
            what=lambda: f"two reconcile sweeps after the jump\n{h.diagnostics()}",
        )
        # Debounce: a plain append lands at once.
        t0 = time.monotonic()
        written.append(request_at(h, session + "-after", clock.now()))
        h.wait_events(written, 2, "an append after the jump")
        print(
            f"jump {jump:+d} s: pause of {pause_s} s lasted {lasted:.1f} s, append landed"
            f" in {time.monotonic() - t0:.2f} s, {len(beats)} watchdog beats"
        )
        return lasted

    lasted = forward_and_back(DAY, 4, "d1")
    assert 3.5 <= lasted <= 6.5, lasted
    # A new day by the daemon's clock: "today" holds only what is dated in it.
    today = statusline(h)["today_cost"]
    assert today == pytest.approx(
        statusline(h, "d1")["session_cost"] + statusline(h, "d1-after")["session_cost"]
    ), today
    assert today > 0

    lasted = forward_and_back(-2 * DAY, 3, "d2")
    assert 2.5 <= lasted <= 5.5, lasted
    st = h.status()
    assert 0 <= st["uptime_s"] < 600, st["uptime_s"]
    # Yesterday by the real clock: everything written is dated today or later.
    assert statusline(h)["today_cost"] >= statusline(h, "d2")["session_cost"] > 0

    rc, _ = h.stop(d)
    assert rc == 0, h.diagnostics(d)
    exactly_once(h, written)
