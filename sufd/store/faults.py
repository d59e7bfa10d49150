"""What can go wrong with the ledger file, and how to tell from an exception: the stable
reasons, :class:`Fault`, and :func:`diagnose` (see :mod:`sufd.store.health` for how the
daemon recovers from each).
"""

from __future__ import annotations

import errno
import os
import resource
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sufd.errors import StoreError

__all__ = [
    "CORRUPT",
    "DELETED",
    "DISK_FULL",
    "FILE_LIMIT",
    "IO_ERROR",
    "LOCKED",
    "OTHER",
    "READ_ONLY",
    "REPLACED",
    "Fault",
    "StoreFault",
    "diagnose",
    "file_size",
]

# Reasons (stable strings: logged as ``reason`` and shown by ``sufctl status``).
DISK_FULL = "disk full"
FILE_LIMIT = "file size limit"
IO_ERROR = "I/O error"
READ_ONLY = "read-only"
LOCKED = "locked"
CORRUPT = "corrupt"
DELETED = "deleted"
REPLACED = "replaced"
OTHER = "error"

# Less free space than this next to an I/O error means the disk is full.
_FULL_FREE_BYTES = 1024 * 1024
# A file this close to RLIMIT_FSIZE cannot take another WAL frame or page.
_LIMIT_MARGIN = 64 * 1024
# SQLite primary result codes.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


@dataclass(frozen=True, slots=True)
class Fault:
    """One store problem: a stable ``reason`` and the error as SQLite or the OS put it."""

    reason: str
    detail: str

    @property
    def rebuilds(self) -> bool:
        """Whether recovery needs a new file (rather than retrying writes to this one)."""
        return self.reason in (CORRUPT, DELETED, REPLACED)


class StoreFault(StoreError):
    """The ledger failed while a batch was written, as opposed to the file being read.

    Ingest stops at the first one (instead of recording it against every source file) and
    lets the caller decide: the daemon backs off and retries, ``sufd ingest`` reports it.
    """

    def __init__(self, cause: sqlite3.Error) -> None:
        super().__init__(f"the ledger cannot be written: {cause}")
        self.cause = cause


def _sqlite_cause(exc: BaseException) -> sqlite3.Error | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, sqlite3.Error):
            return seen
        if isinstance(seen, StoreFault):
            return seen.cause
        seen = seen.__cause__
    return None


def file_size(path: Path) -> int:
    """The size of ``path`` in bytes (0 when it cannot be read)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _io_reason(db: Path) -> str:
    """Why a write failed with an I/O error: a size limit, a full disk, or the device."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-journal")):
            if file_size(path) + _LIMIT_MARGIN >= soft:
                return FILE_LIMIT
    try:
        st = os.statvfs(db.parent)
    except OSError:
        return IO_ERROR
    return DISK_FULL if st.f_bavail * st.f_frsize < _FULL_FREE_BYTES else IO_ERROR


def diagnose(exc: BaseException, db: Path) -> Fault | None:
    """The store fault behind ``exc``, or ``None`` when ``exc`` is not about the ledger.

    Any ``sqlite3.Error`` that reaches the daemon from the write path is the ledger's: source
    databases are read behind the ingest boundary, which records their errors per file.
    """
    cause = _sqlite_cause(exc)
    if cause is None:
        if isinstance(exc, StoreError):
            os_error = exc.__cause__
            if isinstance(os_error, OSError) and os_error.errno in (errno.ENOSPC, errno.EDQUOT):
                return Fault(DISK_FULL, str(exc))
            return Fault(OTHER, str(exc))
        return None
    detail = str(cause) or type(cause).__name__
    code = getattr(cause, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (_CORRUPT, _NOTADB):
        return Fault(CORRUPT, detail)
    if primary == _FULL:
        return Fault(DISK_FULL, detail)
    if primary == _IOERR:
        return Fault(_io_reason(db), detail)
    if primary == _READONLY:
        return Fault(READ_ONLY, detail)
    if primary in (_BUSY, _LOCKED):
        return Fault(LOCKED, detail)
    if primary == _CANTOPEN:
        return Fault(IO_ERROR, detail)
    return Fault(OTHER, detail)
