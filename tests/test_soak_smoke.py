"""The issue-6 soak runs end to end for ~30 s and writes its CSV, PNG and JSON.

Only the shape of the results and the ledger's correctness are checked here; whether the curves
stay flat is the soak's own verdict over a real run (see BENCHMARKS.md), not the test suite's.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak_bench import COLUMNS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The daemon's periodic full scan runs every 60 s: none may fall in a 30 s run.
MAY_BE_EMPTY = {"scan_ms"}


@pytest.mark.timeout(180)
def test_short_soak_writes_every_column_and_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result_file = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUFD_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.soak_bench",
            "--minutes",
            "0.5",
            "--interval",
            "2",
            "--rate",
            "10",
            "--writers",
            "2",
            "--history-mb",
            "1",
            "--log-max-bytes",
            "8192",
            "--out",
            str(out),
            "--json-out",
            str(result_file),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    # 1 = a flatness check failed, which a 30 s run may well do; 2 = it did not run.
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"

    with (out / "soak.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    assert len(rows) >= 10, len(rows)  # 30 s at one row per 2 s
    for column in set(COLUMNS) - MAY_BE_EMPTY:
        assert any(row[column] != "" for row in rows), f"column {column} is always empty"
    assert {row["phase"] for row in rows} == {"warmup", "soak"}
    assert float(rows[-1]["events_since_start"]) > 0
    assert int(rows[-1]["session_files_created"]) > 0

    png = (out / "soak.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000

    result = json.loads(result_file.read_text())
    names = {check["name"]: check["passed"] for check in result["checks"]}
    assert names["requests in the ledger with their final tokens"] is True
    assert names["events the ledger gained"] is True
    assert names["daemon stayed up (same pid)"] is True
    # An 8 kB log rotates within seconds: the follower saw it, and the directory stayed bounded.
    assert names["log rotations seen"] is True
    assert names["log dir total, max over the run"] is True
    assert all(check["passed"] in (True, False, None) for check in result["checks"])
    assert ("PASS" in proc.stdout) and ("requests in the ledger" in proc.stdout)
    assert not list((tmp_path / "work").iterdir()), "the run's directory was not removed"
