"""The issue-2 benchmark runs end to end (``--quick``) and its correctness cross-check passes.

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
    "corpus_bytes",
    "corpus_files",
    "corpus_jsonl_files",
    "corpus_usage_lines",
    "sufd_events",
    "cold_ingest_s",
    "cold_ingest_cpu_s",
    "cold_ingest_mb_per_s",
    "cold_ingest_peak_rss_mb",
    "ccusage_cold_s",
    "ccusage_cold_cpu_s",
    "ccusage_warm_median_s",
    "ccusage_peak_rss_mb",
    "ccusage_native_warm_median_s",
    "cold_ratio_vs_ccusage_cold",
    "cold_ratio_vs_ccusage_warm",
    "paired_cold_ingest_s",
    "paired_ccusage_s",
    "cold_ratio_paired_median",
    "report_median_ms",
    "report_p95_ms",
    "report_speedup_vs_ccusage_warm",
    "report_speedup_vs_ccusage_native_warm",
    "reingest_s",
    "small_corpus_bytes",
    "small_cold_ingest_s",
    "small_peak_rss_mb",
    "big_file_bytes",
    "big_cold_ingest_s",
    "big_peak_rss_mb",
    "rss_growth_main_vs_small",
    "rss_growth_big_vs_small",
    "correctness_days",
    "correctness_passed",
    "store_bytes",
    "store_bytes_per_event",
}
OPTIONAL = {"ccusage_native_warm_median_s", "report_speedup_vs_ccusage_native_warm"}


@pytest.mark.timeout(90)
def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    ccusage = ccusage_bin()
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUFD_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.ingest_bench",
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
        timeout=85,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())

    figures = result["figures"]
    assert set(figures) == EXPECTED_FIGURES
    paired = ("paired_cold_ingest_s", "paired_ccusage_s")
    for key in paired:  # the first cold run of each and the alternating ones
        assert len(figures[key]) == 5 and all(v > 0 for v in figures[key]), figures[key]
    assert figures["paired_cold_ingest_s"][0] == figures["cold_ingest_s"]
    for key in EXPECTED_FIGURES - OPTIONAL - {"correctness_passed", *paired}:
        value = figures[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)
    assert figures["correctness_passed"] is True
    assert result["details"]["cross_check"]["problems"] == []
    assert figures["correctness_days"] >= 10
    assert result["details"]["reingest"]["read_nothing"] is True
    store = result["details"]["store"]
    assert store["events"] == figures["sufd_events"]
    assert figures["store_bytes_per_event"] == store["bytes"] / store["events"]
    assert store["objects"]["events"]["bytes"] > 0, store["measured_with"]
    assert "store footprint after cold ingest" in proc.stdout

    assert all(row["passed"] in (True, False, None) for row in result["checks"])
    for key in ("date", "nproc", "cpu_model", "python", "sqlite", "ccusage"):
        assert result["machine"][key], key
    assert {"bytes", "files", "jsonl_files", "usage_lines"} <= set(result["corpus"])
    assert "PASS" in proc.stdout
    assert not list((tmp_path / "work").iterdir()), "the run's directory was not removed"
