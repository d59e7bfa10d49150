"""Socket security and robustness of the control socket (acceptance item).

Real-daemon tests start ``python -m sufd run --foreground`` for an isolated user
(:mod:`tests.daemon_harness`) and talk to it over raw sockets, so every byte on the wire is
the test's own. Timeouts and client limits are checked on an in-process
:class:`sufd.control.server.ControlServer` with a 1 s idle timeout, so the module stays fast.

Tests that need another uid run as root and drop to uid 65534 in a child process; they skip
when not root or when no Python interpreter is reachable for that uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sufd.control import client
from sufd.control import server as control
from sufd.control.protocol import (
    COMMANDS,
    MAX_LINE,
    PROTOCOL,
    ProtocolError,
    decode_request,
    encode,
    error,
    ok,
)
from sufd.errors import ControlError
from tests.conftest import REPO, SufdEnv, make_env
from tests.daemon_harness import (
    DaemonProcess,
    Harness,
)

pytestmark = pytest.mark.integration

NOBODY = 65534
PROTOCOL_ERRORS = {"bad_json", "bad_request", "unsupported_protocol", "unknown_command"}


# -- the daemon --------------------------------------------------------------------------


def socket_path(env: SufdEnv) -> Path:
    return Path(env.env["XDG_RUNTIME_DIR"]) / "sufd" / "sufd.sock"


@pytest.fixture
def daemon(harness: Harness) -> DaemonProcess:
    """The real daemon of ``harness``'s user, ready (killed at teardown by the harness)."""
    return harness.start()


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A base dir another uid may traverse (pytest's own tmp dirs are 0700 for root)."""
    base = Path(tempfile.mkdtemp(prefix="sufd-sock-"))
    base.chmod(0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- raw socket helpers -------------------------------------------------------------------


class Conn:
    """One raw connection to the control socket."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(os.fspath(path))
        except BaseException:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, cmd: str, req_id: Any = 1, **fields: Any) -> None:
        self.send(json.dumps({"v": PROTOCOL, "id": req_id, "cmd": cmd, **fields}).encode() + b"\n")

    def reply(self) -> dict[str, Any] | None:
        """The next line as an object; ``None`` when the daemon closed the connection."""
        try:
            line = self.file.readline(MAX_LINE + 1)
        except ConnectionResetError:
            return None
        if not line:
            return None
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        return obj

    def closed_by_peer(self) -> bool:
        return self.reply() is None

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def error_code(reply: dict[str, Any] | None) -> str | None:
    assert reply is not None, "the daemon closed the connection without an error reply"
    assert reply.get("ok") is False, reply
    assert reply.get("v") == PROTOCOL, reply
    return str(reply["error"]["code"])


def assert_serves(h: Harness, d: DaemonProcess) -> None:
    """Another client still gets a full ``status``, quickly."""
    started = time.monotonic()
    result = h.call("status")
    assert result["pid"] == d.pid
    assert time.monotonic() - started < 2.0
    assert d.alive()


# -- file modes ---------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_socket_0600_in_runtime_dir_0700(harness: Harness, daemon: DaemonProcess) -> None:
    sock = harness.socket
    assert stat.S_ISSOCK(sock.lstat().st_mode)
    assert mode(sock) == 0o600
    assert mode(sock.parent) == 0o700
    assert sock.parent.lstat().st_uid == os.geteuid()
    assert mode(sock.parent / "sufd.lock") == 0o600


def test_ledger_files_0600_in_0700_dir(harness: Harness, daemon: DaemonProcess) -> None:
    db = harness.db
    assert db.exists()
    assert mode(db.parent) == 0o700
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if f.exists():
            assert mode(f) == 0o600, f


def test_log_file_0600_in_0700_dir(harness: Harness, daemon: DaemonProcess) -> None:
    log_dir = Path(harness.call("status")["paths"]["log_dir"])
    log_file = log_dir / "sufd.log"
    assert log_file.exists()
    assert mode(log_file) == 0o600
    assert mode(log_dir) == 0o700


def test_state_file_0600_in_0700_dir(harness: Harness, daemon: DaemonProcess) -> None:
    # state.json is written on the first pause; the pause is undone right away.
    harness.call("pause-watcher", {"sources": ["codex"], "reason": "mode test"})
    harness.call("resume-watcher", {"sources": ["codex"]})
    state_file = harness.state_file
    state_dir = state_file.parent
    assert state_file.exists()
    assert mode(state_file) == 0o600
    assert mode(state_dir) == 0o700, (
        f"state dir {state_dir} is {mode(state_dir):04o}, holding state.json and the logs"
    )


# -- unsafe runtime directory -------------------------------------------------------------


def run_refused(h: Harness) -> subprocess.CompletedProcess[str]:
    proc = h.run_sufd("run", "--foreground", timeout=20)
    assert proc.returncode != 0, f"sufd run started anyway:\n{proc.stderr}"
    assert not h.socket.exists() or not stat.S_ISSOCK(h.socket.lstat().st_mode)
    return proc


def test_refuses_world_writable_runtime_dir(harness: Harness) -> None:
    rundir = harness.runtime_dir
    rundir.mkdir()
    rundir.chmod(0o777)
    proc = run_refused(harness)
    assert str(rundir) in proc.stderr
    assert "0777" in proc.stderr
    assert f"chmod 700 {rundir}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert mode(rundir) == 0o777, "the daemon must refuse, not silently fix, the directory"


def test_refuses_group_readable_runtime_dir(harness: Harness) -> None:
    rundir = harness.runtime_dir
    rundir.mkdir()
    rundir.chmod(0o750)
    proc = run_refused(harness)
    assert str(rundir) in proc.stderr and "chmod 700" in proc.stderr


def test_refuses_symlinked_runtime_dir(harness: Harness, tmp_path: Path) -> None:
    rundir = harness.runtime_dir
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    rundir.symlink_to(target)
    proc = run_refused(harness)
    assert str(rundir) in proc.stderr
    assert "symlink" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(target.iterdir()) == [], "nothing may be created through the symlink"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_refuses_runtime_dir_owned_by_another_uid(harness: Harness) -> None:
    rundir = harness.runtime_dir
    rundir.mkdir(mode=0o700)
    os.chown(rundir, NOBODY, NOBODY)
    proc = run_refused(harness)
    assert str(rundir) in proc.stderr
    assert f"uid {NOBODY}" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- connections from another uid ---------------------------------------------------------

_CONNECT_AS_OTHER = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect_errno": exc.errno}))
    sys.exit(0)
data = b""
try:
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    rest = s.recv(65536)
except OSError as exc:
    rest = b""
print(json.dumps({"reply": data.decode(), "then_eof": rest == b""}))
"""


@functools.cache
def python_for_nobody() -> str | None:
    """An interpreter uid 65534 can execute (the venv's may live under a 0700 /root)."""
    if os.geteuid() != 0:
        return None
    candidates = [sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3"]
    candidates += [p for p in (shutil.which("python3"),) if p]
    for candidate in candidates:
        try:
            proc = as_nobody([candidate, "-c", "import socket, json"], env={})
        except OSError:
            continue
        if proc.returncode == 0:
            return candidate
    return None


def as_nobody(
    argv: list[str], *, env: dict[str, str], timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )


def need_nobody_python() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534")
    py = python_for_nobody()
    if py is None:
        pytest.skip("no Python interpreter executable by uid 65534")
    return py


def connect_as_nobody(py: str, path: Path) -> dict[str, Any]:
    proc = as_nobody([py, "-c", _CONNECT_AS_OTHER, os.fspath(path)], env={})
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_other_uid_stopped_by_runtime_dir_permissions(harness: Harness) -> None:
    py = need_nobody_python()
    h = harness
    d = h.start()
    xdg_runtime = Path(h.env.env["XDG_RUNTIME_DIR"])  # a private dir right under /tmp
    # Let uid 65534 reach sufd's own runtime dir, so that dir (0700) is what refuses.
    xdg_runtime.chmod(0o711)
    try:
        outcome = connect_as_nobody(py, h.socket)
    finally:
        xdg_runtime.chmod(0o700)
    assert outcome == {"connect_errno": 13}, outcome  # EACCES
    assert mode(h.socket.parent) == 0o700
    assert_serves(h, d)


def test_other_uid_refused_by_peer_credentials(harness: Harness) -> None:
    py = need_nobody_python()
    h = harness
    d = h.start()
    xdg_runtime = Path(h.env.env["XDG_RUNTIME_DIR"])  # a private dir right under /tmp
    rundir = h.socket.parent
    # Open the file-system path so the daemon's SO_PEERCRED check alone must refuse.
    xdg_runtime.chmod(0o711)
    rundir.chmod(0o711)
    h.socket.chmod(0o666)
    try:
        outcomes = [connect_as_nobody(py, h.socket) for _ in range(2)]
    finally:
        h.socket.chmod(0o600)
        rundir.chmod(0o700)
        xdg_runtime.chmod(0o700)
    for outcome in outcomes:
        assert "reply" in outcome, outcome
        reply = json.loads(outcome["reply"])
        assert error_code(reply) == "permission_denied"
        assert "status" not in json.dumps(reply.get("result", {}))
        assert outcome["then_eof"], "the connection must be closed after the refusal"
    rejected = h.wait_log("control.peer_rejected", 5)
    assert rejected[0]["peer_uid"] == NOBODY
    assert_serves(h, d)
    assert h.call("ping")["pong"] is True


# -- robustness: each misbehaviour, then another client is served -----------------------


def test_garbage_line_gets_bad_json(harness: Harness, daemon: DaemonProcess) -> None:
    with Conn(harness.socket) as c:
        c.send(b"\x00\xff\xfegarbage {{{ not json\n")
        assert error_code(c.reply()) == "bad_json"
        # The connection survives a bad request: the next one on it is answered.
        c.request("ping", req_id="after")
        reply = c.reply()
        assert reply is not None and reply["ok"] is True and reply["id"] == "after"
    assert_serves(harness, daemon)


@pytest.mark.parametrize("line", [b"[1, 2, 3]", b'"status"', b"42", b"null", b"true"])
def test_non_object_json_gets_bad_request(
    harness: Harness, daemon: DaemonProcess, line: bytes
) -> None:
    with Conn(harness.socket) as c:
        c.send(line + b"\n")
        assert error_code(c.reply()) == "bad_request"
    assert_serves(harness, daemon)


def test_unknown_command(harness: Harness, daemon: DaemonProcess) -> None:
    with Conn(harness.socket) as c:
        c.request("frobnicate", req_id=7)
        reply = c.reply()
        assert error_code(reply) == "unknown_command"
        assert reply is not None and "frobnicate" in reply["error"]["message"]
    assert_serves(harness, daemon)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_protocol_version(harness: Harness, daemon: DaemonProcess, version: Any) -> None:
    with Conn(harness.socket) as c:
        c.send(json.dumps({"v": version, "id": "x", "cmd": "status"}).encode() + b"\n")
        assert error_code(c.reply()) == "unsupported_protocol"
    assert_serves(harness, daemon)


def test_error_replies_echo_the_request_id(harness: Harness, daemon: DaemonProcess) -> None:
    # protocol.py: an error response carries the request's id, like a success does, so a
    # client that pipelines can tell which request failed.
    with Conn(harness.socket) as c:
        c.send(b'{"v":1,"id":7,"cmd":"frobnicate"}\n')
        c.send(b'{"v":2,"id":"x","cmd":"status"}\n')
        c.send(b'{"v":1,"id":9,"cmd":"status","args":[]}\n')
        c.send(b'{"v":1,"id":10,"cmd":"rescan","args":{"sources":["nope"]}}\n')
        replies = [c.reply() for _ in range(4)]
    assert [error_code(r) for r in replies] == [
        "unknown_command",
        "unsupported_protocol",
        "bad_request",
        "bad_request",
    ]
    assert [r["id"] for r in replies if r] == [7, "x", 9, 10]


def test_bad_args_and_missing_cmd(harness: Harness, daemon: DaemonProcess) -> None:
    with Conn(harness.socket) as c:
        c.send(b'{"v":1,"id":1}\n')
        assert error_code(c.reply()) == "bad_request"
        c.send(b'{"v":1,"id":2,"cmd":"status","args":[1]}\n')
        assert error_code(c.reply()) == "bad_request"
        c.send(b'{"v":1,"id":3,"cmd":"rescan","args":{"sources":["nope"]}}\n')
        assert error_code(c.reply()) == "bad_request"
    assert_serves(harness, daemon)


def test_two_mib_line_without_newline_is_refused_and_disconnected(
    harness: Harness,
    daemon: DaemonProcess,
) -> None:
    with Conn(harness.socket, timeout=10.0) as c:
        payload = b'{"v":1,"id":1,"cmd":"status","args":{"pad":"' + b"a" * (2 * 1024 * 1024)
        # The daemon may hang up before it has read everything: that is the point.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            c.send(payload)
        assert error_code(c.reply()) == "request_too_large"
        assert c.closed_by_peer()
    assert_serves(harness, daemon)


def test_line_just_under_the_limit_is_served(harness: Harness, daemon: DaemonProcess) -> None:
    with Conn(harness.socket, timeout=10.0) as c:
        head = b'{"v":1,"id":"big","cmd":"ping","args":{"pad":"'
        tail = b'"}}\n'
        c.send(head + b"a" * (MAX_LINE - len(head) - len(tail)) + tail)
        reply = c.reply()
        assert reply is not None and reply["ok"] is True and reply["id"] == "big"
    assert_serves(harness, daemon)


def test_stalled_client_does_not_block_others(harness: Harness, daemon: DaemonProcess) -> None:
    with Conn(harness.socket) as stalled:
        stalled.send(b'{"v":1,"id":1,"cmd":"sta')
        for _ in range(3):
            assert_serves(harness, daemon)
        # Finishing the line later is still answered (well within the idle timeout).
        stalled.send(b'tus"}\n')
        reply = stalled.reply()
        assert reply is not None and reply["ok"] is True
    assert_serves(harness, daemon)


def test_pipelined_requests_answered_in_order(harness: Harness, daemon: DaemonProcess) -> None:
    with Conn(harness.socket) as c:
        lines = [
            {"v": 1, "id": 1, "cmd": "ping"},
            {"v": 1, "id": "two", "cmd": "hello"},
            {"v": 1, "id": 3, "cmd": "nope"},
            {"v": 1, "id": [4], "cmd": "status"},
            {"v": 1, "id": 5, "cmd": "ping"},
        ]
        c.send(b"".join(json.dumps(x).encode() + b"\n" for x in lines) + b"\n\n")
        replies = [c.reply() for _ in lines]
        assert all(r is not None for r in replies)
        assert [r["ok"] for r in replies if r] == [True, True, False, True, True]
        # (The id of the failed one is checked in test_error_replies_echo_the_request_id.)
        assert [r["id"] for r in replies if r and r["ok"]] == [1, "two", [4], 5]
        assert replies[1] is not None and replies[1]["result"]["protocol"] == PROTOCOL
        assert replies[3] is not None and replies[3]["result"]["pid"] == daemon.pid
    assert_serves(harness, daemon)


def test_clients_vanishing_mid_request_do_not_hurt(harness: Harness, daemon: DaemonProcess) -> None:
    for i in range(10):
        # Half a line, then gone.
        with Conn(harness.socket) as c:
            c.send(b'{"v":1,"id":1,"cmd":"sta')
        # A full request, gone before the reply is read.
        with Conn(harness.socket) as c:
            c.request("status", req_id=i)
        # Connect and leave at once.
        Conn(harness.socket).close()
    # The daemon notices each departure asynchronously; the slots come back promptly.
    deadline = time.monotonic() + 2.0
    while True:
        try:
            assert_serves(harness, daemon)
            break
        except ControlError as exc:
            assert getattr(exc, "code", "busy") == "busy" and time.monotonic() < deadline, exc
            time.sleep(0.05)
    time.sleep(0.3)
    assert daemon.alive()
    assert "Traceback" not in daemon.text()
    assert "control.handler_failed" not in daemon.text()


def test_clients_beyond_sixteen_are_served(harness: Harness, daemon: DaemonProcess) -> None:
    """issue 12 item 7: connections that stay open after a request hold no slot; a
    seventeenth (and more) client is answered, and so are the sixteen afterwards."""
    conns: list[Conn] = []
    try:
        for i in range(24):
            c = Conn(harness.socket)
            conns.append(c)
            c.request("ping", req_id=i)
            reply = c.reply()
            assert reply is not None and reply["ok"] is True, (i, reply)
        assert_serves(harness, daemon)
        for i, c in enumerate(conns):
            c.request("hello", req_id=i)
            reply = c.reply()
            assert reply is not None and reply["ok"] is True and reply["id"] == i, (i, reply)
    finally:
        for c in conns:
            c.close()


def test_deeply_nested_request_is_bad_json_on_the_wire(
    harness: Harness, daemon: DaemonProcess
) -> None:
    with Conn(harness.socket) as c:
        c.send(b"[" * 100_000 + b"\n")
        assert error_code(c.reply()) == "bad_json"
    assert_serves(harness, daemon)


def test_request_id_that_cannot_be_utf8_encoded_still_gets_a_reply(
    harness: Harness,
    daemon: DaemonProcess,
) -> None:
    # Valid JSON: a lone surrogate escape. The daemon echoes the id in its reply.
    with Conn(harness.socket) as c:
        c.send(b'{"v":1,"id":"\\ud800","cmd":"ping"}\n')
        reply = c.reply()
        assert reply is not None, "the daemon hung up without any reply"
    assert_serves(harness, daemon)


def test_pause_reason_with_lone_surrogate_does_not_break_status(
    harness: Harness, daemon: DaemonProcess
) -> None:
    with Conn(harness.socket) as c:
        c.send(
            b'{"v":1,"id":1,"cmd":"pause-watcher","args":{"sources":["codex"],'
            b'"reason":"\\udcff bad"}}\n'
        )
        c.reply()
    try:
        assert_serves(harness, daemon)
    finally:
        with contextlib.suppress(ControlError):
            harness.call("resume-watcher", {"sources": ["codex"]})


# -- in-process server: idle timeout and client limit ------------------------------------


async def _ping(args: dict[str, Any]) -> dict[str, Any]:
    return {"pong": True, "echo": args.get("n")}


async def _boom(args: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("handler bug")


async def _open(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(os.fspath(path), limit=MAX_LINE + 1)


async def _ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: str, **args: Any
) -> dict[str, Any]:
    writer.write(json.dumps({"v": 1, "id": cmd, "cmd": cmd, "args": args}).encode() + b"\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    assert line, "connection closed"
    return dict(json.loads(line))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def _run_server_test(
    tmp_path: Path,
    scenario: Any,
    *,
    idle: float = 1.0,
    streams: dict[str, Any] | None = None,
    handlers: dict[str, Any] | None = None,
    **limits: int,
) -> None:
    path = tmp_path / "c.sock"

    async def main() -> None:
        server = control.ControlServer(
            path,
            {"ping": _ping, "reload": _boom, **(handlers or {})},
            streams,
            idle_timeout=idle,
            **limits,
        )
        await server.start()
        try:
            assert mode(path) == 0o600
            await asyncio.wait_for(scenario(path), timeout=25)
        finally:
            await server.close()
        assert not path.exists()

    asyncio.run(main())


def test_idle_timeout_disconnects_stalled_client(tmp_path: Path) -> None:
    async def scenario(path: Path) -> None:
        loop = asyncio.get_running_loop()
        r1, w1 = await _open(path)
        r2, w2 = await _open(path)
        try:
            started = loop.time()
            w1.write(b'{"v":1,"id":1,"cmd":"pi')  # half a line, then silence
            await w1.drain()
            # Meanwhile another client is served, and more than once.
            for n in range(3):
                assert (await _ask(r2, w2, "ping", n=n))["result"]["echo"] == n
            line = await asyncio.wait_for(r1.readline(), 5)
            elapsed = loop.time() - started
            assert json.loads(line)["error"]["code"] == "idle_timeout"
            assert await asyncio.wait_for(r1.read(), 2) == b""  # disconnected
            assert 0.8 <= elapsed < 3.0, elapsed
        finally:
            await _close(w1)
            await _close(w2)

    _run_server_test(tmp_path, scenario)


def test_idle_timeout_is_per_request_not_per_connection(tmp_path: Path) -> None:
    async def scenario(path: Path) -> None:
        r, w = await _open(path)
        silent_r, silent_w = await _open(path)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            n = 0
            while loop.time() - started < 2.5:  # well past the 1 s idle timeout in total
                assert (await _ask(r, w, "ping", n=n))["ok"] is True
                n += 1
                await asyncio.sleep(0.4)
            line = await asyncio.wait_for(silent_r.readline(), 1)
            assert json.loads(line)["error"]["code"] == "idle_timeout"
        finally:
            await _close(w)
            await _close(silent_w)

    _run_server_test(tmp_path, scenario)


def test_request_limit_answers_busy_but_never_to_priority_verbs(tmp_path: Path) -> None:
    """issue 12 item 7: beyond the requests in progress, a request is answered ``busy`` with its
    id on a connection that stays usable; ``ping`` and ``status`` are answered regardless; a
    finished request frees its slot."""
    release = asyncio.Event()

    async def slow(args: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"done": True}

    async def status(args: dict[str, Any]) -> dict[str, Any]:
        return {"pid": 1}

    async def scenario(path: Path) -> None:
        conns = [await _open(path) for _ in range(4)]
        try:
            for _, w in conns[:2]:
                w.write(b'{"v":1,"id":"slow","cmd":"rescan"}\n')
                await w.drain()
            await asyncio.sleep(0.2)  # both are in progress now
            r, w = conns[2]
            w.write(b'{"v":1,"id":"third","cmd":"rescan"}\n')
            await w.drain()
            busy = json.loads(await asyncio.wait_for(r.readline(), 5))
            assert busy["id"] == "third" and busy["error"]["code"] == "busy", busy
            assert (await _ask(r, w, "ping", n=3))["result"]["echo"] == 3  # same connection
            assert (await _ask(r, w, "status"))["result"] == {"pid": 1}
            release.set()
            for r, _ in conns[:2]:
                assert json.loads(await asyncio.wait_for(r.readline(), 5))["result"]["done"]
            r, w = conns[3]
            assert (await _ask(r, w, "rescan"))["result"] == {"done": True}
        finally:
            for _, w in conns:
                await _close(w)

    _run_server_test(
        tmp_path, scenario, handlers={"rescan": slow, "status": status}, max_requests=2
    )


def test_connection_limit_closes_the_longest_waiting_to_make_room(tmp_path: Path) -> None:
    """issue 12 item 7: at the connection limit a newcomer is served; the connection that
    waited longest for a request is told ``idle_timeout`` and closed cleanly."""

    async def scenario(path: Path) -> None:
        oldest = await _open(path)
        await asyncio.sleep(0.05)
        others = [await _open(path) for _ in range(2)]
        r, w = await _open(path)
        try:
            assert (await _ask(r, w, "ping", n=1))["result"]["echo"] == 1
            told = json.loads(await asyncio.wait_for(oldest[0].readline(), 5))
            assert told["error"]["code"] == "idle_timeout", told
            assert await asyncio.wait_for(oldest[0].read(), 2) == b""
            for i, (ro, wo) in enumerate(others):
                assert (await _ask(ro, wo, "ping", n=i))["result"]["echo"] == i
        finally:
            for _, wc in [oldest, *others, (r, w)]:
                await _close(wc)

    _run_server_test(tmp_path, scenario, idle=10.0, max_connections=3)


def test_connection_limit_with_nobody_waiting_answers_busy_not_reset(tmp_path: Path) -> None:
    """issue 12 item 7: when every connection is streaming, a newcomer gets one JSON ``busy``
    line and an end of file, even if it sends its request after that answer; the client
    reports it as busy, not unreachable."""

    async def forever(args: dict[str, Any]) -> Any:
        await asyncio.Event().wait()
        yield {}

    async def scenario(path: Path) -> None:
        tails = [await _open(path) for _ in range(2)]
        try:
            for r, w in tails:
                assert (await _ask(r, w, "tail"))["result"] == {"streaming": True}
            r, w = await _open(path)
            busy = json.loads(await asyncio.wait_for(r.readline(), 5))
            assert busy["ok"] is False and busy["error"]["code"] == "busy", busy
            w.write(b'{"v":1,"id":"late","cmd":"ping"}\n')  # after the answer: no broken pipe
            await w.drain()
            assert await asyncio.wait_for(r.read(), 5) == b""  # an end of file, not a reset
            await _close(w)
            with pytest.raises(client.DaemonBusy):
                await asyncio.to_thread(client.call, path, "ping", timeout=5.0)
        finally:
            for _, w in tails:
                await _close(w)

    _run_server_test(tmp_path, scenario, idle=10.0, streams={"tail": forever}, max_connections=2)


def test_handler_exception_is_an_error_reply(tmp_path: Path) -> None:
    async def scenario(path: Path) -> None:
        r, w = await _open(path)
        try:
            reply = await _ask(r, w, "reload")
            assert reply["ok"] is False and reply["error"]["code"] == "internal_error"
            # A command the server has no handler for is not a crash either.
            reply = await _ask(r, w, "status")
            assert reply["ok"] is False
            assert (await _ask(r, w, "ping", n=1))["ok"] is True
        finally:
            await _close(w)

    _run_server_test(tmp_path, scenario)


def test_stream_client_that_never_reads_is_dropped_and_frees_its_slot(tmp_path: Path) -> None:
    """A ``tail`` client that stops reading must not hold a slot forever.

    The bound used here is generous: the idle timeout (1 s) plus the 5 s the server already
    allows a reply to drain.
    """

    async def firehose(args: dict[str, Any]) -> Any:
        n = 0
        while True:
            n += 1
            yield {"n": n, "pad": "x" * 4096}
            await asyncio.sleep(0)

    async def scenario(path: Path) -> None:
        loop = asyncio.get_running_loop()
        stuck_r, stuck_w = await _open(path)
        try:
            stuck_w.write(b'{"v":1,"id":1,"cmd":"tail"}\n')
            await stuck_w.drain()
            await asyncio.sleep(0.5)  # the kernel buffers fill up; the client never reads
            started = loop.time()
            while True:
                r, w = await _open(path)
                try:
                    reply = await _ask(r, w, "tail")
                finally:
                    await _close(w)
                if reply["ok"]:
                    break
                assert reply["error"]["code"] == "busy"
                assert loop.time() - started < 8.0, (
                    "a tail client that never reads still holds the only stream slot after 8 s"
                )
                await asyncio.sleep(0.25)
        finally:
            stuck_w.transport.abort()

    _run_server_test(tmp_path, scenario, max_streams=1, streams={"tail": firehose})


# -- protocol fuzz ------------------------------------------------------------------------


def _check_decode(line: bytes) -> None:
    try:
        req_id, cmd, args = decode_request(line)
    except ProtocolError as exc:
        assert exc.code in PROTOCOL_ERRORS
        assert isinstance(exc.message, str) and exc.message
        encode(error(None, exc.code, exc.message))
        return
    assert cmd in COMMANDS
    assert isinstance(args, dict)
    encode(ok(req_id, {}))  # the id is echoed back, so the reply must be encodable


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
_request_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), st.just(2), _json),
        "id": _json,
        "cmd": st.one_of(st.sampled_from(COMMANDS), st.text(max_size=12), _json),
        "args": st.one_of(st.dictionaries(st.text(max_size=8), _json, max_size=3), _json),
    },
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        _json.map(lambda v: json.dumps(v).encode()),
        _request_like.map(lambda v: json.dumps(v).encode() + b"\n"),
        _request_like.map(lambda v: json.dumps(v).encode()[:-1]),
    )
)
def test_decode_request_fuzz(line: bytes) -> None:
    _check_decode(line)


