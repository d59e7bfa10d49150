"""Long crash campaign: ``python -m benchmarks.crash_bench --kills 1000``.

The same campaign as ``tests/test_chaos.py::test_crash_campaign_ci`` (see
:mod:`tests.chaos.harness`), with many more SIGKILLs and a larger corpus: the real daemon is
killed at start-up and during ledger migration, during the catch-up of large backlogs written
while it was down, during large ingests, while watching and right after pause/resume commands,
and restarted each time, while writers stream Claude Code and Codex files (split mid-line,
truncated and rewritten, replaced by new inodes) and rewrite Cline tasks and a Cursor database.
At the end the ledger is compared, event by event, with a one-shot ``sufd ingest`` of the final
files into a fresh store.

The report goes to stdout (progress to stderr); ``--json-out`` writes it as JSON with the
machine and the rate (kills per minute). Exit status: 0 when every kill was survived and the
ledgers are equal, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import git_describe, new_parser, utc_now, write_json
from sufd import __version__
from tests.chaos.harness import Report, run_crash_campaign

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "crash_bench",
        "SIGKILL the real sufd daemon KILLS times while agents write, restart it"
        " each time, then check that its ledger equals a one-shot `sufd ingest` of the final"
        " files (events, aggregates, per-file cursors). Prints the report; exit 0 = no"
        " mismatch and every restart came up.",
    )
    parser.add_argument("--kills", type=int, default=1000, help="SIGKILLs (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    parser.add_argument("--json-out", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--corpus-mb",
        type=float,
        help="Claude/Codex corpus written over the campaign (default: 0.4 MB per kill, >= 60)",
    )
    parser.add_argument(
        "--backlog-mb",
        type=float,
        help="written while the daemon is down before each backlog step (default: half the"
        " corpus over the backlogs, at most 25)",
    )
    parser.add_argument(
        "--backlogs", type=int, help="backlog steps (default: one per 80 kills, 1 to 8)"
    )
    parser.add_argument(
        "--burst-mb", type=float, default=2.0, help="written at once in a burst step (default 2)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="where to work (default: a new temporary directory)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def _git() -> str | None:
    """The commit the daemon ran from (``-dirty``: with uncommitted changes)."""
    return git_describe(timeout=10) or None


def _machine() -> dict[str, Any]:
    return {
        "date": utc_now(),
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sufd": __version__,
        "git": _git(),
        "loadavg": list(os.getloadavg()),
    }


def _result(
    report: Report, args: argparse.Namespace, argv: Sequence[str], git_at_start: str | None
) -> dict[str, Any]:
    kill_s = report.phases_s.get("kills", 0.0)
    machine = _machine()
    # Every restart runs the sufd of the working tree at that moment.
    machine["git_at_start"] = git_at_start
    return {
        "schema": 1,
        "benchmark": "crash campaign",
        "command": " ".join(["python -m benchmarks.crash_bench", *argv]),
        "machine": machine,
        "settings": {
            "kills": args.kills,
            "seed": args.seed,
            "corpus_mb": args.corpus_mb,
            "backlog_mb": args.backlog_mb,
            "backlogs": args.backlogs,
            "burst_mb": args.burst_mb,
        },
        "kills_per_minute": round(report.kills / kill_s * 60, 1) if kill_s else None,
        "report": report.as_dict(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the campaign; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.kills < 1:
        print("crash_bench: --kills must be at least 1", file=sys.stderr)
        return 2
    if args.corpus_mb is None:
        args.corpus_mb = max(60.0, 0.4 * args.kills)
    if args.backlogs is None:
        args.backlogs = max(1, min(args.kills // 80, 8))
    if args.backlog_mb is None:
        args.backlog_mb = min(25.0, 0.5 * args.corpus_mb / args.backlogs)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sufd-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    git_at_start = _git()
    progress(f"work dir {workdir}; {args.kills} kills, corpus {args.corpus_mb:g} MB")
    try:
        report = run_crash_campaign(
            workdir,
            args.kills,
            args.seed,
            corpus_mb=args.corpus_mb,
            backlog_mb=args.backlog_mb,
            backlogs=args.backlogs,
            burst_mb=args.burst_mb,
            log=progress,
        )
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result = _result(report, args, argv, git_at_start)
    print(report.summary())
    print(f"  rate: {result['kills_per_minute']} kills per minute of campaign;")
    print(f"  sufd {__version__} at {git_at_start} (start) .. {result['machine']['git']} (end)")
    for failure in report.failures[:3]:
        print(f"\n{failure}")
    if args.json_out:
        write_json(args.json_out, result, indent=1)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
