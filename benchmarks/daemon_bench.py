"""Issue 3 benchmark: the running daemon's latency, idle cost and status line, in one command.

``python -m benchmarks.daemon_bench`` builds an isolated user in a fresh temporary directory and
measures, in this order:

1. **Setup.** A ~500 MB history (``tests/corpus.py``, ``--history-mb``) is written into the user's
   HOME and ingested once with ``sufd ingest``; then ``sufd run --foreground`` is started
   (``TZ=UTC``, XDG dirs under the work dir) and the benchmark waits until it answers ``hello``
   and its start-up catch-up scan has finished (``status`` reports a completed cycle).
2. **Write -> commit latency.** 20 writer *processes* (``multiprocessing``, spawn) each append to
   their own new session file: 13 write Claude Code transcripts (compact JSON, ``"usage":{``,
   replies streamed as 1 line or as a burst of 3-5 lines within 50 ms sharing ``message.id`` /
   ``requestId`` with growing ``output_tokens``, plus some tool-result lines without usage), 7
   write Codex rollouts (``token_count`` events, sometimes after a burst of 2-4 other lines
   within 50 ms). Each writer waits 0.5-3 s (uniform) between replies. For every usage line the
   writer records ``time.time()`` right after ``write()`` + ``flush()`` returned. Commits are
   observed through **one** ``sufctl tail --json`` subscriber process and timed with the event's
   ``committed_at`` (the daemon's wall clock when it published the commit). A Claude line is
   matched to the first event with its key (``message.id:requestId``) whose ``output`` is at
   least that line's ``output_tokens`` (a later event of a streamed reply means the line was
   committed; earlier lines of a burst are often coalesced into one commit); a Codex line to the
   first event with its exact key (``timestamp|model|tokens``).
3. **Idle.** After the writers stop, the tail subscriber is closed and the daemon settles, its CPU
   time (``utime + stime`` of ``/proc/<pid>/stat``, and per thread) is read over a window of
   idleness, and its ``VmRSS``/``VmHWM`` from ``/proc/<pid>/status``. The window is 60 s: one
   periodic reconcile scan (``watch.reconcile_interval_s``, 60 s by default) falls in it.
4. **Status line.** With Claude Code's status JSON on stdin (the costliest real Claude session
   of the history), ``sufd-statusline`` is timed on its first call right after a daemon restart
   (as soon as ``hello`` answers; the median over 5 restarts, each call a single sample) and on
   20 later calls; the same for ``sufctl statusline``, and (for comparison) ``sufd-statusline
   --socket --db`` and ``python -c pass``. Wall time is ``perf_counter`` around spawn and reap;
   CPU time is the child's user + system time (``RUSAGE_CHILDREN``), which a busy machine
   disturbs less. ``ccusage statusline --offline`` (HOME = the corpus home, its result cache in
   a fresh ``TMPDIR``) is timed on its first (cold) call, on 20 warm calls made after its 1 s
   result cache expired (``--refresh-interval`` default: it recomputes, as it does whenever the
   transcript changed), and on a few calls inside the cache window (cache hits, for
   information). The session cost sufd prints must equal ``sufctl report session --json``'s.

Every subprocess gets an environment built here (PATH, LANG, HOME, the XDG dirs, ``TZ=UTC``,
``NO_COLOR``, ``PYTHONPYCACHEPREFIX`` under the work dir; nothing else of the caller's), and a
warm-up run fills that bytecode cache before anything is timed, so sufd runs as an installed
package would (the caller's ``PYTHONDONTWRITEBYTECODE`` is not passed on).

The results table goes to stdout (progress to stderr); ``--json-out`` writes every figure, the
targets, the machine and the details as JSON. Exit status: 0 when the run completed and the
correctness checks passed (timing targets never change it), 1 when a correctness check failed
(session cost mismatch, usage lines never committed), 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import string
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CCUSAGE_VERSION,
    DEFAULT_CCUSAGE,
    RUN_TIMEOUT_S,
    BenchError,
    Check,
    add_output_options,
    ccusage_version,
    command_output,
    cpu_model,
    entry_point,
    git_describe,
    isolated_env,
    loadavg,
    log,
    machine_line,
    mem_total_gb,
    new_parser,
    nproc,
    percentile,
    plain_env,
    run_isolated,
    utc_now,
)
from benchmarks.common import median as _median

__all__ = ["FIGURES", "main"]

# full run / --quick
DEFAULT_HISTORY_MB = 500.0
QUICK_HISTORY_MB = 20.0
WRITERS = 20
CLAUDE_SHARE = 0.65  # 13 of 20 writers write Claude Code transcripts, 7 Codex rollouts
WRITE_S, QUICK_WRITE_S = 60.0, 10.0
IDLE_S, QUICK_IDLE_S = 60.0, 10.0
SETTLE_S, QUICK_SETTLE_S = 5.0, 2.0
STATUSLINE_RUNS, QUICK_STATUSLINE_RUNS = 20, 5
RESTARTS, QUICK_RESTARTS = 5, 2  # daemon restarts to time "the first call after a start"
CCUSAGE_CACHED_RUNS = 3
CCUSAGE_REFRESH_S = 1.0  # ccusage statusline --refresh-interval default
GAP_S = (0.5, 3.0)  # pause of a writer between two replies
BURST_P = 0.35  # share of replies streamed as a burst of lines
BURST_LINES = (3, 5)
BURST_SPACING_S = (0.005, 0.012)  # 3-5 lines within 50 ms
MATCH_WAIT_S = 15.0  # after the writers stop, how long to wait for the last commits

# targets (issue 3)
P50_MAX_MS = 100.0
P99_MAX_MS = 300.0
IDLE_CPU_MAX_S = 0.2  # per 60 s of idleness
RSS_MAX_MB = 80.0
FIRST_CALL_MAX_RATIO = 1.5  # "first call after a daemon start about as fast as later ones"
COST_REL_TOL = 1e-9

CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
CODEX_MODEL = "gpt-5-codex"

FIGURES = (
    "history_bytes",
    "history_files",
    "ingest_s",
    "daemon_ready_ms",
    "catchup_scan_ms",
    "writers",
    "write_window_s",
    "latency_samples",
    "latency_unmatched",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "load_cpu_s_per_60s",
    "idle_window_s",
    "idle_cpu_s",
    "idle_cpu_s_per_60s",
    "idle_cycles",
    "idle_rss_mb",
    "peak_rss_mb",
    "statusline_first_ms",
    "statusline_median_ms",
    "statusline_cpu_median_ms",
    "statusline_with_paths_median_ms",
    "sufctl_statusline_first_ms",
    "sufctl_statusline_median_ms",
    "python_startup_median_ms",
    "daemon_statusline_rtt_median_ms",
    "ccusage_cold_ms",
    "ccusage_warm_median_ms",
    "ccusage_warm_cpu_median_ms",
    "ccusage_cached_median_ms",
    "session_cost_sufd",
    "session_cost_report",
    "session_cost_ccusage",
    "session_cost_match",
)
"""Keys of ``figures`` in the JSON output."""


# ------------------------------------------------------------------------------------------------
# /proc


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def _stat_cpu_s(stat_path: Path) -> float:
    """utime + stime of one ``/proc/.../stat`` file, in seconds."""
    text = stat_path.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


def process_cpu_s(pid: int) -> float:
    return _stat_cpu_s(Path(f"/proc/{pid}/stat"))


def thread_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (comm, CPU seconds) of every thread of ``pid``."""
    out: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            out[int(task.name)] = (comm, _stat_cpu_s(task / "stat"))
        except (OSError, ValueError):
            continue
    return out


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB (10^6 bytes)."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024 / 1e6
    return found


