"""Concurrency torture: every client at once against the live daemon, killed at random.

:func:`run_torture` is the one entry point (``tests/test_torture.py`` at CI size,
``python -m benchmarks.torture_bench`` for the long run). In one isolated user
(:class:`tests.daemon_harness.Harness`) it runs the real daemon and, all at once:

* **the agent**: appends Claude Code usage lines, one at a time, to many session files
  (new files and appends to open ones). Every line is one event with a distinct timestamp,
  so the ledger must hold each exactly once. **Once a file's lines are all committed, the
  file is deleted**: nothing can be recovered by reading a source again, so an event that a
  commit lost (a WAL deleted under the daemon, a cursor ahead of its events) stays lost;
* **the clients**, each in a loop of real subprocesses: ``sufd ingest`` (which asks the
  daemon, or writes itself while the daemon is down), ``sufctl report daily --json``, the
  status line, ``sufd doctor``, and a plain read-write ``sqlite3`` connection that reads the
  ledger and closes (what the ``sqlite3`` shell or a backup script does);
* **the killer**: SIGKILLs the daemon at random moments and starts a new one;
* **the WAL watch**: reads ``/proc/<daemon>/fd`` every few milliseconds; a ``-wal`` or
  ``-shm`` the daemon holds open although it was deleted is a failure (the daemon would be
  committing into a file no one else sees).

At the end the last daemon catches up and stops cleanly, and the ledger must hold exactly the
events written (compared as a multiset, and their token sums), ``PRAGMA integrity_check``
must say ``ok``, and every report, status line and read must have succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sufd.errors import ControlError
from tests.daemon_harness import ClaudeSession, DaemonProcess, Harness, Usage, append_lines

__all__ = ["TortureReport", "run_torture"]

# The statusline gets what Claude Code sends on stdin.
_STATUS_INPUT = json.dumps({"session_id": "t0", "model": {"display_name": "Sonnet"}})
_PLAIN_READ = (
    "import sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1], timeout=30)\n"
    "c.execute('SELECT count(*), sum(total) FROM events').fetchall()\n"
    "c.close()\n"
)
# What a ``sufd ingest`` may say when the daemon it asked was killed under it.
_INGEST_INTERRUPTED = (
    "stopped before the catch-up finished",
    "closed the connection",
    "lost the connection",
    "not running",
)


@dataclass
class TortureReport:
    """What one run did and found."""

    kills: int = 0
    appends: int = 0
    files_deleted: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    wal_deleted_seen: int = 0
    events_expected: int = 0
    events_found: int = 0
    missing: int = 0
    duplicated: int = 0
    integrity: str = ""
    seconds: float = 0.0

    @property
    def operations(self) -> int:
        """Every client run, append and kill, counted once."""
        return sum(self.ops.values())

    @property
    def ok(self) -> bool:
        """The verdict: nothing lost, nothing twice, a sound file, no failed client."""
        return (
            not self.failures
            and self.wal_deleted_seen == 0
            and self.missing == 0
            and self.duplicated == 0
            and self.events_found == self.events_expected
            and self.integrity == "ok"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ok": self.ok,
            "kills": self.kills,
            "operations": self.operations,
            "ops": dict(self.ops),
            "appends": self.appends,
            "files_deleted": self.files_deleted,
            "events_expected": self.events_expected,
            "events_found": self.events_found,
            "missing": self.missing,
            "duplicated": self.duplicated,
            "integrity": self.integrity,
            "wal_deleted_seen": self.wal_deleted_seen,
            "failures": self.failures[:20],
            "seconds": round(self.seconds, 1),
        }

    def summary(self) -> str:
        """A few lines for people."""
        ops = ", ".join(f"{k} {v:,}" for k, v in sorted(self.ops.items()))
        return (
            f"torture: {'OK' if self.ok else 'FAILED'} in {self.seconds:.0f} s:"
            f" {self.kills} kills, {self.operations:,} operations ({ops});"
            f" {self.events_found:,}/{self.events_expected:,} events, {self.missing} missing,"
            f" {self.duplicated} duplicated, integrity {self.integrity!r},"
            f" WAL seen deleted {self.wal_deleted_seen} times, {len(self.failures)} failures"
        )


class _Run:
    def __init__(self, h: Harness, report: TortureReport, rng: random.Random) -> None:
        self.h = h
        self.report = report
        self.rng = rng
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.daemon: DaemonProcess | None = None
        self.expected: list[Usage] = []
        self.checked_at = 0.0
        self.env = h.user_env()

    # -- bookkeeping -----------------------------------------------------------------------

    def count(self, op: str) -> None:
        with self.lock:
            self.report.ops[op] += 1

    def fail(self, problem: str) -> None:
        with self.lock:
            self.report.failures.append(problem)

    # -- the daemon ------------------------------------------------------------------------

    def start_daemon(self) -> None:
        self.daemon = self.h.start(settle=False)

    def killer(self, kills: int, interval: tuple[float, float]) -> None:
        while not self.stop.is_set() and self.report.kills < kills:
            if self.stop.wait(self.rng.uniform(*interval)):
                return
            d = self.daemon
            assert d is not None
            self.h.kill(d)
            with self.lock:
                self.report.kills += 1
            self.count("kill")
            try:
                self.start_daemon()
            except AssertionError as exc:
                self.fail(f"restart after kill {self.report.kills}: {exc}"[:2000])
                self.stop.set()
                return

    def wal_watch(self) -> None:
        db = str(self.h.db)
        while not self.stop.is_set():
            d = self.daemon
            if d is not None:
                with contextlib.suppress(OSError):
                    for fd in os.listdir(f"/proc/{d.pid}/fd"):
                        with contextlib.suppress(OSError):
                            target = os.readlink(f"/proc/{d.pid}/fd/{fd}")
                            if target.startswith(db) and target.endswith("(deleted)"):
                                with self.lock:
                                    self.report.wal_deleted_seen += 1
                                    if self.report.wal_deleted_seen == 1:
                                        self.report.failures.append(
                                            f"daemon pid {d.pid} holds a deleted {target}"
                                        )
            time.sleep(0.005)

    # -- clients ---------------------------------------------------------------------------

    def run(
        self,
        name: str,
        argv: list[str],
        ok: Callable[[subprocess.CompletedProcess[str]], bool],
        stdin: str | None = None,
    ) -> None:
        proc = subprocess.run(
            argv,
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.count(name)
        if not ok(proc) or "Traceback" in proc.stderr:
            self.fail(f"{name} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")

    def client_loop(self, name: str) -> None:
        py = sys.executable
        db = str(self.h.db)
        while not self.stop.is_set():
            if name == "ingest":
                self.run(name, [py, "-m", "sufd", "ingest", "--quiet"], _ingest_ok)
            elif name == "report":
                self.run(
                    name, [py, "-m", "sufd.cli.sufctl", "report", "daily", "--json"], _report_ok
                )
            elif name == "statusline":
                self.run(
                    name,
                    [py, "-m", "sufd.cli.statusline"],
                    lambda p: p.returncode == 0 and ("$" in p.stdout or "sufd" in p.stdout),
                    _STATUS_INPUT,
                )
            elif name == "doctor":
                self.run(name, [py, "-m", "sufd", "doctor", "--json"], _doctor_ok)
            elif name == "sqlite3":
                self.run(name, [py, "-c", _PLAIN_READ, db], lambda p: p.returncode == 0)

    # -- the agent -------------------------------------------------------------------------

    def agent(
        self, appends: int, pace_s: float, until_done: threading.Thread, min_operations: int
    ) -> None:
        """Append at least ``appends`` usage lines, and go on while ``until_done`` runs and
        fewer than ``min_operations`` were done; delete each file once its lines are all
        committed."""
        open_files: list[tuple[Path, ClaudeSession, list[Usage], int]] = []
        waiting: list[tuple[Path, list[Usage]]] = []
        n = 0
        while (
            n < appends or until_done.is_alive() or self.report.operations < min_operations
        ) and not self.stop.is_set():
            if not open_files or (len(open_files) < 12 and self.rng.random() < 0.3):
                k = len(self.expected) + len(open_files)
                session = ClaudeSession(f"t{n}-{k}", cwd=f"/home/dev/p{k % 7}")
                path = self.h.claude_file(project=f"-home-dev-p{k % 7}", session=session.session)
                open_files.append((path, session, [], self.rng.randint(1, 3)))
                i = len(open_files) - 1  # a new file gets its first line now
            else:
                i = self.rng.randrange(len(open_files))
            path, session, written, limit = open_files[i]
            # Distinct timestamps: every event is distinguishable from every other.
            line, usage = session.assistant(
                3600 + n, input=1 + self.rng.randrange(5000), output=1 + self.rng.randrange(900)
            )
            lines = [session.user(3600 + n), line] if not written else [line]
            append_lines(path, *lines)
            written.append(usage)
            self.expected.append(usage)
            n += 1
            self.count("append")
            if len(written) >= limit:
                open_files.pop(i)
                waiting.append((path, written))
            waiting = self.delete_committed(waiting)
            time.sleep(self.rng.uniform(0, pace_s))
        waiting += [(p, w) for p, _, w, _ in open_files]
        deadline = time.monotonic() + 120
        while waiting and time.monotonic() < deadline:
            waiting = self.delete_committed(waiting)
            if waiting:
                time.sleep(0.1)
        for path, _ in waiting:
            self.fail(f"events of {path.name} never committed")

    def delete_committed(
        self, waiting: list[tuple[Path, list[Usage]]]
    ) -> list[tuple[Path, list[Usage]]]:
        now = time.monotonic()
        if not waiting or now - self.checked_at < 0.2:
            return waiting
        self.checked_at = now
        stored = _stored(self.h.db, [u for _, usages in waiting for u in usages])
        left = []
        for path, usages in waiting:
            if all(stored[u] >= 1 for u in usages):
                path.unlink()
                with self.lock:
                    self.report.files_deleted += 1
            else:
                left.append((path, usages))
        return left


def _stored(db: Path, usages: list[Usage]) -> Counter[Usage]:
    """Which of ``usages`` the ledger holds (looked up by their distinct timestamps)."""
    if not db.exists():
        return Counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        marks = ",".join("?" * len(usages))
        rows = conn.execute(
            "SELECT source, ts, input, output, cache_write_5m + cache_write_1h, cache_read,"
            f" reasoning, total FROM events WHERE ts IN ({marks})",
            [u.ts for u in usages],
        ).fetchall()
    finally:
        conn.close()
    return Counter(Usage(*row) for row in rows)


def _ingest_ok(proc: subprocess.CompletedProcess[str]) -> bool:
    if proc.returncode == 0:
        return True
    return proc.returncode == 1 and any(s in proc.stderr for s in _INGEST_INTERRUPTED)


def _report_ok(proc: subprocess.CompletedProcess[str]) -> bool:
    if proc.returncode != 0:
        return False
    data = json.loads(proc.stdout)
    return isinstance(data.get("daily"), list) and "freshness" in data


def _doctor_ok(proc: subprocess.CompletedProcess[str]) -> bool:
    # A failed check (the daemon was just killed) is an answer; a crash is not.
    return proc.returncode in (0, 1) and isinstance(json.loads(proc.stdout), list)


CLIENTS = ("ingest", "report", "statusline", "doctor", "sqlite3")


def run_torture(
    tmp: Path,
    *,
    kills: int,
    appends: int,
    seed: int,
    kill_interval: tuple[float, float] = (0.3, 1.5),
    pace_s: float = 0.05,
    min_operations: int = 0,
) -> TortureReport:
    """Run the torture (see the module docstring); returns what it found.

    It goes on until ``kills`` kills, ``appends`` appends and ``min_operations`` operations
    of every kind together are done.
    """
    started = time.monotonic()
    report = TortureReport()
    h = Harness(tmp)
    run = _Run(h, report, random.Random(seed))
    threads: list[threading.Thread] = []
    try:
        run.start_daemon()
        threads = [
            threading.Thread(target=run.client_loop, args=(name,), daemon=True) for name in CLIENTS
        ]
        threads.append(threading.Thread(target=run.wal_watch, daemon=True))
        killer = threading.Thread(target=run.killer, args=(kills, kill_interval), daemon=True)
        threads.append(killer)
        for t in threads:
            t.start()
        run.agent(appends, pace_s, until_done=killer, min_operations=min_operations)
        run.stop.set()
        for t in threads:
            t.join(180)
        final = run.daemon
        assert final is not None
        if final.alive():
            with contextlib.suppress(ControlError):
                h.call("shutdown")
            try:
                final.proc.wait(30)
            except subprocess.TimeoutExpired:
                run.fail("the last daemon did not stop within 30 s")
                h.kill(final)
        _verdict(h, run, report)
    finally:
        run.stop.set()
        h.close()
    report.seconds = time.monotonic() - started
    return report


def _verdict(h: Harness, run: _Run, report: TortureReport) -> None:
    expected = Counter(run.expected)
    stored = h.events_in_store()
    report.appends = len(run.expected)
    report.events_expected = sum(expected.values())
    report.events_found = sum(stored.values())
    report.missing = sum((expected - stored).values())
    report.duplicated = sum((stored - expected).values())
    sums = {
        k: (
            sum(getattr(u, k) * c for u, c in expected.items()),
            sum(getattr(u, k) * c for u, c in stored.items()),
        )
        for k in ("input", "output", "total")
    }
    for name, (want, got) in sums.items():
        if want != got:
            run.fail(f"{name} tokens: ledger {got:,}, written {want:,}")
    conn = sqlite3.connect(h.db, timeout=30)
    try:
        report.integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
