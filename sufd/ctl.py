"""``sufctl``: the client. Reports read the ledger directly (read-only), so they work whether
the daemon runs or not.

Exit codes follow supervisorctl: 0 ok, 1 error, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sufd.errors import ConfigError, SufdError

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sufctl",
        description="Query and control sufd, the AI coding-agent usage ledger.",
    )
    parser.add_argument(
        "--config", type=Path, help="config file (default: the platform config dir)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    report = sub.add_parser(
        "report",
        help="usage and cost from the ledger",
        description="Tokens and USD cost from the ledger, grouped by period, session, project or"
        " model. Works whether or not the daemon is running.",
    )
    report.add_argument(
        "kind",
        choices=("daily", "weekly", "monthly", "session", "project", "model"),
        help="how to group: daily/weekly (weeks start on Monday)/monthly by local date,"
        " session, project (the agent's working directory) or model",
    )
    report.add_argument(
        "--json", action="store_true", help="machine-readable output (ccusage's field names)"
    )
    report.add_argument(
        "--since", metavar="DATE", help="first local date to include (YYYY-MM-DD or YYYYMMDD)"
    )
    report.add_argument("--until", metavar="DATE", help="last local date to include (inclusive)")
    report.add_argument(
        "-z",
        "--timezone",
        metavar="ZONE",
        help="IANA zone for dates (default: config, else the system zone)",
    )
    report.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="only these agents (repeat or comma-separate), e.g. claude,codex",
    )
    report.add_argument(
        "--breakdown", action="store_true", help="one line per model under each row"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sufctl``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return _report(args)
    except SufdError as exc:
        print(f"sufctl: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _report(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from sufd import settings as settings_mod
    from sufd.report import ReportQuery, build_report, parse_day
    from sufd.store import open_readonly

    settings = settings_mod.load(args.config)
    zone_name = args.timezone or settings_mod.local_zone(settings)
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"--timezone {zone_name!r} is not an IANA time zone (e.g. Europe/Berlin)"
        ) from None
    sources = tuple(s.strip() for item in args.source for s in item.split(",") if s.strip())
    unknown = [s for s in sources if s not in settings_mod.KNOWN_SOURCES]
    if unknown:
        raise ConfigError(
            f"unknown source {unknown[0]!r} (known: {', '.join(settings_mod.KNOWN_SOURCES)})"
        )
    try:
        since = parse_day(args.since) if args.since else None
        until = parse_day(args.until) if args.until else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    query = ReportQuery(args.kind, zone, since, until, sources)
    conn = open_readonly(settings.paths.db)
    try:
        report = build_report(conn, query)
    finally:
        conn.close()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from sufd.render import report_table

        print(report_table(report, args.kind, breakdown=args.breakdown))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
