"""The daemon's keeper holds one descriptor per ledger file and never drops SQLite's locks
(issue 12 item 1), also when that descriptor cannot be opened."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import pytest

from sufd.daemon.keeper import StoreKeeper
from sufd.store import faults, health, open_store


def keeper(db: Path) -> StoreKeeper:
    return StoreKeeper(
        db,
        concurrent.futures.ThreadPoolExecutor(1),
        make_ingestor=lambda conn: None,  # type: ignore[arg-type,return-value]
        rescan=lambda reason: None,
        wake=lambda: None,
        replaced=lambda: None,
    )


def open_fds(path: Path) -> int:
    fd_dir = Path(f"/proc/{os.getpid()}/fd")
    return sum(1 for fd in fd_dir.iterdir() if os.path.realpath(fd) == str(path))


def test_one_pin_per_file_and_the_heartbeat_reads_through_it(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    open_store(db).close()
    k = keeper(db)
    k._pin_ledger()
    k._pin_ledger()  # reopening the writer on the same file reuses the descriptor
    assert len(k._pins) == 1 and k._pin is not None
    assert k.store.opened == health.identity(db)
    assert health.file_problem(db, k._pin) is None
    db.write_bytes(b"not a database at all!")
    fault = health.file_problem(db, k._pin)
    assert fault is not None and fault.reason == faults.CORRUPT
    k._unpin_all()
    assert open_fds(db) == 0


def test_a_pin_that_cannot_be_opened_leaves_the_deletion_to_the_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file vanished between SQLite's open and the pin: no crash at start; the
    heartbeat's check (existence only, without a pin) reports it deleted."""
    db = tmp_path / "ledger.sqlite3"
    open_store(db).close()
    k = keeper(db)

    def vanished(path: Path) -> health.Pin:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(health, "Pin", vanished)
    k._pin_ledger()
    assert k._pin is None and k.store.opened is None
    db.unlink()
    fault = health.file_problem(db, k._pin)
    assert fault is not None and fault.reason == faults.DELETED