def thread_breakdown(
    pid: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> list[dict[str, Any]]:
    """CPU seconds per thread between two :func:`thread_cpu_s` readings, labelled.

    ``main`` is the event loop; the first Python thread created after it is the ledger writer
    (sufd starts its writer pool before the watchers); the later ones run the watchfiles loops
    of the watched roots (anyio worker threads); ``notify-rs`` threads are the inotify readers.
    """
    rows = []
    python_seen = 0
    for tid in sorted(after):
        comm, cpu = after[tid]
        if tid == pid:
            label = "main (asyncio loop)"
        elif comm.startswith("notify-rs"):
            label = "notify-rs (inotify reader)"
        else:
            python_seen += 1
            label = "writer (ledger thread)" if python_seen == 1 else "watchfiles worker"
        rows.append(
            {
                "tid": tid,
                "comm": comm,
                "label": label,
                "cpu_s": round(cpu - before.get(tid, (comm, 0.0))[1], 3),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------
# the isolated user


@dataclass(frozen=True)
class User:
    """An isolated user: HOME (the corpus home) and XDG dirs, all under ``root``."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def pycache(self) -> Path:
        return self.root / "pycache"

    def env(self) -> dict[str, str]:
        return isolated_env(self.root, self.pycache)

    def ccusage_env(self) -> dict[str, str]:
        tmp = self.root / "ccusage-tmp"
        tmp.mkdir(exist_ok=True)
        # ccusage keeps its status-line cache in os.tmpdir()
        return plain_env(self.home, TMPDIR=str(tmp))

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = RUN_TIMEOUT_S,
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run a command as this user; return (wall seconds, the completed process)."""
        start = time.perf_counter()
        proc = subprocess.run(
            list(argv),
            env=env or self.env(),
            cwd=self.home,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise BenchError(
                f"{' '.join(argv)} exited {proc.returncode}\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        return wall, proc


@dataclass(frozen=True)
class Tools:
    """The commands under test."""

    sufd: tuple[str, ...]
    sufctl: tuple[str, ...]
    statusline: tuple[str, ...]
    ccusage: Path
    ccusage_version: str


def find_tools(ccusage: Path) -> Tools:
    """sufd/sufctl/sufd-statusline of this interpreter's environment, and the pinned ccusage."""
    version = ccusage_version(ccusage, warn=log)
    return Tools(
        sufd=entry_point("sufd", "sufd"),
        sufctl=entry_point("sufctl", "sufd.cli.sufctl"),
        statusline=entry_point("sufd-statusline", "sufd.cli.statusline"),
        ccusage=ccusage,
        ccusage_version=version,
    )


def socket_of(user: User, tools: Tools) -> Path:
    """The control socket the daemon of ``user`` listens on (``sufd paths``)."""
    _, proc = user.run([*tools.sufd, "paths", "--json"])
    return Path(json.loads(proc.stdout)["socket"])


# ------------------------------------------------------------------------------------------------
# the daemon


class DaemonProc:
    """``sufd run --foreground`` as a child process, with its output in a log file."""

    def __init__(self, user: User, tools: Tools, socket_path: Path) -> None:
        self.user = user
        self.tools = tools
        self.socket = socket_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Start the daemon; return the milliseconds until it answered ``hello``."""
        self.starts += 1
        logfile = (self.user.root / "out" / f"daemon-{self.starts}.log").open("wb")
        begin = time.perf_counter()
        self.proc = subprocess.Popen(
            [*self.tools.sufd, "run", "--foreground"],
            env=self.user.env(),
            cwd=self.user.home,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        self._wait_hello()
        return (time.perf_counter() - begin) * 1e3

    def _wait_hello(self, timeout: float = 60.0) -> None:
        from sufd.control import client
        from sufd.errors import ControlError

        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(f"the daemon exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                hello = client.call(self.socket, "hello", timeout=1.0)
            except ControlError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"the daemon never answered hello:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.005)
                continue
            if hello.get("pid") != self.proc.pid:
                raise BenchError(f"another daemon answers on {self.socket}: {hello}")
            return

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        from sufd.control import client

        return client.call(self.socket, cmd, args, timeout=10.0)

    def wait_catchup(self, timeout: float = 600.0) -> dict[str, Any]:
        """Wait until the start-up scan has completed (``status`` counts a finished cycle)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.call("status")
            if status.get("cycles", 0) >= 1:
                return status
            time.sleep(0.05)
        raise BenchError("the daemon's catch-up scan did not finish in time")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log(f"daemon pid {self.proc.pid} ignored SIGTERM for 15 s; killing it")
            self.proc.kill()
            self.proc.wait(timeout=5)

    @property
    def log_path(self) -> Path:
        return self.user.root / "out" / f"daemon-{self.starts}.log"

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


# ------------------------------------------------------------------------------------------------
# writers (run in child processes)


@dataclass(frozen=True)
class WriterSpec:
    """What one writer process writes, and where it reports its samples."""

    index: int
    kind: str  # "claude" | "codex"
    session: str
    path: str
    cwd: str
    seed: int
    duration_s: float
    out: str


_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut"
    " labore et dolore magna aliqua parse render buffer cursor ledger offset token daemon socket"
)
_WORDS = tuple(_LOREM.split())


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ident(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(_B62) for _ in range(n))


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class _ClaudeWriter:
    """A Claude Code transcript: replies of 1 line or streamed bursts, and tool results."""

    def __init__(self, spec: WriterSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.session = spec.session
        self.parent: str | None = None
        self.context = rng.randint(15_000, 40_000)

    def base(self, kind: str) -> dict[str, Any]:
        line_uuid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        line: dict[str, Any] = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.spec.cwd,
            "sessionId": self.session,
            "version": "2.0.50",
            "gitBranch": "main",
            "type": kind,
            "uuid": line_uuid,
            "timestamp": _now_iso(),
        }
        self.parent = line_uuid
        return line

    def header(self) -> list[bytes]:
        user = self.base("user")
        user["message"] = {"role": "user", "content": f"please {_words(self.rng, 12)}"}
        return [_dumps(user)]

    def reply(self, n: int) -> Iterator[tuple[bytes, str, int]]:
        """The lines of one reply: (line, key, output_tokens), built when they are written."""
        rng = self.rng
        mid, rid = _ident(rng, "msg_01", 22), _ident(rng, "req_011C", 20)
        final = rng.randint(40, 1_500)
        outs = sorted(rng.sample(range(1, final), n - 1)) + [final] if n > 1 else [final]
        cache_write = rng.randint(0, 3_000)
        usage_base = {
            "input_tokens": rng.randint(3, 12),
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": self.context,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache_write,
                "ephemeral_1h_input_tokens": 0,
            },
        }
        self.context += cache_write + final
        for i in range(n):
            kind = "text" if i < n - 1 or rng.random() < 0.5 else "tool_use"
            block: dict[str, Any] = (
                {"type": "text", "text": _words(rng, rng.randint(10, 80))}
                if kind == "text"
                else {
                    "type": "tool_use",
                    "id": _ident(rng, "toolu_01", 22),
                    "name": rng.choice(("Bash", "Read", "Edit", "Grep")),
                    "input": {"command": _words(rng, 6)},
                }
            )
            line = self.base("assistant")
            line["message"] = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": CLAUDE_MODEL,
                "content": [block],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    **usage_base,
                    "output_tokens": outs[i],
                    "service_tier": "standard",
                    "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                },
            }
            line["requestId"] = rid
            yield _dumps(line), f"{mid}:{rid}", outs[i]

    def extra(self) -> bytes:
        """A tool result (no usage) of a few kB."""
        line = self.base("user")
        line["message"] = {
            "role": "user",
            "content": [
                {
                    "tool_use_id": _ident(self.rng, "toolu_01", 22),
                    "type": "tool_result",
                    "content": _words(self.rng, self.rng.randint(50, 1_500)),
                }
            ],
        }
        return _dumps(line)


class _CodexWriter:
    """A Codex rollout: a token_count per request, sometimes after a burst of other lines."""

    def __init__(self, spec: WriterSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.session = spec.session
        self.total = [0, 0, 0, 0]

    def header(self) -> list[bytes]:
        stamp = _now_iso()
        meta = {
            "timestamp": stamp,
            "type": "session_meta",
            "payload": {
                "id": self.session,
                "timestamp": stamp,
                "cwd": self.spec.cwd,
                "originator": "codex_cli_rs",
                "cli_version": "0.63.0",
                "instructions": None,
                "source": "cli",
                "model_provider": "openai",
            },
        }
        context = {
            "timestamp": _now_iso(),
            "type": "turn_context",
            "payload": {
                "cwd": self.spec.cwd,
                "approval_policy": "on-request",
                "sandbox_policy": {"type": "workspace-write", "network_access": False},
                "model": CODEX_MODEL,
                "effort": "medium",
                "summary": "auto",
            },
        }
        return [_dumps(meta), _dumps(context)]

    def extra(self) -> bytes:
        rng = self.rng
        payload: dict[str, Any] = rng.choice(
            (
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "**plan**"}]},
                {
                    "type": "function_call",
                    "name": "shell",
                    "arguments": json.dumps({"command": ["bash", "-lc", _words(rng, 5)]}),
                    "call_id": _ident(rng, "call_", 24),
                },
                {
                    "type": "function_call_output",
                    "call_id": _ident(rng, "call_", 24),
                    "output": _words(rng, rng.randint(20, 400)),
                },
            )
        )
        return _dumps({"timestamp": _now_iso(), "type": "response_item", "payload": payload})

    def token_count(self) -> tuple[bytes, str, int]:
        rng = self.rng
        inp = rng.randint(5_000, 60_000)
        cached = inp * rng.randint(50, 95) // 100
        out = rng.randint(30, 2_000)
        reasoning = rng.randint(0, min(out, 600))

        def usage(i: int, c: int, o: int, r: int) -> dict[str, int]:
            return {
                "input_tokens": i,
                "cached_input_tokens": c,
                "output_tokens": o,
                "reasoning_output_tokens": r,
                "total_tokens": i + o,
            }

        for k, v in enumerate((inp, cached, out, reasoning)):
            self.total[k] += v
        stamp = _now_iso()
        line = {
            "timestamp": stamp,
            "type": "event_msg",
            "payload": {
                "type": "token_count",
                "info": {
                    "total_token_usage": usage(*self.total),
                    "last_token_usage": usage(inp, cached, out, reasoning),
                    "model_context_window": 272_000,
                },
                "rate_limits": {
                    "primary": {"used_percent": 12.0, "window_minutes": 300},
                    "secondary": {"used_percent": 3.0, "window_minutes": 10_080},
                },
            },
        }
        key = f"{stamp}|{CODEX_MODEL}|{inp}|{cached}|{out}|{reasoning}|{inp + out}"
        return _dumps(line), key, out


