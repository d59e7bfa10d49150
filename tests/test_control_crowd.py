"""Idle and streaming clients never lock anyone out of the control socket (issue 12 item 7).

Every test runs the real ``sufd run --foreground`` (:mod:`tests.daemon_harness`), crowds its
socket with raw connections that never send a byte and with ``tail`` streams (the exact bytes
``sufctl tail`` sends), and then runs the real ``sufctl`` as a subprocess. ``status``, ``ping``
and ``shutdown`` must succeed: exit 0 within the client's own 5 s timeout. The design promises
an answer within 1 s; a test only checks success, never a timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sufd.control import client
from sufd.control.protocol import MAX_LINE
from sufd.errors import ControlError
from tests.daemon_harness import (
    ClaudeSession,
    DaemonProcess,
    Harness,
    append_lines,
)

pytestmark = pytest.mark.integration

EXIT_BUSY = 75  # sysexits.h EX_TEMPFAIL: try again later
STREAM_BOUND = 200  # a daemon must refuse some tail stream before this many


class Crowd:
    """Connections held open by the test: idle ones (never send) and ``tail`` streams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.idle: list[socket.socket] = []
        self.tails: list[Tail] = []

    def connect_idle(self, n: int) -> None:
        for _ in range(n):
            self.idle.append(connect(self.path))

    def open_tails(self, n: int) -> None:
        for _ in range(n):
            tail = Tail(self.path, f"tail-{len(self.tails)}")
            self.tails.append(tail)
            assert tail.streaming, f"tail stream {len(self.tails)} refused: {tail.ack}"

    def close(self) -> None:
        for sock in self.idle:
            sock.close()
        for tail in self.tails:
            tail.close()


@contextlib.contextmanager
def crowd(h: Harness) -> Iterator[Crowd]:
    c = Crowd(h.socket)
    try:
        yield c
    finally:
        c.close()


class Tail:
    """One raw ``tail`` request, as ``sufctl tail`` sends it; ``ack`` is the daemon's answer."""

    def __init__(self, path: Path, req_id: str) -> None:
        self.sock = connect(path)
        try:
            self.file = self.sock.makefile("rb")
            self.sock.sendall(tail_request(req_id))
            self.ack = read_reply(self.file)
        except BaseException:
            self.sock.close()
            raise

    @property
    def streaming(self) -> bool:
        return self.ack.get("ok") is True and self.ack.get("result") == {"streaming": True}

    def next_line(self) -> bytes:
        """The next line the daemon pushes (b"" at a clean end of the stream)."""
        return bytes(self.file.readline(MAX_LINE + 1))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def connect(path: Path) -> socket.socket:
    """A connected socket (10 s timeout), waiting while the listen queue is full."""
    deadline = time.monotonic() + 10
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(os.fspath(path))
            return sock
        except BlockingIOError:  # EAGAIN: the daemon has not accepted the earlier ones yet
            sock.close()
            assert time.monotonic() < deadline, "the daemon accepted nothing for 10 s"
            time.sleep(0.01)
        except BaseException:
            sock.close()
            raise


def tail_request(req_id: str) -> bytes:
    return json.dumps({"v": 1, "id": req_id, "cmd": "tail", "args": {}}).encode() + b"\n"


def read_reply(f: Any) -> dict[str, Any]:
    line = f.readline(MAX_LINE + 1)
    assert line, "the daemon closed the connection without a reply"
    obj = json.loads(line)
    assert isinstance(obj, dict), line
    return obj


def quiet() -> None:
    """Give the daemon a moment to finish with connections that just closed (start-up's
    ``hello`` and ``status``, an earlier ``sufctl``): a crowd connected while one still held a
    slot would leave the daemon a slot short of the lock-out these tests reproduce."""
    time.sleep(0.5)


def assert_priority_verbs_answer(h: Harness, daemon: DaemonProcess, when: str) -> None:
    """``sufctl status`` and ``sufctl ping`` succeed (exit 0 within their 5 s timeout)."""
    for verb, expected in (
        ("status", f"RUNNING   pid {daemon.pid},"),
        ("ping", f"pong from sufd pid {daemon.pid}"),
    ):
        proc = h.ctl(verb, "--timeout", "5")
        assert proc.returncode == 0 and expected in proc.stdout, (
            f"with {when}, `sufctl {verb}` exited {proc.returncode}:"
            f" {proc.stderr.strip()!r} {proc.stdout[:200]!r}\n{h.diagnostics(daemon)}"
        )
    assert daemon.alive()
    assert "Traceback" not in daemon.text()


