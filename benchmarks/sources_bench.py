"""Issue 5 benchmark: the whole-file and SQLite sources under the real daemon, in one command.

``python -m benchmarks.sources_bench`` builds isolated users in a fresh temporary directory and
measures, in this order:

1. **Cline rewrite -> commit latency.** A Cline task's ``ui_messages.json`` is grown to ~200 rows
   (~300 KB: chatter, tool rows and ``api_req_started`` rows whose ``request`` carries the
   environment details, as a long task's file does). With ``sufd run --foreground`` running,
   the file is rewritten as Cline does (the whole array to a temp file beside it, then
   ``os.replace``): per request, one rewrite appends a new ``api_req_started`` row without
   tokens (no event, not timed), a timed rewrite gives it its tokens and cost (a new event),
   and every other request a second timed rewrite revises them (a replaced event). Timed
   rewrites are spaced 0.3-1 s (uniform). Latency = the event's ``committed_at`` (``sufctl
   tail --json``, the daemon's wall clock when it published the commit) minus ``time.time()``
   right after ``os.replace`` returned; an event matches by key with ``output`` >= the row's
   ``tokensOut``.
2. **Cursor update -> commit latency.** A WAL-mode ``state.vscdb`` from ``tests/cursor_gen.py``
   with a few MB of history, and a writer connection held open in this process (a separate
   process from the daemon, so SQLite's POSIX locks behave as with Cursor; the pragmas of
   ``tests/cursor_gen.py``'s writer: ``synchronous=OFF``, autocheckpoint 1000 pages). Per
   request, a timed transaction INSERTs a user bubble, an assistant bubble without tokens (an
   estimated event) and the rewritten ``composerData``; an ``ItemTable`` write follows (UI state,
   not timed); then a timed ``INSERT`` (``ON CONFLICT REPLACE``) rewrites the assistant bubble
   with its tokens (a replaced event). Latency = ``committed_at`` minus ``time.time()`` right
   after ``COMMIT`` returned.
3. **Full check of a ~100 MB ``state.vscdb``** (``--big-mb``), with no daemon running:
   the floor (a plain ``SELECT key, value FROM cursorDiskKV WHERE key LIKE 'bubbleId:%'`` in
   this process, ``immutable=1``, and ``json.loads`` of every value; median of 5, with
   ``orjson.loads`` for information); a cold ``sufd ingest`` (wall and peak RSS from
   ``os.wait4``); an unchanged ``sufd ingest``; 3 **forced full checks** (median reported; 1
   with ``--quick``): the file is copied and
   the copy renamed over it, so it has a new inode and ``cursor.py`` starts again from rowid 0
   (its "new file identity" trigger; the others are the 500th read, 6 h since the last full
   check, and the watermark row vanishing or changing key) — ``sufd ingest`` then re-reads
   every bubble and changes nothing; an incremental ``sufd ingest`` after one new turn.
   Each ``sufd ingest`` also reports its own in-process ``duration_ms`` (no interpreter start).
4. **The same DB under the daemon.** Claude Code lines appended while idle (baseline); a few
   timed Cursor commits on the big DB (incremental reads); ``rescan cursor`` (unchanged
   checks); then 3 forced full checks (copy + rename again). As soon as the daemon has the DB
   open (``/proc/<pid>/fd``), one Claude line is appended: its write -> commit latency is how
   long a full check holds the daemon's single writer thread. The full-check cycle's
   ``duration_ms`` and end come from the daemon's ``ingest.cycle`` log record; the control
   socket is pinged throughout (round-trip times while the writer is busy), and ``VmHWM`` is
   read before and after. The rename itself can take ~0.1 s: it frees the replaced 100 MB
   inode; times are taken from just before it.

Every subprocess gets an environment built by ``benchmarks.daemon_bench.User`` (HOME and XDG
dirs under the work dir, ``TZ=UTC``, nothing else of the caller's but PATH), after a warm-up that
fills the bytecode cache. The 1-minute load average is sampled every 5 s for the whole run
(``--max-load`` waits for it to drop first). The table goes to stdout, progress to stderr;
``--json-out`` writes every figure and detail. Exit status: 0 when the run completed and every
timed write was committed, 1 when some never were, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from benchmarks.common import (
    REPO,
    BenchError,
    Run,
    add_output_options,
    cpu_model,
    loadavg,
    log,
    machine_line,
    mem_total_gb,
    new_parser,
    nproc,
    run_isolated,
    run_measured,
    utc_now,
)
from benchmarks.common import median as _median
from benchmarks.daemon_bench import (
    DaemonProc,
    TailCollector,
    Tools,
    User,
    WriterSpec,
    _ClaudeWriter,
    _dist,
    cycle_profile,
    cycle_records,
    match_samples,
    memory_mb,
    socket_of,
    warm_up,
)
from tests.cursor_gen import Conversation, Row, create_db, generate, insert_rows

__all__ = ["FIGURES", "main"]

# full run / --quick
CLINE_WRITES, QUICK_CLINE_WRITES = 50, 10
CURSOR_WRITES, QUICK_CURSOR_WRITES = 50, 10
BIG_MB, QUICK_BIG_MB = 100.0, 8.0
BIG_WRITES, QUICK_BIG_WRITES = 10, 4
CLAUDE_IDLE_LINES, QUICK_CLAUDE_IDLE_LINES = 10, 3
RESCANS = 5
FULL_RUNS, QUICK_FULL_RUNS = 3, 1  # forced full checks, with sufd ingest and under the daemon
FLOOR_RUNS = 5
GAP_S = (0.3, 1.0)  # between two timed writes
CLINE_ROWS = 200
CURSOR_PADDING = 3000  # bytes of context per bubble: ~4 KB per bubble row on disk
BYTES_PER_COMPOSER = 0.44e6  # 50 turns at CURSOR_PADDING, measured
SMALL_COMPOSERS, SMALL_TURNS = 12, 30  # ~3 MB: the "few MB" history of step 2
MATCH_WAIT_S = 15.0
FULL_CHECK_WAIT_S = 900.0
LOAD_SAMPLE_S = 5.0

CLINE_EXT = "saoudrizwan.claude-dev"
CLINE_MODEL = "claude-sonnet-4-5-20250929"
CURSOR_MODEL = "claude-4.5-sonnet"

FIGURES = (
    "cline_file_kb",
    "cline_rows",
    "cline_samples",
    "cline_unmatched",
    "cline_p50_ms",
    "cline_p95_ms",
    "cline_max_ms",
    "cursor_db_mb",
    "cursor_samples",
    "cursor_unmatched",
    "cursor_p50_ms",
    "cursor_p95_ms",
    "cursor_max_ms",
    "big_db_mb",
    "big_bubble_rows",
    "big_events",
    "floor_json_s",
    "floor_orjson_s",
    "cold_ingest_s",
    "cold_ingest_inproc_s",
    "cold_ingest_rss_mb",
    "cold_ingest_mb_per_s",
    "full_check_s",
    "full_check_inproc_s",
    "full_check_rss_mb",
    "full_check_rows_per_s",
    "full_check_mb_per_s",
    "full_check_floor_ratio",
    "unchanged_ingest_s",
    "unchanged_ingest_inproc_ms",
    "incremental_ingest_s",
    "incremental_ingest_inproc_ms",
    "daemon_full_check_ms",
    "daemon_full_check_floor_ratio",
    "daemon_full_check_rows_per_s",
    "daemon_full_check_mb_per_s",
    "daemon_unchanged_check_ms",
    "daemon_big_incremental_p50_ms",
    "daemon_big_incremental_cycle_ms",
    "daemon_rss_before_full_mb",
    "daemon_peak_rss_mb",
    "claude_idle_p50_ms",
    "claude_during_full_check_ms",
    "claude_blocked_ms",
    "ping_during_full_check_max_ms",
    "load1_mean",
    "load1_max",
)
"""Keys of ``figures`` in the JSON output."""


# ------------------------------------------------------------------------------------------------
# small helpers


def _now_ms() -> int:
    return int(time.time() * 1000)


class LoadSampler:
    """The 1-minute load average every ``LOAD_SAMPLE_S`` seconds, in a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), os.getloadavg()[0]))
            if self._stop.wait(LOAD_SAMPLE_S):
                return

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5)
        values = [v for _, v in self.samples]
        return {
            "samples": len(values),
            "load1_min": round(min(values), 2) if values else math.nan,
            "load1_mean": round(statistics.fmean(values), 2) if values else math.nan,
            "load1_max": round(max(values), 2) if values else math.nan,
        }


