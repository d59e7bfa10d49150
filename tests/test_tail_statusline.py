"""``tail`` receives events pushed within the latency target; ``statusline`` output is checked
against the store (acceptance item).

Every expected number is computed here from the lines this module writes and Anthropic's
published per-million-token prices for claude-sonnet-4-20250514 (input $3, output $15, 5-minute
cache write $3.75, 1-hour cache write $6 = 2 x input, cache read $0.30); sufd's pricing code is
never called. The daemon runs as a real subprocess (``python -m sufd run --foreground``) for an
isolated user with ``TZ=UTC`` (:mod:`tests.daemon_harness`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sufd.errors import ControlError
from tests.conftest import SufdEnv, make_env
from tests.daemon_harness import (
    DaemonProcess,
    Harness,
    wait_until,
)

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-20250514"
USD_PER_MTOK = {"input": 3.00, "output": 15.00, "cw5m": 3.75, "cw1h": 6.00, "cache_read": 0.30}
PROJECT_CWD = "/home/dev/proj"
DAY_MS = 86_400_000
LATENCY_BOUND_S = 2.0
BIN = Path(sys.executable).parent


# -- the daemon --------------------------------------------------------------------------


@dataclass
class Setup:
    h: Harness
    root: Path
    project: Path

    @property
    def env(self) -> SufdEnv:
        return self.h.env


@pytest.fixture
def setup(harness: Harness) -> Setup:
    harness.daemon_env["SUFD_RECONCILE_INTERVAL_S"] = "3600"
    root = harness.home / ".claude" / "projects"
    project = root / "-home-dev-proj"
    project.mkdir(parents=True)
    return Setup(harness, root, project)


@pytest.fixture
def daemon(setup: Setup) -> DaemonProcess:
    """The daemon, with the root watched with inotify (not polled) after the startup scan."""
    d = setup.h.start()
    root = setup.h.wait_root(setup.root)
    assert root["backend"] == "inotify", root
    return d


def claude_events(h: Harness) -> int:
    sources = {s["name"]: s for s in h.status()["sources"]}
    return int(sources["claude"]["events"])


def wait_claude_events(h: Harness, n: int, timeout: float = 10.0) -> None:
    wait_until(
        lambda: claude_events(h) >= n,
        timeout,
        what=lambda: f"{n} events in the ledger\n{h.diagnostics()}",
    )
    assert claude_events(h) == n


# -- Claude Code lines and hand-computed costs --------------------------------------------


@dataclass(frozen=True)
class Usage:
    input: int
    output: int
    cw5m: int = 0
    cw1h: int = 0
    cache_read: int = 0

    @property
    def cost(self) -> float:
        # Every class stays under 200k tokens, so no long-context tier applies.
        p = USD_PER_MTOK
        return (
            self.input * p["input"]
            + self.output * p["output"]
            + self.cw5m * p["cw5m"]
            + self.cw1h * p["cw1h"]
            + self.cache_read * p["cache_read"]
        ) / 1e6

    @property
    def total(self) -> int:
        return self.input + self.output + self.cw5m + self.cw1h + self.cache_read


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def assistant_line(
    *, session: str, msg_id: str, req_id: str, ts_ms: int, usage: Usage, cwd: str = PROJECT_CWD
) -> bytes:
    """One compact JSON line shaped like Claude Code's assistant transcript lines."""
    obj = {
        "parentUuid": str(uuid.uuid4()),
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.0.14",
        "gitBranch": "main",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "Done."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.input,
                "cache_creation_input_tokens": usage.cw5m + usage.cw1h,
                "cache_read_input_tokens": usage.cache_read,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": usage.cw5m,
                    "ephemeral_1h_input_tokens": usage.cw1h,
                },
                "output_tokens": usage.output,
                "service_tier": "standard",
            },
        },
        "requestId": req_id,
        "type": "assistant",
        "uuid": str(uuid.uuid4()),
        "timestamp": iso(ts_ms),
    }
    line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    assert b'"usage":{' in line
    return line