def test_status_and_ping_get_through_hundreds_of_idle_clients(harness: Harness) -> None:
    """issue 12 item 7: 16, then 316 same-user connections that never send must not lock
    ``sufctl status`` or ``sufctl ping`` out (more than the daemon keeps open at once)."""
    h = harness
    daemon = h.start()
    with crowd(h) as c:
        quiet()
        c.connect_idle(16)
        assert_priority_verbs_answer(h, daemon, "16 idle clients")
        quiet()
        c.connect_idle(300)
        assert_priority_verbs_answer(h, daemon, "316 idle clients")
        # More than it keeps open: the one waiting longest was told why, then closed cleanly.
        with c.idle[0].makefile("rb") as f:
            told = read_reply(f)
            assert told["error"]["code"] == "idle_timeout", told
            assert f.readline() == b""


def test_status_and_ping_get_through_many_tail_streams(harness: Harness) -> None:
    """issue 12 item 7: 16 and more ``tail`` streams (plus idle clients) must not lock
    ``status``/``ping`` out, and every stream still gets the events committed afterwards."""
    h = harness
    session = ClaudeSession()
    path = h.claude_file()
    append_lines(path, session.user(0))
    daemon = h.start()
    with crowd(h) as c:
        quiet()
        c.open_tails(16)
        assert_priority_verbs_answer(h, daemon, "16 tail streams")
        c.open_tails(8)
        c.connect_idle(16)
        assert_priority_verbs_answer(h, daemon, "24 tail streams and 16 idle clients")
        line, usage = session.assistant(5, input=1234, output=56)
        append_lines(path, line)
        for tail in c.tails:
            pushed = json.loads(tail.next_line())["event"]
            assert (pushed["source"], pushed["input"], pushed["output"]) == (
                "claude",
                usage.input,
                usage.output,
            ), pushed


def test_shutdown_gets_through_idle_and_streaming_clients(harness: Harness) -> None:
    """issue 12 item 7: ``sufctl shutdown`` with 216 idle clients and 16 streams attached
    stops the daemon cleanly, and the streams end with an end of file."""
    h = harness
    daemon = h.start()
    with crowd(h) as c:
        quiet()
        c.open_tails(16)
        c.connect_idle(216)
        proc = h.ctl("shutdown", "--timeout", "5")
        assert proc.returncode == 0 and f"pid {daemon.pid}" in proc.stdout, (
            f"`sufctl shutdown` exited {proc.returncode}: {proc.stderr.strip()!r}"
        )
        try:
            rc: int | None = daemon.proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 0, f"the daemon did not stop cleanly (exit {rc})\n{h.diagnostics(daemon)}"
        for tail in c.tails:
            assert tail.next_line() == b""


def test_tail_over_the_stream_limit_is_answered_busy_not_reset(harness: Harness) -> None:
    """issue 12 item 7: a ``tail`` beyond the daemon's stream limit gets one JSON ``busy``
    reply carrying its request id, on a connection that is not reset (and still answers);
    ``sufctl tail`` says busy (its own exit code), never unreachable; ``status`` still works."""
    h = harness
    daemon = h.start()
    with crowd(h) as c:
        while True:
            assert len(c.tails) < STREAM_BOUND, "the daemon never limited its tail streams"
            tail = Tail(h.socket, "over")
            if not tail.streaming:
                break
            c.tails.append(tail)
        try:
            assert tail.ack["id"] == "over", tail.ack
            assert tail.ack["ok"] is False and tail.ack["error"]["code"] == "busy", tail.ack
            # The same connection still works: the refusal was an answer, not a hang-up.
            tail.sock.sendall(b'{"v":1,"id":"then","cmd":"ping"}\n')
            after = read_reply(tail.file)
            assert after["ok"] is True and after["id"] == "then", after
        finally:
            tail.close()

        proc = h.ctl("tail", "--timeout", "5")
        assert proc.returncode == EXIT_BUSY, (proc.returncode, proc.stderr)
        assert "busy" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert_priority_verbs_answer(h, daemon, f"{len(c.tails)} tail streams")


def test_client_reports_busy_when_the_daemon_hung_up_before_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 12 item 7: a daemon that answered ``busy`` and hung up before the request went
    out must be reported as busy, not as a broken pipe ("unreachable")."""
    path = tmp_path / "busy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen()
    hung_up = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(b'{"v":1,"id":null,"ok":false,"error":{"code":"busy","message":"full"}}\n')
        conn.close()
        hung_up.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connect = client._connect

    def connect_then_wait(p: Path, timeout: float) -> socket.socket:
        sock = connect(p, timeout)
        assert hung_up.wait(5), "the test server never hung up"
        return sock

    monkeypatch.setattr(client, "_connect", connect_then_wait)
    try:
        with pytest.raises(ControlError) as exc_info:
            client.call(path, "status", timeout=2.0)
        assert getattr(exc_info.value, "code", None) == "busy", repr(exc_info.value)
        assert isinstance(exc_info.value, client.DaemonBusy), repr(exc_info.value)
    finally:
        thread.join(5)
        listener.close()