def wait_for_load(max_load: float, max_wait_s: float, poll_s: float = 30.0) -> dict[str, Any]:
    """Wait until the 1-minute load average is below ``max_load`` (at most ``max_wait_s``)."""
    start = time.monotonic()
    seen = [round(os.getloadavg()[0], 2)]
    while seen[-1] >= max_load and time.monotonic() - start < max_wait_s:
        log(f"load average {seen[-1]} >= {max_load}; checking again in {poll_s:.0f} s")
        time.sleep(poll_s)
        seen.append(round(os.getloadavg()[0], 2))
    ok = seen[-1] < max_load
    if not ok:
        log(f"gave up waiting for the load to drop below {max_load}; running anyway")
    return {"max_load": max_load, "waited_s": round(time.monotonic() - start), "below": ok,
            "polled": seen}  # fmt: skip


def tools() -> Tools:
    """The daemon and sufctl of this interpreter, run as modules (no ccusage here)."""
    py = sys.executable
    return Tools(
        sufd=(py, "-m", "sufd"),
        sufctl=(py, "-m", "sufd.cli.sufctl"),
        statusline=(py, "-m", "sufd.cli.statusline"),
        ccusage=Path(os.devnull),
        ccusage_version="-",
    )


def wait_matched(
    tail: TailCollector, samples: list[dict[str, Any]], timeout: float
) -> list[float | None]:
    deadline = time.monotonic() + timeout
    while True:
        latencies, _ = match_samples(samples, tail.snapshot())
        if all(v is not None for v in latencies) or time.monotonic() > deadline:
            return latencies
        if not tail.alive():
            raise BenchError("`sufctl tail --json` exited")
        time.sleep(0.02)


def probe(tail: TailCollector, write: Callable[[], tuple[str, int]], what: str) -> float:
    """Write (untimed) until the tail subscriber sees the event: it is then subscribed."""
    for _ in range(60):
        key, out = write()
        sample = {"key": key, "output": out, "t": time.time()}
        latency = wait_matched(tail, [sample], 1.0)[0]
        if latency is not None:
            return latency
    raise BenchError(f"the tail subscriber never saw a {what} probe event")


def summarize(samples: list[dict[str, Any]], latencies: list[float | None]) -> dict[str, Any]:
    got = [v for v in latencies if v is not None]
    groups: dict[str, list[float]] = {}
    for s, v in zip(samples, latencies, strict=True):
        if v is not None:
            groups.setdefault(str(s.get("kind", "all")), []).append(v)
    return {
        "samples": len(samples),
        "matched": len(got),
        "unmatched": len(samples) - len(got),
        "all": _dist(got),
        "groups": {k: _dist(v) for k, v in sorted(groups.items())},
        "latencies_ms": [None if v is None else round(v, 1) for v in latencies],
    }


# ------------------------------------------------------------------------------------------------
# step 1: a Cline task


_WORDS = (
    "the", "a", "fix", "test", "parse", "file", "ledger", "sqlite", "rowid", "watcher", "token",
    "cursor", "daemon", "render", "buffer", "socket", "offset", "commit", "reader", "writer",
    "cache", "schema", "migrate", "index", "query", "batch",
)  # fmt: skip


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


