"""The issue-3 daemon benchmark runs end to end (``--quick``) and reports every figure.

Only the shape of the results is checked here; the timing targets belong to the benchmark itself
(see BENCHMARKS.md), not to the test suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ccusage import ccusage_bin

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

EXPECTED_FIGURES = {
    "history_bytes",
    "history_files",
    "ingest_s",
    "daemon_ready_ms",
    "catchup_scan_ms",
    "writers",
    "write_window_s",
    "latency_samples",
    "latency_unmatched",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "load_cpu_s_per_60s",
    "idle_window_s",
    "idle_cpu_s",
    "idle_cpu_s_per_60s",
    "idle_cycles",
    "idle_rss_mb",
    "peak_rss_mb",
    "statusline_first_ms",
    "statusline_median_ms",
    "statusline_cpu_median_ms",
    "statusline_with_paths_median_ms",
    "sufctl_statusline_first_ms",
    "sufctl_statusline_median_ms",
    "python_startup_median_ms",
    "daemon_statusline_rtt_median_ms",
    "ccusage_cold_ms",
    "ccusage_warm_median_ms",
    "ccusage_warm_cpu_median_ms",
    "ccusage_cached_median_ms",
    "session_cost_sufd",
    "session_cost_report",
    "session_cost_ccusage",
    "session_cost_match",
}
# Counts that may legitimately be zero in a short run. The idle window of a quick run is
# 10 s and CPU time is counted in 10 ms ticks, so the idle CPU (and its per-minute rate,
# derived from it) can be no tick at all.
MAY_BE_ZERO = {
    "latency_unmatched",
    "idle_cycles",
    "idle_cpu_s",
    "idle_cpu_s_per_60s",
    "catchup_scan_ms",
}


@pytest.mark.timeout(150)
def test_quick_daemon_benchmark_reports_every_figure(tmp_path: Path) -> None:
    ccusage = ccusage_bin()
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUFD_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.daemon_bench",
            "--quick",
            "--json-out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--ccusage",
            str(ccusage),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())

    figures = result["figures"]
    assert set(figures) == EXPECTED_FIGURES
    for key in EXPECTED_FIGURES - {"session_cost_match", "session_cost_ccusage"}:
        value = figures[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value >= 0 if key in MAY_BE_ZERO else value > 0, (key, value)
    assert figures["session_cost_match"] is True
    assert figures["latency_unmatched"] == 0
    assert figures["writers"] == 20

    assert all(row["passed"] in (True, False, None) for row in result["checks"])
    for key in ("date", "nproc", "memory_gb", "cpu_model", "python", "sqlite", "ccusage"):
        assert result["machine"][key], key
    assert {"bytes", "files"} <= set(result["corpus"])
    assert "PASS" in proc.stdout
    assert not list((tmp_path / "work").iterdir()), "the run's directory was not removed"
