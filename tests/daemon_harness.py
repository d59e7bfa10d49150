"""Run the real sufd daemon as a subprocess, the way a service manager would.

A :class:`Harness` owns one isolated user (``make_env``: HOME, XDG dirs) plus a short private
runtime directory (so the socket path stays well under ``sun_path``'s limit and never falls back
to the shared ``/tmp/sufd-UID``), and a fake ``NOTIFY_SOCKET``: a datagram socket bound by the
test, collected by a background thread. :meth:`Harness.start` runs
``python -m sufd run --foreground`` and waits for ``READY=1`` *and* a successful ``hello``; on
failure the daemon's stderr and log file are put in the assertion message. Every daemon
started is killed at teardown, and so is a detached one (``sufd run --daemon``, ``sufd
start``) still holding the user's instance lock.

Other ways in keep their own launch and share the rest: :meth:`Harness.launch` runs any argv
(a unit's decoded ``ExecStart``) in any environment, :attr:`Harness.launcher` puts a program
before the interpreter (``setpriv``, which execs, or ``strace``, which forks: then
:attr:`Harness.launcher_forks`), and :meth:`Harness.wait_ready` waits for one such daemon
(``hello`` alone with ``notify=False``) and says what went wrong instead of raising.

The line builders write compact JSON in the shapes Claude Code and the Codex CLI use, and
return the usage each line must become in the ledger (:class:`Usage`), so tests compare the
store and the reports against what they wrote, never against sufd's own output.

Every test module gets the ``harness`` fixture: ``tests/conftest.py`` registers this module
as a plugin.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from sufd.daemon.runtime import read_lock_pid
from sufd.errors import ControlError
from tests.conftest import SufdEnv, make_env
from tests.fakebin import pid_alive

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
    "kill_lock_holders",
    "wait_until",
]

START_DEADLINE_S = 20.0  # a deadline: start-up on two busy cores can take seconds
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
    notify_mark: int = 0  # NOTIFY_SOCKET notices before this one are an earlier daemon's
    forked: bool = False  # started by a launcher that forks it (strace): proc is the launcher
    daemon_pid: int | None = None  # then: sufd's own pid, once it answered hello

    @property
    def pid(self) -> int:
        """The daemon's pid (the launcher's until a forked daemon answered ``hello``)."""
        return self.daemon_pid if self.daemon_pid is not None else self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def text(self) -> str:
        """Everything the daemon printed, stdout then stderr (JSON log lines off a TTY)."""
        return "".join(
            path.read_text(errors="replace") for path in (self.stdout, self.stderr) if path.exists()
        )

    def stderr_events(self, name: str) -> list[dict[str, Any]]:
        """Records named ``name`` that the daemon wrote on stderr."""
        text = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        return [r for r in _json_records(text) if r.get("event") == name]

    def output(self) -> str:
        parts = []
        for name, path in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- daemon {name} (pid {self.pid}) ---\n{text[-2500:]}")
        return "\n".join(parts)


def _json_records(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                out.append(obj)
    return out


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(") ", 1)[1].split()[1])


def kill_lock_holders(*locks: Path) -> None:
    """SIGKILL the process whose pid an instance lock holds, if it runs: teardown of a
    detached daemon (``sufd run --daemon``, ``sufd start``) a test or a failure left behind.

    Only a lock still ``flock``ed counts: the pid in one a killed daemon left behind may
    belong to another process by now.
    """
    for lock in locks:
        pid = read_lock_pid(lock)
        if pid is None or pid == os.getpid() or not pid_alive(pid) or not _flocked(lock):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _flocked(path: Path) -> bool:
    """Whether some process holds an ``flock`` on ``path`` (ours is released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


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
        # Put before the interpreter in the daemon's argv: a launcher that execs (same pid),
        # or one that forks the daemon as its child (strace -f) when launcher_forks is set.
        self.launcher: list[str] = []
        self.launcher_forks = False
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

    def user_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The user's environment for one-shot commands: no service manager variables."""
        env = self.command_env(extra)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        return env

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> DaemonProcess:
        """Start ``python -m sufd run --foreground ARGS`` without waiting for anything."""
        argv = [*self.launcher, sys.executable, "-m", "sufd", "run", "--foreground", *args]
        return self.launch(argv, env=self.command_env(env), forked=self.launcher_forks)

    def launch(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        executable: str | None = None,
        cwd: Path | str | None = None,
        forked: bool = False,
    ) -> DaemonProcess:
        """Start ``argv`` as a daemon of this harness (output in files, killed at teardown)
        in exactly ``env``, without waiting; ``forked``: argv's program forks the daemon."""
        n = len(self.daemons)
        out, err = self.tmp / f"daemon-{n}.stdout", self.tmp / f"daemon-{n}.stderr"
        mark = self.notify.mark()
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                argv,
                executable=executable,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=fo,
                stderr=fe,
                start_new_session=True,
            )
        daemon = DaemonProcess(proc, out, err, time.monotonic(), mark, forked)
        self.daemons.append(daemon)
        return daemon

    def start(
        self, *args: str, env: Mapping[str, str] | None = None, settle: bool = True
    ) -> DaemonProcess:
        """Start the daemon and wait (deadline 20 s) for ``READY=1`` and ``hello``.

        ``settle`` also waits for the start-up catch-up scan to finish and for every
        watcher to have armed (or found its root missing), so later counts start clean.
        """
        daemon = self.spawn(*args, env=env)
        problem = self.wait_ready(daemon)
        if problem is None and not daemon.alive():
            problem = f"daemon exited with {daemon.proc.returncode} right after start-up"
        if problem is not None:
            self.fail(problem, daemon)
        if settle:
            self.settle(daemon)
        return daemon

    def wait_ready(
        self,
        daemon: DaemonProcess,
        timeout: float = START_DEADLINE_S,
        *,
        notify: bool = True,
        interval: float = 0.05,
        hello_timeout: float = 1.0,
    ) -> str | None:
        """Wait for the daemon's ``READY=1`` (unless ``notify`` is false) and for ``hello``
        answered by its pid; return ``None`` once it is ready, else what went wrong (it
        exited, or the deadline passed) for the caller to fail or record."""
        deadline = time.monotonic() + timeout
        problem = "READY=1 not received" if notify else "hello not answered"
        while True:
            if not daemon.alive():
                return f"daemon exited with {daemon.proc.returncode} during start-up"
            if not notify or self.notify.find("READY=1", daemon.notify_mark) is not None:
                try:
                    pid = client.call(self.socket, "hello", timeout=hello_timeout).get("pid")
                except ControlError as exc:
                    problem = f"{'READY=1 received but ' if notify else ''}hello failed: {exc}"
                else:
                    if (
                        daemon.forked
                        and daemon.daemon_pid is None
                        and isinstance(pid, int)
                        and _parent_pid(pid) == daemon.proc.pid
                    ):
                        daemon.daemon_pid = pid  # the launcher's child: sufd itself
                    if pid == daemon.pid:
                        return None
                    problem = f"hello answered by pid {pid}, not {daemon.pid}"
            if time.monotonic() >= deadline:
                what = "READY=1 and hello" if notify else "hello"
                return f"no {what} within {timeout:g} s ({problem})"
            time.sleep(interval)

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

    def with_diagnostics(self, what: str) -> Callable[[], str]:
        """``what`` followed by :meth:`diagnostics` taken when called: a ``wait_until`` message."""
        return lambda: f"{what}\n{self.diagnostics()}"

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

    def kill(self, daemon: DaemonProcess, timeout: float = 10.0) -> int:
        """SIGKILL (after SIGCONT, in case it was stopped) and reap.

        A forking launcher (strace) exits by itself once its daemon is gone, having written
        out what it recorded; whatever else is left in its process group is killed then.
        """
        if daemon.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGCONT)
                os.kill(daemon.pid, signal.SIGKILL)
        try:
            return daemon.proc.wait(timeout)
        finally:
            if daemon.forked:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(daemon.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                self.kill(daemon)
        kill_lock_holders(self.lock, Path(os.path.realpath(self.db) + ".lock"))
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
        """``python -m sufd.cli.sufctl ARGS`` in the user's environment (no NOTIFY_SOCKET)."""
        return subprocess.run(
            [sys.executable, "-m", "sufd.cli.sufctl", *args],
            env=self.user_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_sufd(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """``python -m sufd ARGS`` to completion (e.g. a second ``run`` that must refuse), in
        the daemon's environment plus ``env``."""
        return subprocess.run(
            [sys.executable, "-m", "sufd", *args],
            env=self.command_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_detached(
        self, env: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """``sufd run --daemon`` as a user types it (no service manager variables), plus
        ``env``; a daemon it leaves holding :attr:`lock` is killed at teardown."""
        return subprocess.run(
            [sys.executable, "-m", "sufd", "run", "--daemon"],
            env=self.user_env(env),
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
        return _json_records(self.log_file.read_text(errors="replace"))

    def log_events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        """Structured log records whose ``event`` is ``name`` (and whose fields match)."""
        return [
            r
            for r in self.log_records()
            if r.get("event") == name and all(r.get(k) == v for k, v in match.items())
        ]

    def root_status(
        self, path: Path, status: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The ``status`` entry of the watched root ``path`` (state, backend, ...), if any."""
        st = self.status() if status is None else status
        roots = {r["path"]: r for s in st["sources"] for r in s["roots"]}
        root: dict[str, Any] | None = roots.get(str(path))
        return root

    # -- waiting for it -------------------------------------------------------------------

    def wait_events(
        self,
        events: Iterable[Usage],
        timeout: float = 5.0,
        what: str = "",
        *,
        interval: float = 0.05,
    ) -> float:
        """Wait until every one of ``events`` is in the ledger; return the seconds it took."""
        expected = list(events)
        t0 = time.monotonic()

        def detail() -> str:
            missing = sorted(set(expected) - set(self.events_in_store()))
            return (
                f"{what or 'events in the ledger'}; {len(missing)} missing, e.g. {missing[:5]}"
                f"\n{self.diagnostics()}"
            )

        wait_until(lambda: self.has_events(expected), timeout, interval=interval, what=detail)
        return time.monotonic() - t0

    def wait_log(self, name: str, timeout: float = 5.0, **match: Any) -> list[dict[str, Any]]:
        """Wait for log records named ``name`` (with fields matching ``match``); return them."""
        return wait_until(
            lambda: self.log_events(name, **match),
            timeout,
            what=self.with_diagnostics(f"log event {name} {match}"),
        )

    def wait_root(
        self, path: Path, state: str = "watching", timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait until the root ``path`` is in ``state`` after a first ingest cycle; return its
        ``status`` entry."""

        def reached() -> dict[str, Any] | None:
            with contextlib.suppress(ControlError):
                st = self.status()
                root = self.root_status(path, st)
                if root and root["state"] == state and st["cycles"] >= 1:
                    return root
            return None

        return wait_until(
            reached,
            timeout,
            what=self.with_diagnostics(f"root {path} {state}"),
        )

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
