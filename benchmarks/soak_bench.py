"""Issue 6, item 4: soak the real daemon at many times a heavy user's write rate.

``python -m benchmarks.soak_bench`` builds an isolated user in a fresh temporary directory
(``benchmarks.daemon_bench.User``: HOME and the XDG dirs under it, ``TZ=UTC``), writes a small
history there (``tests/corpus.py``, ``--history-mb``), ingests it with ``sufd ingest``, starts
``sufd run --foreground`` (the real daemon, a subprocess, with its real JSON log file in the
XDG state dir) and then, for ``--minutes`` (default 10), plays agents:

* **The load.** A heavy user is taken as 3 agent sessions at once, each replying every 6 s on
  average (0.5 API requests per second). ``--rate X`` (default 20) runs ``3 * X`` sessions at
  that pace, spread over ``--writers`` processes (default 4). Claude Code transcripts (65 %)
  and Codex rollouts (35 %) are written with the line builders of
  :mod:`benchmarks.daemon_bench` (streamed Claude replies of 3-5 lines sharing ``message.id``
  / ``requestId``, tool results without usage, Codex ``token_count`` events after bursts of
  other lines), each write an ``open(.., "ab")`` / ``write`` / ``close`` as agents do.
* **Many files.** A session ends after 10-60 replies and a new session file takes its place
  (Claude in one of the history's projects, Codex in today's day directory), so new files
  appear all the time.
* **What agents and their clean-ups do to files.** Now and then a live session file is
  *replaced* (a copy written next to it and renamed over it: a new inode with the same bytes)
  or *rewritten in place* (emptied and written again in two chunks, the daemon may see it
  short), and the session goes on appending. Half of the finished Codex rollouts are
  *archived* right after their last write (moved to ``~/.codex/archived_sessions/``, as
  ``codex`` does), half of the finished Claude transcripts are *deleted* two minutes later
  (``cleanupPeriodDays``, accelerated).
* **Observers.** One ``sufctl tail --json`` subscriber times every usage line from its write
  (``time.time()`` after the ``close()``) to the event's ``committed_at`` (the matching rules
  of ``daemon_bench``), and the harness follows the daemon's log file across rotations to read
  its ``ingest.cycle`` records (``duration_ms``: the ingest of a batch of changed files;
  ``lag_ms``: first change notification to commit) and ``ingest.done`` records (full scans:
  the periodic reconcile, every 60 s by default).

Every ``--interval`` seconds (default 5) one CSV row is sampled: ``VmRSS``/``VmHWM`` and the
thread count (``/proc/PID/status``), open file descriptors (``/proc/PID/fd``), daemon CPU, the
ledger, its ``-wal`` and ``-shm`` sizes, the log directory's total size, file count and the
rotations seen, the daemon's ``status`` (cycles, events since start, errors), the round trip
of a ``statusline`` request, what the writers did, and per interval the write -> commit
latency and the ingest cycle times (p50/p99/max) and the longest full scan. The CSV and a PNG
of the curves go to ``--out`` (default ``benchmarks/soak``). ``--sufd-src DIR`` runs the daemon
from another source tree (e.g. a clone at a given commit) instead of the installed one.

**Log rotation.** sufd rotates its log at 10 MiB (``sufd.logs.MAX_BYTES``), keeping 5 backups;
no setting changes that, and a 10-minute soak logs about a megabyte. So that rotation happens
and its bound is tested, the daemon is started through a three-line launcher that sets
``sufd.logs.MAX_BYTES`` to ``--log-max-bytes`` (default 64 KiB; 0 keeps sufd's own) before
calling ``sufd.cli.sufd.main``; nothing else differs from ``sufd run --foreground``.

**Verdict.** After a warm-up (10 % of the run, at least 30 s unless the run is shorter), the
remaining rows are cut in thirds and the last third is compared with the first: RSS median
grows by at most 10 %, open fds (their minimum and median: a file being read at the sampling
instant adds one) are no more than in the first third, the WAL's largest size is
within 10 % (or below 2x SQLite's 1000-page auto-checkpoint), the log directory never holds
more than ``(backups + 1) * max_bytes`` and rotated at least once, the write -> commit p99 and
the ingest cycle p99 are at most 1.5x the first third's (or 50 ms more), and the daemon's CPU
per 1,000 usage lines at most 1.5x. The run is also checked for correctness: every usage line
written is in the ledger with its final token counts, and the ledger gained exactly as many
events as distinct requests were written (nothing lost, nothing counted twice, whatever was
replaced, rewritten, moved or deleted); the daemon stayed up (same pid), its ``status`` counts
no ingest error and its log holds no error record.

Exit status: 0 when every check passed, 1 when one failed, 2 on a usage or setup error.
The writers' schedule is seeded (``--seed``); the interleaving with the daemon is real time.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import heapq
import json
import math
import multiprocessing
import os
import queue
import random
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO,
    BenchError,
    Check,
    entry_point,
    git_describe,
    loadavg,
    log,
    machine_line,
    median,
    new_parser,
    percentile,
    run_isolated,
)
from benchmarks.daemon_bench import (
    CLAUDE_SHARE,
    DaemonProc,
    TailCollector,
    Tools,
    User,
    WriterSpec,
    _ClaudeWriter,
    _CodexWriter,
    format_table,
    machine_info,
    make_history,
    memory_mb,
    process_cpu_s,
    socket_of,
)

__all__ = ["COLUMNS", "main"]

DEFAULT_OUT = REPO / "benchmarks" / "soak"

DEFAULT_MINUTES = 10.0
LONG_MINUTES = 240.0
DEFAULT_RATE = 20.0
DEFAULT_WRITERS = 4
DEFAULT_INTERVAL_S = 5.0
DEFAULT_HISTORY_MB = 20.0
DEFAULT_LOG_MAX_BYTES = 64 * 1024

# A heavy user: 3 sessions at once, each replying every 6 s on average.
HEAVY_SESSIONS = 3
SESSION_GAP_S = 6.0
REPLIES_PER_SESSION = (10, 60)
BURST_P = 0.35
BURST_LINES = (3, 5)
BURST_SPACING_S = (0.005, 0.012)
TOOL_RESULT_P = 0.3
P_REPLACE = 0.01  # per reply: the session file is replaced by a new inode
P_REWRITE = 0.005  # per reply: the session file is emptied and written again in place
P_ARCHIVE = 0.5  # a finished Codex rollout is moved to archived_sessions/
P_CLEANUP = 0.5  # a finished Claude transcript is deleted ...
CLEANUP_AFTER_S = 120.0  # ... this long after its last write
TMP_SUFFIX = ".soak-tmp"  # owned by no source

MATCH_WAIT_S = 30.0  # after the writers stop, how long to wait for the last commits
UNMATCHED_AFTER_S = 60.0  # a line not seen on the tail by then is looked up in the store
WARMUP_SHARE, WARMUP_MIN_S = 0.10, 30.0

# flatness thresholds
RSS_GROWTH_MAX = 0.10
WAL_GROWTH_MAX = 0.10
WAL_FLOOR_BYTES = 2 * 1000 * 4096  # twice SQLite's default auto-checkpoint (1000 pages)
P99_RATIO_MAX, P99_SLACK_MS = 1.5, 50.0
CPU_RATIO_MAX = 1.5
LOG_BACKUPS = 5  # sufd.logs.BACKUPS

COLUMNS = (
    "elapsed_s",
    "phase",
    "rss_mb",
    "hwm_mb",
    "threads",
    "open_fds",
    "cpu_pct",
    "db_mb",
    "wal_mb",
    "shm_mb",
    "log_dir_kb",
    "log_files",
    "log_rotations",
    "events_since_start",
    "replaced_since_start",
    "cycles",
    "daemon_errors",
    "usage_lines_written",
    "bytes_written_mb",
    "session_files_created",
    "files_replaced",
    "files_rewritten",
    "files_archived",
    "files_deleted",
    "latency_n",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "cycle_n",
    "cycle_p50_ms",
    "cycle_p99_ms",
    "cycle_max_ms",
    "lag_p50_ms",
    "lag_p99_ms",
    "scan_ms",
    "statusline_rtt_ms",
    "loadavg_1m",
)
"""Columns of ``soak.csv``, in order."""

# The daemon, with its log rotation size set (argv[1]; 0 = sufd's own) and optionally sufd
# imported from another source tree (argv[2]; "" = the installed one).
_LAUNCHER = """\
import sys
size, src = int(sys.argv.pop(1)), sys.argv.pop(1)
if src: sys.path.insert(0, src)
import sufd.logs
if size > 0: sufd.logs.MAX_BYTES = size
from sufd.cli.sufd import main
raise SystemExit(main())
"""


# ------------------------------------------------------------------------------------------------
# writers (child processes)


@dataclass(frozen=True)
class WriterPlan:
    """What one writer process plays: ``sessions`` concurrent sessions until ``stop_at``."""

    index: int
    seed: int
    home: str
    projects: tuple[str, ...]
    sessions: int
    stop_at: float  # time.time()


@dataclass
class _Live:
    kind: str  # "claude" | "codex"
    path: Path
    writer: _ClaudeWriter | _CodexWriter
    left: int


class _Player:
    """Plays one writer process's sessions; reports to the harness through ``q``."""

    def __init__(self, plan: WriterPlan, q: Any, stop: Any) -> None:
        self.plan = plan
        self.q = q
        self.stop = stop
        self.rng = random.Random(plan.seed)
        self.home = Path(plan.home)
        self.deletes: list[tuple[float, Path]] = []

    def new_session(self) -> _Live:
        rng = self.rng
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        left = rng.randint(*REPLIES_PER_SESSION)
        if rng.random() < CLAUDE_SHARE:
            project = Path(rng.choice(self.plan.projects))
            cwd = "/home/dev/src/" + project.name.removeprefix("-home-dev-src-")
            spec = WriterSpec(self.plan.index, "claude", sid, "", cwd, 0, 0.0, "")
            live = _Live("claude", project / f"{sid}.jsonl", _ClaudeWriter(spec, rng), left)
        else:
            now = datetime.now(UTC)
            day = self.home / ".codex" / "sessions" / now.strftime("%Y/%m/%d")
            path = day / f"rollout-{now.strftime('%Y-%m-%dT%H-%M-%S')}-{sid}.jsonl"
            spec = WriterSpec(self.plan.index, "codex", sid, "", f"/home/dev/src/soak-{sid[:4]}",
                              0, 0.0, "")  # fmt: skip
            live = _Live("codex", path, _CodexWriter(spec, rng), left)
        live.path.parent.mkdir(parents=True, exist_ok=True)
        self.append(live.path, b"".join(live.writer.header()))
        self.q.put(("op", "created"))
        return live

    def append(self, path: Path, data: bytes) -> float:
        with path.open("ab") as f:
            f.write(data)
        self.q.put(("w", len(data)))
        return time.time()

    def usage(self, source: str, key: str, output: int, at: float) -> None:
        self.q.put(("u", source, key, output, at))

    def reply(self, s: _Live) -> None:
        rng = self.rng
        burst = rng.random() < BURST_P
        if isinstance(s.writer, _ClaudeWriter):
            n = rng.randint(*BURST_LINES) if burst else 1
            for i, (data, key, out) in enumerate(s.writer.reply(n)):
                if i:
                    time.sleep(rng.uniform(*BURST_SPACING_S))
                self.usage("claude", key, out, self.append(s.path, data))
            if rng.random() < TOOL_RESULT_P:
                self.append(s.path, s.writer.extra())
        else:
            if burst:
                for _ in range(rng.randint(BURST_LINES[0] - 1, BURST_LINES[1] - 1)):
                    self.append(s.path, s.writer.extra())
                    time.sleep(rng.uniform(*BURST_SPACING_S))
            data, key, out = s.writer.token_count()
            self.usage("codex", key, out, self.append(s.path, data))

    def mangle(self, s: _Live) -> None:
        """Sometimes replace the live file by a new inode, or empty it and write it again."""
        roll = self.rng.random()
        if roll < P_REPLACE:
            tmp = s.path.with_name(s.path.name + TMP_SUFFIX)
            tmp.write_bytes(s.path.read_bytes())
            os.replace(tmp, s.path)
            self.q.put(("op", "replaced"))
        elif roll < P_REPLACE + P_REWRITE:
            data = s.path.read_bytes()
            cut = self.rng.randint(0, len(data))
            with s.path.open("wb") as f:  # emptied here
                f.write(data[:cut])
                f.flush()
                time.sleep(self.rng.uniform(0.0, 0.05))
                f.write(data[cut:])
            self.q.put(("op", "rewritten"))

    def finish(self, s: _Live) -> None:
        if s.kind == "codex" and self.rng.random() < P_ARCHIVE:
            archive = self.home / ".codex" / "archived_sessions"
            archive.mkdir(parents=True, exist_ok=True)
            os.replace(s.path, archive / s.path.name)
            self.q.put(("op", "archived"))
        elif s.kind == "claude" and self.rng.random() < P_CLEANUP:
            self.deletes.append((time.time() + CLEANUP_AFTER_S, s.path))

    def clean_up(self) -> None:
        now = time.time()
        due = [p for at, p in self.deletes if at <= now]
        self.deletes = [(at, p) for at, p in self.deletes if at > now]
        for path in due:
            path.unlink(missing_ok=True)
            self.q.put(("op", "deleted"))

    def gap(self) -> float:
        return self.rng.uniform(0.25, 1.75) * SESSION_GAP_S

    def run(self) -> None:
        lives = [self.new_session() for _ in range(self.plan.sessions)]
        now = time.time()
        heap = [(now + self.rng.uniform(0, SESSION_GAP_S), i) for i in range(len(lives))]
        heapq.heapify(heap)
        while heap:
            due, i = heapq.heappop(heap)
            if due >= self.plan.stop_at:
                break
            if self.stop.wait(max(0.0, due - time.time())):
                break
            s = lives[i]
            self.reply(s)
            self.mangle(s)
            s.left -= 1
            if s.left <= 0:
                self.finish(s)
                lives[i] = self.new_session()
            self.clean_up()
            heapq.heappush(heap, (time.time() + self.gap(), i))


