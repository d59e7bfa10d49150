"""The SQLite ledger: opening, migrating, transactions.

One writer (the daemon or ``sufd ingest``) holds a read-write connection; reports open the
file read-only, so they work while the daemon runs (WAL) and while it is stopped. All writes
go through :mod:`sufd.store.ledger`; all reads through :mod:`sufd.store.queries`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from sufd.errors import StoreError

__all__ = ["WAL_LIMIT_BYTES", "open_readonly", "open_store", "private_dir"]

# A WAL that grew under a long reader is cut back to this once checkpointed (see health).
WAL_LIMIT_BYTES = 4 * 1024 * 1024

BUSY_TIMEOUT_MS = 5000


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as an owner-only (0700) directory."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise StoreError(f"cannot create directory {path}: {exc.strerror or exc}") from exc


def open_store(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the ledger for writing and bring its schema up to date.

    The file is created 0600 inside a 0700 directory. The connection is in autocommit mode;
    use :func:`sufd.store.transaction.atomic` for transactions.

    Raises:
        StoreError: the file cannot be created, opened or migrated.
    """
    # Here, not at the top: reports open the ledger read-only and need none of the write side.
    from sufd.store.migrations import apply_migrations

    private_dir(path.parent)
    try:
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the ledger {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot switch the ledger {path} to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")
        # A WAL that grew under a long reader is cut back to this once it is checkpointed.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        conn.execute("PRAGMA foreign_keys = OFF")
        # Each file's batch is a savepoint inside a catch-up's transaction: its statement
        # journal in memory, not a temp file, saved 200k write() calls on a 500 MB catch-up.
        conn.execute("PRAGMA temp_store = MEMORY")
        apply_migrations(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"the ledger {path} is not usable: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            Path(f"{path}{suffix}").chmod(0o600)
    return conn


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open the ledger read-only for reports.

    Raises:
        StoreError: there is no ledger yet, or it cannot be read.
    """
    if not path.exists():
        raise StoreError(f"no ledger at {path} yet: run `sufd ingest` (or start the daemon)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the ledger {path}: {exc}") from exc
    return conn
