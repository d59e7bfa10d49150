"""Crash campaign: SIGKILL the real daemon over and over while agents write, then check the ledger.

:func:`run_crash_campaign` is the one entry point. It builds an isolated user
(:class:`tests.daemon_harness.Harness`: HOME, XDG dirs, a private runtime dir, a fake
``NOTIFY_SOCKET``) and runs ``python -m sufd run --foreground`` there with a short reconcile
interval and debounce, while a writer thread plays the agents:

* **Claude Code and Codex** files of a realistic corpus with every trap
  (:func:`tests.corpus.generate_to_size`, written first to a staging tree) are copied into HOME
  by interleaved chunks of random size, so writes end mid-line, mid-JSON and mid-UTF-8
  character, and new files keep appearing. Some files are written in one or two bursts; some
  are *truncated* (to a random byte, often mid-line) and then written on from there; some are
  *replaced by a new inode* (``os.replace`` of a copy holding what was written plus more); some
  are *rewritten in place* (``open("wb")``: emptied, then the same bytes written again).
* **Cline** (``ui_messages.json``, when the source is registered): tasks rewritten whole by
  atomic rename as Cline does, a request row first without usage, then with it.
* **Cursor** (``state.vscdb``, when registered): one writer connection commits a turn (user
  bubble, assistant bubble, composer row) per transaction; some assistant bubbles get their
  real token counts in a later transaction.

**What the final files contain.** Everything ever written is still there at the end: a
truncation only removes bytes that are then written again identically (the staging copy is
the truth), a replacement holds the same bytes plus more, Cline rows are only added or get
their usage filled in, Cursor bubbles only gain tokens. sufd never retracts an event, so this
is what makes "the ledger equals a one-shot ingest of the final files" the exact expectation;
no correction for vanished content is needed (or made). The harness checks the final line
files against the staging tree byte for byte before comparing ledgers.

**The kills** (scenario of each step drawn from the seed): right after spawn, as soon as the
ledger file appears (creation and migration of a new ledger), during the start-up catch-up of
a large backlog written while the daemon was down (then again during the catch-up after that
restart), during a large ingest of a burst written while it runs, at a random instant of normal
watching, and a few milliseconds after a pause or resume command (a pause persists in
``state.json`` across the kill). Every step starts a new daemon and SIGKILLs it; a daemon that
exits on its own or does not answer ``hello`` within :data:`READY_TIMEOUT_S` is a failure.

**The check.** After the last kill the writer finishes every file, a last daemon is started,
resumes every source, runs rescans until one reads nothing, and is stopped with SIGTERM (exit 0
expected). Then ``python -m sufd ingest`` builds a fresh ledger of the same HOME (new XDG dirs)
and :mod:`tests.chaos.ledger_compare` compares the two: events column by column, aggregates,
session spans, malformed lines and per-file cursors. That comparison is the verdict
(:attr:`Report.ok`, with "every daemon came up"). Each daemon that answered ``hello`` is also
followed with ``sufctl tail`` (:class:`TailFollower`); keys it announced as new more than once
(a live consumer would count them twice) are reported beside the verdict.

The plan (files, chunk sizes, special operations, the scenario and delay of each step) is a
function of the seed; the interleaving with the daemon is real time and is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sufd.control import client
from sufd.errors import ControlError
from sufd.sources import SOURCES
from tests.chaos.ledger_compare import Comparison, compare_ledgers
from tests.conftest import REPO, SufdEnv, fresh_ledger_env
from tests.corpus import generate_to_size
from tests.daemon_harness import DaemonProcess, Harness

__all__ = [
    "READY_TIMEOUT_S",
    "SCENARIOS",
    "Plan",
    "Report",
    "Scenario",
    "TailFollower",
    "Workload",
    "build_plan",
    "run_crash_campaign",
    "schedule",
    "wait_caught_up",
    "write_cursor_first_patch",
]

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
DAEMON_SETTINGS = {
    "SUFD_RECONCILE_INTERVAL_S": "2",
    "SUFD_DEBOUNCE_MS": "20",
}
Scenario = str  # one of SCENARIOS
SCENARIOS = ("spawn", "migration", "backlog", "catchup", "burst", "watching", "pause")
# Weights of the randomly drawn steps (the first steps and the backlogs are placed explicitly).
_DRAWN = {"spawn": 20, "watching": 38, "burst": 14, "pause": 28}
# Seconds from the trigger (spawn, ready, burst written, command answered) to the SIGKILL.
_DELAYS = {
    "spawn": (0.002, 0.45),
    "migration": (0.0, 0.003),
    "backlog": (0.0, 0.35),
    "catchup": (0.0, 0.5),
    "burst": (0.01, 0.4),
    "watching": (0.05, 0.9),
    "pause": (0.0, 0.03),
}
_TMP_SUFFIX = ".chaos-tmp"  # owned by no source
_MODES = {"stream": 52, "burst": 12, "truncate": 13, "replace": 12, "rewrite": 11}
_WINDOW = 6  # line files being written at the same time
CLINE_EXT = "saoudrizwan.claude-dev"
CURSOR_USER = Path(".config/Cursor/User")
CLINE_USER = Path(".config/Code/User")
T0_MS = 1_772_800_000_000  # 2026-03-06T12:26:40Z, inside the corpus's span


# ------------------------------------------------------------------------------------------
# the report


@dataclass
class Report:
    """What a campaign did and found; :attr:`ok` is the verdict."""

    seed: int
    kills_requested: int
    kills: int = 0  # SIGKILLs delivered to a live daemon
    spawned: int = 0  # daemon processes started (the final clean one included)
    ready: int = 0  # of them, answered hello
    scenarios: Counter[str] = field(default_factory=Counter)
    ledger_at_kill: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # daemon died or hung by itself
    ready_s: list[float] = field(default_factory=list)
    writer: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    tail: dict[str, Any] = field(default_factory=dict)
    log_problems: Counter[str] = field(default_factory=Counter)  # "level event" -> count
    comparison: Comparison = field(default_factory=Comparison)
    phases_s: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    patched: bool = False

    @property
    def restarts(self) -> int:
        """Daemons started after the first one."""
        return max(self.spawned - 1, 0)

    @property
    def mismatches(self) -> int:
        return self.comparison.mismatches

    @property
    def events_compared(self) -> int:
        return self.comparison.events

    @property
    def ok(self) -> bool:
        return (
            self.mismatches == 0
            and not self.failures
            and self.kills == self.kills_requested
            and self.final.get("exit_code") == 0
            and self.events_compared > 0
        )

    def as_dict(self) -> dict[str, Any]:
        ready = sorted(self.ready_s)
        return {
            "ok": self.ok,
            "seed": self.seed,
            "patched_daemon": self.patched,
            "kills_requested": self.kills_requested,
            "kills": self.kills,
            "restarts": self.restarts,
            "spawned": self.spawned,
            "ready": self.ready,
            "scenarios": dict(sorted(self.scenarios.items())),
            "ledger_at_kill": dict(sorted(self.ledger_at_kill.items())),
            "ready_s": {
                "median": ready[len(ready) // 2] if ready else None,
                "max": ready[-1] if ready else None,
            },
            "failures": self.failures,
            "events_compared": self.events_compared,
            "mismatches": self.mismatches,
            "comparison": self.comparison.as_dict(),
            "writer": self.writer,
            "final": self.final,
            "reference": self.reference,
            "log_problems": dict(sorted(self.log_problems.items())),
            "tail": self.tail,
            "phases_s": {k: round(v, 2) for k, v in self.phases_s.items()},
            "duration_s": round(self.duration_s, 2),
        }

    def summary(self) -> str:
        """A few human-readable lines."""
        c = self.comparison
        w = self.writer
        per_source = ", ".join(f"{k} {v}" for k, v in sorted(c.by_source.items()))
        lines = [
            f"crash campaign seed={self.seed}{' (PATCHED daemon)' if self.patched else ''}:"
            f" {'OK' if self.ok else 'FAILED'} in {self.duration_s:.1f} s",
            f"  kills survived: {self.kills}/{self.kills_requested}, restarts: {self.restarts},"
            f" daemons ready: {self.ready}/{self.spawned}, failures: {len(self.failures)}",
            "  kills by scenario: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.scenarios.items())),
            "  ledger file at kill: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.ledger_at_kill.items())),
            f"  written: {w.get('bytes', 0) / 1e6:.1f} MB in {w.get('files', 0)} files,"
            f" ops {w.get('ops', {})}",
            f"  events compared: {c.events} ({per_source}), files: {c.files},"
            f" mismatches: {c.mismatches} {dict(c.by_kind) or ''}",
            f"  sufctl tail: {self.tail.get('events', 0)} events from"
            f" {self.tail.get('daemons_followed', 0)} daemons; published as new more than once:"
            f" {self.tail.get('new_again', 0)} {self.tail.get('examples') or ''}",
            "  daemon log warnings/errors: "
            + (", ".join(f"{k} x{v}" for k, v in sorted(self.log_problems.items())) or "none"),
            f"  final stop exit code: {self.final.get('exit_code')},"
            f" phases: {', '.join(f'{k} {v:.1f}s' for k, v in self.phases_s.items())}",
        ]
        lines += [f"  ! {f}" for f in self.failures[:10]]
        lines += [f"  - {d}" for d in c.details[:10]]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# the writer's plan


@dataclass(frozen=True)
class Op:
    """One write of the plan.

    ``append``: bytes ``[start, end)`` of the staging copy at the end of the file (whose size
    must be ``start``). ``truncate``: cut to ``end`` bytes in place. ``replace``: a new inode
    holding bytes ``[0, end)``. ``rewrite``: emptied and refilled with ``[0, end)`` in place.
    ``document``: ``data`` written atomically (temp file + rename). ``database``: ``rows``
    committed in one transaction.
    """

    kind: str
    rel: str
    start: int = 0
    end: int = 0
    data: bytes = b""
    rows: tuple[tuple[str, str, Any], ...] = ()

    @property
    def weight(self) -> int:
        """Bytes this op writes (at least 1, so every op uses up some budget)."""
        if self.kind == "append":
            return max(1, self.end - self.start)
        if self.kind in ("replace", "rewrite"):
            return max(1, self.end)
        if self.kind == "document":
            return len(self.data)
        if self.kind == "database":
            return sum(len(v) if isinstance(v, str | bytes) else 1 for _, _, v in self.rows)
        return 1


def _chunk_size(rng: random.Random, size: int, mode: str) -> int:
    if mode == "burst":
        return rng.randint(size // 2 + 1, size + 1)
    r = rng.random()
    if r < 0.3:
        return rng.randint(1, 64)
    if r < 0.85:
        return rng.randint(65, 16_384)
    return rng.randint(16_385, 262_144)


def _line_file_ops(
    rel: str, size: int, rng: random.Random, mode: str | None = None
) -> tuple[str, list[Op]]:
    """How one staging file gets into HOME: chunks, plus at most one special operation."""
    if mode is None:
        mode = rng.choices(list(_MODES), weights=list(_MODES.values()))[0]
    if size == 0:
        return "empty", [Op("append", rel, 0, 0)]
    ops: list[Op] = []
    pos, trigger, special = 0, rng.uniform(0.15, 1.0) * size, mode in ("stream", "burst")
    while pos < size or not special:
        if not special and pos >= trigger:
            special = True
            if mode == "truncate":
                pos = rng.randint(0, pos)
                ops.append(Op("truncate", rel, end=pos))
            elif mode == "replace":
                pos = min(size, pos + rng.randint(0, 65_536))
                ops.append(Op("replace", rel, end=pos))
            else:
                ops.append(Op("rewrite", rel, end=pos))
            continue
        end = min(size, pos + _chunk_size(rng, size, mode))
        ops.append(Op("append", rel, pos, end))
        pos = end
    return mode, ops


def _interleave(streams: list[list[Op]], rng: random.Random) -> list[Op]:
    """Ops of several files in one sequence, ``_WINDOW`` files in progress at a time."""
    waiting = list(streams)
    rng.shuffle(waiting)
    active: list[Iterator[Op]] = []
    out: list[Op] = []
    while waiting or active:
        while waiting and len(active) < _WINDOW:
            active.append(iter(waiting.pop()))
        it = active[rng.randrange(len(active))]
        op = next(it, None)
        if op is None:
            active.remove(it)
        else:
            out.append(op)
    return out


def _spread(main: list[Op], others: list[list[Op]], rng: random.Random) -> list[Op]:
    """Merge each of ``others`` (order kept) into ``main`` at uniformly random places."""
    keyed: list[tuple[float, int, Op]] = [
        (i / max(len(main), 1), 0, op) for i, op in enumerate(main)
    ]
    for stream in others:
        marks = sorted(rng.random() for _ in stream)
        keyed += [(m, 1, op) for m, op in zip(marks, stream, strict=True)]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [op for _, _, op in keyed]


def _cline_task_ops(home: Path, n: int, rng: random.Random) -> tuple[str, list[Op]]:
    """A Cline task growing request by request; every version written whole (atomically)."""
    task = str(T0_MS + n * 7_919)
    rel = str(CLINE_USER / "globalStorage" / CLINE_EXT / "tasks" / task / "ui_messages.json")
    cwd = f"/home/dev/cline-{n}"
    ts = T0_MS + n * 3_600_000
    rows: list[dict[str, Any]] = [{"ts": ts, "type": "say", "say": "task", "text": "..."}]
    ops: list[Op] = []

    def version() -> None:
        ops.append(Op("document", rel, data=json.dumps(rows, separators=(",", ":")).encode()))

    for j in range(rng.randint(4, 10)):
        ts += rng.randint(2_000, 90_000)
        request = f"<task>step {j}</task>"
        if j == 0:
            request += f"\n# Current Working Directory ({cwd}) Files\nREADME.md"
        info: dict[str, Any] = {"request": request}
        row = {"ts": ts, "type": "say", "say": "api_req_started", "text": json.dumps(info)}
        row["modelInfo"] = {"providerId": "anthropic", "modelId": "claude-sonnet-4-5-20250929"}
        rows.append(row)
        version()
        tin, tout = rng.randint(3, 4_000), rng.randint(10, 3_000)
        cache_w, cache_r = rng.choice((0, rng.randint(100, 9_000))), rng.randint(0, 50_000)
        cost = round((tin * 3 + tout * 15 + cache_w * 3.75 + cache_r * 0.3) / 1e6, 9)
        if rng.random() < 0.4:  # tokens arrive in two steps
            row["text"] = json.dumps({**info, "tokensIn": tin, "tokensOut": 1})
            version()
        usage = {
            "tokensIn": tin,
            "tokensOut": tout,
            "cacheWrites": cache_w,
            "cacheReads": cache_r,
            "cost": cost,
        }
        row["text"] = json.dumps({**info, **usage})
        if rng.random() < 0.3:
            rows.append({"ts": ts + 1, "type": "say", "say": "text", "text": "done"})
        if rng.random() < 0.15:
            sub = {"source": "subagents", "tokensIn": 7, "tokensOut": 70, "cost": 0.0011}
            rows.append(
                {"ts": ts + 2, "type": "say", "say": "subagent_usage", "text": json.dumps(sub)}
            )
        version()
    return rel, ops


@dataclass
class _CursorPlan:
    db_rel: str
    streams: list[list[Op]]


def _cursor_plan(home: Path, rng: random.Random, composers: int) -> _CursorPlan:
    """Composers of a Cursor global DB, one transaction per turn; the workspace DB mapping
    half of them to a folder is written now (before any daemon runs)."""
    from tests.cursor_gen import Conversation, create_db, insert_rows, write_workspace

    user_dir = home / CURSOR_USER
    db = user_dir / "globalStorage" / "state.vscdb"
    conn = create_db(db)
    insert_rows(conn, [("ItemTable", "cursor/theme", '{"dark":true}')])
    conn.close()

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    cids = [uid() for _ in range(composers)]
    mapped = cids[::2]
    uri = "file:///home/dev/cursor-chaos"
    write_workspace(user_dir, "ws-chaos", uri, mapped, key="composer.composerData")
    streams: list[list[Op]] = []
    db_rel = str(db.relative_to(home))
    for c, cid in enumerate(cids):
        project = "/home/dev/cursor-chaos" if cid in mapped else "cursor"
        model = ("default", "claude-4.5-sonnet", "gpt-5")[c % 3]
        conv = Conversation(cid, T0_MS + c * 600_000, project, model, padding=rng.randint(0, 400))
        ops: list[Op] = []
        later: list[Op] = []
        for t in range(rng.randint(4, 10)):
            at = conv.created_ms + t * 45_000
            words = " ".join(rng.choice(("fix", "the", "wal", "naïve", "日本")) for _ in range(9))
            user = conv.user(uid(), words)
            bid = uid()
            real = rng.random() < 0.7
            tokens = (rng.randint(1, 9_000), rng.randint(1, 900)) if real else (0, 0)
            style = rng.choice(("rpc", "iso"))
            row, _ = conv.assistant(bid, words * 2, at, tokens=tokens, ts_style=style)
            ops.append(Op("database", db_rel, rows=(user, row, conv.composer_row())))
            if not real and rng.random() < 0.6:  # the real counts arrive later
                tokens = (rng.randint(1, 9_000), rng.randint(1, 900))
                row, _ = conv.assistant(
                    bid, words * 2, at, tokens=tokens, ts_style=style, new=False
                )
                later.append(Op("database", db_rel, rows=(row,)))
        streams.append(ops + later)
    return _CursorPlan(db_rel, streams)


@dataclass
class Plan:
    """Every write of the campaign, in order, and what the final files must be."""

    ops: list[Op]
    line_files: dict[str, int]  # rel -> final size (= staging size)
    documents: dict[str, bytes]  # rel -> final content
    database: str | None
    modes: Counter[str]

    @property
    def line_bytes(self) -> int:
        return sum(op.weight for op in self.ops if op.kind != "database")


def build_plan(staging: Path, home: Path, rng: random.Random) -> Plan:
    """The plan for copying ``staging`` into ``home`` (+ Cline and Cursor when registered)."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    sizes = {str(p.relative_to(staging)): p.stat().st_size for p in files}
    # Every mode at least once (on files of some size), whatever the corpus.
    candidates = [rel for rel, size in sizes.items() if size > 10_000]
    picked = rng.sample(candidates, min(len(_MODES), len(candidates)))
    forced = dict(zip(picked, list(_MODES)[: len(picked)], strict=True))
    modes: Counter[str] = Counter()
    streams = []
    for rel, size in sizes.items():
        mode, ops = _line_file_ops(rel, size, rng, forced.get(rel))
        modes[mode] += 1
        streams.append(ops)
    main = _interleave(streams, rng)
    others: list[list[Op]] = []
    documents: dict[str, bytes] = {}
    if "cline" in SOURCES:
        (home / CLINE_USER / "globalStorage").mkdir(parents=True, exist_ok=True)
        for n in range(4):
            rel, ops = _cline_task_ops(home, n, rng)
            others.append(ops)
            documents[rel] = ops[-1].data
            modes["cline-task"] += 1
    database = None
    if "cursor" in SOURCES:
        cursor = _cursor_plan(home, rng, composers=4)
        others += cursor.streams
        database = cursor.db_rel
        modes["cursor-composer"] += len(cursor.streams)
    return Plan(_spread(main, others, rng), sizes, documents, database, modes)