def _writer_main(plan: WriterPlan, q: Any, stop: Any) -> None:
    try:
        _Player(plan, q, stop).run()
    except BaseException as exc:
        q.put(("error", plan.index, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        q.put(("done", plan.index))


# ------------------------------------------------------------------------------------------------
# what the harness observes


class Recorder:
    """Everything the writers report and the tail subscriber sees, matched as it arrives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.expected: dict[tuple[str, str], int] = {}  # (source, key) -> largest output written
        self.pending: list[tuple[str, str, int, float]] = []  # (source, key, output, t)
        self.commits: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.latencies: list[tuple[float, float]] = []  # (write time, ms)
        self.late: list[tuple[str, str, int, float]] = []  # never seen on the tail in time
        self.usage_lines = 0
        self.bytes = 0
        self.ops: Counter[str] = Counter()
        self.done: set[int] = set()
        self.errors: list[str] = []
        self.tail_events = 0

    def on_writer(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        with self.lock:
            if kind == "w":
                self.bytes += msg[1]
            elif kind == "u":
                _, source, key, output, at = msg
                self.usage_lines += 1
                k = (source, key)
                self.expected[k] = max(self.expected.get(k, 0), output)
                self.pending.append((source, key, output, at))
            elif kind == "op":
                self.ops[msg[1]] += 1
            elif kind == "done":
                self.done.add(msg[1])
            elif kind == "error":
                self.errors.append(f"writer {msg[1]}: {msg[2]}")

    def on_event(self, event: dict[str, Any]) -> None:
        key = event.get("key")
        if not isinstance(key, str):
            return
        with self.lock:
            self.tail_events += 1
            self.commits[key].append((int(event.get("output") or 0), float(event["committed_at"])))

    def match(self, now: float) -> int:
        """Time the pending lines whose commit was seen; returns how many are still pending."""
        with self.lock:
            still = []
            for source, key, output, at in self.pending:
                hit = next((c for o, c in self.commits.get(key, ()) if o >= output), None)
                if hit is not None:
                    self.latencies.append((at, (hit - at) * 1e3))
                elif now - at > UNMATCHED_AFTER_S:
                    self.late.append((source, key, output, at))
                else:
                    still.append((source, key, output, at))
            self.pending = still
            # Forget commits nobody waits for any more (a long run would keep them all).
            if len(self.commits) > 50_000:
                waiting = {k for _, k, _, _ in still}
                horizon = now - 2 * UNMATCHED_AFTER_S
                for k in [k for k, v in self.commits.items() if k not in waiting]:
                    if self.commits[k][-1][1] < horizon:
                        del self.commits[k]
            return len(still)


class _Tail(TailCollector):
    """The daemon_bench subscriber, handing each event over instead of keeping them all."""

    def __init__(self, user: User, tools: Tools, sink: Callable[[dict[str, Any]], None]) -> None:
        self.sink = sink
        super().__init__(user, tools)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    self.sink(event)


class LogFollower:
    """Reads the daemon's JSON log as it grows, following it across size-based rotations.

    The open file is followed by inode: after a rollover it is ``sufd.log.K``; the rest of it,
    then ``sufd.log.K-1`` .. ``.1`` (rotated since), are read before ``sufd.log`` again.
    """

    def __init__(self, log_dir: Path) -> None:
        self.dir = log_dir
        self.path = log_dir / "sufd.log"
        self.f: Any = None
        self.ino = 0
        self.buf = b""
        self.rotations = 0
        self.records: list[dict[str, Any]] = []
        self.levels: Counter[str] = Counter()
        self.problems: list[dict[str, Any]] = []
        self.warnings: Counter[str] = Counter()  # "event: error" of warning records

    def _take(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            level = str(rec.get("level"))
            self.levels[level] += 1
            if level in ("error", "critical") and len(self.problems) < 20:
                self.problems.append(rec)
            if level == "warning":
                self.warnings[f"{rec.get('event')}: {str(rec.get('error') or '')[:80]}"] += 1
            if rec.get("event") in ("ingest.cycle", "ingest.done"):
                self.records.append(rec)

    def _open(self) -> bool:
        try:
            self.f = self.path.open("rb")
        except FileNotFoundError:
            return False
        self.ino = os.fstat(self.f.fileno()).st_ino
        return True

    def poll(self) -> None:
        if self.f is None and not self._open():
            return
        self._take(self.f.read())
        try:
            current = self.path.stat().st_ino
        except FileNotFoundError:
            return
        if current == self.ino:
            return
        moved = next(
            (k for k in range(1, LOG_BACKUPS + 1) if _ino(self.dir / f"sufd.log.{k}") == self.ino),
            LOG_BACKUPS + 1,  # already deleted: at least that many rollovers
        )
        self._take(self.f.read())
        self.f.close()
        for k in range(min(moved, LOG_BACKUPS + 1) - 1, 0, -1):
            with contextlib.suppress(OSError):
                self._take((self.dir / f"sufd.log.{k}").read_bytes())
        self.rotations += moved
        self.buf = b""
        self.f = None
        if self._open():
            self._take(self.f.read())

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def _ino(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return -1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Threads":
            out[key] = int(value)
    return out


# ------------------------------------------------------------------------------------------------
# the run


@dataclass
class Config:
    minutes: float
    rate: float
    writers: int
    interval_s: float
    history_mb: float
    log_max_bytes: int
    seed: int
    sufd_src: str

    @property
    def sessions(self) -> int:
        return max(1, round(HEAVY_SESSIONS * self.rate))

    @property
    def warmup_s(self) -> float:
        duration = self.minutes * 60
        return min(max(WARMUP_SHARE * duration, WARMUP_MIN_S), duration / 4)


@dataclass
class Sampler:
    """Takes one CSV row per interval."""

    daemon: DaemonProc
    db: Path
    log: LogFollower
    rec: Recorder
    started: float  # time.time() when the writers started
    warmup_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    _cpu: float = 0.0
    _t: float = 0.0

    def __post_init__(self) -> None:
        self._cpu, self._t = process_cpu_s(self.daemon.pid), time.monotonic()

    def sample(self) -> dict[str, Any]:
        pid = self.daemon.pid
        now = time.time()
        fds = len(os.listdir(f"/proc/{pid}/fd"))  # first, before this sampler's own calls
        mem = memory_mb(pid)
        threads = _proc_status(pid).get("Threads", 0)
        cpu, mono = process_cpu_s(pid), time.monotonic()
        cpu_pct = (cpu - self._cpu) / max(mono - self._t, 1e-9) * 100
        self._cpu, self._t = cpu, mono
        self.log.poll()
        log_files = [p for p in self.log.dir.iterdir() if p.is_file()]
        status = self.daemon.call("status")
        begin = time.perf_counter()
        self.daemon.call("statusline", {})
        rtt = (time.perf_counter() - begin) * 1e3
        self.rec.match(now)
        since = status.get("since_start") or {}
        with self.rec.lock:
            ops = Counter(self.rec.ops)
            lines, written = self.rec.usage_lines, self.rec.bytes
        elapsed = now - self.started
        row: dict[str, Any] = {
            "t": now,
            "t_from": self.rows[-1]["t"] if self.rows else self.started,
            "cpu_s": cpu,
            "elapsed_s": round(elapsed, 1),
            "phase": "warmup" if elapsed < self.warmup_s else "soak",
            "rss_mb": round(mem.get("VmRSS", math.nan), 2),
            "hwm_mb": round(mem.get("VmHWM", math.nan), 2),
            "threads": threads,
            "open_fds": fds,
            "cpu_pct": round(cpu_pct, 1),
            "db_mb": round(_size(self.db) / 1e6, 3),
            "wal_mb": round(_size(Path(f"{self.db}-wal")) / 1e6, 3),
            "shm_mb": round(_size(Path(f"{self.db}-shm")) / 1e6, 3),
            "log_dir_kb": round(sum(_size(p) for p in log_files) / 1e3, 1),
            "log_files": len(log_files),
            "log_rotations": self.log.rotations,
            "events_since_start": int(since.get("events", 0)),
            "replaced_since_start": int(since.get("replaced", 0)),
            "cycles": int(status.get("cycles", 0)),
            "daemon_errors": int(since.get("errors", 0)),
            "usage_lines_written": lines,
            "bytes_written_mb": round(written / 1e6, 3),
            "session_files_created": ops["created"],
            "files_replaced": ops["replaced"],
            "files_rewritten": ops["rewritten"],
            "files_archived": ops["archived"],
            "files_deleted": ops["deleted"],
            "statusline_rtt_ms": round(rtt, 2),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        self.rows.append(row)
        return row


def _bins(
    rows: Sequence[dict[str, Any]], values: Sequence[tuple[float, float]]
) -> list[list[float]]:
    """Values (time, v) per row: what fell in (its ``t_from``, its ``t``]."""
    edges = [r["t"] for r in rows]
    out: list[list[float]] = [[] for _ in rows]
    since = rows[0]["t_from"] if rows else math.inf
    for at, v in values:
        i = bisect.bisect_left(edges, at)
        if i < len(rows) and at > since:
            out[i].append(v)
    return out


def split_records(records: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """The daemon's log records as (time, ms) series: the ingest of change batches and their
    lag (``ingest.cycle``), and full scans (catch-up, periodic reconcile: ``ingest.done``)."""
    out: dict[str, list[tuple[float, float]]] = {"cycle": [], "lag": [], "scan": []}
    for r in records:
        try:
            at = datetime.fromisoformat(str(r["timestamp"])).timestamp()
            duration = float(r.get("duration_ms") or 0)
        except (KeyError, ValueError):
            continue
        if r.get("event") == "ingest.done":
            out["scan"].append((at, duration))
        elif r.get("kind") != "scan":
            out["cycle"].append((at, duration))
            if r.get("lag_ms") is not None:
                out["lag"].append((at, float(r["lag_ms"])))
    return out


def _fmt(value: float) -> float | str:
    return "" if math.isnan(value) else round(value, 1)


def finish_rows(rows: list[dict[str, Any]], rec: Recorder, cycles: list[dict[str, Any]]) -> None:
    """Fill the per-interval latency and cycle columns (known only once commits were seen)."""
    series = split_records(cycles)
    lat, cyc = _bins(rows, rec.latencies), _bins(rows, series["cycle"])
    lags, scans = _bins(rows, series["lag"]), _bins(rows, series["scan"])
    for i, row in enumerate(rows):
        for name, bins in (("latency", lat), ("cycle", cyc)):
            vals = bins[i]
            row[f"{name}_n"] = len(vals)
            row[f"{name}_p50_ms"] = _fmt(percentile(vals, 50))
            row[f"{name}_p99_ms"] = _fmt(percentile(vals, 99))
            row[f"{name}_max_ms"] = _fmt(max(vals) if vals else math.nan)
        row["lag_p50_ms"] = _fmt(percentile(lags[i], 50))
        row["lag_p99_ms"] = _fmt(percentile(lags[i], 99))
        row["scan_ms"] = _fmt(max(scans[i]) if scans[i] else math.nan)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


# ------------------------------------------------------------------------------------------------
# verdict


def _thirds(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    soak = [r for r in rows if r["phase"] == "soak"]
    n = len(soak) // 3
    return soak[:n], soak[len(soak) - n :] if n else []


def _num(rows: Sequence[dict[str, Any]], col: str) -> list[float]:
    return [float(r[col]) for r in rows if r.get(col) not in ("", None)]


def _pooled(span: Sequence[dict[str, Any]], values: Sequence[tuple[float, float]]) -> list[float]:
    """The values (time, v) that fell in a span of rows."""
    if not span:
        return []
    lo, hi = span[0]["t_from"], span[-1]["t"]
    return [v for at, v in values if lo < at <= hi]


def _cpu_per_k(rows: Sequence[dict[str, Any]], all_rows: Sequence[dict[str, Any]]) -> float:
    """Daemon CPU seconds per 1,000 usage lines written over a span of rows."""
    if not rows:
        return math.nan
    i = all_rows.index(rows[0])
    before = all_rows[i - 1] if i else rows[0]
    cpu = rows[-1]["cpu_s"] - before["cpu_s"]
    lines = rows[-1]["usage_lines_written"] - before["usage_lines_written"]
    return cpu / lines * 1000 if lines else math.nan


def _not_rising(first: float, last: float) -> bool:
    if math.isnan(first) or math.isnan(last):
        return False
    return last <= max(P99_RATIO_MAX * first, first + P99_SLACK_MS)


def judge(
    rows: list[dict[str, Any]], rec: Recorder, cycles: list[dict[str, Any]], cfg: Config,
    correctness: dict[str, Any],
) -> tuple[list[Check], dict[str, Any]]:  # fmt: skip
    first, last = _thirds(rows)
    change = split_records(cycles)["cycle"]
    s: dict[str, Any] = {}
    for name, span in (("first", first), ("last", last)):
        lat = _pooled(span, rec.latencies)
        cyc = _pooled(span, change)
        s[name] = {
            "rows": len(span),
            "from_s": span[0]["elapsed_s"] if span else None,
            "to_s": span[-1]["elapsed_s"] if span else None,
            "rss_median_mb": median(_num(span, "rss_mb")),
            "fds_min": min(_num(span, "open_fds"), default=math.nan),
            "fds_median": median(_num(span, "open_fds")),
            "fds_max": max(_num(span, "open_fds"), default=math.nan),
            "wal_max_mb": max(_num(span, "wal_mb"), default=math.nan),
            "latency_n": len(lat),
            "latency_p50_ms": percentile(lat, 50),
            "latency_p99_ms": percentile(lat, 99),
            "cycle_n": len(cyc),
            "cycle_p99_ms": percentile(cyc, 99),
            "cpu_s_per_1k_lines": _cpu_per_k(span, rows),
            "statusline_rtt_median_ms": median(_num(span, "statusline_rtt_ms")),
        }
    a, c = s["first"], s["last"]
    cap_kb = (LOG_BACKUPS + 1) * cfg.log_max_bytes / 1e3 if cfg.log_max_bytes else math.nan
    log_max_kb = max(_num(rows, "log_dir_kb"), default=math.nan)
    log_files_max = max(_num(rows, "log_files"), default=math.nan)
    rotations = rows[-1]["log_rotations"] if rows else 0
    wal_limit = max(a["wal_max_mb"] * (1 + WAL_GROWTH_MAX), WAL_FLOOR_BYTES / 1e6)
    enough = bool(first) and bool(last)
    checks = [
        Check("RSS median, last third vs first", f"{c['rss_median_mb']:.1f} vs"
              f" {a['rss_median_mb']:.1f} MB", f"<= +{RSS_GROWTH_MAX:.0%}",
              enough and c["rss_median_mb"] <= a["rss_median_mb"] * (1 + RSS_GROWTH_MAX)),
        # A leak raises the floor; a file open for a read at the sampling instant, the max only.
        Check("open fds, last third vs first (min / median / max)",
              f"{c['fds_min']:.0f} / {c['fds_median']:.0f} / {c['fds_max']:.0f} vs"
              f" {a['fds_min']:.0f} / {a['fds_median']:.0f} / {a['fds_max']:.0f}",
              "min, median no higher",
              enough and c["fds_min"] <= a["fds_min"] and c["fds_median"] <= a["fds_median"]),
        Check("WAL size, max of last third vs first", f"{c['wal_max_mb']:.2f} vs"
              f" {a['wal_max_mb']:.2f} MB", f"<= {wal_limit:.2f} MB",
              enough and c["wal_max_mb"] <= wal_limit),
        Check("log dir total, max over the run", f"{log_max_kb:,.0f} kB in <= {log_files_max:.0f}"
              f" files", f"<= {cap_kb:,.0f} kB, <= {LOG_BACKUPS + 1} files"
              if cfg.log_max_bytes else "(sufd's own size)",
              (log_max_kb <= cap_kb and log_files_max <= LOG_BACKUPS + 1)
              if cfg.log_max_bytes else None),
        Check("log rotations seen", str(rotations), ">= 1" if cfg.log_max_bytes else "-",
              rotations >= 1 if cfg.log_max_bytes else None),
        Check("write->commit p99, last third vs first", f"{c['latency_p99_ms']:.0f} vs"
              f" {a['latency_p99_ms']:.0f} ms", f"<= {P99_RATIO_MAX}x or +{P99_SLACK_MS:.0f} ms",
              enough and _not_rising(a["latency_p99_ms"], c["latency_p99_ms"])),
        Check("write->commit p50, last third vs first", f"{c['latency_p50_ms']:.0f} vs"
              f" {a['latency_p50_ms']:.0f} ms", "-", None),
        Check("ingest cycle p99, last third vs first", f"{c['cycle_p99_ms']:.0f} vs"
              f" {a['cycle_p99_ms']:.0f} ms", f"<= {P99_RATIO_MAX}x or +{P99_SLACK_MS:.0f} ms",
              enough and _not_rising(a["cycle_p99_ms"], c["cycle_p99_ms"])),
        Check("daemon CPU per 1,000 usage lines, last vs first",
              f"{c['cpu_s_per_1k_lines']:.2f} vs {a['cpu_s_per_1k_lines']:.2f} s",
              f"<= {CPU_RATIO_MAX}x", enough
              and c["cpu_s_per_1k_lines"] <= CPU_RATIO_MAX * a["cpu_s_per_1k_lines"]),
        Check("statusline round trip median, last vs first",
              f"{c['statusline_rtt_median_ms']:.1f} vs {a['statusline_rtt_median_ms']:.1f} ms",
              "-", None),
        Check("usage lines written / timed on the tail",
              f"{correctness['usage_lines']:,} / {correctness['timed']:,}", "-", None),
        Check("requests in the ledger with their final tokens",
              f"{correctness['found']:,} of {correctness['requests']:,}", "all",
              correctness["requests"] > 0 and correctness["found"] == correctness["requests"]),
        Check("events the ledger gained", f"{correctness['new_events']:,}",
              f"= {correctness['requests']:,} requests",
              correctness["new_events"] == correctness["requests"]),
        Check("daemon stayed up (same pid)", "yes" if correctness["alive"] else "no", "yes",
              correctness["alive"]),
        Check("ingest errors (status) / error log records",
              f"{correctness['daemon_errors']} / {correctness['error_records']}", "0 / 0",
              correctness["daemon_errors"] == 0 and correctness["error_records"] == 0),
    ]  # fmt: skip
    return checks, s


def check_ledger(db: Path, rec: Recorder, baseline: int) -> dict[str, Any]:
    """Every written request is in the ledger with its largest output; count the new events."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        stored = {(s, k): o for s, k, o in conn.execute("SELECT source, key, output FROM events")}
    finally:
        conn.close()
    with rec.lock:
        expected = dict(rec.expected)
        late = list(rec.late) + list(rec.pending)
        timed = len(rec.latencies)
        lines = rec.usage_lines
    wrong = [(k, v, stored.get(k)) for k, v in expected.items() if stored.get(k) != v]
    late_in_store = sum(1 for s, k, o, _ in late if stored.get((s, k), -1) >= o)
    return {
        "usage_lines": lines,
        "timed": timed,
        "not_seen_on_tail": len(late),
        "not_seen_on_tail_but_in_ledger": late_in_store,
        "requests": len(expected),
        "found": len(expected) - len(wrong),
        "wrong_examples": [list(w) for w in wrong[:10]],
        "not_seen_on_tail_examples": [list(x) for x in late[:10]],
        "baseline_events": baseline,
        "new_events": len(stored) - baseline,
    }


# ------------------------------------------------------------------------------------------------
# the plot


def plot(path: Path, rows: Sequence[dict[str, Any]], cfg: Config, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [float(r["elapsed_s"]) / 60 for r in rows]

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in ("", None) else math.nan for r in rows]

    fig, axes = plt.subplots(3, 2, figsize=(13, 10), sharex=True)
    panels: list[tuple[str, list[tuple[str, str]], str]] = [
        ("memory", [("rss_mb", "RSS"), ("hwm_mb", "peak RSS (VmHWM)")], "MB"),
        ("descriptors and threads", [("open_fds", "open fds"), ("threads", "threads")], "count"),
        ("ledger", [("wal_mb", "WAL"), ("db_mb", "database"), ("shm_mb", "shm")], "MB"),
        ("log dir (rotating)", [("log_dir_kb", "total size")], "kB"),
        ("write -> commit latency", [("latency_p50_ms", "p50"), ("latency_p99_ms", "p99"),
                                     ("cycle_p99_ms", "ingest cycle p99")], "ms"),
        ("daemon CPU and events", [("cpu_pct", "CPU %")], "% of one core"),
    ]  # fmt: skip
    warm = cfg.warmup_s / 60
    for ax, (name, series, unit) in zip(axes.flat, panels, strict=True):
        for column, label in series:
            ax.plot(x, col(column), label=label, linewidth=1.2)
        ax.set_title(name)
        ax.set_ylabel(unit)
        ax.axvspan(0, warm, color="0.9", zorder=0)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    log_ax = axes.flat[3]
    if cfg.log_max_bytes:
        cap = (LOG_BACKUPS + 1) * cfg.log_max_bytes / 1e3
        log_ax.axhline(cap, color="red", linestyle="--", linewidth=1, label="bound (6 files)")
        log_ax.set_ylim(0, 1.15 * max([cap, *(v for v in col("log_dir_kb") if v == v)]))
    log_ax2 = log_ax.twinx()
    log_ax2.step(x, col("log_rotations"), where="post", color="tab:green", linewidth=1)
    log_ax2.set_ylabel("rotations", color="tab:green")
    ev_ax = axes.flat[5].twinx()
    ev_ax.plot(x, [v / 1e3 for v in col("events_since_start")], color="tab:purple", linewidth=1)
    ev_ax.set_ylabel("events committed (thousands)", color="tab:purple")
    for ax in axes.flat:
        ax.legend(loc="upper left", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("minutes (grey: warm-up)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# orchestration


def _tools(cfg: Config) -> Tools:
    return Tools(
        sufd=(sys.executable, "-c", _LAUNCHER, str(cfg.log_max_bytes), cfg.sufd_src),
        sufctl=entry_point("sufctl", "sufd.cli.sufctl"),
        statusline=(),
        ccusage=Path("/nonexistent"),
        ccusage_version="-",
    )


def _drain(q: Any, rec: Recorder, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            msg = q.get(timeout=0.2)
        except queue.Empty:
            continue
        rec.on_writer(msg)


def _projects(home: Path) -> tuple[str, ...]:
    root = home / ".claude" / "projects"
    found = sorted(str(p) for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not found:
        for name in ("api-server", "web-app", "cli-tool", "data-pipeline"):
            p = root / f"-home-dev-src-{name}"
            p.mkdir(parents=True, exist_ok=True)
            found.append(str(p))
    return tuple(found)


def _probe(projects: Sequence[str], rec: Recorder, timeout: float = 30.0) -> float:
    """Append probe replies until the tail subscriber sees one; return its latency (ms).

    The probe requests count in the ledger check like any other.
    """
    sid = str(uuid.uuid4())
    path = Path(projects[0]) / f"{sid}.jsonl"
    spec = WriterSpec(-1, "claude", sid, str(path), "/home/dev/src/probe", 0, 0.0, "")
    writer = _ClaudeWriter(spec, random.Random(0))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data, key, out = next(writer.reply(1))
        with path.open("ab") as f:
            f.write(data)
        wrote = time.time()
        with rec.lock:  # in the ledger check, but not timed (the first may precede the tail)
            rec.expected[("claude", key)] = out
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            with rec.lock:
                hit = next((c for o, c in rec.commits.get(key, ()) if o >= out), None)
            if hit is not None:
                return (hit - wrote) * 1e3
            time.sleep(0.02)
    raise BenchError("the tail subscriber never saw a probe line")


def _event_count(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def _sufd_git(src: str) -> str:
    described = git_describe(Path(src) if src else REPO)
    return "?" if described is None else described or "(not a git checkout)"


def run_soak(cfg: Config, work: Path, out_dir: Path) -> dict[str, Any]:
    user = User(work / "user")
    (user.root / "out").mkdir(parents=True, exist_ok=True)
    tools = _tools(cfg)
    machine = machine_info(tools)
    for key in ("ccusage", "node"):
        machine.pop(key, None)
    machine["sufd_tree"] = cfg.sufd_src or str(REPO)
    machine["sufd_git"] = _sufd_git(cfg.sufd_src)
    env = user.env()
    log_dir = Path(env["XDG_STATE_HOME"]) / "sufd" / "log"
    db = Path(env["XDG_DATA_HOME"]) / "sufd" / "ledger.sqlite3"
    history: dict[str, Any] = {"bytes": 0, "files": 0}
    if cfg.history_mb > 0:
        history = make_history(user, cfg.history_mb, cfg.seed)
        log(f"history: {history['bytes'] / 1e6:,.1f} MB in {history['files']:,} files")
    projects = _projects(user.home)
    (user.home / ".codex" / "sessions").mkdir(parents=True, exist_ok=True)
    log("sufd ingest (the history, once)")
    user.run([*tools.sufd, "ingest", "--json"])
    daemon = DaemonProc(user, tools, socket_of(user, tools))
    rec = Recorder()
    follower = LogFollower(log_dir)
    ctx = multiprocessing.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    drain_stop = threading.Event()
    drainer = threading.Thread(target=_drain, args=(q, rec, drain_stop), daemon=True)
    procs: list[Any] = []
    tail: _Tail | None = None
    try:
        ready_ms = daemon.start()
        daemon.wait_catchup()
        pid = daemon.pid
        log(f"daemon pid {pid} answered hello in {ready_ms:.0f} ms; catch-up done")
        baseline = _event_count(db)
        tail = _Tail(user, tools, rec.on_event)
        probe_ms = _probe(projects, rec)
        log(f"tail subscriber live (probe line committed after {probe_ms:.0f} ms)")
        drainer.start()
        duration = cfg.minutes * 60
        started = time.time()
        stop_at = started + duration
        per, extra = divmod(cfg.sessions, cfg.writers)
        plans = [
            WriterPlan(i, cfg.seed * 1000 + i, str(user.home), projects,
                       per + (1 if i < extra else 0), stop_at)
            for i in range(cfg.writers)
        ]  # fmt: skip
        procs = [ctx.Process(target=_writer_main, args=(p, q, stop)) for p in plans if p.sessions]
        for p in procs:
            p.start()
        log(f"{cfg.sessions} sessions ({cfg.rate:g}x a heavy user) in {len(procs)} writer"
            f" processes for {cfg.minutes:g} min; a row every {cfg.interval_s:g} s")  # fmt: skip
        sampler = Sampler(daemon, db, follower, rec, started, cfg.warmup_s)
        tick = started
        last_note = 0.0
        while True:
            tick += cfg.interval_s
            if tick > stop_at + 1e-6:
                break
            time.sleep(max(0.0, tick - time.time()))
            if daemon.proc is not None and daemon.proc.poll() is not None:
                raise BenchError(f"the daemon exited {daemon.proc.returncode}:\n"
                                 f"{daemon.log_tail()}")  # fmt: skip
            row = sampler.sample()
            if rec.errors:
                raise BenchError("a writer failed: " + "; ".join(rec.errors))
            if row["t"] - last_note >= 60:
                last_note = row["t"]
                log(
                    f"{row['elapsed_s']:6.0f} s: RSS {row['rss_mb']:.1f} MB, fds"
                    f" {row['open_fds']}, WAL {row['wal_mb']:.2f} MB, log {row['log_dir_kb']:.0f}"
                    f" kB ({row['log_rotations']} rotations), {row['usage_lines_written']:,}"
                    f" lines, {row['events_since_start']:,} events, CPU {row['cpu_pct']:.0f} %"
                )
                write_csv(out_dir / "soak.csv", sampler.rows)  # partial, for long runs
        for p in procs:
            p.join(timeout=60)
        deadline = time.monotonic() + MATCH_WAIT_S
        while rec.match(time.time()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        follower.poll()
        alive = daemon.proc is not None and daemon.proc.poll() is None
        final_status = daemon.call("status") if alive else {}
        tail.close()
        correctness = check_ledger(db, rec, baseline)
        correctness.update(
            alive=alive and final_status.get("pid") == pid,
            daemon_errors=int((final_status.get("since_start") or {}).get("errors", -1)),
            error_records=follower.levels["error"] + follower.levels["critical"],
            error_examples=follower.problems[:5],
            log_levels=dict(follower.levels),
            warnings=dict(follower.warnings),
            ops=dict(rec.ops),
            tail_events=rec.tail_events,
        )
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        if tail is not None:
            tail.close()
        daemon.stop()
        drain_stop.set()
        follower.close()
    rows = sampler.rows
    finish_rows(rows, rec, follower.records)
    checks, thirds = judge(rows, rec, follower.records, cfg, correctness)
    machine["loadavg_at_end"] = loadavg()
    title = (
        f"sufd soak: {cfg.minutes:g} min at {cfg.rate:g}x a heavy user ({cfg.sessions} sessions),"
        f" log rotated at {cfg.log_max_bytes:,} B; sufd {machine['sufd_git']},"
        f" {machine['nproc']} CPUs, {machine['date']}"
    )
    write_csv(out_dir / "soak.csv", rows)
    plot(out_dir / "soak.png", rows, cfg, title)
    return {
        "benchmark": "soak_bench (issue 6, item 4)",
        "machine": machine,
        "config": asdict(cfg) | {"sessions": cfg.sessions, "warmup_s": cfg.warmup_s},
        "heavy_user": {"sessions": HEAVY_SESSIONS, "mean_reply_gap_s": SESSION_GAP_S},
        "history": history,
        "checks": [asdict(c) for c in checks],
        "thirds": thirds,
        "correctness": correctness,
        "rows": len(rows),
        "csv": str(out_dir / "soak.csv"),
        "png": str(out_dir / "soak.png"),
    }


# ------------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = new_parser(
        "soak_bench",
        "Issue 6 soak: run the real sufd daemon for --minutes while agents write"
        " at --rate times a heavy user's pace (3 sessions, a reply every 6 s each), replace,"
        " rewrite, archive and delete files and start new sessions; sample RSS, open fds, WAL,"
        " log dir size (with rotation), events and per-interval latency into soak.csv, plot"
        " soak.png, and judge whether each curve stays flat (last third vs first third after"
        " warm-up). Exit 0 when every check passes, 1 when one fails, 2 on a setup error.",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help=f"length of the write phase (default {DEFAULT_MINUTES:g}; --long: {LONG_MINUTES:g})",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help=f"long mode: {LONG_MINUTES:g} minutes unless --minutes says otherwise",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"multiple of a heavy user's write rate (default {DEFAULT_RATE:g}:"
        f" {round(HEAVY_SESSIONS * DEFAULT_RATE)} sessions,"
        f" ~{HEAVY_SESSIONS * DEFAULT_RATE / SESSION_GAP_S:g} replies/s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where soak.csv and soak.png go (default {DEFAULT_OUT.relative_to(REPO)})",
    )
    p.add_argument("--json-out", type=Path, help="write the checks, thirds and details as JSON")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help=f"seconds between samples (default {DEFAULT_INTERVAL_S:g})",
    )
    p.add_argument(
        "--writers",
        type=int,
        default=DEFAULT_WRITERS,
        help=f"writer processes sharing the sessions (default {DEFAULT_WRITERS})",
    )
    p.add_argument(
        "--history-mb",
        type=float,
        default=DEFAULT_HISTORY_MB,
        help=f"history ingested before the start (default {DEFAULT_HISTORY_MB:g})",
    )
    p.add_argument(
        "--log-max-bytes",
        type=int,
        default=DEFAULT_LOG_MAX_BYTES,
        help="size at which the daemon's log rotates, set through a launcher since"
        f" sufd has no setting for it (default {DEFAULT_LOG_MAX_BYTES}; 0 = sufd's"
        " own 10 MiB)",
    )
    p.add_argument(
        "--sufd-src",
        type=Path,
        default=None,
        help="run the daemon from this source tree (a directory holding sufd/),"
        " e.g. a `git clone` checked out at a commit; default: the installed sufd",
    )
    p.add_argument("--seed", type=int, default=1, help="corpus and writer seed (default 1)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="create the work directory under this one (default: the system temp)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p  # fmt: skip


def print_results(result: dict[str, Any], checks: Sequence[Check]) -> None:
    m, c = result["machine"], result["config"]
    print(f"sufd soak: {c['minutes']:g} min at {c['rate']:g}x a heavy user ({c['sessions']}"
          f" sessions, {c['writers']} writer processes), a row every {c['interval_s']:g} s,"
          f" warm-up {c['warmup_s']:.0f} s")  # fmt: skip
    print(machine_line(m, f"sufd {m['sufd_git']}"))
    t = result["thirds"]
    print(f"first third {t['first']['from_s']}-{t['first']['to_s']} s, last third"
          f" {t['last']['from_s']}-{t['last']['to_s']} s")  # fmt: skip
    print()
    print(format_table(checks))
    print()
    print(f"csv: {result['csv']}\npng: {result['png']}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    minutes = args.minutes if args.minutes is not None else (
        LONG_MINUTES if args.long else DEFAULT_MINUTES)  # fmt: skip
    if minutes <= 0 or args.rate <= 0 or args.writers < 1 or args.interval <= 0:
        print("error: --minutes, --rate, --writers and --interval must be positive",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.history_mb < 0 or args.log_max_bytes < 0:
        print("error: --history-mb and --log-max-bytes cannot be negative", file=sys.stderr)
        return 2
    src = ""
    if args.sufd_src is not None:
        if not (args.sufd_src / "sufd" / "__init__.py").is_file():
            print(f"error: {args.sufd_src} holds no sufd/ package", file=sys.stderr)
            return 2
        src = str(args.sufd_src.resolve())
    cfg = Config(minutes, args.rate, args.writers, args.interval, args.history_mb,
                 args.log_max_bytes, args.seed, src)  # fmt: skip
    command = " ".join(["python -m benchmarks.soak_bench", *(
        sys.argv[1:] if argv is None else argv)])  # fmt: skip
    result = run_isolated(
        lambda work: run_soak(cfg, work, args.out.resolve()) | {"command": command},
        args,
        "sufd-soak-",
        "the daemon and the writers were stopped",
        json_default=str,
    )
    if isinstance(result, int):
        return result
    checks = [Check(**row) for row in result["checks"]]
    print_results(result, checks)
    return 0 if all(ch.passed is not False for ch in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
