"""``sufd``: the daemon side — ingest, paths (and, as they land, run/install/lifecycle).

Library code raises :class:`~sufd.errors.SufdError`; this entry point maps errors to exit
codes: 0 ok, 1 error, 2 usage, 78 configuration error (``EX_CONFIG``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sufd import __version__
from sufd.errors import ConfigError, SufdError
from sufd.runtime import AlreadyRunning

if TYPE_CHECKING:
    from sufd.settings import Settings

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_RUNNING, EXIT_CONFIG = 0, 1, 2, 75, 78


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sufd",
        description="sufd keeps an exact, always-fresh ledger of what your AI coding agents cost.",
    )
    parser.add_argument("--version", action="version", version=f"sufd {__version__}")
    parser.add_argument(
        "--config", type=Path, help="config file (default: the platform config dir)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ingest = sub.add_parser(
        "ingest",
        help="one-shot catch-up: read everything new in every source into the ledger",
        description="Read every new byte of every enabled source into the ledger and exit."
        " Idempotent: a second run with no changes reads nothing.",
    )
    ingest.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    paths = sub.add_parser("paths", help="where sufd keeps its config, ledger, logs and socket")
    paths.add_argument("--json", action="store_true", help="machine-readable output")
    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground (what launchd/systemd start)",
        description="Run the daemon in the foreground: catch up on everything written while it"
        " was down, then watch every source root and ingest each change within a fraction of a"
        " second. Stops cleanly on SIGTERM/SIGINT; SIGHUP reloads the config. Exit codes: 0"
        " clean stop, 1 crash, 75 another instance is running, 78 configuration error.",
    )
    run.add_argument(
        "--foreground", action="store_true", help="accepted for service managers (always true)"
    )
    run.add_argument(
        "--no-watcher",
        action="store_true",
        help="serve control and reconcile on request, without live watching"
        " (also SUFD_DISABLE_WATCHER=1)",
    )
    config = sub.add_parser("config", help="show or change the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser(
        "show", help="the effective settings and where each came from (file, env, flag, default)"
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    setter = config_sub.add_parser(
        "set",
        help="validate and write one setting to the config file",
        description="Validate KEY=VALUE against the full configuration, then write the config"
        " file (a backup of the previous file is kept as config.toml.bak; comments are not"
        " preserved). Example: sufd config set watch.debounce_ms 100",
    )
    setter.add_argument("key", help="dotted key, e.g. report.timezone or sources.codex.enabled")
    setter.add_argument(
        "value", help='the value (TOML syntax: true, 100, "text"; bare text is a string)'
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sufd``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        from sufd import settings as settings_mod

        settings = settings_mod.load(args.config)
        for warning in settings.origins.get("_warnings", "").splitlines():
            print(f"sufd: warning: {warning}", file=sys.stderr)
        if args.command == "paths":
            return _paths(settings, as_json=args.json)
        if args.command == "ingest":
            return _ingest(settings, quiet=args.quiet, as_json=args.json)
        if args.command == "run":
            if args.no_watcher:
                settings = settings_mod.load(args.config, overrides={"watch.enabled": False})
            return _run(settings, args.config)
        if args.command == "config":
            from sufd import config_cmd

            if args.config_command == "show":
                return config_cmd.show(settings, as_json=args.json)
            return config_cmd.set_value(settings, args.key, args.value)
    except AlreadyRunning as exc:
        print(f"sufd: {exc}", file=sys.stderr)
        return EXIT_RUNNING
    except ConfigError as exc:
        print(f"sufd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SufdError as exc:
        print(f"sufd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_USAGE


def _run(settings: Settings, config: Path | None) -> int:
    from sufd import logs
    from sufd.daemon import Daemon

    problem = logs.configure(
        settings.log_level, mode="daemon", log_dir=settings.paths.log_dir, env=settings.env
    )
    daemon = Daemon(settings, config_path=config, log_problem=problem)
    return daemon.run()


def _paths(settings: Settings, *, as_json: bool) -> int:
    data = settings.paths.as_dict()
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        width = max(len(k) for k in data)
        for key, value in data.items():
            print(f"{key.ljust(width)}  {value}")
    return EXIT_OK


def _ingest(settings: Settings, *, quiet: bool, as_json: bool) -> int:
    from sufd import logs
    from sufd.ingest import Ingestor, IngestStats
    from sufd.prices import PriceTable
    from sufd.store import open_store
    from sufd.store.ledger import Ledger

    logs.configure(settings.log_level, mode="cli")
    prices = PriceTable.bundled().with_overrides(settings.price_overrides)
    conn = open_store(settings.paths.db)
    try:
        ingestor = Ingestor(settings, Ledger(conn, price_version=prices.version), prices)
        tty = sys.stderr.isatty() and not quiet and not as_json

        def progress(stats: IngestStats, total: int) -> None:
            mb = stats.bytes_read / 1e6
            sys.stderr.write(
                f"\ringest: {stats.files}/{total} files, {mb:,.1f} MB read,"
                f" {stats.inserted:,} events"
            )
            sys.stderr.flush()

        stats = ingestor.ingest_all(progress if tty else None)
        if tty:
            sys.stderr.write("\n")
    finally:
        conn.close()
    if as_json:
        print(json.dumps(stats.as_dict(), indent=2))
    elif not quiet:
        print(stats.summary_line())
        for path, error in stats.errors[:10]:
            print(f"  could not read {path}: {error}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
