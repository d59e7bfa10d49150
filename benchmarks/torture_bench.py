"""Long concurrency torture: ``python -m benchmarks.torture_bench --kills 500 --ops 20000``.

The same run as ``tests/test_torture.py`` (see :mod:`tests.torture`), longer: the live
daemon, SIGKILLed and restarted KILLS times at random, while an agent appends usage lines to
many session files (deleting each file once its events are committed) and ``sufd ingest``,
``sufctl report daily --json``, the status line, ``sufd doctor`` and a plain ``sqlite3`` read
run in loops. It goes on until both the kills and at least OPS operations are done. At the
end every event must be in the ledger exactly once, ``PRAGMA integrity_check`` must be ``ok``
and no process may ever have seen the daemon's WAL deleted.

Prints the report (progress to stderr); ``--json-out`` also writes it as JSON. Exit status:
0 when the verdict is OK, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import git_describe, new_parser, utc_now, write_json
from sufd import __version__
from tests.torture import CLIENTS, run_torture

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "torture_bench",
        "SIGKILL the live sufd daemon KILLS times at random while an agent writes and deletes"
        " session files and every client (sufd ingest, reports, the status line, sufd doctor,"
        " a plain sqlite3 read) runs in a loop; then check that every event is in the ledger"
        " exactly once. Exit 0 = OK.",
    )
    parser.add_argument("--kills", type=int, default=500, help="SIGKILLs (default 500)")
    parser.add_argument(
        "--ops", type=int, default=20_000, help="operations at least, all kinds (default 20000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    parser.add_argument("--json-out", type=Path, help="also write the report as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the torture; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.kills < 1 or args.ops < 1:
        print("torture_bench: --kills and --ops must be at least 1", file=sys.stderr)
        return 2
    git = git_describe(timeout=10)
    # Appends are about 70 % of the operations when every client loops (see tests.torture).
    appends = int(args.ops * 0.7)
    print(
        f"[{time.strftime('%H:%M:%S')}] torture: {args.kills} kills, >= {args.ops} operations"
        f" (>= {appends} appends), clients {', '.join(CLIENTS)}",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="sufd-torture-") as tmp:
        report = run_torture(
            Path(tmp),
            kills=args.kills,
            appends=appends,
            seed=args.seed,
            min_operations=args.ops,
        )
    print(report.summary())
    print(f"  sufd {__version__} at {git}; {os.cpu_count()} CPUs, {platform.platform()}")
    for failure in report.failures[:5]:
        print(f"\n{failure}")
    if args.json_out:
        result = {
            "schema": 1,
            "benchmark": "concurrency torture",
            "command": " ".join(["python -m benchmarks.torture_bench", *argv]),
            "machine": {"date": utc_now(), "nproc": os.cpu_count(), "git": git},
            "report": report.as_dict(),
        }
        write_json(args.json_out, result, indent=1)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
