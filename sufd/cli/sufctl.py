"""``sufctl``: the client. Control verbs talk to the daemon over its socket; reports read the
ledger directly (read-only), so they work whether the daemon runs or not.

Exit codes follow supervisorctl: ``status`` exits 0 when the daemon runs, 3 when it does not,
4 when its state is unknown (timeout, permission, protocol mismatch); other commands exit 0
on success, 1 on an error from the daemon, 2 on a usage error, 4 when the daemon cannot be
reached properly and 7 when it is not running. Any command the running daemon turns away
for now (``busy``, e.g. a ``tail`` beyond its stream limit) exits 75 (``EX_TEMPFAIL``: try
again later). Every command exits 6 when the daemon at the socket serves another ledger than
the one the settings name (nothing is sent to it), and 78 (``EX_CONFIG``) when the
configuration is invalid: never a fallback to default paths, which could reach the daemon of
another configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sufd.cli.args import switch, until_reader_leaves
from sufd.errors import ConfigError, SufdError

if TYPE_CHECKING:
    import sqlite3

    from sufd.settings import Settings

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_STATUS_NOT_RUNNING, EXIT_UNKNOWN, EXIT_OTHER_LEDGER, EXIT_NOT_RUNNING = 3, 4, 6, 7
EXIT_BUSY = 75  # sysexits.h EX_TEMPFAIL
EXIT_CONFIG = 78
_COMMANDS = frozenset(
    ("report", "statusline", "status", "pause-watcher", "resume-watcher", "rescan", "reload")
    + ("ping", "shutdown", "tail")
)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (skipping ``--config VALUE``), if any."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that subcommand's part.

    Building every subcommand's parser costs tens of milliseconds, which a status line or a
    report called from a script should not pay for commands it does not use.
    """
    parser = argparse.ArgumentParser(
        prog="sufctl",
        description="Query and control sufd, the AI coding-agent usage ledger.",
    )
    parser.add_argument(
        "--config", type=Path, help="config file (default: the platform config dir)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    if only in (None, "report"):
        _add_report(sub)
    if only in (None, "statusline"):
        _add_statusline(sub)
    if only is None or only not in ("report", "statusline"):
        _add_control_verbs(sub)
    return parser


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    switch(report, "--json", help="machine-readable output (ccusage's field names)")
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
    switch(report, "--breakdown", help="one line per model under each row")


def _add_control_verbs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def verb(name: str, help_text: str, *, sources: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        switch(p, "--json", help="print the daemon's reply as JSON")
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
        if sources:
            p.add_argument(
                "sources", nargs="*", metavar="SOURCE", help="claude, codex, ... (default: all)"
            )
        return p

    verb("status", "the daemon's state, roots, files, events, last cycle and store size")
    pause = verb(
        "pause-watcher",
        "stop observing sources (the daemon keeps serving); persists across restarts",
        sources=True,
    )
    pause.add_argument(
        "--for", dest="duration", metavar="DURATION", help="expire after e.g. 30s, 10m, 2h"
    )
    pause.add_argument("--reason", metavar="TEXT", default="", help="shown in status")
    verb(
        "resume-watcher",
        "observe again; everything written during the pause is ingested",
        sources=True,
    )
    verb("rescan", "compare every file with its cursor now and ingest what is new", sources=True)
    verb("reload", "re-read the config file (an invalid one: exit 78, the daemon keeps its own)")
    verb("ping", "check that the daemon answers")
    verb("shutdown", "stop the daemon (under a service manager prefer `sufd stop`)")
    tail = verb("tail", "stream usage events live as the daemon commits them")
    tail.add_argument("--count", type=int, default=0, help="stop after N events (default: never)")


def _add_statusline(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sl = sub.add_parser(
        "statusline",
        help="one line for Claude Code's status line (reads its JSON on stdin)",
        description="Session cost, today's cost and the last hour's spend. For Claude Code's"
        " settings, the lighter `sufd-statusline` command does the same.",
    )
    sl.add_argument("--socket", help=argparse.SUPPRESS)
    sl.add_argument("--db", help=argparse.SUPPRESS)


@until_reader_leaves
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sufctl``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    parser = _parser(command if command in _COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return _report(args)
        if args.command == "statusline":
            from sufd.cli.statusline import main as statusline_main

            extra = [
                a
                for pair in (("--socket", args.socket), ("--db", args.db))
                if pair[1]
                for a in pair
            ]
            return statusline_main(extra)
        return _control(args)
    except _BadSettings as exc:
        print(f"sufctl: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SufdError as exc:
        print(f"sufctl: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


class _BadSettings(SufdError):
    """The configuration (file, environment) cannot be resolved: exit 78, not a usage error."""


def _settings(config: Path | None) -> Settings:
    from sufd.settings import load

    try:
        return load(config)
    except ConfigError as exc:
        raise _BadSettings(str(exc)) from exc


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``10m``, ``2h``, ``1d`` → seconds.

    Raises:
        ConfigError: not a positive duration.
    """
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _DURATION_UNITS else "s"
    number = value[:-1] if value[-1:] in _DURATION_UNITS else value
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ConfigError(f"--for {text!r} is not a duration (e.g. 30s, 10m, 2h)") from None
    if seconds <= 0:
        raise ConfigError(f"--for {text!r} must be positive")
    return seconds


def _control(args: argparse.Namespace) -> int:
    from sufd.control import client

    # A broken config is an error, never a fallback to the default paths: those may lead to
    # the daemon of another configuration (the shared runtime dir), which `reload` would
    # then reload. The running daemon keeps its configuration meanwhile.
    paths = _settings(args.config).paths
    socket_path, db = paths.socket, paths.db
    cmd = args.command
    call_args = _call_args(args)
    try:
        # Which daemon answers: one serving another ledger gets nothing but this question.
        client.hello(socket_path, db, timeout=args.timeout)
        if cmd == "tail":
            return _tail(socket_path, args)
        result = client.call(socket_path, cmd, call_args, timeout=args.timeout)
    except client.OtherLedger as exc:
        print(f"sufctl: {exc}", file=sys.stderr)
        if cmd == "status" and args.json:
            print(json.dumps({"state": "other-ledger", "db": str(db), "daemon_db": exc.theirs}))
        return EXIT_OTHER_LEDGER
    except client.DaemonNotRunning as exc:
        print(f"sufctl: {exc}", file=sys.stderr)
        if cmd == "status" and args.json:
            print(json.dumps({"state": "not-running"}))
        return EXIT_STATUS_NOT_RUNNING if cmd == "status" else EXIT_NOT_RUNNING
    except client.DaemonUnreachable as exc:
        print(f"sufctl: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except client.DaemonBusy as exc:
        print(f"sufctl: sufd is busy and turned {cmd} away: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except client.DaemonError as exc:
        print(f"sufctl: {cmd} failed: {exc} [{exc.code}]", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result, indent=2))
    elif cmd == "status":
        from sufd.cli.status_text import render_status

        print(render_status(result))
    else:
        print(_summary(cmd, result))
    return EXIT_OK


def _check_sources(names: Sequence[str]) -> None:
    """Raises :class:`ConfigError` naming the first of ``names`` that is not a source."""
    from sufd.settings import KNOWN_SOURCES

    unknown = [s for s in names if s not in KNOWN_SOURCES]
    if unknown:
        raise ConfigError(f"unknown source {unknown[0]!r} (known: {', '.join(KNOWN_SOURCES)})")


def _call_args(args: argparse.Namespace) -> dict[str, object]:
    call_args: dict[str, object] = {}
    if hasattr(args, "sources"):
        _check_sources(args.sources)
        call_args["sources"] = list(args.sources)
    if args.command == "pause-watcher":
        if args.duration:
            call_args["for_s"] = parse_duration(args.duration)
        call_args["reason"] = args.reason
        call_args["pid"] = os.getpid()
    return call_args


def _summary(cmd: str, result: dict[str, object]) -> str:
    if cmd == "pause-watcher":
        from sufd.cli.status_text import clock

        until = result.get("until")
        tail = "" if until is None else f" until {clock(float(until))}"  # type: ignore[arg-type]
        return f"paused: {', '.join(result['paused'])}{tail}"  # type: ignore[arg-type]
    if cmd == "resume-watcher":
        return (
            f"resumed: {', '.join(result['resumed'])} (catching up on what was written meanwhile)"  # type: ignore[arg-type]
        )
    if cmd == "rescan":
        return f"rescan scheduled: {', '.join(result['scheduled'])}"  # type: ignore[arg-type]
    if cmd == "reload":
        return f"configuration reloaded ({result.get('roots')} roots)"
    if cmd == "shutdown":
        return f"sufd (pid {result.get('pid')}) is stopping"
    return f"pong from sufd pid {result.get('pid')}"


def _tail(socket_path: Path, args: argparse.Namespace) -> int:
    from sufd.control import client

    seen = 0
    try:
        for event in client.stream(socket_path, "tail", {}, timeout=args.timeout):
            if args.json:
                print(json.dumps(event), flush=True)
            else:
                mark = "~" if event.get("replaced") else "+"
                print(
                    f"{mark} {event['ts']} {event['source']:<7} {event.get('model') or '-':<28}"
                    f" in {event['input']:>8,} out {event['output']:>7,} cache r/w"
                    f" {event['cache_read']:>9,}/{event['cache_write']:>8,}  ${event['cost']:.4f}",
                    flush=True,
                )
            seen += 1
            if args.count and seen >= args.count:
                return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from sufd import settings as settings_mod
    from sufd.cli.freshness import freshness
    from sufd.cli.report import ReportQuery, build_report, parse_day

    settings = _settings(args.config)
    zone_name = args.timezone or settings_mod.local_zone(settings)
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"--timezone {zone_name!r} is not an IANA time zone (e.g. Europe/Berlin)"
        ) from None
    sources = tuple(s.strip() for item in args.source for s in item.split(",") if s.strip())
    _check_sources(sources)
    try:
        since = parse_day(args.since) if args.since else None
        until = parse_day(args.until) if args.until else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    query = ReportQuery(args.kind, zone, since, until, sources)
    conn = _ledger_or_empty(settings)
    try:
        report = build_report(conn, query)
        fresh = freshness(settings, conn if settings.paths.db.exists() else None)
    finally:
        conn.close()
    report["freshness"] = fresh.as_dict()
    if args.json:
        # The C encoder is used only without indent; pretty-print for people, not pipes.
        indent = 2 if sys.stdout.isatty() else None
        sys.stdout.write(json.dumps(report, indent=indent) + "\n")
    else:
        from sufd.cli.render import report_table

        print(report_table(report, args.kind, breakdown=args.breakdown))
        note = fresh.note()
        if note:
            print(note)
    return EXIT_OK


def _ledger_or_empty(settings: Settings) -> sqlite3.Connection:
    """The ledger, read-only; an empty one while a running daemon has not created it yet.

    Raises:
        StoreError: there is no ledger and no daemon that will make one.
    """
    from sufd.cli.freshness import daemon_of
    from sufd.errors import StoreError
    from sufd.store import open_readonly

    try:
        return open_readonly(settings.paths.db)
    except StoreError:
        if settings.paths.db.exists() or daemon_of(settings)[0] != "running":
            raise
    import sqlite3

    from sufd.store.migrations import apply_migrations

    conn = sqlite3.connect(":memory:", isolation_level=None)
    apply_migrations(conn)
    return conn


if __name__ == "__main__":
    raise SystemExit(main())