@dataclass
class ClineTask:
    """One Cline task file, grown and rewritten as the extension does."""

    path: Path
    rng: random.Random
    rows: list[dict[str, Any]] = field(default_factory=list)
    ts: int = 0
    context: int = 12_000
    open_request: int | None = None  # index of the api_req_started row awaiting tokens
    last_usage: dict[str, Any] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.path.parent.name

    def _ts(self) -> int:
        self.ts = max(self.ts + 1, _now_ms())
        return self.ts

    def _say(self, say: str, text: str, ts: int | None = None) -> dict[str, Any]:
        return {"ts": ts or self._ts(), "type": "say", "say": say, "text": text, "partial": False}

    def chatter(self, ts: int | None = None) -> list[dict[str, Any]]:
        """A reply's text and a tool call with its result, as the webview keeps them."""
        rng = self.rng
        tool = {
            "tool": rng.choice(("readFile", "editedExistingFile", "listFilesRecursive")),
            "path": f"src/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}.py",
            "content": _words(rng, rng.randint(40, 500)),
        }
        text = self._say("text", _words(rng, rng.randint(10, 120)), ts)
        ask = {"ts": ts + 1 if ts else self._ts(), "type": "ask", "ask": "tool",
               "text": json.dumps(tool), "partial": False}  # fmt: skip
        return [text, ask]

    def _request_text(self) -> str:
        files = "\n".join(f"src/{a}/{b}.py" for a, b in zip(_WORDS, reversed(_WORDS), strict=True))
        return (
            f"[{self.rng.choice(('read_file', 'replace_in_file', 'execute_command'))}] Result:\n"
            f"{_words(self.rng, self.rng.randint(50, 400))}\n\n<environment_details>\n"
            "# VSCode Visible Files\nsrc/app.py\n\n# Current Time\n2026-03-01 10:00\n\n"
            f"# Current Working Directory (/home/dev/bench) Files\n{files}\n\n# Context Window"
            f" Usage\n{self.context:,} / 200K tokens used\n</environment_details>"
        )

    def _usage(self, final: bool) -> dict[str, Any]:
        rng = self.rng
        if final or not self.last_usage:
            writes = rng.randint(200, 4000)
            self.last_usage = {
                "tokensIn": rng.randint(3, 12),
                "tokensOut": rng.randint(40, 900),
                "cacheWrites": writes,
                "cacheReads": self.context,
            }
            self.context += writes
        else:  # a later usage chunk: more output tokens
            more = self.last_usage["tokensOut"] + rng.randint(50, 900)
            self.last_usage = {**self.last_usage, "tokensOut": more}
        u = self.last_usage
        cost = (3 * u["tokensIn"] + 15 * u["tokensOut"] + 3.75 * u["cacheWrites"]
                + 0.3 * u["cacheReads"]) / 1e6  # fmt: skip
        return {**u, "cost": round(cost, 8)}

    def _request_row(self, ts: int, usage: dict[str, Any] | None) -> dict[str, Any]:
        info: dict[str, Any] = {"request": self._request_text()}
        if usage:
            info.update(usage)
        return {
            "ts": ts,
            "type": "say",
            "say": "api_req_started",
            "text": json.dumps(info),
            "modelInfo": {"providerId": "anthropic", "modelId": CLINE_MODEL, "mode": "act"},
        }

    def grow(self, rows: int) -> None:
        """The history of a long task: completed requests, each with its chatter."""
        t = _now_ms() - 3 * 3_600_000
        self.rows = [self._say("task", "please " + _words(self.rng, 30), t)]
        while len(self.rows) < rows:
            t += self.rng.randint(2_000, 30_000)
            self.rows.append(self._request_row(t, self._usage(final=True)))
            for row in self.chatter(t + 500):
                self.rows.append(row)
            t += 1000
        self.ts = t

    def key(self, ts: int) -> str:
        return f"{CLINE_EXT}:{self.task_id}:{ts}"

    def start_request(self) -> None:
        """A new ``api_req_started`` row without tokens, after the previous reply's chatter."""
        self.rows.extend(self.chatter())
        self.rows.append(self._request_row(self._ts(), None))
        self.open_request = len(self.rows) - 1
        self.last_usage = {}

    def tokens(self, final: bool) -> tuple[str, int]:
        """The open request's row gets (final=True: first) or revises its usage."""
        assert self.open_request is not None
        row = self.rows[self.open_request]
        usage = self._usage(final)
        self.rows[self.open_request] = {**row, "text": json.dumps(
            {**json.loads(row["text"]), **usage})}  # fmt: skip
        return self.key(row["ts"]), int(usage["tokensOut"])

    def data(self) -> bytes:
        return json.dumps(self.rows, separators=(",", ":"), ensure_ascii=False).encode()

    def replace(self, data: bytes) -> float:
        """Write like Cline's ``atomicWriteFile``; return ``time.time()`` after the rename."""
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        return time.time()


def make_cline_task(home: Path, rng: random.Random) -> ClineTask:
    task_dir = home / ".config" / "Code" / "User" / "globalStorage" / CLINE_EXT / "tasks"
    task_dir = task_dir / str(_now_ms() - 3 * 3_600_000)
    task_dir.mkdir(parents=True)
    task = ClineTask(task_dir / "ui_messages.json", rng)
    task.grow(CLINE_ROWS)
    task.replace(task.data())
    meta = {"model_usage": [{"ts": task.rows[0]["ts"], "model_id": CLINE_MODEL}]}
    (task_dir / "task_metadata.json").write_text(json.dumps(meta))
    return task


def cline_phase(
    task: ClineTask, tail: TailCollector, writes: int, rng: random.Random, log_path: Path
) -> dict[str, Any]:
    def untimed() -> tuple[str, int]:
        task.start_request()
        key, out = task.tokens(final=True)
        task.replace(task.data())
        return key, out

    probe_ms = probe(tail, untimed, "Cline")
    log(f"cline: tail live (probe {probe_ms:.0f} ms); {writes} timed rewrites")
    samples: list[dict[str, Any]] = []
    started = time.time()
    while len(samples) < writes:
        time.sleep(rng.uniform(*GAP_S))
        task.start_request()
        task.replace(task.data())  # the new row without tokens: no event, not timed
        for kind, final in (("first tokens (new event)", True), ("revised (replaced)", False)):
            if len(samples) >= writes or (not final and rng.random() < 0.5):
                break
            time.sleep(rng.uniform(*GAP_S))
            key, out = task.tokens(final)
            data = task.data()
            at = task.replace(data)
            samples.append({"key": key, "output": out, "t": at, "kind": kind,
                            "bytes": len(data), "rows": len(task.rows)})  # fmt: skip
    latencies = wait_matched(tail, samples, MATCH_WAIT_S)
    return summarize(samples, latencies) | {
        "probe_ms": round(probe_ms, 1),
        "file_bytes": [samples[0]["bytes"], samples[-1]["bytes"]],
        "rows": [samples[0]["rows"], samples[-1]["rows"]],
        "cycle_profile": cycle_profile(log_path, started, time.time()),
    }


# ------------------------------------------------------------------------------------------------
# step 2 and 4: a Cursor writer


