"""Run the real sufd daemon as a subprocess, the way a service manager would.

A :class:`Harness` owns one isolated user (``make_env``: HOME, XDG dirs) plus a short private
runtime directory (so the socket path stays well under ``sun_path``'s limit and never falls back
to the shared ``/tmp/sufd-UID``), and a fake ``NOTIFY_SOCKET``: a datagram socket bound by the
test, collected by a background thread. :meth:`Harness.start` runs
``python -m sufd run --foreground`` and waits for ``READY=1`` *and* a successful ``hello``; on
failure the daemon's stderr and log file are put in the assertion message. Every daemon
started is killed at teardown.

The line builders write compact JSON in the shapes Claude Code and the Codex CLI use, and
return the usage each line must become in the ledger (:class:`Usage`), so tests compare the
store and the reports against what they wrote, never against sufd's own output.

Test modules get the fixture with ``from tests.daemon_harness import harness_fixture``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from sufd.control import client
from sufd.errors import ControlError
from tests.conftest import SufdEnv, make_env

__all__ = [
    "BASE_TS",
    "ClaudeSession",
    "CodexSession",
    "DaemonProcess",
    "Harness",
    "NotifyListener",
    "Usage",
    "append_lines",
    "harness_fixture",
    "iso",
    "wait_until",
]

START_DEADLINE_S = 10.0
BASE_TS = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
CLAUDE_MODEL = "claude-sonnet-4-20250514"
CODEX_MODEL = "gpt-5"

_T = TypeVar("_T")


# ------------------------------------------------------------------------------------------
# waiting


def wait_until(
    predicate: Callable[[], _T | None],
    timeout: float = 5.0,
    *,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> _T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises:
        AssertionError: the deadline passed; names ``what`` (a string or a callable that
            builds diagnostics lazily) and the last value seen.
    """
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {detail or predicate!r}"
                f" (last value {value!r})"
            )
        time.sleep(interval)
        value = predicate()
    assert value is not None
    return value


# ------------------------------------------------------------------------------------------
# sd_notify


@dataclass(frozen=True)
class Notice:
    """One datagram received on the fake ``NOTIFY_SOCKET``."""

    at: float  # time.monotonic() on receipt
    fields: tuple[str, ...]