# ------------------------------------------------------------------------------------------
# the writer


class Workload:
    """Applies the plan's ops to HOME, in order; owns the Cursor writer connection."""

    def __init__(self, plan: Plan, staging: Path, home: Path) -> None:
        self.plan = plan
        self.staging = staging
        self.home = home
        self.next = 0
        self.bytes = 0
        self.by_kind: Counter[str] = Counter()
        self._db: sqlite3.Connection | None = None

    @property
    def done(self) -> bool:
        return self.next >= len(self.plan.ops)

    def _staged(self, rel: str, start: int, end: int) -> bytes:
        with (self.staging / rel).open("rb") as f:
            f.seek(start)
            return f.read(end - start)

    def step(self) -> Op:
        op = self.plan.ops[self.next]
        path = self.home / op.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if op.kind == "append":
            size = path.stat().st_size if path.exists() else 0
            if size != op.start:
                raise AssertionError(f"plan broken: {op.rel} has {size} bytes, expected {op.start}")
            with path.open("ab") as f:
                f.write(self._staged(op.rel, op.start, op.end))
        elif op.kind == "truncate":
            os.truncate(path, op.end)
        elif op.kind == "rewrite":
            with path.open("wb") as f:
                f.write(self._staged(op.rel, 0, op.end))
        elif op.kind in ("replace", "document"):
            tmp = path.with_name(path.name + _TMP_SUFFIX)
            data = op.data if op.kind == "document" else self._staged(op.rel, 0, op.end)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        elif op.kind == "database":
            from tests.cursor_gen import create_db, insert_rows

            if self._db is None:
                self._db = create_db(path)
                self._db.execute("PRAGMA synchronous = NORMAL")
            insert_rows(self._db, op.rows)
        else:
            raise AssertionError(f"unknown op {op.kind}")
        self.next += 1
        self.bytes += op.weight
        self.by_kind[op.kind] += 1
        return op

    def close(self) -> None:
        """Close the Cursor connection (the last one: SQLite checkpoints and drops the WAL)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def verify(self) -> list[str]:
        """Differences between the final files and what they must hold (empty: none)."""
        problems = []
        for rel, size in self.plan.line_files.items():
            got = (self.home / rel).read_bytes() if (self.home / rel).exists() else None
            if got is None or len(got) != size or got != (self.staging / rel).read_bytes():
                problems.append(f"{rel}: final content differs from the staging copy")
        for rel, data in self.plan.documents.items():
            if (self.home / rel).read_bytes() != data:
                problems.append(f"{rel}: final document differs from its last version")
        return problems


class Writer:
    """The agents: a thread applying the workload at a given pace, or as fast as it can.

    The Cursor connection lives on this thread, as a real writer's would.
    """

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._cv = threading.Condition()
        self._budget = 0
        self._rate = 1e9  # bytes per second while streaming
        self._hurry = False
        self._stop = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-writer", daemon=True)
        self._thread.start()

    def _check(self) -> None:
        if self._error is not None:
            raise AssertionError(f"writer thread failed: {self._error!r}") from self._error

    def stream(self, nbytes: int, seconds: float) -> None:
        """Write about ``nbytes`` more, spread over about ``seconds``; returns at once."""
        self._check()
        with self._cv:
            self._budget += nbytes
            self._rate = max(nbytes / max(seconds, 0.05), 1.0)
            self._cv.notify_all()

    def burst(self, nbytes: float, timeout: float = 600.0) -> None:
        """Write ``nbytes`` more (everything for ``inf``) as fast as possible; wait for it."""
        self._check()
        with self._cv:
            self._budget = int(min(self._budget + nbytes, 2**62))
            self._hurry = True
            self._cv.notify_all()
            ok = self._cv.wait_for(
                lambda: self._budget <= 0 or self.workload.done or self._error is not None,
                timeout,
            )
            self._hurry = False
            if self.workload.done:
                self._budget = 0
        self._check()
        if not ok:
            raise AssertionError(f"writer did not write {nbytes} bytes in {timeout} s")

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(30)
        self._check()

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(
                        lambda: self._stop or (self._budget > 0 and not self.workload.done)
                    )
                    if self._stop:
                        break
                    hurry, rate = self._hurry, self._rate
                op = self.workload.step()
                with self._cv:
                    self._budget -= op.weight
                    if self._budget <= 0 or self.workload.done:
                        self._cv.notify_all()
                if not hurry:
                    time.sleep(min(max(op.weight / rate, 0.0005), 0.05))
        except BaseException as exc:  # reported to the campaign by _check()
            with self._cv:
                self._error = exc
                self._cv.notify_all()
        finally:
            self.workload.close()


# ------------------------------------------------------------------------------------------
# the schedule


def schedule(kills: int, seed: int, backlogs: int) -> list[Scenario]:
    """The scenario of each kill, a function of the seed.

    The first three steps kill the first daemons while they create and migrate the ledger;
    ``backlogs`` backlog steps are spread evenly, each followed by two kills during the
    catch-up after restarting; the other steps are drawn.
    """
    rng = random.Random(f"{seed}:schedule")
    steps: list[Scenario] = ["migration"] * min(3, kills)
    marks = [int(kills * (i + 1) / (backlogs + 1)) for i in range(backlogs)]
    while len(steps) < kills:
        if marks and len(steps) >= marks[0]:
            marks.pop(0)
            steps += ["backlog", "catchup", "catchup"]
            continue
        steps.append(rng.choices(list(_DRAWN), weights=list(_DRAWN.values()))[0])
    return steps[:kills]


# ------------------------------------------------------------------------------------------
# the broken variant


def write_cursor_first_patch(directory: Path, delay_s: float = 0.05) -> Path:
    """A ``sitecustomize.py`` that breaks sufd's one-transaction commit, for the daemon only.

    Put ``directory`` first on the daemon's ``PYTHONPATH``: ``Ledger.commit`` then commits the
    file's cursor in a transaction of its own, sleeps ``delay_s``, and only then commits the
    events and aggregates (inside a catch-up's bulk transaction it commits that first, and
    opens a new one after). A kill in between loses those events for good (the cursor has
    moved past them): the campaign must catch that.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sitecustomize.py"
    path.write_text(
        "import time\n"
        "from sufd.store import ledger as _ledger\n\n\n"
        "def _cursor_first(self, source, batch):\n"
        "    # Inside a bulk transaction (a catch-up) make what came before durable first, or\n"
        "    # the outer transaction would hold cursor and events together after all.\n"
        "    bulk = self.conn.in_transaction\n"
        "    if bulk:\n"
        '        self.conn.execute("COMMIT")\n'
        "    with _ledger.atomic(self.conn):\n"
        "        self._write_cursor(batch, 0)\n"
        f"    time.sleep({delay_s!r})\n"
        "    with _ledger.atomic(self.conn):\n"
        "        inserted, replaced = self._apply(source, batch)\n"
        "    if bulk:\n"
        '        self.conn.execute("BEGIN IMMEDIATE")\n'
        "    return inserted, replaced\n\n\n"
        "_ledger.Ledger.commit = _cursor_first\n"
    )
    return path