class CursorWriter:
    """A writer connection held open, writing chats as Cursor does (timed at COMMIT return)."""

    def __init__(self, db: Path, rng: random.Random) -> None:
        self.db = db
        self.rng = rng
        self.conn = create_db(db)
        self.conn.execute("PRAGMA synchronous = OFF")  # as tests/cursor_gen.py's writer
        self.conn.execute("PRAGMA wal_autocheckpoint = 1000")
        cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.conv = Conversation(cid, _now_ms(), "cursor", CURSOR_MODEL, padding=CURSOR_PADDING)
        self.pending: tuple[str, str, int, int] | None = None  # bubble id, text, at, output

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def commit(self, rows: list[Row]) -> float:
        insert_rows(self.conn, rows)
        return time.time()

    def new_bubble(self) -> tuple[list[Row], str, int]:
        """A user bubble, an assistant bubble without tokens (estimated), the composer row."""
        rng = self.rng
        user = self.conv.user(self._id(), "please " + _words(rng, rng.randint(5, 60)))
        bid, text, at = self._id(), _words(rng, rng.randint(20, 300)), _now_ms()
        row, exp = self.conv.assistant(bid, text, at, ts_style="iso")
        assert exp is not None
        self.pending = (bid, text, at, exp.output)
        return [user, row, self.conv.composer_row()], exp.key, exp.output

    def tokens(self) -> tuple[list[Row], str, int]:
        """The same assistant bubble rewritten with its tokens (ON CONFLICT REPLACE)."""
        assert self.pending is not None
        bid, text, at, estimate = self.pending
        tokens = (self.rng.randint(2_000, 60_000), estimate + self.rng.randint(50, 1_500))
        row, exp = self.conv.assistant(bid, text, at, tokens=tokens, ts_style="iso", new=False)
        assert exp is not None
        self.pending = None
        return [row], exp.key, exp.output

    def noise(self) -> None:
        n = self.rng.randint(0, 9)
        insert_rows(self.conn, [("ItemTable", f"workbench.state.{n}", json.dumps({"n": n}))])

    def close(self) -> None:
        """Checkpoint and close, as Cursor on exit: no ``-wal`` is left beside the DB."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        self.conn.close()


def cursor_writes(
    w: CursorWriter, tail: TailCollector, writes: int, rng: random.Random
) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    while len(samples) < writes:
        time.sleep(rng.uniform(*GAP_S))
        rows, key, out = w.new_bubble()
        samples.append({"key": key, "output": out, "t": w.commit(rows),
                        "kind": "new bubble (estimated event)"})  # fmt: skip
        time.sleep(rng.uniform(*GAP_S) / 2)
        w.noise()
        if len(samples) >= writes:
            break
        time.sleep(rng.uniform(*GAP_S) / 2)
        rows, key, out = w.tokens()
        samples.append({"key": key, "output": out, "t": w.commit(rows),
                        "kind": "tokens arrive (replaced)"})  # fmt: skip
    return samples


def cursor_phase(
    w: CursorWriter, tail: TailCollector, writes: int, rng: random.Random, log_path: Path
) -> dict[str, Any]:
    def untimed() -> tuple[str, int]:
        rows, key, out = w.new_bubble()
        w.commit(rows)
        w.pending = None
        return key, out

    probe_ms = probe(tail, untimed, "Cursor")
    log(f"cursor: tail live (probe {probe_ms:.0f} ms); {writes} timed commits")
    started = time.time()
    samples = cursor_writes(w, tail, writes, rng)
    latencies = wait_matched(tail, samples, MATCH_WAIT_S)
    out = summarize(samples, latencies)
    out["probe_ms"] = round(probe_ms, 1)
    out["cycle_profile"] = cycle_profile(log_path, started, time.time())
    return out


# ------------------------------------------------------------------------------------------------
# step 3: the big database without the daemon


def cursor_user_dir(home: Path) -> Path:
    return home / ".config" / "Cursor" / "User"


def make_big_db(home: Path, megabytes: float, seed: int) -> dict[str, Any]:
    composers = max(2, round(megabytes * 1e6 / BYTES_PER_COMPOSER))
    log(f"generating a ~{megabytes:.0f} MB state.vscdb ({composers} composers x 50 turns)")
    start = time.perf_counter()
    corpus = generate(cursor_user_dir(home), composers=composers, turns=50, seed=seed,
                      padding=CURSOR_PADDING)  # fmt: skip
    return {
        "db": corpus.db,
        "bytes": corpus.db.stat().st_size,
        "composers": composers,
        "events_expected": len(corpus.expected),
        "generate_s": round(time.perf_counter() - start, 2),
    }


def floor_scan(db: Path, loads: Callable[[Any], Any]) -> dict[str, Any]:
    """The plain read every Python reader pays: every ``bubbleId:`` row, each value parsed."""
    conn = sqlite3.connect(f"file:{quote(str(db))}?mode=ro&immutable=1", uri=True)
    try:
        rows = parsed = value_bytes = 0
        start = time.perf_counter()
        for _key, value in conn.execute(
            "SELECT key, value FROM cursorDiskKV WHERE key LIKE 'bubbleId:%'"
        ):
            rows += 1
            if value is None:
                continue
            value_bytes += len(value)
            try:
                loads(value)
            except ValueError:
                continue
            parsed += 1
        seconds = time.perf_counter() - start
    finally:
        conn.close()
    return {"s": seconds, "rows": rows, "parsed": parsed, "value_bytes": value_bytes}


def floor_phase(db: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, loads in (("json", json.loads), ("orjson", orjson.loads)):
        runs = [floor_scan(db, loads) for _ in range(FLOOR_RUNS)]
        out[name] = {**runs[0], "s": round(_median([r["s"] for r in runs]), 4),
                     "runs_s": [round(r["s"], 4) for r in runs]}  # fmt: skip
    log(f"floor: json {out['json']['s']:.3f} s, orjson {out['orjson']['s']:.3f} s"
        f" for {out['json']['rows']:,} bubble rows")  # fmt: skip
    return out


def new_identity(db: Path) -> tuple[float, float]:
    """Copy the DB and rename the copy over it: same content, a new inode (a full check).

    Returns ``time.time()`` just before and just after the rename.

    Only for a checkpointed DB: a ``-wal`` left beside it must be empty (it is when the writer
    checkpointed with TRUNCATE while a reader still had the DB open).
    """
    wal = Path(f"{db}-wal")
    deadline = time.monotonic() + 2.0
    while wal.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if wal.exists() and wal.stat().st_size:
        raise BenchError(f"{wal} is not empty: a copy of {db.name} would miss committed pages")
    tmp = db.with_name(f"{db.name}.bench-copy")
    shutil.copyfile(db, tmp)
    before = time.time()
    os.replace(tmp, db)
    return before, time.time()


def ingest(user: User, t: Tools, step: str) -> Run:
    run = run_measured([*t.sufd, "ingest", "--json"], user.env(), user.home,
                       user.root / "out" / step, check=False)  # fmt: skip
    if run.returncode != 0:
        raise BenchError(f"sufd ingest ({step}) exited {run.returncode}:\n{run.stderr[-2000:]}")
    stats = run.json()
    if stats.get("errors"):
        raise BenchError(f"sufd ingest ({step}) reported errors: {stats['errors']}")
    return run


def _ingest_summary(run: Run) -> dict[str, Any]:
    stats = run.json()
    return {
        "wall_s": round(run.wall_s, 3),
        "cpu_s": round(run.cpu_s, 3),
        "rss_mb": round(run.rss_mb, 1),
        "inproc_ms": stats["duration_ms"],
        "events_new": stats["events_new"],
        "events_replaced": stats["events_replaced"],
        "files_read": stats["files_read"],
    }


def median_item(items: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """The item whose ``key`` is the (lower) median."""
    ordered = sorted(items, key=lambda item: float(item[key]))
    return ordered[(len(ordered) - 1) // 2]


def ingest_phase(
    user: User, t: Tools, db: Path, rng: random.Random, full_runs: int
) -> dict[str, Any]:
    log("sufd ingest: cold")
    cold = ingest(user, t, "cold")
    log("sufd ingest: unchanged")
    unchanged = ingest(user, t, "unchanged")
    fulls = []
    for i in range(full_runs):
        log(f"sufd ingest: forced full check {i + 1}/{full_runs} (copy + rename: a new inode)")
        new_identity(db)
        fulls.append(_ingest_summary(ingest(user, t, f"full-{i + 1}")))
    log("sufd ingest: incremental (one new turn committed by a writer that stays open)")
    w = CursorWriter(db, rng)
    rows, _, _ = w.new_bubble()
    w.commit(rows)
    incremental = ingest(user, t, "incremental")
    w.close()
    out = {
        "cold": _ingest_summary(cold),
        "unchanged": _ingest_summary(unchanged),
        "full": median_item(fulls, "inproc_ms"),
        "full_runs": fulls,
        "incremental": _ingest_summary(incremental),
    }
    if any(f["events_new"] or f["events_replaced"] for f in fulls):
        log(f"warning: a full check changed events: {fulls}")
    return out


# ------------------------------------------------------------------------------------------------
# step 4: the big database under the daemon


class Pinger:
    """Round trips of ``ping`` on the control socket, back to back, in a thread."""

    def __init__(self, daemon: DaemonProc) -> None:
        self.daemon = daemon
        self.rtts: list[tuple[float, float]] = []  # (time.time() at the send, ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pinger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            at, begin = time.time(), time.perf_counter()
            with contextlib.suppress(Exception):  # a failed ping counts as the time it took
                self.daemon.call("ping")
            self.rtts.append((at, (time.perf_counter() - begin) * 1e3))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def db_open_by(pid: int, db: Path, timeout: float) -> float | None:
    """``time.time()`` when ``pid`` has ``db`` open (its read has begun), None on timeout."""
    fd_dir, target = Path(f"/proc/{pid}/fd"), str(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(fd_dir / fd) == target:
                    return time.time()
            except OSError:
                continue
        time.sleep(0.001)
    return None


def wait_cycles(daemon: DaemonProc, after: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = daemon.call("status")
        if status["cycles"] > after:
            return status
        time.sleep(0.01)
    raise BenchError("the daemon did not finish a cycle in time")


def settle(daemon: DaemonProc, quiet_s: float = 1.0, timeout: float = 120.0) -> None:
    """Wait until no cycle ran for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = daemon.call("status")["cycles"], time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.1)
        now = daemon.call("status")["cycles"]
        if now != last:
            last, since = now, time.monotonic()


