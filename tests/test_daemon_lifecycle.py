"""The daemon's life as a service manager sees it: readiness, watchdog, stop, crash and
restart, single instance, reload, config errors and ``sufctl status`` exit codes
(acceptance items of issue 3, lifecycle half).

Every test runs the real ``sufd run --foreground`` (see :mod:`tests.daemon_harness`) with a
fake ``NOTIFY_SOCKET`` bound by the test.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from collections import Counter

import pytest

from tests.daemon_harness import (
    ClaudeSession,
    CodexSession,
    Harness,
    Usage,
    append_lines,
    report_totals,
    totals_of,
    wait_until,
)

pytestmark = pytest.mark.integration

EXIT_STATUS_NOT_RUNNING, EXIT_UNKNOWN = 3, 4
EXIT_RUNNING, EXIT_CONFIG = 75, 78
BROKEN_TOML = '[sources.codex\nenabled = "no\n'


def _source_names(h: Harness) -> set[str]:
    return {s["name"] for s in h.status()["sources"]}


# ------------------------------------------------------------------------------------------
# readiness, watchdog, stop


def test_ready_then_sigterm_stops_cleanly(harness: Harness) -> None:
    h = harness
    daemon = h.start()
    ready = h.notify.find("READY=1")
    assert ready is not None, h.notify.summary()
    assert any(f.startswith("STATUS=") for f in h.notify.notices[ready].fields), "READY has STATUS"
    assert h.socket.exists() and h.lock.exists()

    mark = h.notify.mark()
    rc, seconds = h.stop(daemon, signal.SIGTERM, timeout=10)
    assert rc == 0, f"SIGTERM: exit {rc}\n{h.diagnostics(daemon)}"
    assert seconds < 5.0, f"SIGTERM took {seconds:.1f} s"
    assert h.notify.find("STOPPING=1", mark) is not None, h.notify.summary(mark)
    assert not h.socket.exists(), "the socket is removed on a clean stop"
    assert not h.lock.exists(), "the lock file is removed on a clean stop"
    assert h.log_events("daemon.stopped"), "the stop is logged"


def test_watchdog_pings_at_half_the_interval(harness: Harness) -> None:
    h = harness
    usec = 200_000
    h.start(env={"WATCHDOG_USEC": str(usec)})
    mark = h.notify.mark()
    time.sleep(2.0)
    pings = h.notify.times("WATCHDOG=1", mark)
    gaps = [round(b - a, 3) for a, b in zip(pings, pings[1:], strict=False)]
    # systemd: send WATCHDOG=1 at half of WATCHDOG_USEC (here every 0.1 s; 0.2 s without one
    # and the unit is killed with SIGABRT).
    assert len(pings) >= 3, (
        f"{len(pings)} WATCHDOG=1 in 2 s with WATCHDOG_USEC={usec} (expected about 20); gaps {gaps}"
    )
    assert statistics.median(gaps) <= usec / 1e6, f"gaps between pings: {gaps}"


# ------------------------------------------------------------------------------------------
# crash and restart


def test_sigkill_then_restart_loses_and_doubles_nothing(harness: Harness) -> None:
    h = harness
    claude, codex = ClaudeSession(), CodexSession()
    cfile, xfile = h.claude_file(), h.codex_file()
    written: list[Usage] = []

    def claude_lines(start: int, n: int) -> list[bytes]:
        out = []
        for i in range(start, start + n):
            line, ev = claude.assistant(i, input=100 + i, output=10 + i % 7, cache_read=i)
            out.append(line)
            written.append(ev)
        return out

    def codex_lines(start: int, n: int) -> list[bytes]:
        out = []
        for i in range(start, start + n):
            line, ev = codex.token_count(i, input=1000 + i, cached=i, output=50, reasoning=5)
            out.append(line)
            written.append(ev)
        return out

    append_lines(cfile, claude.user(0), *claude_lines(1, 3))
    append_lines(xfile, codex.meta(0), codex.turn_context(0), *codex_lines(1, 2))
    first = h.start()
    assert h.events_in_store() == Counter(written)

    # Appends right before the kill: it may die in the middle of ingesting them.
    append_lines(cfile, *claude_lines(100, 400))
    append_lines(xfile, *codex_lines(100, 100))
    time.sleep(0.05)
    assert h.kill(first) == -signal.SIGKILL
    assert h.socket.exists(), "SIGKILL leaves the socket file behind (stale)"

    status = h.ctl("status")
    assert status.returncode == EXIT_STATUS_NOT_RUNNING, (
        f"status while down: {status.returncode}\n{status.stdout}{status.stderr}"
    )
    # Written while nothing runs.
    append_lines(cfile, *claude_lines(1000, 5))
    append_lines(xfile, *codex_lines(1000, 5))

    second = h.start()
    assert second.pid != first.pid
    assert h.call("hello")["pid"] == second.pid, "the new daemon serves on the cleaned socket"
    wait_until(
        lambda: h.events_in_store() == Counter(written),
        10.0,
        what=lambda: f"every written event exactly once\n{h.diagnostics(second)}",
    )
    store = h.events_in_store()
    doubled = [e for e, n in store.items() if n > 1]
    assert not doubled, doubled
    assert len(store) == len(written) == 3 + 2 + 400 + 100 + 5 + 5
    assert report_totals(h.report("daily")) == totals_of(written), "aggregates match the lines"
    assert h.ctl("status").returncode == 0


def test_second_instance_is_refused_with_75(harness: Harness) -> None:
    h = harness
    first = h.start()
    proc = h.run_sufd("run", "--foreground", timeout=30)
    assert proc.returncode == EXIT_RUNNING, (
        f"second instance: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    )
    assert "already running" in proc.stderr, proc.stderr
    assert f"pid {first.pid}" in proc.stderr, (
        f"the message names the pid {first.pid}: {proc.stderr}"
    )
    assert first.alive()
    assert h.call("hello")["pid"] == first.pid, "the first instance still serves"
    assert h.socket.exists() and h.lock.exists()


# ------------------------------------------------------------------------------------------
# configuration


def test_sighup_reloads_a_good_config(harness: Harness) -> None:
    h = harness
    (h.home / ".codex" / "sessions").mkdir(parents=True)
    daemon = h.start()
    assert {"claude", "codex"} <= _source_names(h)
    codex_roots = {
        r["path"] for s in h.status()["sources"] if s["name"] == "codex" for r in s["roots"]
    }
    assert codex_roots

    h.write_config("[sources.codex]\nenabled = false\n")
    mark = h.notify.mark()
    daemon.signal(signal.SIGHUP)
    reloading = h.notify.wait_for("RELOADING=1", mark, timeout=5)
    assert any(f.startswith("MONOTONIC_USEC=") for f in h.notify.notices[reloading].fields)
    h.notify.wait_for("READY=1", reloading + 1, timeout=5)
    wait_until(lambda: "codex" not in _source_names(h), 5.0, what="codex gone from status")
    roots = {r["path"] for s in h.status()["sources"] for r in s["roots"]}
    assert not roots & codex_roots, f"codex roots still listed: {roots & codex_roots}"
    assert h.log_events("config.reloaded")
    assert daemon.alive()


def test_sighup_with_a_broken_config_keeps_the_old_one(harness: Harness) -> None:
    h = harness
    h.write_config("[sources.codex]\nenabled = false\n")
    daemon = h.start()
    assert "codex" not in _source_names(h)

    h.write_config(BROKEN_TOML)
    mark = h.notify.mark()
    daemon.signal(signal.SIGHUP)
    reloading = h.notify.wait_for("RELOADING=1", mark, timeout=5)
    h.notify.wait_for("READY=1", reloading + 1, timeout=5)
    failed = wait_until(lambda: h.log_events("config.reload_failed"), 5.0, what="the log")
    assert str(h.config_file) in failed[0]["error"], failed[0]
    assert daemon.alive(), h.diagnostics(daemon)
    assert h.call("hello")["pid"] == daemon.pid
    assert "codex" not in _source_names(h), "the previous configuration stays in force"

    # And it still works with the old configuration.
    claude = ClaudeSession()
    line, ev = claude.assistant(1, input=7, output=7)
    append_lines(h.claude_file(), line)
    wait_until(lambda: h.has_events([ev]), 5.0, what="ingest after a failed reload")


def test_sufctl_reload_with_a_broken_config_exits_78(harness: Harness) -> None:
    """sufctl cannot tell which daemon its broken config means, so it asks none (issue 12
    item 10; the daemon's own check of a reload is covered by the SIGHUP test above)."""
    h = harness
    daemon = h.start()
    h.write_config(BROKEN_TOML)
    proc = h.ctl("reload")
    assert proc.returncode == EXIT_CONFIG, f"sufctl reload: exit {proc.returncode}\n{proc.stderr}"
    assert "invalid TOML" in proc.stderr and str(h.config_file) in proc.stderr, proc.stderr
    assert daemon.alive()
    assert h.call("hello")["pid"] == daemon.pid
    assert not h.log_events("config.reload_failed") and not h.log_events("config.reloaded")


def test_broken_config_at_start_exits_78(harness: Harness) -> None:
    h = harness
    h.write_config(BROKEN_TOML)
    daemon = h.spawn()
    try:
        rc: int | None = daemon.proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    stderr = daemon.stderr.read_text()
    assert rc == EXIT_CONFIG, f"exit {rc}\n{h.diagnostics(daemon)}"
    assert str(h.config_file) in stderr, f"the message names the file: {stderr}"
    assert "configuration error" in stderr, stderr
    assert h.notify.find("READY=1") is None
    assert not h.socket.exists()


# ------------------------------------------------------------------------------------------
# sufctl status exit codes


def test_status_exit_codes_running_stopped_and_wedged(harness: Harness) -> None:
    h = harness
    down = h.ctl("status")
    assert down.returncode == EXIT_STATUS_NOT_RUNNING, down.stderr
    assert "not running" in down.stderr, down.stderr

    daemon = h.start()
    t0 = time.monotonic()
    up = h.ctl("status")
    answered = time.monotonic() - t0  # sufctl's own start-up, on this machine, now
    assert up.returncode == 0, up.stderr
    assert f"pid {daemon.pid}" in up.stdout, up.stdout

    daemon.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wedged = h.ctl("status", "--timeout", "1", timeout=15)
        took = time.monotonic() - t0
    finally:
        daemon.signal(signal.SIGCONT)
    assert wedged.returncode == EXIT_UNKNOWN, (
        f"status of a stopped daemon: {wedged.returncode}\n{wedged.stderr}"
    )
    assert "did not answer in time" in wedged.stderr, wedged.stderr
    # About 1 s more than an answered status; the default timeout (5 s) would be far more.
    assert took < answered + 2.5, (
        f"sufctl status --timeout 1 took {took:.1f} s (an answered one {answered:.1f} s)"
    )

    again = wait_until(
        lambda: p if (p := h.ctl("status")).returncode == 0 else None,
        10.0,
        what="answers after SIGCONT",
    )
    assert f"pid {daemon.pid}" in again.stdout

    rc, _ = h.stop(daemon)
    assert rc == 0
    assert h.ctl("status").returncode == EXIT_STATUS_NOT_RUNNING