def test_decode_request_deeply_nested_is_protocol_error() -> None:
    # Valid JSON under MAX_LINE (1 MiB), so the server passes it to decode_request.
    line = b'{"v":1,"cmd":"ping","args":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    assert len(line) < MAX_LINE
    with pytest.raises(ProtocolError) as exc_info:
        decode_request(line)
    assert exc_info.value.code in ("bad_json", "bad_request")


# -- sufctl exit codes --------------------------------------------------------------------


def test_sufctl_ping_without_daemon_exits_7(sufd_env: SufdEnv) -> None:
    proc = sufd_env.run("ctl", "ping", check=False, timeout=30)
    assert proc.returncode == 7, proc.stderr
    assert "not running" in proc.stderr
    assert "sufd start" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sufctl_status_without_daemon_exits_3(sufd_env: SufdEnv) -> None:
    proc = sufd_env.run("ctl", "status", check=False, timeout=30)
    assert proc.returncode == 3, proc.stderr
    assert "not running" in proc.stderr
    proc = sufd_env.run("ctl", "status", "--json", check=False, timeout=30)
    assert proc.returncode == 3
    assert json.loads(proc.stdout) == {"state": "not-running"}


def test_sufctl_status_with_stale_socket_exits_3(sufd_env: SufdEnv) -> None:
    # A socket file nobody listens on (a crashed daemon): ECONNREFUSED is "not running".
    path = socket_path(sufd_env)
    path.parent.mkdir(mode=0o700)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.fspath(path))
    s.close()
    proc = sufd_env.run("ctl", "status", check=False, timeout=30)
    assert proc.returncode == 3, proc.stderr