# ------------------------------------------------------------------------------------------
# the live stream


class TailFollower:
    """``sufctl tail`` of every daemon, in threads: what the daemons published as committed.

    An event published as new (``replaced: false``) twice for the same key means a commit the
    daemon announced was lost and redone: a live consumer counted it twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[int, str, str, bool]] = []  # pid, source, key, replaced
        self.followed = 0
        self._threads: list[threading.Thread] = []

    def follow(self, socket_path: Path, pid: int) -> None:
        def run() -> None:
            with contextlib.suppress(ControlError, OSError, ValueError):
                for ev in client.stream(socket_path, "tail", timeout=2.0):
                    with self._lock:
                        self.events.append((pid, ev["source"], ev["key"], bool(ev["replaced"])))

        thread = threading.Thread(target=run, name=f"tail-{pid}", daemon=True)
        thread.start()
        self._threads.append(thread)
        self.followed += 1

    def close(self) -> None:
        for thread in self._threads:
            thread.join(10)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            new = Counter((source, key) for _, source, key, replaced in self.events if not replaced)
            total = len(self.events)
        twice = {k: n for k, n in new.items() if n > 1}
        return {
            "daemons_followed": self.followed,
            "events": total,
            "new": sum(new.values()),
            "new_again": sum(n - 1 for n in twice.values()),
            "examples": [f"{s}:{k} x{n}" for (s, k), n in sorted(twice.items())[:5]],
        }


# ------------------------------------------------------------------------------------------
# waiting for a daemon to have read everything


def wait_caught_up(h: Harness, d: DaemonProcess, *, timeout: float = 300.0) -> dict[str, Any]:
    """Resume every source, then rescan until a scan that started after the request read
    nothing new (every file's cursor is at its end); return the last ``status``.

    Raises:
        AssertionError: the daemon died, or no such scan within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    h.call("resume-watcher", {"sources": []})
    rescans = 0
    while time.monotonic() < deadline:
        asked = time.time()
        h.call("rescan", {"sources": []})
        rescans += 1
        while True:
            if not d.alive():
                raise AssertionError(f"the daemon exited with {d.proc.poll()} while catching up")
            if time.monotonic() >= deadline:
                raise AssertionError(f"not caught up after {timeout:g} s")
            status = h.status()
            cycle = status.get("last_cycle") or {}
            started = (cycle.get("at") or 0.0) - cycle.get("duration_ms", 0) / 1000
            if cycle.get("kind") == "scan" and started >= asked:
                break
            time.sleep(0.05)
        if cycle.get("files") == 0 and cycle.get("errors") == 0:
            status["rescans"] = rescans
            return status
    raise AssertionError(f"not caught up after {timeout:g} s")


# ------------------------------------------------------------------------------------------
# the campaign


class _Campaign:
    def __init__(
        self,
        workdir: Path,
        kills: int,
        seed: int,
        *,
        corpus_mb: float,
        backlog_mb: float,
        backlogs: int,
        burst_mb: float,
        daemon_pythonpath: Sequence[Path],
        log: Callable[[str], None],
    ) -> None:
        self.workdir = workdir
        self.seed = seed
        self.corpus_bytes = int(corpus_mb * 1e6)
        self.backlog_bytes = int(backlog_mb * 1e6)
        self.burst_bytes = int(burst_mb * 1e6)
        self.steps = schedule(kills, seed, backlogs)
        self.rng = random.Random(f"{seed}:delays")
        self.log = log
        self.report = Report(seed=seed, kills_requested=kills, patched=bool(daemon_pythonpath))
        self.h = Harness(workdir / "daemon")
        self.h.daemon_env.update(DAEMON_SETTINGS)
        if daemon_pythonpath:
            self.h.daemon_env["PYTHONPATH"] = os.pathsep.join(
                [*(str(p) for p in daemon_pythonpath), str(REPO)]
            )
        self.daemon: DaemonProcess | None = None
        self.tail = TailFollower()
        self._failed: set[int] = set()
        self._t_open: float | None = None  # seconds from spawn to the ledger file's creation

    # -- daemon ---------------------------------------------------------------------------

    def spawn(self) -> DaemonProcess:
        assert self.daemon is None
        self.daemon = self.h.spawn()
        self.report.spawned += 1
        return self.daemon

    def wait_ready(self, d: DaemonProcess, what: str) -> bool:
        left = d.started + READY_TIMEOUT_S - time.monotonic()
        problem = self.h.wait_ready(d, left, notify=False, interval=0.005, hello_timeout=0.5)
        if problem is None:
            self.report.ready += 1
            self.report.ready_s.append(time.monotonic() - d.started)
            self.tail.follow(self.h.socket, d.pid)
            return True
        self.fail(d, f"{what}: {problem}")
        return False

    def fail(self, d: DaemonProcess, problem: str) -> None:
        rc = d.proc.poll()
        state = f"exited {rc}" if rc is not None else "still running"
        self._failed.add(d.pid)
        self.report.failures.append(
            f"{problem} (daemon pid {d.pid} {state})\n{self.h.diagnostics(d)}"
        )
        self.log(f"FAILURE: {problem} (pid {d.pid} {state})")

    def kill(self, scenario: Scenario) -> None:
        d = self.daemon
        assert d is not None
        self.daemon = None
        killed = d.alive()
        rc = self.h.kill(d, timeout=30)
        if killed and rc == -signal.SIGKILL:
            self.report.kills += 1
            self.report.scenarios[scenario] += 1
        elif d.pid not in self._failed:
            self.fail(d, f"{scenario}: the daemon exited by itself with {rc} before the kill")
        self.report.ledger_at_kill[self._ledger_stage()] += 1

    def _ledger_stage(self) -> str:
        """Where the ledger stood at the kill. A small ledger (the first starts) is inspected
        on a copy: opening the original would recover its WAL in our process rather than in
        the next daemon's."""
        db = self.h.db
        if not db.exists():
            return "absent"
        files = [db, Path(f"{db}-wal")]
        if sum(p.stat().st_size for p in files if p.exists()) > 2_000_000:
            return "migrated, with events"
        copy = self.workdir / "ledger-copy"
        copy.mkdir(exist_ok=True)
        for p in copy.iterdir():
            p.unlink()
        for p in files:
            with contextlib.suppress(FileNotFoundError):
                (copy / p.name).write_bytes(p.read_bytes())
        conn = sqlite3.connect(copy / db.name)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0] if version else 0
        except sqlite3.DatabaseError as exc:
            return f"unreadable ({exc})"
        finally:
            conn.close()
        if not version:
            return "created, not migrated"
        return "migrated, no events" if not events else "migrated, with events"

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any] | None:
        try:
            return client.call(self.h.socket, cmd, args, timeout=5.0)
        except ControlError as exc:
            self.log(f"{cmd} failed: {exc}")
            return None

    def sleep(self, scenario: Scenario) -> None:
        lo, hi = _DELAYS[scenario]
        time.sleep(self.rng.uniform(lo, hi))

    # -- steps ----------------------------------------------------------------------------

    def run_step(self, scenario: Scenario, stream_bytes: int) -> None:
        if scenario == "backlog":  # a large backlog written while no daemon runs
            self.writer.burst(self.backlog_bytes)
        d = self.spawn()
        if scenario == "migration":
            self._kill_at_ledger_creation(d)
        elif scenario == "spawn":
            self.writer.stream(stream_bytes, 0.3)
            self.sleep(scenario)
        elif self.wait_ready(d, scenario):
            self.writer.stream(stream_bytes, 0.8)
            if scenario == "burst":
                self.writer.burst(self.burst_bytes)
            elif scenario == "pause":
                self._pause_command()
            self.sleep(scenario)
        self.kill(scenario)

    def _kill_at_ledger_creation(self, d: DaemonProcess) -> None:
        """The first daemon is killed 0-3 ms after the ledger file appears (it is creating and
        migrating it, which takes ~0.1 s); the next ones 0-0.1 s, then 0.05-0.3 s later after
        their spawn (opening it, and migrating it again if the schema was not committed)."""
        db = self.h.db
        if self._t_open is None:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not db.exists() and d.alive() and time.monotonic() < deadline:
                time.sleep(0.0005)
            self._t_open = time.monotonic() - d.started
            self.sleep("migration")
        else:
            lo, hi = (0.0, 0.1) if self.report.scenarios["migration"] < 2 else (0.05, 0.3)
            time.sleep(self._t_open + self.rng.uniform(lo, hi))

    def _pause_command(self) -> None:
        names = ["claude", "codex", *(n for n in ("cline", "cursor") if n in SOURCES)]
        pick = self.rng.random()
        some = sorted(self.rng.sample(names, self.rng.randint(1, len(names))))
        if pick < 0.45:
            self.call("pause-watcher", {"sources": some, "for_s": self.rng.uniform(0.3, 3.0)})
        elif pick < 0.8:
            self.call("pause-watcher", {"sources": some, "reason": "chaos"})
            time.sleep(self.rng.uniform(0.0, 0.2))
            self.call("resume-watcher", {"sources": some})
        else:
            self.call("resume-watcher", {"sources": []})

    # -- end ------------------------------------------------------------------------------

    def catch_up(self, d: DaemonProcess) -> dict[str, Any]:
        try:
            return wait_caught_up(self.h, d)
        except (AssertionError, ControlError) as exc:
            self.fail(d, f"final catch-up: {exc}")
            return {}

    def finish(self) -> None:
        t0 = time.monotonic()
        self.writer.burst(float("inf"))
        self.writer.close()
        problems = self.workload.verify()
        self.report.writer |= {
            "bytes": self.workload.bytes,
            "files": len(self.plan.line_files)
            + len(self.plan.documents)
            + int(self.plan.database is not None),
            "ops": dict(sorted(self.workload.by_kind.items())),
            "modes": dict(sorted(self.plan.modes.items())),
            "problems": problems,
        }
        for p in problems:
            self.report.failures.append(f"writer: {p}")
        d = self.spawn()
        if self.wait_ready(d, "final start"):
            status = self.catch_up(d)
            self.report.final["rescans"] = status.get("rescans")
            self.report.final["events_since_start"] = (status.get("since_start") or {}).get(
                "events"
            )
        rc, _ = self.h.stop(d, signal.SIGTERM, STOP_TIMEOUT_S)
        if rc is None:
            self.fail(d, f"final stop: still running {STOP_TIMEOUT_S:g} s after SIGTERM")
            self.h.kill(d)
        self.daemon = None
        self.report.final["exit_code"] = rc
        if rc != 0 and rc is not None:
            self.fail(d, f"final stop: exit code {rc}")
        self.report.log_problems = self._log_problems()
        self.tail.close()
        self.report.tail = self.tail.summary()
        self.report.phases_s["final_catch_up"] = time.monotonic() - t0

    def _log_problems(self) -> Counter[str]:
        """Warnings and errors the daemons logged over the campaign (every rotated file)."""
        found: Counter[str] = Counter()
        for path in sorted(self.h.log_file.parent.glob("sufd.log*")):
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    rec = json.loads(line)
                    if rec.get("level") in ("warning", "error", "critical"):
                        found[f"{rec['level']} {rec.get('event')}"] += 1
        return found

    def reference(self) -> SufdEnv:
        """A fresh ledger of the same HOME by one ``sufd ingest`` (new XDG dirs)."""
        t0 = time.monotonic()
        ref = fresh_ledger_env(self.h.env, self.workdir / "reference")
        proc = ref.run("ingest", "--json", timeout=1800)
        summary = json.loads(proc.stdout)
        self.report.reference = {
            k: summary.get(k) for k in ("files", "events_new", "malformed_lines", "errors")
        }
        self.report.phases_s["reference_ingest"] = time.monotonic() - t0
        return ref

    # -- all ------------------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        try:
            self._run()
        finally:
            if self.daemon is not None:
                with contextlib.suppress(Exception):
                    self.h.kill(self.daemon)
            self.h.close()
            self.report.duration_s = time.monotonic() - started
        return self.report

    def _run(self) -> None:
        t0 = time.monotonic()
        staging = self.workdir / "staging"
        stats = generate_to_size(staging, self.corpus_bytes, seed=self.seed)
        self.plan = build_plan(staging, self.h.home, random.Random(f"{self.seed}:plan"))
        self.workload = Workload(self.plan, staging, self.h.home)
        self.report.writer = {"corpus_bytes": stats.bytes}
        self.report.phases_s["setup"] = time.monotonic() - t0
        self.log(
            f"plan: {len(self.plan.ops)} ops, {self.plan.line_bytes / 1e6:.1f} MB,"
            f" {dict(self.plan.modes)}; {len(self.steps)} kills"
        )

        t0 = time.monotonic()
        self.writer = Writer(self.workload)
        try:
            # Backlogs take at most 60 % of the plan, bursts 20 %, streaming the rest.
            total = self.plan.line_bytes
            backlogs = self.steps.count("backlog")
            bursts = self.steps.count("burst")
            self.backlog_bytes = min(self.backlog_bytes, int(0.6 * total / max(backlogs, 1)))
            self.burst_bytes = min(self.burst_bytes, int(0.2 * total / max(bursts, 1)))
            reserved = backlogs * self.backlog_bytes + bursts * self.burst_bytes
            per_step = max(0, total - reserved) // max(len(self.steps), 1)
            self.report.writer.update(
                backlog_bytes=self.backlog_bytes, burst_bytes=self.burst_bytes, step_bytes=per_step
            )
            for i, scenario in enumerate(self.steps):
                self.run_step(scenario, per_step)
                if (i + 1) % 10 == 0 or i + 1 == len(self.steps):
                    self.log(
                        f"{i + 1}/{len(self.steps)} kills, {self.workload.bytes / 1e6:.1f} MB"
                        f" written, {len(self.report.failures)} failures,"
                        f" {time.monotonic() - t0:.0f} s"
                    )
            self.report.phases_s["kills"] = time.monotonic() - t0
            self.finish()
        finally:
            with contextlib.suppress(AssertionError):
                self.writer.close()
        ref = self.reference()
        t0 = time.monotonic()
        self.report.comparison = compare_ledgers(self.h.env, ref)
        self.report.phases_s["compare"] = time.monotonic() - t0