def append(path: Path, data: bytes) -> float:
    """Append and return the monotonic time the write completed."""
    with path.open("ab") as f:
        f.write(data)
        f.flush()
    return time.monotonic()


def now_ms() -> int:
    return int(time.time() * 1000)


# -- tail readers -------------------------------------------------------------------------


class TailReader:
    """A streaming client on a thread; records when each event arrived (monotonic)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(os.fspath(path))
        self.file = self.sock.makefile("rb")
        self.sock.sendall(b'{"v":1,"id":"t","cmd":"tail","args":{}}\n')
        ack = json.loads(self.file.readline())
        assert ack["ok"] is True and ack["result"]["streaming"] is True, ack
        self.sock.settimeout(None)
        self.events: queue.Queue[tuple[float, dict[str, Any] | None]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for line in self.file:
                self.events.put((time.monotonic(), json.loads(line)["event"]))
        except (OSError, ValueError):
            pass
        self.events.put((time.monotonic(), None))

    def next(self, timeout: float = 5.0) -> tuple[float, dict[str, Any]]:
        try:
            at, event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no tail event within {timeout} s") from None
        assert event is not None, "the daemon closed the tail stream"
        return at, event

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.file.close()
        self.sock.close()


def has_connected_socket(pid: int) -> bool | None:
    """Whether process ``pid`` holds a connected Unix socket (Linux /proc; else ``None``)."""
    try:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        table = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return None
    return any(
        len(f) >= 7 and f[6] in inodes and f[5] == "03" for f in (line.split() for line in table)
    )


def check_event(
    event: dict[str, Any], *, session: str, key: str, ts_ms: int, usage: Usage, replaced: bool
) -> None:
    assert event["source"] == "claude"
    assert event["session"] == session
    assert event["project"] == PROJECT_CWD
    assert event["key"] == key
    assert event["ts"] == iso(ts_ms)
    assert event["model"] == MODEL
    assert event["input"] == usage.input
    assert event["output"] == usage.output
    assert event["cache_write"] == usage.cw5m + usage.cw1h
    assert event["cache_read"] == usage.cache_read
    assert event["total"] == usage.total
    assert event["cost"] == pytest.approx(usage.cost, rel=1e-9, abs=1e-12)
    assert event["replaced"] is replaced


# -- tail ---------------------------------------------------------------------------------


def test_tail_pushes_events_within_latency_without_polling(
    setup: Setup, daemon: DaemonProcess
) -> None:
    session = "sess-tail-latency"
    log = setup.project / f"{session}.jsonl"
    reader = TailReader(setup.h.socket)
    try:
        time.sleep(0.2)
        latencies = []
        for i in range(8):
            usage = Usage(input=1000 + i, output=200 + 7 * i, cw5m=50 * i, cw1h=3 * i, cache_read=i)
            ts = now_ms()
            line = assistant_line(
                session=session, msg_id=f"msg_lat_{i}", req_id=f"req_lat_{i}", ts_ms=ts, usage=usage
            )
            written = append(log, line)
            received, event = reader.next(timeout=10)
            latencies.append(received - written)
            check_event(
                event,
                session=session,
                key=f"msg_lat_{i}:req_lat_{i}",
                ts_ms=ts,
                usage=usage,
                replaced=False,
            )
            time.sleep(0.05)
        assert max(latencies) < LATENCY_BOUND_S, latencies
    finally:
        reader.close()
    st = setup.h.call("status")
    assert st["since_start"]["events"] == 8
    # Only the startup scan and watcher-driven "changes" cycles ran: nothing polled.
    assert st["last_cycle"]["kind"] == "changes", st["last_cycle"]


def test_sufctl_tail_json_count(setup: Setup, daemon: DaemonProcess) -> None:
    session = "sess-sufctl-tail"
    log = setup.project / f"{session}.jsonl"
    sufctl = BIN / "sufctl"
    argv = [str(sufctl)] if sufctl.exists() else [sys.executable, "-m", "sufd.cli.sufctl"]
    proc = subprocess.Popen(
        [*argv, "tail", "--json", "--count", "3"],
        env=setup.env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put((time.monotonic(), raw))

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        # Wait until sufctl is connected; it subscribes right after connecting.
        deadline = time.monotonic() + 10
        while not has_connected_socket(proc.pid):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if has_connected_socket(proc.pid) is None:  # no /proc: give it time
                time.sleep(1.5)
                break
            assert time.monotonic() < deadline, "sufctl tail never connected"
            time.sleep(0.02)
        time.sleep(0.3)
        usages = [Usage(input=10 * (i + 1), output=5 * (i + 1), cache_read=100) for i in range(3)]
        for i, usage in enumerate(usages):
            ts = now_ms()
            written = append(
                log,
                assistant_line(
                    session=session, msg_id=f"m{i}", req_id=f"r{i}", ts_ms=ts, usage=usage
                ),
            )
            try:
                received, raw = lines.get(timeout=10)
            except queue.Empty:
                raise AssertionError(f"sufctl tail printed nothing for event {i}") from None
            assert received - written < LATENCY_BOUND_S
            check_event(
                json.loads(raw),
                session=session,
                key=f"m{i}:r{i}",
                ts_ms=ts,
                usage=usage,
                replaced=False,
            )
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        pumper.join(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_tail_replaced_line(setup: Setup, daemon: DaemonProcess) -> None:
    session = "sess-replace"
    log = setup.project / f"{session}.jsonl"
    first = Usage(input=3, output=1, cw5m=5000, cache_read=12000)
    final = Usage(input=3, output=850, cw5m=5000, cache_read=12000)  # streamed: larger total
    ts = now_ms()
    reader = TailReader(setup.h.socket)
    try:
        time.sleep(0.2)
        append(
            log, assistant_line(session=session, msg_id="M1", req_id="R1", ts_ms=ts, usage=first)
        )
        _, event = reader.next(timeout=10)
        check_event(event, session=session, key="M1:R1", ts_ms=ts, usage=first, replaced=False)
        written = append(
            log, assistant_line(session=session, msg_id="M1", req_id="R1", ts_ms=ts, usage=final)
        )
        received, event = reader.next(timeout=10)
        assert received - written < LATENCY_BOUND_S
        check_event(event, session=session, key="M1:R1", ts_ms=ts, usage=final, replaced=True)
    finally:
        reader.close()
    st = setup.h.call("status")
    assert st["since_start"]["replaced"] == 1
    with sqlite3.connect(f"file:{setup.env.db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT output, cost FROM events WHERE key = 'M1:R1'").fetchall()
    conn.close()
    assert len(rows) == 1
    assert rows[0][0] == 850
    assert rows[0][1] == pytest.approx(final.cost, rel=1e-9)


def _lines(session: str, start: int, count: int, ts: int) -> bytes:
    return b"".join(
        assistant_line(
            session=session,
            msg_id=f"msg_{i}",
            req_id=f"req_{i}",
            ts_ms=ts,
            usage=Usage(input=100 + i % 7, output=20 + i % 11, cache_read=i),
        )
        for i in range(start, start + count)
    )


def test_slow_tail_client_does_not_stall_ingest_or_other_clients(
    setup: Setup, daemon: DaemonProcess
) -> None:
    session = "sess-slow"
    log = setup.project / f"{session}.jsonl"
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(os.fspath(setup.h.socket))
    slow.sendall(b'{"v":1,"id":"slow","cmd":"tail"}\n')  # ... and never reads a byte
    good = TailReader(setup.h.socket)
    total, chunk = 4000, 400
    try:
        time.sleep(0.2)
        ts = now_ms()
        for start in range(0, total, chunk):
            append(log, _lines(session, start, chunk, ts))
            got = [good.next(timeout=10)[1]["key"] for _ in range(chunk)]
            assert got == [f"msg_{i}:req_{i}" for i in range(start, start + chunk)]
            asked = time.monotonic()
            setup.h.call("status")
            assert time.monotonic() - asked < 1.0
        wait_claude_events(setup.h, total)
        assert "tail.client_too_slow" in daemon.text(), "the slow client never fell behind"
        # A new tail client still gets new events, promptly.
        late = TailReader(setup.h.socket)
        try:
            time.sleep(0.2)
            usage = Usage(input=1, output=2)
            written = append(
                log,
                assistant_line(
                    session=session, msg_id="late", req_id="late", ts_ms=ts, usage=usage
                ),
            )
            received, event = late.next(timeout=10)
            assert event["key"] == "late:late"
            assert received - written < LATENCY_BOUND_S
        finally:
            late.close()
    finally:
        good.close()
        slow.close()
    assert daemon.alive()


def test_tail_reader_is_not_dropped_by_a_large_catch_up_commit(
    setup: Setup, daemon: DaemonProcess
) -> None:
    """A client that reads promptly receives every event of a catch-up bigger than its queue.

    ``sufctl resume-watcher`` after a busy pause commits everything written meanwhile at once.
    """
    session = "sess-burst"
    log = setup.project / f"{session}.jsonl"
    reader = TailReader(setup.h.socket)
    try:
        setup.h.call("pause-watcher", {"sources": ["claude"], "reason": "burst test"})
        total = 2500
        append(log, _lines(session, 0, total, now_ms()))
        time.sleep(0.5)
        setup.h.call("resume-watcher", {"sources": ["claude"]})
        wait_claude_events(setup.h, total)
        keys = []
        for _ in range(total):
            keys.append(reader.next(timeout=10)[1]["key"])
        assert sorted(keys) == sorted(f"msg_{i}:req_{i}" for i in range(total))
    finally:
        reader.close()


def test_disconnected_tail_clients_free_their_slots(setup: Setup, daemon: DaemonProcess) -> None:
    """Sixteen ``sufctl tail`` sessions ended (Ctrl-C) while no usage is being written must
    not leave the daemon refusing everyone as busy until the next event arrives."""
    for _ in range(16):
        TailReader(setup.h.socket).close()
    deadline = time.monotonic() + 5
    while True:
        try:
            setup.h.call("status")
            break
        except ControlError as exc:
            # "busy", or the busy reply and hang-up raced our request (broken pipe).
            assert time.monotonic() < deadline, (
                f"5 s after 16 tail clients disconnected, the daemon still refuses: {exc}"
            )
            time.sleep(0.1)


# -- statusline ---------------------------------------------------------------------------

STATUS_RE = re.compile(
    r"^sufd · (?P<model>[^·]+) · session \$(?P<session>[\d,]+\.\d\d)"
    r" · today \$(?P<today>[\d,]+\.\d\d) · \$(?P<hour>[\d,]+\.\d\d)/h$"
)


def statusline_argv(which: str) -> list[str]:
    if which == "sufd-statusline":
        script = BIN / "sufd-statusline"
        return [str(script)] if script.exists() else [sys.executable, "-m", "sufd.cli.statusline"]
    script = BIN / "sufctl"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "sufd.cli.sufctl"]
    return [*base, "statusline"]


def run_statusline(env: SufdEnv, which: str, stdin: bytes) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        statusline_argv(which),
        env=env.env,
        input=stdin,
        capture_output=True,
        timeout=20,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def claude_status_json(session: str, cwd: str = PROJECT_CWD) -> bytes:
    return json.dumps(
        {
            "hook_event_name": "Status",
            "session_id": session,
            "transcript_path": f"/home/dev/.claude/projects/-home-dev-proj/{session}.jsonl",
            "cwd": cwd,
            "model": {"id": MODEL, "display_name": "Sonnet 4"},
            "workspace": {"current_dir": cwd, "project_dir": cwd},
            "version": "2.0.14",
            "output_style": {"name": "default"},
            "cost": {"total_cost_usd": 99.99, "total_duration_ms": 1000},
        }
    ).encode()


@dataclass
class KnownLedger:
    session: float
    today: float
    hour: float
    day_start_ms: int


def write_known_events(setup: Setup) -> KnownLedger:
    """Session A: two events today and one yesterday; session B: one today."""
    now = now_ms()
    day_start = now - now % DAY_MS  # TZ=UTC
    today_ts = max(now - 30_000, day_start)
    yesterday_ts = day_start - 3 * 3_600_000
    a1 = Usage(input=12_000, output=3_000, cw5m=20_000, cache_read=100_000)
    a2 = Usage(input=50_000, output=40_000, cw5m=10_000, cw1h=30_000, cache_read=150_000)
    a3 = Usage(input=100_000, output=110_000)
    b1 = Usage(input=1_000, output=121_000, cache_read=10_000)
    a = setup.project / "sess-A.jsonl"
    b = setup.project / "sess-B.jsonl"
    append(
        a, assistant_line(session="sess-A", msg_id="a3", req_id="r", ts_ms=yesterday_ts, usage=a3)
    )
    append(a, assistant_line(session="sess-A", msg_id="a1", req_id="r", ts_ms=today_ts, usage=a1))
    append(a, assistant_line(session="sess-A", msg_id="a2", req_id="r", ts_ms=today_ts, usage=a2))
    append(b, assistant_line(session="sess-B", msg_id="b1", req_id="r", ts_ms=today_ts, usage=b1))
    known = KnownLedger(
        session=a1.cost + a2.cost + a3.cost,
        today=a1.cost + a2.cost + b1.cost,
        hour=a1.cost + a2.cost + b1.cost,
        day_start_ms=day_start,
    )
    # The amounts were chosen so that rounding to cents is unambiguous.
    for value in (known.session, known.today, known.hour):
        assert abs((value * 100) % 1 - 0.5) > 0.1
    return known


def money(text: str) -> float:
    return float(text.replace(",", ""))


def check_line(out: str, known: KnownLedger) -> str:
    lines = out.splitlines()
    assert len(lines) == 1, out
    m = STATUS_RE.match(lines[0])
    assert m, lines[0]
    assert m["model"] == "Sonnet 4"
    assert money(m["session"]) == round(known.session, 2)
    assert money(m["today"]) == round(known.today, 2)
    assert money(m["hour"]) == round(known.hour, 2)
    return lines[0]


def skip_if_day_changed(known: KnownLedger) -> None:
    now = now_ms()
    if now - now % DAY_MS != known.day_start_ms:
        pytest.skip("the UTC day changed while the test ran")


def test_statusline_matches_hand_computed_costs(setup: Setup) -> None:
    known = write_known_events(setup)
    assert round(known.session, 2) != round(known.today, 2)
    h = setup.h
    d = h.start()
    try:
        wait_claude_events(h, 4)
        # The daemon's own numbers, unrounded.
        numbers = h.call("statusline", {"session_id": "sess-A", "day_start_ms": known.day_start_ms})
        assert numbers["session_cost"] == pytest.approx(known.session, rel=1e-9)
        assert numbers["today_cost"] == pytest.approx(known.today, rel=1e-9)
        assert numbers["last_hour_cost"] == pytest.approx(known.hour, rel=1e-9)
        stdin = claude_status_json("sess-A")
        live = run_statusline(setup.env, "sufd-statusline", stdin)
        assert live.returncode == 0, live.stderr
        line = check_line(live.stdout, known)
        via_sufctl = run_statusline(setup.env, "sufctl", stdin)
        assert via_sufctl.returncode == 0, via_sufctl.stderr
        assert via_sufctl.stdout.strip() == line
        # Another session: its own cost, the same day total.
        other = run_statusline(setup.env, "sufd-statusline", claude_status_json("sess-B"))
        m = STATUS_RE.match(other.stdout.strip())
        assert m and money(m["today"]) == round(known.today, 2)
        assert money(m["session"]) == round(Usage(1_000, 121_000, cache_read=10_000).cost, 2)
    finally:
        h.stop(d, timeout=15)
        h.kill(d)
    assert not h.socket.exists()
    # Daemon stopped: the command reads the ledger file itself and prints the same line.
    stopped = run_statusline(setup.env, "sufd-statusline", stdin)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == line
    via_sufctl = run_statusline(setup.env, "sufctl", stdin)
    assert via_sufctl.returncode == 0 and via_sufctl.stdout.strip() == line
    skip_if_day_changed(known)


def test_statusline_unknown_session_is_zero(setup: Setup, daemon: DaemonProcess) -> None:
    known = write_known_events(setup)
    wait_claude_events(setup.h, 4)
    out = run_statusline(setup.env, "sufd-statusline", claude_status_json("sess-never-seen"))
    assert out.returncode == 0
    m = STATUS_RE.match(out.stdout.strip())
    assert m, out.stdout
    assert money(m["session"]) == 0.0
    assert money(m["today"]) == round(known.today, 2)
    skip_if_day_changed(known)


def test_statusline_without_any_ledger(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    for which in ("sufd-statusline", "sufctl"):
        out = run_statusline(env, which, claude_status_json("sess-A"))
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("sufd"), out.stdout
        assert "Traceback" not in out.stderr
    assert not env.db.exists(), "a status line must not create the ledger"


GARBAGE_STDIN = [
    b"",
    b"not json at all",
    b"\xff\xfe\x00\x01garbage\x80",
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"session_id": 5, "model": "Sonnet"}',
    b'{"session_id": null, "model": {"display_name": ["x"]}}',
    b'{"session_id": "sess-A", "model": {"display_name": 42}}',
    b'{"session_id": "' + b"x" * 100_000 + b'"}',
]


@pytest.mark.parametrize("daemon_state", ["running", "stopped", "no-ledger"])
def test_statusline_survives_garbage_stdin(setup: Setup, daemon_state: str) -> None:
    if daemon_state != "no-ledger":
        known = write_known_events(setup)
        d = setup.h.start()
        wait_claude_events(setup.h, 4)
        if daemon_state == "stopped":
            setup.h.stop(d, timeout=15)
    for n, stdin in enumerate(GARBAGE_STDIN):
        # sufctl statusline runs the same code; a few inputs suffice for it.
        for which in ("sufd-statusline", "sufctl") if n < 3 else ("sufd-statusline",):
            out = run_statusline(setup.env, which, stdin)
            assert out.returncode == 0, (stdin[:40], which, out.stderr[-2000:])
            lines = out.stdout.splitlines()
            assert len(lines) == 1 and lines[0].startswith("sufd"), (stdin[:40], out.stdout)
            assert "Traceback" not in out.stderr, (stdin[:40], which, out.stderr[-2000:])
            if daemon_state != "no-ledger":
                assert f"today ${round(known.today, 2):,.2f}" in lines[0], lines[0]


def test_statusline_survives_deeply_nested_stdin(setup: Setup, daemon: DaemonProcess) -> None:
    # Valid-looking JSON nested deeper than Python's recursion limit: still one line, exit 0.
    for which in ("sufd-statusline", "sufctl"):
        out = run_statusline(setup.env, which, b"[" * 100_000)
        assert out.returncode == 0, (which, out.stderr[-1500:])
        assert out.stdout.startswith("sufd"), out.stdout
        assert "Traceback" not in out.stderr