def test_sufctl_status_with_inaccessible_socket_dir_exits_4(open_base: Path) -> None:
    py = need_nobody_python()
    env = make_env(open_base)
    rundir = socket_path(env).parent
    rundir.mkdir(mode=0o700)  # root's, closed to uid 65534
    site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    child_env = {
        **env.env,
        "PYTHONPATH": os.pathsep.join([str(REPO), *sorted(site)]),
        "SUFD_RUNTIME_DIR": str(rundir),
    }
    probe = as_nobody([py, "-c", "import sufd.cli.sufctl, platformdirs"], env=child_env)
    if probe.returncode != 0:
        pytest.skip(f"sufd is not importable by uid 65534 with {py}: {probe.stderr[-300:]}")
    proc = as_nobody([py, "-m", "sufd.cli.sufctl", "status"], env=child_env)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "permission denied" in proc.stderr.lower()
    assert str(rundir) in proc.stderr
    proc = as_nobody([py, "-m", "sufd.cli.sufctl", "ping"], env=child_env)
    assert proc.returncode == 4, proc.stdout + proc.stderr


def test_client_call_uses_its_timeout_against_a_silent_server(tmp_path: Path) -> None:
    # A listener that accepts and never answers: the client gives up, DaemonUnreachable.
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.fspath(path))
    server.listen()
    held: list[socket.socket] = []
    t = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
    t.start()
    try:
        started = time.monotonic()
        with pytest.raises(client.DaemonUnreachable):
            client.call(path, "status", timeout=0.5)
        assert time.monotonic() - started < 3.0
    finally:
        t.join(5)
        for s in held:
            s.close()
        server.close()