def _writer_main(spec: WriterSpec, ready: Any, go: Any) -> None:
    """One writer process: wait for ``go``, append for ``duration_s``, write the samples."""
    rng = random.Random(spec.seed)
    ready.put(spec.index)
    go.wait()
    stop_at = time.time() + spec.duration_s
    samples: list[dict[str, Any]] = []
    path = Path(spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: _ClaudeWriter | _CodexWriter = (
        _ClaudeWriter(spec, rng) if spec.kind == "claude" else _CodexWriter(spec, rng)
    )
    time.sleep(rng.uniform(0.0, 1.0))  # the sessions do not all start at the same instant
    with path.open("ab") as f:
        for data in writer.header():
            f.write(data)
        f.flush()

        def put(data: bytes) -> float:
            f.write(data)
            f.flush()
            return time.time()

        while True:
            gap = rng.uniform(*GAP_S)
            if time.time() + gap >= stop_at:
                break
            time.sleep(gap)
            burst = rng.random() < BURST_P
            if isinstance(writer, _ClaudeWriter):
                n = rng.randint(*BURST_LINES) if burst else 1
                for i, (data, key, out) in enumerate(writer.reply(n)):
                    if i:
                        time.sleep(rng.uniform(*BURST_SPACING_S))
                    at = put(data)
                    samples.append({"key": key, "output": out, "t": at, "burst": burst, "i": i})
                if rng.random() < 0.3:
                    time.sleep(rng.uniform(0.02, 0.2))
                    put(writer.extra())
            else:
                if burst:
                    for _ in range(rng.randint(BURST_LINES[0] - 1, BURST_LINES[1] - 1)):
                        put(writer.extra())
                        time.sleep(rng.uniform(*BURST_SPACING_S))
                data, key, out = writer.token_count()
                at = put(data)
                samples.append({"key": key, "output": out, "t": at, "burst": burst, "i": 0})
    Path(spec.out).write_text(json.dumps({"index": spec.index, "samples": samples}))


# ------------------------------------------------------------------------------------------------
# the tail subscriber


class TailCollector:
    """One ``sufctl tail --json`` process; a thread collects its events in arrival order."""

    def __init__(self, user: User, tools: Tools) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._errfile = (user.root / "out" / "tail.err").open("wb")
        self.proc = subprocess.Popen(
            [*tools.sufctl, "tail", "--json", "--timeout", "30"],
            env=user.env(),
            cwd=user.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._errfile,
            text=True,
            bufsize=1,
        )
        self._thread = threading.Thread(target=self._read, name="tail-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                with self._lock:
                    self.events.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._thread.join(timeout=5)
        self._errfile.close()


def match_samples(
    samples: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]
) -> tuple[list[float | None], int]:
    """Write -> commit latency (ms) of each sample, None when no event matched it yet.

    A sample matches the first event (in arrival order) with its key whose ``output`` is at
    least the sample's; the second value counts events of the writers' keys that were seen.
    """
    by_key: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for event in events:
        key = event.get("key")
        if isinstance(key, str):
            by_key[key].append((int(event.get("output") or 0), float(event["committed_at"])))
    wanted = {s["key"] for s in samples}
    seen = sum(len(v) for k, v in by_key.items() if k in wanted)
    out: list[float | None] = []
    for s in samples:
        found = next((at for output, at in by_key.get(s["key"], ()) if output >= s["output"]), None)
        out.append(None if found is None else (found - s["t"]) * 1e3)
    return out, seen


# ------------------------------------------------------------------------------------------------
# phases


def make_history(user: User, megabytes: float, seed: int) -> dict[str, Any]:
    from tests.corpus import generate_to_size

    log(f"generating a {megabytes:,.0f} MB history in {user.home}")
    start = time.perf_counter()
    stats = generate_to_size(user.home, int(megabytes * 1e6), seed=seed)
    files = [p for p in user.home.rglob("*") if p.is_file()]
    return {
        "bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "jsonl_files": sum(1 for p in files if p.suffix == ".jsonl"),
        "claude_usage_lines": stats.claude_usage_lines,
        "codex_token_count_lines": stats.codex_token_count_lines,
        "seed": seed,
        "generate_s": round(time.perf_counter() - start, 2),
    }


def warm_up(root: Path, tools: Tools, pycache: Path) -> None:
    """Fill the bytecode cache with every module the timed commands import."""
    user = User(root / "warmup")
    env = {**user.env(), "PYTHONPYCACHEPREFIX": str(pycache)}
    user.run([*tools.sufd, "ingest", "--json"], env=env)
    user.run([*tools.statusline], env=env, stdin="{}", check=False)
    user.run([*tools.sufctl, "statusline"], env=env, stdin="{}", check=False)
    user.run([sys.executable, "-c", "pass"], env=env)
    shutil.rmtree(user.root)


def writer_specs(user: User, seed: int, writers: int, duration: float) -> list[WriterSpec]:
    """Writers' files: new Claude sessions in the history's project dirs, new Codex rollouts
    in today's day dir (created here, before the daemon starts, as Codex does once a day)."""
    projects = sorted(p for p in (user.home / ".claude" / "projects").iterdir() if p.is_dir())
    if not projects:
        raise BenchError("the history has no Claude project directories")
    today = datetime.now(UTC)
    day_dir = user.home / ".codex" / "sessions" / today.strftime("%Y/%m/%d")
    day_dir.mkdir(parents=True, exist_ok=True)
    n_claude = round(writers * CLAUDE_SHARE)
    specs = []
    rng = random.Random(f"{seed}:writers")
    for i in range(writers):
        session = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        out = str(user.root / "out" / f"writer-{i:02d}.json")
        if i < n_claude:
            project = projects[i % len(projects)]
            cwd = "/home/dev/src/" + project.name.removeprefix("-home-dev-src-")
            path = project / f"{session}.jsonl"
            specs.append(
                WriterSpec(i, "claude", session, str(path), cwd, seed * 1000 + i, duration, out)
            )
        else:
            stamp = today.strftime("%Y-%m-%dT%H-%M-%S")
            path = day_dir / f"rollout-{stamp}-{session}.jsonl"
            cwd = f"/home/dev/src/bench-{i}"
            specs.append(
                WriterSpec(i, "codex", session, str(path), cwd, seed * 1000 + i, duration, out)
            )
    return specs


def _probe(user: User, tail: TailCollector, timeout: float = 30.0) -> float:
    """Append probe lines until the tail subscriber sees one; return the first one's latency."""
    project = sorted(p for p in (user.home / ".claude" / "projects").iterdir() if p.is_dir())[0]
    sid = str(uuid.uuid4())
    spec = WriterSpec(-1, "claude", sid, str(project / f"{sid}.jsonl"), "/probe", 0, 0, "")
    writer = _ClaudeWriter(spec, random.Random(0))
    deadline = time.monotonic() + timeout
    with Path(spec.path).open("ab") as f:
        while time.monotonic() < deadline:
            data, key, out = next(writer.reply(1))
            f.write(data)
            f.flush()
            wrote = time.time()
            until = time.monotonic() + 0.5
            while time.monotonic() < until:
                lat, _ = match_samples([{"key": key, "output": out, "t": wrote}], tail.snapshot())
                if lat[0] is not None:
                    return lat[0]
                if not tail.alive():
                    raise BenchError("`sufctl tail --json` exited")
                time.sleep(0.02)
    raise BenchError("the tail subscriber never saw a probe line")


def latency_phase(
    user: User, tools: Tools, daemon: DaemonProc, specs: Sequence[WriterSpec], duration: float
) -> dict[str, Any]:
    tail = TailCollector(user, tools)
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_writer_main, args=(s, ready, go)) for s in specs]
    try:
        probe_ms = _probe(user, tail)
        log(f"tail subscriber live (probe line committed after {probe_ms:.0f} ms)")
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        time.sleep(1.0)  # let the spawned interpreters settle before the clock starts
        cycles0 = daemon.call("status")["cycles"]
        cpu0, load0 = process_cpu_s(daemon.pid), os.getloadavg()
        log(f"{len(procs)} writer processes appending for {duration:.0f} s")
        started, started_wall = time.monotonic(), time.time()
        go.set()
        for p in procs:
            p.join(timeout=duration + 60)
            if p.exitcode != 0:
                raise BenchError(f"writer process {p.pid} exited {p.exitcode}")
        samples: list[dict[str, Any]] = []
        for s in specs:
            data = json.loads(Path(s.out).read_text())
            samples += [{**x, "source": s.kind, "writer": s.index} for x in data["samples"]]
        deadline = time.monotonic() + MATCH_WAIT_S
        while True:
            latencies, seen = match_samples(samples, tail.snapshot())
            if all(v is not None for v in latencies) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        window = time.monotonic() - started
        cycles = cycle_profile(daemon.log_path, started_wall, time.time())
        _dump(user.root / "out" / "samples.jsonl", samples, latencies)
        _dump(user.root / "out" / "tail-events.jsonl", tail.snapshot())
        cpu1 = process_cpu_s(daemon.pid)
        cycles1 = daemon.call("status")["cycles"]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        tail.close()
    return summarize_latency(samples, latencies, seen) | {
        "probe_ms": round(probe_ms, 1),
        "window_s": round(window, 1),
        "writers": {"processes": len(specs), "claude": sum(s.kind == "claude" for s in specs)},
        "cycles": cycles1 - cycles0,
        "cycle_profile": cycles,
        "daemon_cpu_s": round(cpu1 - cpu0, 3),
        "cpu_s_per_60s": round((cpu1 - cpu0) / window * 60, 3),
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": loadavg(),
        "tail_events": len(tail.events),
        "sessions": [s.session for s in specs],
    }


