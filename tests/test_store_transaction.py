"""The store's one transaction helper keeps the error that ended a transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sufd.store.transaction import atomic


def test_an_error_after_sqlite_rolled_back_is_the_one_raised(tmp_path: Path) -> None:
    """SQLite rolls a transaction back by itself on some errors (disk full, I/O). The error
    that did it must reach the caller (the daemon diagnoses it), not a second ROLLBACK's
    "no transaction is active"."""
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ValueError, match="the real problem"), atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
        raise ValueError("the real problem")
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()
