"""Recovering from a ledger file that cannot be kept: moving a corrupt one aside
(:func:`quarantine`), copying one deleted while open (:func:`salvage`, :func:`install`),
and clearing journals a vanished file left behind (see :mod:`sufd.store.health`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sufd.errors import StoreError
from sufd.store.faults import Fault

__all__ = ["install", "quarantine", "quarantined", "remove_journals", "salvage"]


def _journals(db: Path) -> list[Path]:
    return [Path(f"{db}{suffix}") for suffix in ("-wal", "-shm", "-journal")]


def remove_journals(db: Path) -> None:
    """Delete ``-wal``/``-shm`` left at ``db``'s path by a file that is no longer there: a new
    database at that path must not replay another file's log."""
    for path in _journals(db):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")


def quarantine(db: Path, fault: Fault, *, found: str, now: float | None = None) -> Path:
    """Move a corrupt ledger (and its ``-wal``/``-shm``) aside, keeping them together.

    Writes a ``.json`` note beside it (when, why, how it was found) for ``sufd doctor``.
    Returns the new path of the database file.

    Raises:
        StoreError: the file cannot be moved (then it cannot be replaced either).
    """
    now = time.time() if now is None else now
    base = db.with_name(f"{db.name}.corrupt-{_stamp(now)}")
    target, n = base, 1
    while target.exists() or target.with_name(target.name + ".json").exists():
        target, n = base.with_name(f"{base.name}-{n}"), n + 1
    try:
        if db.exists():
            os.replace(db, target)
        for journal in _journals(db):
            if journal.exists():
                os.replace(journal, Path(f"{target}{journal.name[len(db.name) :]}"))
    except OSError as exc:
        raise StoreError(f"cannot move the corrupt ledger {db} aside: {exc.strerror}") from exc
    note = {
        "moved_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "from": str(db),
        "reason": fault.reason,
        "error": fault.detail,
        "found": found,
    }
    with contextlib.suppress(OSError):
        fd = os.open(
            target.with_name(target.name + ".json"), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600
        )
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(note, f, indent=2)
    return target


def quarantined(db: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Corrupt ledgers moved aside by :func:`quarantine`, oldest first, with their notes."""
    out: list[tuple[Path, dict[str, Any]]] = []
    for note_path in sorted(db.parent.glob(f"{db.name}.corrupt-*.json")):
        note: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(note_path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                note = loaded
        out.append((note_path.with_name(note_path.name[: -len(".json")]), note))
    return out


def salvage(conn: sqlite3.Connection, db: Path) -> Path:
    """Copy the database ``conn`` still has open (its file was deleted) beside ``db``.

    Returns the copy (WAL content included, in rollback-journal mode). The caller closes
    ``conn``, then puts the copy in place with :func:`install`, so a reader never sees a
    half-written ledger and the old connection never touches the new file's journals.

    Raises:
        sqlite3.Error, OSError: the copy failed (nothing is left behind).
    """
    tmp = db.with_name(f"{db.name}.salvage-{os.getpid()}")
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    dest = sqlite3.connect(tmp)
    try:
        conn.backup(dest)
        dest.execute("PRAGMA journal_mode = DELETE")
    except BaseException:
        dest.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dest.close()
    return tmp


def install(copy: Path, db: Path) -> None:
    """Put ``copy`` in place as ``db``, first removing journals left by the file it replaces.

    Raises:
        OSError: the rename failed.
    """
    remove_journals(db)
    os.replace(copy, db)
