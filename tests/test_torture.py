"""Issue 12: the concurrency torture at CI size (see :mod:`tests.torture`).

The long run is ``python -m benchmarks.torture_bench`` (≥ 500 kills, ≥ 20,000 operations).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.torture import CLIENTS, run_torture

pytestmark = pytest.mark.integration


def test_torture_ci(tmp_path: Path) -> None:
    """Every client at once, the daemon SIGKILLed at random, each source file deleted once
    its events are committed: every event is in the ledger exactly once, the file is sound,
    and no process ever saw the daemon's WAL deleted."""
    report = run_torture(tmp_path, kills=12, appends=300, seed=1212)
    print(report.summary())
    assert report.failures == []
    assert report.wal_deleted_seen == 0
    assert report.kills == 12
    assert all(report.ops[name] >= 3 for name in CLIENTS), report.ops
    assert report.files_deleted >= 100
    assert report.events_expected >= 300
    assert report.missing == 0 and report.duplicated == 0
    assert report.events_found == report.events_expected
    assert report.integrity == "ok"
    assert report.ok
