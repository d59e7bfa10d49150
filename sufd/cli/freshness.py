"""How fresh a report is: when the ledger last committed, whether its daemon runs, and
whether it is still catching up.

A report is only as complete as the ledger it reads. Every report says so (``--json``:
``freshness``), and the table prints one footer line when something is off: the daemon is
catching up (files done / total), or it is not running and agent logs changed after the
ledger last read them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from sufd.errors import ControlError

if TYPE_CHECKING:
    from sufd.settings import Settings

__all__ = ["Freshness", "daemon_of", "freshness"]

# A report must stay quick: the daemon answers ``hello`` in a millisecond when it is well.
HELLO_TIMEOUT_S = 1.0
# How many folders above a tracked file may hold a new one (Codex: sessions/YYYY/MM/DD/).
FOLDER_LEVELS = 3


class Freshness(NamedTuple):
    """What a report's reader should know about the data behind it."""

    last_commit_ms: int | None
    daemon: str  # running | not-running | unreachable | other-ledger
    daemon_pid: int | None = None
    files_done: int | None = None
    files_total: int | None = None
    catching_up: bool = False
    sources_changed: bool | None = None  # checked only while the daemon is not running

    def as_dict(self) -> dict[str, Any]:
        """The ``freshness`` object of a report's JSON."""
        return {
            "lastCommit": _iso(self.last_commit_ms),
            "daemon": self.daemon,
            "daemonPid": self.daemon_pid,
            "catchingUp": (
                {"filesDone": self.files_done, "filesTotal": self.files_total}
                if self.catching_up
                else None
            ),
            "sourcesChangedSinceLastCommit": self.sources_changed,
            "complete": self.note() is None,
        }

    def note(self) -> str | None:
        """The table's footer line, only when something is off."""
        if self.catching_up:
            done = "" if self.files_done is None else f"{self.files_done:,}"
            of = "" if self.files_total is None else f" of {self.files_total:,}"
            progress = f" ({done}{of} files)" if done or of else ""
            return (
                f"Incomplete: sufd is still catching up{progress}; run the report again when"
                " it is done (sufctl status)."
            )
        if self.daemon != "running" and self.sources_changed:
            since = _clock(self.last_commit_ms)
            why = {
                "unreachable": "is not answering",
                "other-ledger": "serves another ledger",
            }.get(self.daemon, "is not running")
            return (
                f"Incomplete: the daemon {why} and agent logs changed after the ledger's last"
                f" update ({since}); run `sufd ingest`, or `sufd start` to keep it current."
            )
        return None


def daemon_of(settings: Settings) -> tuple[str, dict[str, Any]]:
    """Whether the daemon of ``settings``' ledger runs: ``("running", hello)``, else
    ``("not-running" | "unreachable" | "other-ledger", {})``."""
    if not os.path.exists(settings.paths.socket):
        return "not-running", {}  # without loading the client: most reports run this way
    from sufd.control import client

    try:
        hello = client.hello(settings.paths.socket, settings.paths.db, timeout=HELLO_TIMEOUT_S)
    except client.DaemonNotRunning:
        return "not-running", {}
    except client.OtherLedger:
        return "other-ledger", {}
    except ControlError:
        return "unreachable", {}
    return "running", hello


def freshness(settings: Settings, conn: sqlite3.Connection | None) -> Freshness:
    """Ask the daemon of ``settings``' ledger how far it is; check the sources only when no
    daemon keeps the ledger current. ``conn`` reads the ledger (``None``: there is none yet).
    """
    last = _last_commit_ms(conn)
    state, hello = daemon_of(settings)
    if state != "running":
        return Freshness(last, state, sources_changed=_sources_changed(conn))
    pid = hello.get("pid") if isinstance(hello.get("pid"), int) else None
    scan = hello.get("scan")
    if isinstance(scan, dict) and scan.get("caught_up") is False:
        done, total = scan.get("files_done"), scan.get("files_total")
        return Freshness(
            last,
            "running",
            pid,
            done if isinstance(done, int) else None,
            total if isinstance(total, int) else None,
            catching_up=True,
        )
    return Freshness(last, "running", pid)


def _rows(conn: sqlite3.Connection | None, sql: str) -> list[Any]:
    """What ``sql`` finds in the ledger; nothing when there is none or it cannot be read
    (the report itself says so)."""
    if conn is None:
        return []
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def _last_commit_ms(conn: sqlite3.Connection | None) -> int | None:
    rows = _rows(conn, "SELECT max(updated_ms) FROM files")
    return int(rows[0][0]) if rows and rows[0][0] else None


def _sources_changed(conn: sqlite3.Connection | None) -> bool:
    """Whether an agent wrote after the ledger last read its files.

    Looks only at what the ledger knows, so that a report stays quick without a daemon: each
    tracked file (and a database's ``-wal``) against when its cursor last moved, and the
    folders they are in, up to :data:`FOLDER_LEVELS` above them, against the ledger's last
    commit: a new session file, project or day folder changes one of those. A file of an
    agent the ledger has never seen is not noticed. Stops at the first change.
    """
    rows = _rows(conn, "SELECT path, updated_ms FROM files WHERE gone = 0")
    last = max((int(ms) for _, ms in rows), default=0)
    folders: set[str] = set()
    for path, read_ms in rows:
        if _modified_ms(path) > read_ms or _modified_ms(f"{path}-wal") > read_ms:
            return True
        folder = path
        for _ in range(FOLDER_LEVELS):
            folder = os.path.dirname(folder)
            folders.add(folder)
    return any(_modified_ms(folder) > last for folder in folders)


def _modified_ms(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns // 1_000_000
    except OSError:
        return 0


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _clock(ms: int | None) -> str:
    if ms is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))
