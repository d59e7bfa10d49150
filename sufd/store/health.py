"""What can go wrong with the ledger file itself, how to tell, and how the daemon recovers.

Every fault leaves the source files untouched, and the ledger is a function of them, so the
daemon never stops for a store fault; it keeps serving and says what is wrong
(``sufctl status``, the ``store.*`` log events):

* **Writes fail** (disk full, file size limit, I/O error, read-only, locked): the transaction
  is rolled back, so no cursor moves past an event that was not committed. The daemon closes
  its write connection (dropping every cache that may describe rolled-back rows) and
  reopens it after a back-off of :data:`RETRY_MIN_S` doubling to :data:`RETRY_MAX_S`; the
  catch-up scan then reads again from the unmoved cursors.
* **The file is deleted while running**: the daemon still has it open, so it copies it into a
  fresh file at the same path (:func:`salvage`, SQLite's backup API) and rescans. Even events
  whose source files are gone survive; if the copy fails, the ledger is rebuilt from the
  source files.
* **The file is replaced** by another file: the daemon switches to the new file and rescans.
* **The file is corrupt** (``SQLITE_CORRUPT``, "file is not a database", a bad header or a
  failed ``PRAGMA quick_check``, at start or while running): the file and its ``-wal``/``-shm``
  are moved aside as ``<name>.corrupt-<UTC time>`` with a ``.json`` note (:func:`quarantine`),
  and a fresh ledger is built from the source files. Events whose source files were already
  deleted are only in the copy; ``sufd doctor`` says where it is.
* **The WAL grows** while a reader holds an old snapshot (no checkpoint can pass it).
  ``journal_size_limit`` (:data:`WAL_LIMIT_BYTES`) truncates the WAL after each checkpoint
  that resets it, and the daemon's heartbeat runs a non-blocking ``wal_checkpoint(TRUNCATE)``
  whenever the WAL is larger than that, so the WAL returns under the bound as soon as the
  reader ends, even with no further writes.

The reasons and :func:`diagnose` live in :mod:`sufd.store.faults`, the file actions in
:mod:`sufd.store.recovery`; this module holds the checks and the daemon's view
(:class:`StoreHealth`), and names all of them for the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sufd.store import WAL_LIMIT_BYTES
from sufd.store.faults import (
    CORRUPT,
    DELETED,
    IO_ERROR,
    REPLACED,
    Fault,
    file_size,
)
from sufd.store.recovery import install, quarantine, quarantined, remove_journals, salvage

__all__ = [
    "Pin",
    "RETRY_MAX_S",
    "RETRY_MIN_S",
    "WAL_LIMIT_BYTES",
    "StoreHealth",
    "background_priority",
    "checkpoint",
    "file_problem",
    "identity",
    "install",
    "quarantine",
    "quarantined",
    "quick_check",
    "remove_journals",
    "salvage",
    "wal_bytes",
]

RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
SQLITE_MAGIC = b"SQLite format 3\x00"


# -- checks -----------------------------------------------------------------------------


def identity(path: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of ``path``, or ``None`` if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class Pin:
    """A read-only descriptor held on the ledger file while this process has it open.

    SQLite's locks are POSIX advisory locks: they belong to the process, and closing *any*
    descriptor of the file releases all of them. A check that opened and closed the ledger
    would silently drop the writer's locks; the next program to close its own connection
    (``sqlite3``, a backup tool) then believes it is the last one, checkpoints the WAL and
    deletes it under the daemon, whose commits go on into a deleted file. So the daemon reads
    the file only through this descriptor and closes it only once no connection of the process
    can still hold a lock on that file (see :class:`sufd.daemon.keeper.StoreKeeper`).
    """

    def __init__(self, db: Path) -> None:
        """Open ``db`` read-only.

        Raises:
            OSError: it cannot be opened.
        """
        self.fd: int | None = os.open(db, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.identity: tuple[int, int] = (st.st_dev, st.st_ino)

    def header(self) -> bytes:
        """The first bytes of the file, where SQLite's magic string must be.

        Raises:
            OSError: the read failed (or the pin is closed).
        """
        if self.fd is None:
            raise OSError(errno.EBADF, "the ledger pin is closed")
        return os.pread(self.fd, len(SQLITE_MAGIC), 0)

    def close(self) -> None:
        """Close the descriptor; only once no connection of this process has the file open."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def file_problem(db: Path, pin: Pin | None) -> Fault | None:
    """The cheap check the daemon runs every heartbeat against the file it opened.

    One ``stat`` of the path and a 16-byte read through ``pin`` (never a new descriptor:
    see :class:`Pin`): is the file still there, still the same inode, and does it still
    start with SQLite's header?
    """
    try:
        st = os.stat(db)
    except FileNotFoundError:
        return Fault(DELETED, f"{db} was deleted while sufd had it open")
    except OSError as exc:
        return Fault(IO_ERROR, f"cannot stat {db}: {exc.strerror or exc}")
    if pin is None:
        return None
    if (st.st_dev, st.st_ino) != pin.identity:
        return Fault(REPLACED, f"{db} was replaced by another file while sufd had it open")
    try:
        head = pin.header()
    except OSError as exc:
        return Fault(IO_ERROR, f"cannot read {db}: {exc.strerror or exc}")
    if head != SQLITE_MAGIC:
        what = "truncated" if len(head) < len(SQLITE_MAGIC) else "overwritten"
        return Fault(CORRUPT, f"file is not a database: the SQLite header was {what}")
    return None


