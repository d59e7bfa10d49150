"""A bulk transaction checkpoints the WAL less often, within a bound, and only while open.

Each flush of a first catch-up writes thousands of pages; with SQLite's default of a
checkpoint every 1,000 pages, every flush was copied into the file and synced again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sufd.prices.table import PriceTable
from sufd.store import ledger as ledger_module
from sufd.store import open_store
from sufd.store.ledger import BULK_CHECKPOINT_PAGES, Ledger
from tests.corpus import generate_to_size
from tests.test_ledger_keyfilter import _commit_all, _files


def _autocheckpoint(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_bulk_checkpoints_at_its_bound_and_restores_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a scale a test can afford: both numbers divided by 20 (a first ingest of the
    500 MB benchmark corpus writes some 17,000 pages)."""
    bound = BULK_CHECKPOINT_PAGES // 20
    monkeypatch.setattr(ledger_module, "BULK_CHECKPOINT_PAGES", bound)
    home = tmp_path / "home"
    generate_to_size(home, 30_000_000, seed=8)
    files = _files(home)
    table = PriceTable.bundled()
    db = tmp_path / "data" / "ledger.sqlite3"
    conn = open_store(db)
    ledger = Ledger(conn, price_version=table.version)
    default = _autocheckpoint(conn) // 20
    conn.execute(f"PRAGMA wal_autocheckpoint = {default}")
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    wal = Path(f"{db}-wal")

    largest = 0
    with ledger.bulk() as bulk:
        assert _autocheckpoint(conn) == bound
        for i in range(0, len(files), 4):
            _commit_all(ledger, table, files[i : i + 4])
            bulk.flush()
            largest = max(largest, wal.stat().st_size)
    assert _autocheckpoint(conn) == default
    # More than one default checkpoint's worth went into the WAL before it was folded in
    # (else the bound changed nothing here), and never much more than the bound.
    assert default * page < largest < (bound + 100) * page

    with pytest.raises(RuntimeError), ledger.bulk():
        raise RuntimeError("a failed catch-up")
    assert _autocheckpoint(conn) == default
    conn.close()