def run_crash_campaign(
    workdir: Path,
    kills: int,
    seed: int,
    *,
    corpus_mb: float = 24.0,
    backlog_mb: float = 10.0,
    backlogs: int | None = None,
    burst_mb: float = 1.5,
    daemon_pythonpath: Sequence[Path] = (),
    log: Callable[[str], None] | None = None,
) -> Report:
    """SIGKILL the real daemon ``kills`` times while agents write; compare with a one-shot.

    ``corpus_mb``: size of the Claude/Codex corpus written over the campaign (plus small
    Cline and Cursor workloads). ``backlog_mb``: written while the daemon is down before each
    of ``backlogs`` backlog steps (default: one per 25 kills, at least one).
    ``burst_mb``: written while it runs in a ``burst`` step. ``daemon_pythonpath``: extra
    directories put first on the daemon's ``PYTHONPATH`` (see
    :func:`write_cursor_first_patch`). ``log``: progress lines (default: none).
    """
    if backlogs is None:
        backlogs = max(1, kills // 25)
    campaign = _Campaign(
        workdir,
        kills,
        seed,
        corpus_mb=corpus_mb,
        backlog_mb=backlog_mb,
        backlogs=backlogs,
        burst_mb=burst_mb,
        daemon_pythonpath=daemon_pythonpath,
        log=log or (lambda _line: None),
    )
    return campaign.run()