@dataclass
class ClaudeSession:
    path: Path
    writer: _ClaudeWriter

    def append(self) -> dict[str, Any]:
        data, key, out = next(self.writer.reply(1))
        with self.path.open("ab") as f:
            f.write(data)
            f.flush()
            at = time.time()
        return {"key": key, "output": out, "t": at}

    def untimed(self) -> tuple[str, int]:
        line = self.append()
        return line["key"], line["output"]


def make_claude_session(home: Path, seed: int) -> ClaudeSession:
    project = home / ".claude" / "projects" / "-home-dev-bench"
    project.mkdir(parents=True, exist_ok=True)
    sid = str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))
    path = project / f"{sid}.jsonl"
    spec = WriterSpec(0, "claude", sid, str(path), "/home/dev/bench", seed, 0.0, "")
    writer = _ClaudeWriter(spec, random.Random(seed))
    path.write_bytes(b"".join(writer.header()))
    return ClaudeSession(path, writer)


def daemon_big_phase(
    user: User, t: Tools, daemon: DaemonProc, db: Path, claude: ClaudeSession,
    rng: random.Random, big_writes: int, idle_lines: int, full_runs: int,
) -> dict[str, Any]:  # fmt: skip
    tail = TailCollector(user, t)
    try:
        probe_ms = probe(tail, claude.untimed, "Claude")
        log(f"daemon (big DB): tail live (probe {probe_ms:.0f} ms); {idle_lines} idle Claude lines")
        idle = []
        for _ in range(idle_lines):
            time.sleep(rng.uniform(*GAP_S))
            idle.append(claude.append())
        idle_lat = wait_matched(tail, idle, MATCH_WAIT_S)

        log(f"daemon (big DB): {big_writes} timed Cursor commits (incremental reads)")
        started = time.time()
        w = CursorWriter(db, rng)
        incr = cursor_writes(w, tail, big_writes, rng)
        incr_lat = wait_matched(tail, incr, MATCH_WAIT_S)
        incr_cycles = [c for c in cycle_records(daemon.log_path, started, time.time())
                       if c.get("files")]  # fmt: skip
        w.close()
        settle(daemon)

        log(f"daemon (big DB): {RESCANS} x rescan cursor (unchanged checks)")
        unchanged = []
        for _ in range(RESCANS):
            before = daemon.call("status")["cycles"]
            daemon.call("rescan", {"sources": ["cursor"]})
            unchanged.append(float(wait_cycles(daemon, before)["last_cycle"]["duration_ms"]))
        settle(daemon)

        fulls = []
        for i in range(full_runs):
            log(f"daemon (big DB): forced full check {i + 1}/{full_runs} (copy + rename);"
                " a Claude line once the DB is open")  # fmt: skip
            fulls.append(full_check_under_daemon(daemon, db, claude, tail))
            settle(daemon)
    finally:
        tail.close()
    return {
        "probe_ms": round(probe_ms, 1),
        "claude_idle": summarize(idle, idle_lat),
        "incremental": summarize(incr, incr_lat)
        | {"cycle_ms": [c.get("duration_ms") for c in incr_cycles]},
        "unchanged_cycle_ms": unchanged,
        "full_check": median_item(fulls, "duration_ms"),
        "full_checks": fulls,
        "claude_during_full_check_ms": [f["claude_latency_ms"] for f in fulls],
    }


