"""The issue-5 sources benchmark runs end to end (``--quick``) and reports every figure.

Only the shape of the results is checked here; what the timings mean is discussed in
BENCHMARKS.md, not asserted by the test suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

EXPECTED_FIGURES = {
    "cline_file_kb",
    "cline_rows",
    "cline_samples",
    "cline_unmatched",
    "cline_p50_ms",
    "cline_p95_ms",
    "cline_max_ms",
    "cursor_db_mb",
    "cursor_samples",
    "cursor_unmatched",
    "cursor_p50_ms",
    "cursor_p95_ms",
    "cursor_max_ms",
    "big_db_mb",
    "big_bubble_rows",
    "big_events",
    "floor_json_s",
    "floor_orjson_s",
    "cold_ingest_s",
    "cold_ingest_inproc_s",
    "cold_ingest_rss_mb",
    "cold_ingest_mb_per_s",
    "full_check_s",
    "full_check_inproc_s",
    "full_check_rss_mb",
    "full_check_rows_per_s",
    "full_check_mb_per_s",
    "full_check_floor_ratio",
    "unchanged_ingest_s",
    "unchanged_ingest_inproc_ms",
    "incremental_ingest_s",
    "incremental_ingest_inproc_ms",
    "daemon_full_check_ms",
    "daemon_full_check_floor_ratio",
    "daemon_full_check_rows_per_s",
    "daemon_full_check_mb_per_s",
    "daemon_unchanged_check_ms",
    "daemon_big_incremental_p50_ms",
    "daemon_big_incremental_cycle_ms",
    "daemon_rss_before_full_mb",
    "daemon_peak_rss_mb",
    "claude_idle_p50_ms",
    "claude_during_full_check_ms",
    "claude_blocked_ms",
    "ping_during_full_check_max_ms",
    "load1_mean",
    "load1_max",
}
# May legitimately be zero (or, for the blocked time, negative: the line came after the check).
MAY_BE_ZERO = {
    "cline_unmatched",
    "cursor_unmatched",
    "unchanged_ingest_inproc_ms",
    "incremental_ingest_inproc_ms",
    "daemon_unchanged_check_ms",
    "daemon_big_incremental_cycle_ms",
    "load1_mean",
    "load1_max",
}
SIGNED = {"claude_blocked_ms"}


@pytest.mark.timeout(120)
def test_quick_sources_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUFD_")}
    # The work directory stays in the system temp (the default): the daemon's socket lives
    # in it, and a pytest tmp_path is too long for a Unix socket path.
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sources_bench", "--quick", "--json-out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())

    figures = result["figures"]
    assert set(figures) == EXPECTED_FIGURES
    for key, value in figures.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value == value, (key, value)  # not NaN
        if key not in SIGNED:
            assert value >= 0 if key in MAY_BE_ZERO else value > 0, (key, value)
    assert figures["cline_unmatched"] == 0 and figures["cursor_unmatched"] == 0
    assert figures["cline_samples"] > 0 and figures["cursor_samples"] > 0

    for key in ("date", "nproc", "memory_gb", "cpu_model", "python", "sqlite"):
        assert result["machine"][key], key
    assert len(result["table"]) >= 10 and all(len(row) == 3 for row in result["table"])
    assert "Cline rewrite -> commit" in proc.stdout
    assert result["work_dir"] is None