def cycle_records(log_path: Path, since: float, until: float) -> list[dict[str, Any]]:
    """The daemon's ``ingest.cycle`` log records ended in [since, until], with ``end`` added."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"ingest.cycle"' not in line:
            continue
        try:
            record = json.loads(line)
            end = datetime.fromisoformat(record["timestamp"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if since <= end <= until:
            out.append({**record, "end": end})
    return out


def cycle_profile(log_path: Path, since: float, until: float) -> dict[str, Any]:
    """The daemon's own ``ingest.cycle`` log records between two wall-clock instants.

    ``lag_ms`` is the time from the first change notification of a batch to the end of its
    cycle (queueing + ingest); ``duration_ms`` the ingest alone. The write -> commit latency
    minus the lag is the time the file watcher took to report the change.
    """
    kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in cycle_records(log_path, since, until):
        kinds[str(record.get("kind"))].append(record)
    out: dict[str, Any] = {}
    for kind, records in sorted(kinds.items()):
        durations = [float(r.get("duration_ms") or 0) for r in records]
        lags = [float(r["lag_ms"]) for r in records if r.get("lag_ms") is not None]
        out[kind] = {
            "cycles": len(records),
            "files_per_cycle_mean": round(_mean([float(r.get("files") or 0) for r in records]), 2),
            "duration": _dist(durations),
            "lag": _dist(lags),
        }
    return out


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _dump(
    path: Path, rows: Sequence[dict[str, Any]], latencies: Sequence[float | None] | None = None
) -> None:
    """Raw rows as JSON lines, for a closer look with ``--keep``."""
    with path.open("w") as f:
        for i, row in enumerate(rows):
            extra = {} if latencies is None else {"latency_ms": latencies[i]}
            f.write(json.dumps({**row, **extra}) + "\n")


def _dist(values: Sequence[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1) if values else math.nan,
        "min_ms": round(min(values), 1) if values else math.nan,
    }


def summarize_latency(
    samples: Sequence[dict[str, Any]], latencies: Sequence[float | None], seen: int
) -> dict[str, Any]:
    got = [v for v in latencies if v is not None]
    groups: dict[str, list[float]] = defaultdict(list)
    for s, v in zip(samples, latencies, strict=True):
        if v is None:
            continue
        groups[f"source={s['source']}"].append(v)
        groups["burst lines" if s["burst"] else "single lines"].append(v)
        groups["first line of a reply" if s["i"] == 0 else "later line of a burst"].append(v)
    buckets = (50, 100, 150, 200, 300, 500, 1000)
    histogram = {f"<={b}ms": sum(1 for v in got if v <= b) for b in buckets}
    histogram[f">{buckets[-1]}ms"] = sum(1 for v in got if v > buckets[-1])
    unmatched = [
        {"key": s["key"], "output": s["output"], "source": s["source"]}
        for s, v in zip(samples, latencies, strict=True)
        if v is None
    ]
    return {
        "samples": len(samples),
        "matched": len(got),
        "unmatched": len(unmatched),
        "unmatched_examples": unmatched[:10],
        "events_of_writer_keys": seen,
        "all": _dist(got),
        "groups": {k: _dist(v) for k, v in sorted(groups.items())},
        "histogram": histogram,
    }


def idle_phase(daemon: DaemonProc, idle_s: float, settle_s: float) -> dict[str, Any]:
    log(f"settling {settle_s:.0f} s, then measuring {idle_s:.0f} s of idleness")
    time.sleep(settle_s)
    cycles0 = daemon.call("status")["cycles"]
    load0 = os.getloadavg()
    threads0, cpu0, t0 = thread_cpu_s(daemon.pid), process_cpu_s(daemon.pid), time.monotonic()
    time.sleep(idle_s)
    threads1, cpu1, t1 = thread_cpu_s(daemon.pid), process_cpu_s(daemon.pid), time.monotonic()
    mem = memory_mb(daemon.pid)
    status = daemon.call("status")
    window = t1 - t0
    return {
        "window_s": round(window, 2),
        "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_s_per_60s": round((cpu1 - cpu0) / window * 60, 3),
        "clock_ticks_per_s": _clock_ticks(),
        "threads": thread_breakdown(daemon.pid, threads0, threads1),
        "cycles": status["cycles"] - cycles0,
        "last_cycle": status.get("last_cycle"),
        "rss_mb": round(mem.get("VmRSS", math.nan), 1),
        "peak_rss_mb": round(mem.get("VmHWM", math.nan), 1),
        "store_bytes": (status.get("store") or {}).get("bytes"),
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": loadavg(),
    }


@dataclass
class Session:
    """The Claude session whose cost the status lines show."""

    session_id: str
    transcript: Path
    project: str
    report_cost: float
    report_rows: int
    status_json: str = field(repr=False, default="")


def pick_session(user: User, tools: Tools, exclude: set[str]) -> Session:
    """The costliest Claude session of the history that has its own transcript file."""
    _, proc = user.run([*tools.sufctl, "report", "session", "--json"])
    rows = json.loads(proc.stdout)["sessions"]
    costs: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        costs[row["sessionId"]] += float(row["totalCost"])
        counts[row["sessionId"]] += 1
    projects = user.home / ".claude" / "projects"
    for row in sorted(rows, key=lambda r: -float(r["totalCost"])):
        sid = row["sessionId"]
        if row.get("source") != "claude" or sid in exclude:
            continue
        found = sorted(projects.glob(f"*/{sid}.jsonl"))
        if found:
            project = str(row.get("project") or "/home/dev/src")
            status = {
                "hook_event_name": "Status",
                "session_id": sid,
                "transcript_path": str(found[0]),
                "cwd": project,
                "model": {"id": CLAUDE_MODEL, "display_name": "Sonnet 4.5"},
                "workspace": {"current_dir": project, "project_dir": project},
                "version": "2.0.50",
                "output_style": {"name": "default"},
            }
            return Session(sid, found[0], project, costs[sid], counts[sid], json.dumps(status))
    raise BenchError("no Claude session with its own transcript file in the history")


@dataclass
class Calls:
    """Timed runs of one command: wall and CPU (user + system of the child) milliseconds."""

    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    output: str = ""

    def add(self, other: Calls) -> None:
        self.wall_ms += other.wall_ms
        self.cpu_ms += other.cpu_ms
        self.output = other.output or self.output

    def summary(self) -> dict[str, Any]:
        return {
            "runs": len(self.wall_ms),
            "median_ms": round(_median(self.wall_ms), 1),
            "p95_ms": round(percentile(self.wall_ms, 95), 1),
            "min_ms": round(min(self.wall_ms), 1),
            "max_ms": round(max(self.wall_ms), 1),
            "cpu_median_ms": round(_median(self.cpu_ms), 1),
            "runs_ms": [round(v, 1) for v in self.wall_ms],
        }


def _children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1e3


def timed_calls(
    user: User, argv: Sequence[str], stdin: str, runs: int, env: dict[str, str] | None = None
) -> Calls:
    calls = Calls()
    for _ in range(runs):
        cpu = _children_cpu_ms()
        wall, proc = user.run(argv, stdin=stdin, env=env)
        calls.cpu_ms.append(_children_cpu_ms() - cpu)
        calls.wall_ms.append(wall * 1e3)
        calls.output = proc.stdout.strip()
    return calls


def _money(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1).replace(",", "")) if m else None


def _restart(daemon: DaemonProc) -> float:
    daemon.stop()
    return daemon.start()


def sufd_statusline_phase(
    user: User, tools: Tools, daemon: DaemonProc, session: Session, runs: int, restarts: int
) -> dict[str, Any]:
    """Each command: ``restarts`` times (restart the daemon, time the first call as soon as it
    answers ``hello``), then ``runs`` later calls. The figure is the median first call."""
    out: dict[str, Any] = {}
    db = user.root / "xdg-data" / "sufd" / "ledger.sqlite3"
    commands = {
        "sufd-statusline": tools.statusline,
        "sufctl statusline": (*tools.sufctl, "statusline"),
    }
    for name, argv in commands.items():
        log(f"{name}: {restarts} x (restart the daemon, 1 call), then {runs} calls")
        first, ready, scanning = Calls(), [], []
        for _ in range(restarts):
            ready.append(round(_restart(daemon), 1))
            first.add(timed_calls(user, argv, session.status_json, 1))
            # Was the start-up catch-up scan still running when that call returned?
            scanning.append(daemon.call("status").get("cycles", 0) == 0)
        later = timed_calls(user, argv, session.status_json, runs)
        out[name] = {
            "restart_to_hello_ms": ready,
            "first_ms": round(_median(first.wall_ms), 1),
            "first_runs_ms": [round(v, 1) for v in first.wall_ms],
            "first_cpu_ms": [round(v, 1) for v in first.cpu_ms],
            "first_during_catchup_scan": scanning,
            **later.summary(),
            "output_first": first.output,
            "output": later.output,
        }
    # The daemon's share of a first call: its own round trip right after a restart.
    first_rtt = []
    for _ in range(restarts):
        _restart(daemon)
        begin = time.perf_counter()
        daemon.call("statusline", {"session_id": session.session_id})
        first_rtt.append(round((time.perf_counter() - begin) * 1e3, 2))
    out["daemon_first_rtt_ms"] = first_rtt
    # The same command with the paths given (no config resolution), and the interpreter alone.
    flags = (*tools.statusline, "--socket", str(daemon.socket), "--db", str(db))
    out["sufd-statusline --socket --db"] = timed_calls(
        user, flags, session.status_json, runs
    ).summary()
    out["python_startup"] = {
        "argv": "python -c pass",
        **timed_calls(user, [sys.executable, "-c", "pass"], "", runs).summary(),
    }
    rtt, numbers = [], {}
    for _ in range(runs):
        begin = time.perf_counter()
        numbers = daemon.call("statusline", {"session_id": session.session_id})
        rtt.append((time.perf_counter() - begin) * 1e3)
    out["daemon_rtt"] = {"median_ms": round(_median(rtt), 2), "result": numbers}
    return out


def ccusage_phase(user: User, tools: Tools, session: Session, runs: int) -> dict[str, Any]:
    argv = [str(tools.ccusage), "statusline", "--offline"]
    env = user.ccusage_env()
    log(f"ccusage statusline: 1 cold call, {CCUSAGE_CACHED_RUNS} cached, {runs} warm")
    cold = timed_calls(user, argv, session.status_json, 1, env)
    cached = timed_calls(user, argv, session.status_json, CCUSAGE_CACHED_RUNS, env)
    warm = Calls()
    for _ in range(runs):
        time.sleep(CCUSAGE_REFRESH_S + 0.3)  # past the refresh interval: no cached answer
        warm.add(timed_calls(user, argv, session.status_json, 1, env))
    return {
        "argv": " ".join(argv[1:]),
        "cold_ms": round(cold.wall_ms[0], 1),
        "cold_cpu_ms": round(cold.cpu_ms[0], 1),
        "cached": cached.summary(),
        "warm": warm.summary(),
        "output_cold": cold.output,
        "output": warm.output,
    }


# ------------------------------------------------------------------------------------------------
# machine, checks, results


def machine_info(tools: Tools) -> dict[str, Any]:
    import sufd

    return {
        "date": utc_now(),
        "git": git_describe() or "?",
        "nproc": nproc(),
        "memory_gb": mem_total_gb(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "ccusage": tools.ccusage_version,
        "node": command_output(["node", "--version"]) or "?",
        "sufd": sufd.__version__,
        "loadavg_at_start": loadavg(),
    }


def build_checks(fig: dict[str, Any]) -> list[Check]:
    def le(value: float, limit: float) -> bool:
        return not math.isnan(value) and value <= limit

    first, median = fig["statusline_first_ms"], fig["statusline_median_ms"]
    ctl_first, ctl_median = fig["sufctl_statusline_first_ms"], fig["sufctl_statusline_median_ms"]
    cc_warm = fig["ccusage_warm_median_ms"]
    samples = fig["latency_samples"]
    return [
        Check("write->commit samples (lines)", f"{samples:,}", "> 0", samples > 0),
        Check("lines never committed", str(fig["latency_unmatched"]), "0",
              fig["latency_unmatched"] == 0),
        Check("write->commit p50", f"{fig['latency_p50_ms']:.0f} ms", f"<= {P50_MAX_MS:.0f} ms",
              le(fig["latency_p50_ms"], P50_MAX_MS)),
        Check("write->commit p95", f"{fig['latency_p95_ms']:.0f} ms", "-", None),
        Check("write->commit p99", f"{fig['latency_p99_ms']:.0f} ms", f"<= {P99_MAX_MS:.0f} ms",
              le(fig["latency_p99_ms"], P99_MAX_MS)),
        Check("write->commit max", f"{fig['latency_max_ms']:.0f} ms", "-", None),
        Check("daemon CPU under write load", f"{fig['load_cpu_s_per_60s']:.2f} s / 60 s", "-",
              None),
        Check("idle CPU", f"{fig['idle_cpu_s_per_60s']:.3f} s / 60 s",
              f"<= {IDLE_CPU_MAX_S} s / 60 s", le(fig["idle_cpu_s_per_60s"], IDLE_CPU_MAX_S)),
        Check("idle RSS", f"{fig['idle_rss_mb']:.1f} MB", f"<= {RSS_MAX_MB:.0f} MB",
              le(fig["idle_rss_mb"], RSS_MAX_MB)),
        Check("sufd-statusline median", f"{median:.0f} ms",
              f"< ccusage warm {cc_warm:.0f} ms", le(median, cc_warm - 1e-9)),
        Check("sufd-statusline 1st after start", f"{first:.0f} ms",
              f"<= {FIRST_CALL_MAX_RATIO}x median ({FIRST_CALL_MAX_RATIO * median:.0f} ms)",
              le(first, FIRST_CALL_MAX_RATIO * median)),
        Check("sufd-statusline median CPU", f"{fig['statusline_cpu_median_ms']:.0f} ms", "-",
              None),
        Check("sufd-statusline --socket --db median",
              f"{fig['statusline_with_paths_median_ms']:.0f} ms", "(comparison)", None),
        Check("sufctl statusline median", f"{ctl_median:.0f} ms", "(comparison)", None),
        Check("sufctl statusline 1st after start", f"{ctl_first:.0f} ms", "(comparison)", None),
        Check("python -c pass (floor)", f"{fig['python_startup_median_ms']:.0f} ms", "-", None),
        Check("daemon statusline round trip", f"{fig['daemon_statusline_rtt_median_ms']:.2f} ms",
              "-", None),
        Check("ccusage statusline cold", f"{fig['ccusage_cold_ms']:.0f} ms", "-", None),
        Check("ccusage statusline warm median", f"{cc_warm:.0f} ms", "-", None),
        Check("ccusage statusline warm CPU", f"{fig['ccusage_warm_cpu_median_ms']:.0f} ms", "-",
              None),
        Check("ccusage statusline cache hit", f"{fig['ccusage_cached_median_ms']:.0f} ms", "-",
              None),
        Check("session cost sufd = report", f"${fig['session_cost_sufd']:.6f}",
              f"= ${fig['session_cost_report']:.6f}", fig["session_cost_match"]),
        Check("ccusage statusline session cost", _usd(fig["session_cost_ccusage"]),
              "(comparison)", None),
    ]  # fmt: skip


def _usd(value: float | None) -> str:
    return "?" if value is None else f"${value:,.2f}"


def _verdict(check: Check) -> str:
    return {True: "PASS", False: "FAIL", None: ""}[check.passed]


def format_table(checks: Sequence[Check]) -> str:
    rows = [("figure", "value", "target", "result")]
    rows += [(c.name, c.value, c.target, _verdict(c)) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def collect_figures(
    corpus: dict[str, Any], setup: dict[str, Any], lat: dict[str, Any], idle: dict[str, Any],
    sl: dict[str, Any], cc: dict[str, Any], session: Session, sufd_cost: float,
) -> dict[str, Any]:  # fmt: skip
    ccusage_cost = _money(r"\$([\d,]+\.\d+) session", cc["output"])
    match = math.isclose(sufd_cost, session.report_cost, rel_tol=COST_REL_TOL, abs_tol=1e-12)
    printed = _money(r"session \$([\d,]+\.\d{2})", sl["sufd-statusline"]["output"])
    match = match and printed == round(session.report_cost, 2)
    fig: dict[str, Any] = {
        "history_bytes": corpus["bytes"],
        "history_files": corpus["files"],
        "ingest_s": setup["ingest_s"],
        "daemon_ready_ms": setup["daemon_ready_ms"],
        "catchup_scan_ms": setup["catchup_scan_ms"],
        "writers": lat["writers"]["processes"],
        "write_window_s": lat["window_s"],
        "latency_samples": lat["samples"],
        "latency_unmatched": lat["unmatched"],
        "latency_p50_ms": lat["all"]["p50_ms"],
        "latency_p95_ms": lat["all"]["p95_ms"],
        "latency_p99_ms": lat["all"]["p99_ms"],
        "latency_max_ms": lat["all"]["max_ms"],
        "load_cpu_s_per_60s": lat["cpu_s_per_60s"],
        "idle_window_s": idle["window_s"],
        "idle_cpu_s": idle["cpu_s"],
        "idle_cpu_s_per_60s": idle["cpu_s_per_60s"],
        "idle_cycles": idle["cycles"],
        "idle_rss_mb": idle["rss_mb"],
        "peak_rss_mb": idle["peak_rss_mb"],
        "statusline_first_ms": sl["sufd-statusline"]["first_ms"],
        "statusline_median_ms": sl["sufd-statusline"]["median_ms"],
        "statusline_cpu_median_ms": sl["sufd-statusline"]["cpu_median_ms"],
        "statusline_with_paths_median_ms": sl["sufd-statusline --socket --db"]["median_ms"],
        "sufctl_statusline_first_ms": sl["sufctl statusline"]["first_ms"],
        "sufctl_statusline_median_ms": sl["sufctl statusline"]["median_ms"],
        "python_startup_median_ms": sl["python_startup"]["median_ms"],
        "daemon_statusline_rtt_median_ms": sl["daemon_rtt"]["median_ms"],
        "ccusage_cold_ms": cc["cold_ms"],
        "ccusage_warm_median_ms": cc["warm"]["median_ms"],
        "ccusage_warm_cpu_median_ms": cc["warm"]["cpu_median_ms"],
        "ccusage_cached_median_ms": cc["cached"]["median_ms"],
        "session_cost_sufd": sufd_cost,
        "session_cost_report": session.report_cost,
        "session_cost_ccusage": ccusage_cost,
        "session_cost_match": match,
    }
    assert tuple(fig) == FIGURES
    return fig


def run_benchmark(args: argparse.Namespace, work: Path, tools: Tools) -> dict[str, Any]:
    user = User(work / "user")
    (user.root / "out").mkdir(parents=True, exist_ok=True)
    machine = machine_info(tools)
    corpus = make_history(user, args.history_mb, args.seed)
    log(f"history: {corpus['bytes'] / 1e6:,.1f} MB in {corpus['files']:,} files")
    log("warming the bytecode cache")
    warm_up(work, tools, user.pycache)
    socket_path = socket_of(user, tools)
    log("sufd ingest (the history, once)")
    ingest_s, _ = user.run([*tools.sufd, "ingest", "--json"])
    specs = writer_specs(user, args.seed, args.writers, args.duration)
    daemon = DaemonProc(user, tools, socket_path)
    try:
        ready_ms = daemon.start()
        status = daemon.wait_catchup()
        catchup_ms = float(status["last_cycle"]["duration_ms"])
        log(f"daemon pid {daemon.pid} answered in {ready_ms:.0f} ms; catch-up {catchup_ms:.0f} ms")
        setup = {
            "ingest_s": round(ingest_s, 2),
            "daemon_ready_ms": round(ready_ms, 1),
            "catchup_scan_ms": catchup_ms,
        }
        lat = latency_phase(user, tools, daemon, specs, args.duration)
        log(f"latency: {lat['all']} ({lat['unmatched']} unmatched)")
        idle = idle_phase(daemon, args.idle, args.settle)
        log(f"idle: {idle['cpu_s']} CPU-s in {idle['window_s']} s, RSS {idle['rss_mb']} MB")
        session = pick_session(user, tools, set(lat.pop("sessions")))
        log(f"status line session {session.session_id} (report cost ${session.report_cost:.4f})")
        sl = sufd_statusline_phase(
            user, tools, daemon, session, args.statusline_runs, args.restarts
        )
        sufd_cost = float(sl["daemon_rtt"]["result"].get("session_cost") or math.nan)
        cc = ccusage_phase(user, tools, session, args.statusline_runs)
    finally:
        daemon.stop()
    fig = collect_figures(corpus, setup, lat, idle, sl, cc, session, sufd_cost)
    machine["loadavg_at_end"] = loadavg()
    checks = build_checks(fig)
    return {
        "benchmark": "daemon_bench (issue 3)",
        "command": " ".join(["python -m benchmarks.daemon_bench", *args.argv]),
        "quick": args.quick,
        "machine": machine,
        "corpus": corpus,
        "figures": fig,
        "checks": [asdict(c) for c in checks],
        "targets": {
            "latency_p50_ms": P50_MAX_MS,
            "latency_p99_ms": P99_MAX_MS,
            "idle_cpu_s_per_60s": IDLE_CPU_MAX_S,
            "idle_rss_mb": RSS_MAX_MB,
            "statusline_first_max_ratio": FIRST_CALL_MAX_RATIO,
        },
        "method": {
            "writers": "processes (multiprocessing, spawn)",
            "observation": "one `sufctl tail --json` subscriber; event committed_at",
            "write_time": "time.time() after write()+flush() in the writer",
        },
        "details": {
            "setup": setup,
            "latency": lat,
            "idle": idle,
            "session": {
                "session_id": session.session_id,
                "transcript": str(session.transcript.relative_to(user.home)),
                "report_rows": session.report_rows,
                "status_json": json.loads(session.status_json),
            },
            "statusline": sl,
            "ccusage": cc,
        },
    }


def print_results(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"sufd daemon benchmark ({'quick' if result['quick'] else 'full'} run)")
    print(machine_line(m, f"ccusage {m['ccusage']}", f"sufd at {m['git']}"))
    c = result["corpus"]
    print(f"history: {c['bytes'] / 1e6:,.1f} MB, {c['files']:,} files (seed {c['seed']})")
    print()
    print(format_table([Check(**row) for row in result["checks"]]))
    print()
    sl = result["details"]["statusline"]
    print("status line outputs for session", result["details"]["session"]["session_id"])
    print(f"  sufd-statusline   : {sl['sufd-statusline']['output']}")
    print(f"  sufctl statusline : {sl['sufctl statusline']['output']}")
    print(f"  ccusage statusline: {result['details']['ccusage']['output']}")


def _parser() -> argparse.ArgumentParser:
    p = new_parser(
        "daemon_bench",
        "Issue 3: the daemon's write->commit latency under 20 live writers, its"
        " idle CPU and RSS, and the status line against ccusage statusline.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run of about 1 min: {QUICK_HISTORY_MB:.0f} MB history,"
        f" {QUICK_WRITE_S:.0f} s of writing, {QUICK_IDLE_S:.0f} s idle,"
        f" {QUICK_STATUSLINE_RUNS} status-line calls",
    )
    p.add_argument(
        "--history-mb",
        type=float,
        default=None,
        help=f"size of the generated history (default {DEFAULT_HISTORY_MB:.0f},"
        f" quick {QUICK_HISTORY_MB:.0f})",
    )
    add_output_options(p)
    p.add_argument(
        "--ccusage",
        type=Path,
        default=DEFAULT_CCUSAGE,
        help=f"ccusage {CCUSAGE_VERSION} (default: {DEFAULT_CCUSAGE})",
    )
    p.add_argument("--seed", type=int, default=1, help="corpus and writer seed (default 1)")
    p.add_argument("--writers", type=int, default=WRITERS, help=argparse.SUPPRESS)
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.history_mb is None:
        args.history_mb = QUICK_HISTORY_MB if args.quick else DEFAULT_HISTORY_MB
    args.duration = QUICK_WRITE_S if args.quick else WRITE_S
    args.idle = QUICK_IDLE_S if args.quick else IDLE_S
    args.settle = QUICK_SETTLE_S if args.quick else SETTLE_S
    args.statusline_runs = QUICK_STATUSLINE_RUNS if args.quick else STATUSLINE_RUNS
    args.restarts = QUICK_RESTARTS if args.quick else RESTARTS
    if args.history_mb <= 0 or args.writers < 1:
        print("error: --history-mb and the writer count must be positive", file=sys.stderr)
        return 2
    result = run_isolated(
        lambda work: run_benchmark(args, work, find_tools(args.ccusage)),
        args,
        "sufd-daemon-bench-",
        "the daemon and the helpers were stopped",
    )
    if isinstance(result, int):
        return result
    print_results(result)
    correct = (
        result["figures"]["session_cost_match"] and result["figures"]["latency_unmatched"] == 0
    )
    return 0 if correct else 1


if __name__ == "__main__":
    raise SystemExit(main())