def full_check_under_daemon(
    daemon: DaemonProc, db: Path, claude: ClaudeSession, tail: TailCollector
) -> dict[str, Any]:
    rss_before = memory_mb(daemon.pid)
    pinger = Pinger(daemon)
    try:
        time.sleep(0.5)
        replaced, returned = new_identity(db)
        opened = db_open_by(daemon.pid, db, 60.0)
        line = claude.append()
        latency = wait_matched(tail, [line], FULL_CHECK_WAIT_S)[0]
        deadline = time.monotonic() + FULL_CHECK_WAIT_S
        cycles: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            cycles = [c for c in cycle_records(daemon.log_path, replaced, time.time() + 1)
                      if c.get("files")]  # fmt: skip
            if any(c["end"] >= line["t"] for c in cycles) and latency is not None:
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        pinger.stop()
    if not cycles:
        raise BenchError("no ingest.cycle record for the forced full check")
    full = max(cycles, key=lambda c: float(c.get("duration_ms") or 0))
    end = float(full["end"])
    start = end - float(full["duration_ms"]) / 1000
    during = [ms for at, ms in pinger.rtts if start <= at <= end]
    rss_after = memory_mb(daemon.pid)
    return {
        "replaced_at": replaced,
        "rename_returned_after_ms": round((returned - replaced) * 1e3, 1),
        "db_opened_after_ms": None if opened is None else round((opened - replaced) * 1e3, 1),
        "duration_ms": float(full["duration_ms"]),
        "cycle": {
            k: full.get(k) for k in ("kind", "files", "events", "replaced", "duration_ms", "lag_ms")
        },  # fmt: skip
        "cycle_start_after_replace_ms": round((start - replaced) * 1e3, 1),
        "claude_appended_after_cycle_start_ms": round((line["t"] - start) * 1e3, 1),
        "claude_latency_ms": None if latency is None else round(latency, 1),
        "claude_blocked_ms": round((end - line["t"]) * 1e3, 1),
        "cycles_after_replace": [
            {k: c.get(k) for k in ("kind", "files", "events", "duration_ms")} for c in cycles
        ],  # fmt: skip
        "ping": {
            "during_n": len(during),
            "during_max_ms": round(max(during), 1) if during else math.nan,
            "during_p50_ms": round(_median(during), 2) if during else math.nan,
            "all_p50_ms": round(_median([ms for _, ms in pinger.rtts]), 2),
        },
        "rss_before_mb": round(rss_before.get("VmRSS", math.nan), 1),
        "rss_after_mb": round(rss_after.get("VmRSS", math.nan), 1),
        "peak_rss_before_mb": round(rss_before.get("VmHWM", math.nan), 1),
        "peak_rss_after_mb": round(rss_after.get("VmHWM", math.nan), 1),
    }


# ------------------------------------------------------------------------------------------------
# the run


def machine_info() -> dict[str, Any]:
    import sufd

    return {
        "date": utc_now(),
        "nproc": nproc(),
        "memory_gb": mem_total_gb(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sufd": sufd.__version__,
        "code": code_state(),
        "loadavg_at_start": loadavg(),
    }


def code_state() -> dict[str, Any]:
    """The commit, and the files of ``sufd/`` that differ from it (the tree is shared)."""

    def git(*argv: str) -> str:
        try:
            proc = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True,
                                  timeout=30, check=False)  # fmt: skip
        except OSError:
            return ""
        return proc.stdout.rstrip()

    changed = git("status", "--porcelain", "--", "sufd").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD") or "?",
            "sufd_changes": [line[3:] for line in changed]}  # fmt: skip


def run_small(args: argparse.Namespace, work: Path, t: Tools) -> dict[str, Any]:
    """Steps 1 and 2: one user with a Cline task and a few-MB Cursor DB, one daemon."""
    user = User(work / "a")
    (user.root / "out").mkdir(parents=True)
    rng = random.Random(f"{args.seed}:small")
    task = make_cline_task(user.home, rng)
    corpus = generate(cursor_user_dir(user.home), composers=SMALL_COMPOSERS, turns=SMALL_TURNS,
                      seed=args.seed, padding=CURSOR_PADDING)  # fmt: skip
    log(f"cline task: {len(task.rows)} rows, {task.path.stat().st_size / 1e3:.0f} KB;"
        f" cursor DB {corpus.db.stat().st_size / 1e6:.1f} MB")  # fmt: skip
    writer = CursorWriter(corpus.db, rng)
    daemon = DaemonProc(user, t, socket_of(user, t))
    try:
        ready_ms = daemon.start()
        daemon.wait_catchup()
        tail = TailCollector(user, t)
        try:
            cline = cline_phase(task, tail, args.cline_writes, rng, daemon.log_path)
            log(f"cline: {cline['all']} ({cline['unmatched']} unmatched)")
            cursor = cursor_phase(writer, tail, args.cursor_writes, rng, daemon.log_path)
            log(f"cursor: {cursor['all']} ({cursor['unmatched']} unmatched)")
        finally:
            tail.close()
    finally:
        daemon.stop()
        writer.close()
    return {
        "daemon_ready_ms": round(ready_ms, 1),
        "cline": cline,
        "cursor": cursor,
        "cursor_db_bytes": corpus.db.stat().st_size,
    }


def run_big(args: argparse.Namespace, work: Path, t: Tools) -> dict[str, Any]:
    """Steps 3 and 4: one user with a big Cursor DB (and a Claude session)."""
    user = User(work / "b")
    (user.root / "out").mkdir(parents=True)
    rng = random.Random(f"{args.seed}:big")
    big = make_big_db(user.home, args.big_mb, args.seed)
    db: Path = big.pop("db")
    log(f"big DB: {big['bytes'] / 1e6:.1f} MB in {big['generate_s']} s")
    floor = floor_phase(db)
    ingests = ingest_phase(user, t, db, rng, args.full_runs)
    claude = make_claude_session(user.home, args.seed)
    daemon = DaemonProc(user, t, socket_of(user, t))
    try:
        ready_ms = daemon.start()
        daemon.wait_catchup()
        settle(daemon)
        under = daemon_big_phase(user, t, daemon, db, claude, rng, args.big_writes,
                                 args.idle_lines, args.full_runs)  # fmt: skip
    finally:
        daemon.stop()
    return {"db": big, "floor": floor, "ingest": ingests, "daemon_ready_ms": round(ready_ms, 1),
            "daemon": under}  # fmt: skip