def quick_check(db: Path) -> str | None:
    """``PRAGMA quick_check`` on a fresh read-only connection: ``None`` when the file is
    sound, else SQLite's first complaint. O(file size); the daemon runs it off the loop.

    Raises:
        sqlite3.Error: the file cannot be opened or read at all (e.g. "file is not a
            database"); :func:`diagnose` says whether that is corruption.
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    finally:
        conn.close()
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else "; ".join(found)


def background_priority() -> None:
    """Lower the calling thread's CPU priority, where that is per thread (Linux), so a long
    check yields to ingest; elsewhere do nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def wal_bytes(db: Path) -> int:
    """Size of the ledger's write-ahead log (0 when there is none)."""
    return file_size(Path(f"{db}-wal"))


def checkpoint(conn: sqlite3.Connection, *, wait: bool = False) -> tuple[bool, int, int]:
    """Copy the WAL into the database and truncate it to 0 bytes.

    Without ``wait`` it gives up at once when another connection still reads an older
    snapshot (it is tried again later); with it, it waits the connection's busy timeout.
    Returns ``(done, wal_frames, frames_copied)``. Must run on the writer's thread.
    """
    (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
    if not wait:
        conn.execute("PRAGMA busy_timeout = 0")
    try:
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        if not wait:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    return not busy, int(frames), int(copied)


# -- the daemon's view ------------------------------------------------------------------


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


@dataclass
class StoreHealth:
    """What the daemon knows about its ledger file, for ``status`` and the back-off."""

    db: Path
    problem: Fault | None = None
    since: float | None = None
    attempts: int = 0
    retry_at: float | None = None  # wall clock
    opened: tuple[int, int] | None = None
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    wal_blocked_since: float | None = None

    def failed(self, fault: Fault, now: float) -> float:
        """Record a failed attempt; returns the back-off before the next one."""
        if self.problem is None:
            self.since = now
        self.problem = fault
        self.attempts += 1
        delay = min(RETRY_MAX_S, RETRY_MIN_S * float(2 ** min(self.attempts - 1, 16)))
        self.retry_at = now + delay
        return delay

    def cleared(self) -> dict[str, Any] | None:
        """Writes work again: forget the problem; returns what it was (for the log)."""
        if self.problem is None:
            return None
        was = {
            "reason": self.problem.reason,
            "attempts": self.attempts,
            "down_s": round(time.time() - (self.since or time.time()), 1),
        }
        self.problem, self.since, self.attempts, self.retry_at = None, None, 0, None
        return was

    def recovered(self, fault: Fault, action: str, moved_to: Path | None, found: str) -> None:
        """Record that the file was replaced (corrupt, deleted, replaced) and how."""
        self.problem, self.since, self.attempts, self.retry_at = None, None, 0, None
        self.recoveries.append(
            {
                "at": time.time(),
                "reason": fault.reason,
                "error": fault.detail,
                "found": found,
                "action": action,
                "moved_to": str(moved_to) if moved_to else None,
            }
        )
        del self.recoveries[:-5]

    @property
    def state(self) -> str:
        """``ok``, ``failing`` (writes fail, retrying) or ``rebuilt`` (since this start)."""
        if self.problem is not None:
            return "failing"
        return "rebuilt" if self.recoveries else "ok"

    def status(self) -> dict[str, Any]:
        """The ``store`` part of ``status`` (besides path and size)."""
        problem = None
        if self.problem is not None:
            problem = {
                "reason": self.problem.reason,
                "error": self.problem.detail,
                "since": self.since,
                "attempts": self.attempts,
                "retry_in_s": (
                    None
                    if self.retry_at is None
                    else max(0.0, round(self.retry_at - time.time(), 1))
                ),
            }
        return {
            "state": self.state,
            "wal_bytes": wal_bytes(self.db),
            "wal_limit_bytes": WAL_LIMIT_BYTES,
            "problem": problem,
            "recoveries": list(self.recoveries),
        }

    def warnings(self) -> list[str]:
        """One line per thing the user should know, for ``sufctl status``."""
        out = []
        if self.problem is not None:
            retry = ""
            if self.retry_at is not None:
                left = max(0.0, self.retry_at - time.time())
                retry = f"; retry {self.attempts + 1} in {left:.0f} s"
            out.append(
                f"store: cannot write the ledger ({self.problem.reason}: {self.problem.detail})"
                f" since {_clock(self.since or time.time())}{retry}; nothing is lost: what is"
                " not committed is read again from the source files once writes succeed"
            )
        for r in self.recoveries:
            moved = f"; the old file is kept at {r['moved_to']}" if r["moved_to"] else ""
            out.append(
                f"store: at {_clock(r['at'])} the ledger was {r['reason']} ({r['error']});"
                f" {r['action']}{moved}"
            )
        if self.wal_blocked_since is not None:
            out.append(
                f"store: the WAL is {wal_bytes(self.db) / 1e6:,.1f} MB: another program has held"
                f" a read transaction open since {_clock(self.wal_blocked_since)}, so it cannot"
                " be checkpointed"
            )
        return out