class NotifyListener:
    """A bound ``AF_UNIX``/``SOCK_DGRAM`` socket whose datagrams a thread collects."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(os.fspath(path))
        self._sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._notices: list[Notice] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, name="notify-listener", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            notice = Notice(time.monotonic(), tuple(data.decode("utf-8", "replace").split("\n")))
            with self._lock:
                self._notices.append(notice)

    @property
    def notices(self) -> list[Notice]:
        with self._lock:
            return list(self._notices)

    def mark(self) -> int:
        """A position to look for notices after (``since=``)."""
        with self._lock:
            return len(self._notices)

    def find(self, field: str, since: int = 0) -> int | None:
        """Index of the first notice at or after ``since`` carrying ``field`` exactly."""
        for i, notice in enumerate(self.notices[since:], start=since):
            if field in notice.fields:
                return i
        return None

    def wait_for(self, field: str, since: int = 0, timeout: float = 5.0) -> int:
        """Wait for a notice carrying ``field``; return its index."""
        found = wait_until(
            lambda: i + 1 if (i := self.find(field, since)) is not None else None,
            timeout,
            what=lambda: f"{field} on NOTIFY_SOCKET; got {self.summary(since)}",
        )
        return found - 1

    def times(self, field: str, since: int = 0) -> list[float]:
        """Receipt times of every notice carrying ``field``."""
        return [n.at for n in self.notices[since:] if field in n.fields]

    def summary(self, since: int = 0) -> str:
        return repr([n.fields for n in self.notices[since:]][-30:])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


# ------------------------------------------------------------------------------------------
# the daemon process


@dataclass
class DaemonProcess:
    """One ``sufd run`` subprocess and where its output goes."""

    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    started: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def output(self) -> str:
        parts = []
        for name, path in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- daemon {name} (pid {self.pid}) ---\n{text[-2500:]}")
        return "\n".join(parts)


class Harness:
    """An isolated user with helpers to run sufd and sufctl against it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        # Short and private: XDG_RUNTIME_DIR must be 0700 and owned, and the socket path short,
        # else sufd falls back to the shared /tmp/sufd-UID.
        self.short = Path(tempfile.mkdtemp(prefix="sufd-t-", dir="/tmp"))
        self.env: SufdEnv = make_env(tmp_path, {"XDG_RUNTIME_DIR": str(self.short)})
        self.home = self.env.home
        self.runtime_dir = self.short / "sufd"
        self.socket = self.runtime_dir / "sufd.sock"
        self.lock = self.runtime_dir / "sufd.lock"
        state = Path(self.env.env["XDG_STATE_HOME"]) / "sufd"
        self.log_file = state / "log" / "sufd.log"
        self.state_file = state / "state.json"
        self.config_file = Path(self.env.env["XDG_CONFIG_HOME"]) / "sufd" / "config.toml"
        self.db = self.env.db
        self.notify = NotifyListener(self.short / "notify.sock")
        self.daemon_env: dict[str, str] = {}
        # Put before the interpreter in the daemon's argv (a launcher that execs, same pid).
        self.launcher: list[str] = []
        self.daemons: list[DaemonProcess] = []

    # -- lifecycle ------------------------------------------------------------------------

    def command_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The daemon's environment: the isolated user, the fake NOTIFY_SOCKET, settings."""
        env = dict(self.env.env)
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.daemon_env)
        env.update(extra or {})
        return env

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> DaemonProcess:
        """Start ``python -m sufd run --foreground ARGS`` without waiting for anything."""
        n = len(self.daemons)
        out, err = self.tmp / f"daemon-{n}.stdout", self.tmp / f"daemon-{n}.stderr"
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "sufd", "run", "--foreground", *args],
                env=self.command_env(env),
                stdin=subprocess.DEVNULL,
                stdout=fo,
                stderr=fe,
                start_new_session=True,
            )
        daemon = DaemonProcess(proc, out, err, time.monotonic())
        self.daemons.append(daemon)
        return daemon

    def start(
        self, *args: str, env: Mapping[str, str] | None = None, settle: bool = True
    ) -> DaemonProcess:
        """Start the daemon and wait (deadline 10 s) for ``READY=1`` and ``hello``.

        ``settle`` also waits for the start-up catch-up scan to finish and for every
        watcher to have armed (or found its root missing), so later counts start clean.
        """
        mark = self.notify.mark()
        daemon = self.spawn(*args, env=env)
        deadline = time.monotonic() + START_DEADLINE_S
        problem = "READY=1 not received"
        while time.monotonic() < deadline:
            if not daemon.alive():
                problem = f"daemon exited with {daemon.proc.returncode} during start-up"
                break
            if self.notify.find("READY=1", mark) is None:
                time.sleep(0.05)
                continue
            try:
                hello = client.call(self.socket, "hello", timeout=1.0)
            except ControlError as exc:
                problem = f"READY=1 received but hello failed: {exc}"
                time.sleep(0.05)
                continue
            if hello.get("pid") != daemon.pid:
                problem = f"hello answered by pid {hello.get('pid')}, not {daemon.pid}"
                time.sleep(0.05)
                continue
            break
        else:
            problem = f"no READY=1 and hello within {START_DEADLINE_S:g} s ({problem})"
            self.fail(problem, daemon)
        if not daemon.alive():
            self.fail(problem, daemon)
        if settle:
            self.settle(daemon)
        return daemon

    def settle(self, daemon: DaemonProcess | None = None, timeout: float = 10.0) -> None:
        """Wait until at least one ingest cycle ran and no watcher is still starting."""

        def settled() -> bool:
            try:
                st = self.status()
            except ControlError:
                return False
            if st["cycles"] < 1:
                return False
            roots = [r for s in st["sources"] for r in s["roots"]]
            return all(r["state"] != "starting" for r in roots)

        try:
            wait_until(settled, timeout, what="the start-up scan and the watchers")
        except AssertionError as exc:
            self.fail(str(exc), daemon)

    def fail(self, problem: str, daemon: DaemonProcess | None = None) -> NoReturn:
        raise AssertionError(f"{problem}\n{self.diagnostics(daemon)}")

    def diagnostics(self, daemon: DaemonProcess | None = None) -> str:
        """Everything useful after a failure: the daemon's output, the log, notifications."""
        parts = []
        for d in [daemon] if daemon else self.daemons[-2:]:
            if d is not None:
                parts.append(d.output())
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else "(none)"
        parts.append(f"--- {self.log_file} (tail) ---\n{log[-8000:]}")
        parts.append(f"--- NOTIFY_SOCKET datagrams ---\n{self.notify.summary()}")
        return "\n".join(parts)

    def stop(
        self, daemon: DaemonProcess, signum: int = signal.SIGTERM, timeout: float = 10.0
    ) -> tuple[int | None, float]:
        """Send ``signum`` and wait; returns (exit code or None if still running, seconds)."""
        t0 = time.monotonic()
        daemon.signal(signum)
        try:
            rc: int | None = daemon.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - t0

    def kill(self, daemon: DaemonProcess) -> int:
        """SIGKILL (after SIGCONT, in case it was stopped) and reap."""
        if daemon.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGCONT)
                os.kill(daemon.pid, signal.SIGKILL)
        return daemon.proc.wait(10)

    def close(self) -> None:
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                self.kill(daemon)
        self.notify.close()
        shutil.rmtree(self.short, ignore_errors=True)

    # -- talking to it --------------------------------------------------------------------

    def call(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        return client.call(self.socket, cmd, args, timeout=timeout)

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``python -m sufd.cli.sufctl ARGS`` in the same environment (no NOTIFY_SOCKET)."""
        env = self.command_env()
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        return subprocess.run(
            [sys.executable, "-m", "sufd.cli.sufctl", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_sufd(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``python -m sufd ARGS`` to completion (e.g. a second ``run`` that must refuse)."""
        return subprocess.run(
            [sys.executable, "-m", "sufd", *args],
            env=self.command_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def report(self, kind: str = "daily", *extra: str) -> dict[str, Any]:
        proc = self.ctl("report", kind, "--json", *extra)
        assert proc.returncode == 0, f"sufctl report exited {proc.returncode}: {proc.stderr}"
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    # -- reading what it did --------------------------------------------------------------

    def events_in_store(self) -> Counter[Usage]:
        """Every event in the ledger, as :class:`Usage` values (read-only connection)."""
        if not self.db.exists():
            return Counter()
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(
                "SELECT source, ts, input, output, cache_write_5m + cache_write_1h, cache_read,"
                " reasoning, total FROM events"
            ).fetchall()
        finally:
            conn.close()
        return Counter(Usage(*row) for row in rows)

    def has_events(self, expected: Iterable[Usage]) -> bool:
        """Whether every expected event is in the store (at least once)."""
        store = self.events_in_store()
        return all(store[u] >= 1 for u in expected)

    def log_records(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        out = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def log_events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        """Structured log records whose ``event`` is ``name`` (and whose fields match)."""
        return [
            r
            for r in self.log_records()
            if r.get("event") == name and all(r.get(k) == v for k, v in match.items())
        ]

    # -- writing source files -------------------------------------------------------------

    def claude_file(self, project: str = "-home-dev-proj", session: str = "s1") -> Path:
        return self.home / ".claude" / "projects" / project / f"{session}.jsonl"

    def codex_file(self, name: str = "a") -> Path:
        return (
            self.home
            / ".codex"
            / "sessions"
            / "2026"
            / "03"
            / "01"
            / f"rollout-2026-03-01T10-00-00-{name}.jsonl"
        )

    def write_config(self, text: str) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)


# ------------------------------------------------------------------------------------------
# source lines


@dataclass(frozen=True, order=True)
class Usage:
    """One event as the ledger must hold it (token classes disjoint, Anthropic semantics)."""

    source: str
    ts: int  # epoch ms
    input: int
    output: int
    cache_write: int = 0
    cache_read: int = 0
    reasoning: int = 0
    total: int = 0


def iso(seconds: float) -> str:
    """``BASE_TS`` plus ``seconds``, in the ``2026-03-01T10:00:00.000Z`` shape."""
    t = BASE_TS + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _ms(seconds: float) -> int:
    return int((BASE_TS + timedelta(seconds=seconds)).timestamp() * 1000)


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class ClaudeSession:
    """Builds Claude Code transcript lines; each usage line is one new request."""

    def __init__(self, session: str = "s1", cwd: str = "/home/dev/proj") -> None:
        self.session = session
        self.cwd = cwd
        self.n = 0

    def user(self, at: float = 0.0) -> bytes:
        """A user prompt line (no usage)."""
        return _compact(
            {
                "parentUuid": None,
                "isSidechain": False,
                "userType": "external",
                "cwd": self.cwd,
                "sessionId": self.session,
                "version": "1.0.0",
                "type": "user",
                "message": {"role": "user", "content": "hi"},
                "uuid": f"{self.session}-u{self.n}",
                "timestamp": iso(at),
            }
        )

    def assistant(
        self,
        at: float,
        *,
        input: int,
        output: int,
        cache_write: int = 0,
        cache_read: int = 0,
        model: str = CLAUDE_MODEL,
    ) -> tuple[bytes, Usage]:
        """An assistant line with usage, and the event it must become."""
        self.n += 1
        msg_id = f"msg_{self.session}_{self.n:04d}"
        line = _compact(
            {
                "parentUuid": f"{self.session}-u{self.n}",
                "isSidechain": False,
                "userType": "external",
                "cwd": self.cwd,
                "sessionId": self.session,
                "version": "1.0.0",
                "gitBranch": "main",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "ok"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": input,
                        "cache_creation_input_tokens": cache_write,
                        "cache_read_input_tokens": cache_read,
                        "output_tokens": output,
                        "service_tier": "standard",
                    },
                },
                "requestId": f"req_{self.session}_{self.n:04d}",
                "type": "assistant",
                "uuid": f"{self.session}-a{self.n}",
                "timestamp": iso(at),
            }
        )
        total = input + output + cache_write + cache_read
        usage = Usage("claude", _ms(at), input, output, cache_write, cache_read, 0, total)
        return line, usage