def collect_figures(
    small: dict[str, Any], big: dict[str, Any], load: dict[str, Any]
) -> dict[str, Any]:
    cl, cu = small["cline"], small["cursor"]
    db_bytes = big["db"]["bytes"]
    rows = big["floor"]["json"]["rows"]
    floor = big["floor"]["json"]["s"]
    ing = big["ingest"]
    full_s = ing["full"]["wall_s"]
    full_in = ing["full"]["inproc_ms"] / 1000
    d = big["daemon"]
    fc = d["full_check"]
    d_full_ms = fc["duration_ms"]
    claude = [v for v in d["claude_during_full_check_ms"] if v is not None]
    blocked = [f["claude_blocked_ms"] for f in d["full_checks"]]
    pings = [f["ping"]["during_max_ms"] for f in d["full_checks"]]
    fig: dict[str, Any] = {
        "cline_file_kb": round(cl["file_bytes"][0] / 1e3, 1),
        "cline_rows": cl["rows"][0],
        "cline_samples": cl["samples"],
        "cline_unmatched": cl["unmatched"],
        "cline_p50_ms": cl["all"]["p50_ms"],
        "cline_p95_ms": cl["all"]["p95_ms"],
        "cline_max_ms": cl["all"]["max_ms"],
        "cursor_db_mb": round(small["cursor_db_bytes"] / 1e6, 2),
        "cursor_samples": cu["samples"],
        "cursor_unmatched": cu["unmatched"],
        "cursor_p50_ms": cu["all"]["p50_ms"],
        "cursor_p95_ms": cu["all"]["p95_ms"],
        "cursor_max_ms": cu["all"]["max_ms"],
        "big_db_mb": round(db_bytes / 1e6, 1),
        "big_bubble_rows": rows,
        "big_events": ing["cold"]["events_new"],
        "floor_json_s": floor,
        "floor_orjson_s": big["floor"]["orjson"]["s"],
        "cold_ingest_s": ing["cold"]["wall_s"],
        "cold_ingest_inproc_s": ing["cold"]["inproc_ms"] / 1000,
        "cold_ingest_rss_mb": ing["cold"]["rss_mb"],
        "cold_ingest_mb_per_s": round(db_bytes / 1e6 / ing["cold"]["wall_s"], 1),
        "full_check_s": full_s,
        "full_check_inproc_s": full_in,
        "full_check_rss_mb": ing["full"]["rss_mb"],
        "full_check_rows_per_s": round(rows / full_in),
        "full_check_mb_per_s": round(db_bytes / 1e6 / full_in, 1),
        "full_check_floor_ratio": round(full_in / floor, 2),
        "unchanged_ingest_s": ing["unchanged"]["wall_s"],
        "unchanged_ingest_inproc_ms": ing["unchanged"]["inproc_ms"],
        "incremental_ingest_s": ing["incremental"]["wall_s"],
        "incremental_ingest_inproc_ms": ing["incremental"]["inproc_ms"],
        "daemon_full_check_ms": d_full_ms,
        "daemon_full_check_floor_ratio": round(d_full_ms / 1000 / floor, 2),
        "daemon_full_check_rows_per_s": round(rows / (d_full_ms / 1000)),
        "daemon_full_check_mb_per_s": round(db_bytes / 1e6 / (d_full_ms / 1000), 1),
        "daemon_unchanged_check_ms": _median(d["unchanged_cycle_ms"]),
        "daemon_big_incremental_p50_ms": d["incremental"]["all"]["p50_ms"],
        "daemon_big_incremental_cycle_ms": _median(
            [float(v) for v in d["incremental"]["cycle_ms"] if v is not None]
        ),
        "daemon_rss_before_full_mb": d["full_checks"][0]["rss_before_mb"],
        "daemon_peak_rss_mb": max(f["peak_rss_after_mb"] for f in d["full_checks"]),
        "claude_idle_p50_ms": d["claude_idle"]["all"]["p50_ms"],
        "claude_during_full_check_ms": _median(claude) if claude else None,
        "claude_blocked_ms": _median(blocked),
        "ping_during_full_check_max_ms": max(pings),
        "load1_mean": load["load1_mean"],
        "load1_max": load["load1_max"],
    }
    assert tuple(fig) == FIGURES
    return fig


