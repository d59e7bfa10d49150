"""Long fuzzing run of every source parser: ``python -m benchmarks.fuzz_bench --examples 1000``.

Runs ``tests/test_fuzz_sources.py`` (see its docstring for the properties) with
``SUFD_FUZZ_EXAMPLES`` random examples per test instead of the default suite's small,
derandomized budget, and summarises Hypothesis' statistics: examples run per test (passing,
failing, invalid), the time spent generating and running them, and pytest's outcome. A failing
example is printed by pytest as usual, with the ``@reproduce_failure`` blob to replay it.

``--json-out`` also writes the summary as JSON. Exit status: pytest's (0 = every property held).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, new_parser, utc_now, write_json

__all__ = ["main", "parse_statistics"]

TEST_FILE = "tests/test_fuzz_sources.py"
_HEADER = re.compile(r"^(tests/\S+::\S+):$")
_PHASE = re.compile(r"^\s*- during (\w+) phase \(([\d.]+) seconds\):")
_COUNTS = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")
_SUMMARY = re.compile(r"^=* ?(\d+ (?:passed|failed).*) in [\d.]+s")


def parse_statistics(output: str) -> dict[str, dict[str, Any]]:
    """Per test id: examples passing/failing/invalid and seconds, summed over phases."""
    tests: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in output.splitlines():
        if m := _HEADER.match(line.strip()):
            current = tests.setdefault(
                m[1], {"passing": 0, "failing": 0, "invalid": 0, "seconds": 0.0}
            )
        elif current is not None and (m := _PHASE.match(line)):
            current["seconds"] = round(current["seconds"] + float(m[2]), 2)
        elif current is not None and (m := _COUNTS.search(line)):
            current["passing"] += int(m[1])
            current["failing"] += int(m[2])
            current["invalid"] += int(m[3])
    return tests


def _parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "fuzz_bench",
        "Fuzz every sufd source parser through the real ingest boundary with"
        " EXAMPLES random examples per test; print what ran and whether every property held.",
    )
    parser.add_argument(
        "--examples", type=int, default=1000, help="examples per test (default 1000)"
    )
    parser.add_argument("--seed", type=int, help="Hypothesis seed (default: random)")
    parser.add_argument("-k", dest="select", help="pytest -k expression to run a subset")
    parser.add_argument("--json-out", type=Path, help="also write the summary as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.examples < 1:
        print("--examples must be at least 1", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "pytest", TEST_FILE, "-q", "-p", "no:cacheprovider"]
    cmd += ["--hypothesis-show-statistics", "-o", "timeout=0"]
    if args.seed is not None:
        cmd.append(f"--hypothesis-seed={args.seed}")
    if args.select:
        cmd += ["-k", args.select]
    env = dict(os.environ, SUFD_FUZZ_EXAMPLES=str(args.examples))
    print(f"$ SUFD_FUZZ_EXAMPLES={args.examples} {' '.join(cmd[1:])}", file=sys.stderr)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    stats = parse_statistics(proc.stdout)
    summary = next(
        (m[1] for line in proc.stdout.splitlines() if (m := _SUMMARY.match(line))), "no summary"
    )
    if proc.returncode != 0:
        # The failures (with their @reproduce_failure blobs), not the statistics after them.
        print(proc.stdout.split("Hypothesis Statistics", 1)[0])
        print(proc.stderr[-5_000:], file=sys.stderr)
    width = max((len(t.split("::", 1)[1]) for t in stats), default=10)
    print(f"{'test':<{width}}  {'passing':>8} {'failing':>8} {'invalid':>8} {'seconds':>8}")
    for test, s in sorted(stats.items()):
        name = test.split("::", 1)[1]
        print(
            f"{name:<{width}}  {s['passing']:>8} {s['failing']:>8} {s['invalid']:>8}"
            f" {s['seconds']:>8.1f}"
        )
    total = sum(s["passing"] + s["failing"] for s in stats.values())
    failing = sum(s["failing"] for s in stats.values())
    print(
        f"\n{len(stats)} fuzz tests, {total:,} examples ({failing} failing) in {wall:.0f} s;"
        f" pytest: {summary}"
    )
    if args.json_out is not None:
        report = {
            "when": utc_now(),
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "examples_per_test": args.examples,
            "seed": args.seed,
            "wall_s": round(wall, 1),
            "examples": total,
            "failing": failing,
            "pytest": summary,
            "exit": proc.returncode,
            "tests": stats,
        }
        write_json(args.json_out, report)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