class CodexSession:
    """Builds Codex rollout lines with cumulative ``total_token_usage``."""

    def __init__(self, session: str = "0199aaaa-0000-7000-8000-000000000001") -> None:
        self.session = session
        self.totals = {"input": 0, "cached": 0, "output": 0, "reasoning": 0, "total": 0}

    def meta(self, at: float = 0.0, cwd: str = "/home/dev/proj") -> bytes:
        return _compact(
            {
                "timestamp": iso(at),
                "type": "session_meta",
                "payload": {"id": self.session, "cwd": cwd, "cli_version": "0.46.0"},
            }
        )

    def turn_context(self, at: float = 0.0, model: str = CODEX_MODEL) -> bytes:
        return _compact(
            {
                "timestamp": iso(at),
                "type": "turn_context",
                "payload": {"cwd": "/home/dev/proj", "model": model, "effort": "medium"},
            }
        )

    def token_count(
        self, at: float, *, input: int, cached: int, output: int, reasoning: int
    ) -> tuple[bytes, Usage]:
        """One ``token_count`` event (input includes cached, output includes reasoning)."""
        last = {
            "input_tokens": input,
            "cached_input_tokens": cached,
            "output_tokens": output,
            "reasoning_output_tokens": reasoning,
            "total_tokens": input + output,
        }
        for key, value in zip(self.totals, last.values(), strict=True):
            self.totals[key] += value
        total = dict(zip(last, self.totals.values(), strict=True))
        line = _compact(
            {
                "timestamp": iso(at),
                "type": "event_msg",
                "payload": {
                    "type": "token_count",
                    "info": {"total_token_usage": total, "last_token_usage": last},
                    "rate_limits": {"primary": {"used_percent": 1.0}},
                },
            }
        )
        usage = Usage(
            "codex", _ms(at), input - cached, output, 0, cached, reasoning, input + output
        )
        return line, usage


def append_lines(path: Path, *lines: bytes) -> int:
    """Append complete lines (creating the file and its directories); returns bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(line + b"\n" for line in lines)
    with path.open("ab") as f:
        f.write(data)
    return len(data)


def totals_of(events: Iterable[Usage]) -> dict[str, int]:
    """What ``sufctl report --json`` must show as totals for these events."""
    evs = list(events)
    return {
        "events": len(evs),
        "inputTokens": sum(e.input for e in evs),
        "outputTokens": sum(e.output for e in evs),
        "cacheCreationTokens": sum(e.cache_write for e in evs),
        "cacheReadTokens": sum(e.cache_read for e in evs),
        "reasoningTokens": sum(e.reasoning for e in evs),
        "totalTokens": sum(e.total for e in evs),
    }


def report_totals(report: Mapping[str, Any]) -> dict[str, int]:
    """The same keys, picked from a report's ``totals``."""
    totals = report["totals"]
    return {k: int(totals[k]) for k in totals_of([])}


# ------------------------------------------------------------------------------------------
# fixture


@pytest.fixture(name="harness")
def harness_fixture(tmp_path: Path) -> Iterator[Harness]:
    """An isolated user for the real daemon; every daemon started is killed at teardown."""
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()