def table_rows(fig: dict[str, Any]) -> list[tuple[str, str, str]]:
    f = fig

    def ms(v: float | None) -> str:
        return "?" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.0f} ms"

    return [
        ("Cline rewrite -> commit p50 / p95 / max",
         f"{ms(f['cline_p50_ms'])} / {ms(f['cline_p95_ms'])} / {ms(f['cline_max_ms'])}",
         f"{f['cline_samples']} rewrites of a {f['cline_rows']}-row, {f['cline_file_kb']:.0f} KB"
         f" file; {f['cline_unmatched']} never committed"),
        ("Cursor COMMIT -> commit p50 / p95 / max",
         f"{ms(f['cursor_p50_ms'])} / {ms(f['cursor_p95_ms'])} / {ms(f['cursor_max_ms'])}",
         f"{f['cursor_samples']} commits, {f['cursor_db_mb']:.1f} MB WAL DB;"
         f" {f['cursor_unmatched']} never committed"),
        ("big state.vscdb", f"{f['big_db_mb']:.1f} MB",
         f"{f['big_bubble_rows']:,} bubbleId rows, {f['big_events']:,} events"),
        ("floor: SELECT + json.loads", f"{f['floor_json_s']:.2f} s",
         f"orjson.loads: {f['floor_orjson_s']:.2f} s"),
        ("cold sufd ingest", f"{f['cold_ingest_s']:.2f} s",
         f"{f['cold_ingest_inproc_s']:.2f} s in-process; peak RSS {f['cold_ingest_rss_mb']:.0f} MB;"
         f" {f['cold_ingest_mb_per_s']:.0f} MB/s"),
        ("forced full check (sufd ingest)", f"{f['full_check_s']:.2f} s",
         f"{f['full_check_inproc_s']:.2f} s in-process = {f['full_check_floor_ratio']:.2f}x floor;"
         f" {f['full_check_rows_per_s']:,} rows/s, {f['full_check_mb_per_s']:.0f} MB/s;"
         f" RSS {f['full_check_rss_mb']:.0f} MB"),
        ("unchanged sufd ingest", f"{f['unchanged_ingest_s']:.2f} s",
         f"{f['unchanged_ingest_inproc_ms']} ms in-process"),
        ("incremental sufd ingest (1 turn)", f"{f['incremental_ingest_s']:.2f} s",
         f"{f['incremental_ingest_inproc_ms']} ms in-process"),
        ("daemon full-check cycle", ms(f["daemon_full_check_ms"]),
         f"{f['daemon_full_check_floor_ratio']:.2f}x floor;"
         f" {f['daemon_full_check_rows_per_s']:,} rows/s, {f['daemon_full_check_mb_per_s']:.0f}"
         " MB/s"),
        ("daemon unchanged check (rescan)", ms(f["daemon_unchanged_check_ms"]), "median cycle"),
        ("daemon incremental, big DB", ms(f["daemon_big_incremental_p50_ms"]),
         f"COMMIT -> commit p50; cycle median {ms(f['daemon_big_incremental_cycle_ms'])}"),
        ("Claude line, daemon idle", ms(f["claude_idle_p50_ms"]), "write -> commit p50"),
        ("Claude line during a full check", ms(f["claude_during_full_check_ms"]),
         f"blocked {ms(f['claude_blocked_ms'])} behind the full check"),
        ("control ping during the full check", ms(f["ping_during_full_check_max_ms"]), "max RTT"),
        ("daemon RSS before 1st full check / peak", f"{f['daemon_rss_before_full_mb']:.0f} /"
         f" {f['daemon_peak_rss_mb']:.0f} MB", "VmRSS / VmHWM"),
        ("1-min load average", f"{f['load1_mean']:.2f} mean", f"max {f['load1_max']:.2f}"),
    ]  # fmt: skip


def format_table(rows: Sequence[tuple[str, str, str]]) -> str:
    rows = [("measure", "value", "detail"), *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    t = tools()
    machine = machine_info()
    log("warming the bytecode cache")
    warm_up(work, t, work / "pycache")
    # Both users share the warmed bytecode cache (User.pycache is per user root).
    for name in ("a", "b"):
        (work / name).mkdir()
        os.symlink(work / "pycache", work / name / "pycache")
    sampler = LoadSampler().start()
    try:
        small = run_small(args, work, t)
        big = run_big(args, work, t)
    finally:
        load = sampler.stop()
    machine["loadavg_at_end"] = loadavg()
    fig = collect_figures(small, big, load)
    return {
        "benchmark": "sources_bench (issue 5)",
        "command": " ".join(["python -m benchmarks.sources_bench", *args.argv]),
        "quick": args.quick,
        "machine": machine,
        "load": {**load, "wait": args.load_wait},
        "figures": fig,
        "table": [list(r) for r in table_rows(fig)],
        "method": {
            "observation": "one `sufctl tail --json` subscriber per daemon; event committed_at",
            "cline_time": "time.time() after os.replace() returned",
            "cursor_time": "time.time() after the writer's COMMIT returned",
            "full_check_trigger": "new file identity: shutil.copyfile + os.replace over the DB",
            "floor": "SELECT key, value ... LIKE 'bubbleId:%' (immutable=1) + json.loads, median"
            f" of {FLOOR_RUNS}",
            "page_cache": "warm everywhere (the DB was just written or copied)",
        },
        "details": {"small": small, "big": big},
    }


def print_results(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"sufd sources benchmark ({'quick' if result['quick'] else 'full'} run)")
    print(machine_line(m))
    ld = result["load"]
    print(f"1-min load average during the run: mean {ld['load1_mean']}, min {ld['load1_min']},"
          f" max {ld['load1_max']} ({ld['samples']} samples)")  # fmt: skip
    print()
    print(format_table([(r[0], r[1], r[2]) for r in result["table"]]))


def _parser() -> argparse.ArgumentParser:
    p = new_parser(
        "sources_bench",
        "Issue 5: Cline rewrite and Cursor update latency under the daemon, and the"
        " cost of a full check of a ~100 MB Cursor state.vscdb (against a plain Python read).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a ~60 s smoke run: {QUICK_CLINE_WRITES} + {QUICK_CURSOR_WRITES} timed"
        f" writes, a {QUICK_BIG_MB:.0f} MB DB",
    )
    add_output_options(p, "; keep it short: the daemon's socket lives there")
    p.add_argument(
        "--big-mb",
        type=float,
        default=None,
        help=f"size of the big state.vscdb (default {BIG_MB:.0f}, quick {QUICK_BIG_MB:.0f})",
    )
    p.add_argument(
        "--cline-writes",
        type=int,
        default=None,
        help=f"timed Cline rewrites (default {CLINE_WRITES})",
    )
    p.add_argument(
        "--cursor-writes",
        type=int,
        default=None,
        help=f"timed Cursor commits (default {CURSOR_WRITES})",
    )
    p.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="first wait until the 1-minute load average is below this",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=900.0,
        help="give up waiting for --max-load after this many seconds (default 900)",
    )
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    q = args.quick
    args.big_mb = args.big_mb or (QUICK_BIG_MB if q else BIG_MB)
    args.cline_writes = args.cline_writes or (QUICK_CLINE_WRITES if q else CLINE_WRITES)
    args.cursor_writes = args.cursor_writes or (QUICK_CURSOR_WRITES if q else CURSOR_WRITES)
    args.big_writes = QUICK_BIG_WRITES if q else BIG_WRITES
    args.idle_lines = QUICK_CLAUDE_IDLE_LINES if q else CLAUDE_IDLE_LINES
    args.full_runs = QUICK_FULL_RUNS if q else FULL_RUNS
    if min(args.big_mb, args.cline_writes, args.cursor_writes) <= 0:
        print("error: sizes and counts must be positive", file=sys.stderr)
        return 2
    args.load_wait = None
    if args.max_load is not None:
        args.load_wait = wait_for_load(args.max_load, args.max_wait)
    result = run_isolated(
        lambda work: run_benchmark(args, work),
        args,
        "sufd-src-bench-",
        "the daemons and helpers were stopped",
    )
    if isinstance(result, int):
        return result
    print_results(result)
    f = result["figures"]
    lost = f["cline_unmatched"] + f["cursor_unmatched"] + (f["claude_during_full_check_ms"] is None)
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
