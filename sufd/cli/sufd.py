"""``sufd``: the daemon side — run the daemon, start/stop/restart/status it, install or
uninstall it as a service, ingest once, show paths and config, doctor.

Library code raises :class:`~sufd.errors.SufdError`; this entry point maps errors to exit
codes: 0 ok, 1 error, 2 usage, 78 configuration error (``EX_CONFIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sufd import __version__
from sufd.cli.args import switch, until_reader_leaves
from sufd.daemon.runtime import AlreadyRunning
from sufd.errors import ConfigError, SufdError

if TYPE_CHECKING:
    from sufd.daemon.runtime import DaemonLocks
    from sufd.settings import Settings

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_RUNNING, EXIT_CONFIG = 0, 1, 2, 75, 78
# ``sufd run --daemon`` waits this long for the detached daemon to answer.
DETACHED_READY_S = 30.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sufd",
        description="sufd keeps an exact, always-fresh ledger of what your AI coding agents cost.",
    )
    parser.add_argument("--version", action="version", version=f"sufd {__version__}")
    parser.add_argument(
        "--config", type=Path, help="config file (default: the platform config dir)"
    )
    # --config is accepted after the subcommand too (the unit file writes it there).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    ingest = add(
        "ingest",
        help="one-shot catch-up: read everything new in every source into the ledger",
        description="Read every new byte of every enabled source into the ledger and exit."
        " Idempotent: a second run with no changes reads nothing.",
    )
    switch(ingest, "--quiet", "-q", help="no progress bar or summary")
    switch(ingest, "--json", help="print the summary as JSON")
    ingest.add_argument(
        "--workers",
        type=_positive_int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="processes parsing files ahead of the single writer in a large catch-up"
        " (default: CPUs, at most 4; 1 parses in this process only). The result is the same"
        " for any N.",
    )
    paths = add("paths", help="where sufd keeps its config, ledger, logs and socket")
    switch(paths, "--json", help="machine-readable output")
    run = add(
        "run",
        help="run the daemon in the foreground (what launchd/systemd start)",
        description="Run the daemon in the foreground: catch up on everything written while it"
        " was down, then watch every source root and ingest each change within a fraction of a"
        " second. Stops cleanly on SIGTERM/SIGINT; SIGHUP reloads the config. Exit codes: 0"
        " clean stop, 1 crash, 75 another instance is running, 78 configuration error.",
    )
    switch(run, "--foreground", help="accepted for service managers (always true)")
    run.add_argument(
        "--daemon",
        action="store_true",
        help="detach into the background (manual use only; `sufd start` does this for you)",
    )
    run.add_argument(
        "--no-watcher",
        action="store_true",
        help="serve control and reconcile on request, without live watching"
        " (also SUFD_DISABLE_WATCHER=1)",
    )
    config = add("config", help="show or change the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser(
        "show", help="the effective settings and where each came from (file, env, flag, default)"
    )
    switch(show, "--json", help="machine-readable output")
    setter = config_sub.add_parser(
        "set",
        help="validate and write one setting to the config file",
        description="Validate KEY=VALUE against the full configuration, then write the config"
        " file (a backup of the previous file is kept as config.toml.bak; comments are not"
        " preserved). Example: sufd config set watch.debounce_ms 100",
    )
    inst = add(
        "install",
        help="install as a per-user service (systemd user unit / launchd agent), start at login",
        description="Resolve every path once and write it into the config file, write the"
        " systemd user unit (Linux) or launchd agent (macOS), enable start at login, start it"
        " and wait until it answers. Idempotent; after an upgrade it restarts the service."
        " Where the service manager is not reachable it writes the files and tells you what to"
        " run.",
    )
    switch(inst, "--dry-run", help="print every file and command; change nothing")
    switch(inst, "--no-start", help="enable at login but do not start now")
    inst.add_argument(
        "--linger",
        action="store_true",
        help="Linux: keep running without a login session (loginctl enable-linger)",
    )
    uninst = add(
        "uninstall",
        help="stop, disable and remove the service",
        description="Stop and disable the service and remove the unit/plist. --purge also deletes"
        " the config, state, logs and the ledger, after listing exactly what it deletes.",
    )
    switch(uninst, "--purge", help="also delete config, state, logs and the ledger")
    switch(uninst, "--dry-run", help="print what would be done; change nothing")
    for verb, text in (
        (
            "start",
            "start the daemon (via the service manager when installed, else in the background)",
        ),
        ("stop", "stop the daemon"),
        ("restart", "stop, then start the daemon"),
        ("status", "service state and daemon status"),
    ):
        add(verb, help=text, description=text)
    doctor = add(
        "doctor", help="check the installation; one line per finding, exit 1 on any failure"
    )
    switch(doctor, "--json", help="machine-readable output")
    setter.add_argument("key", help="dotted key, e.g. report.timezone or sources.codex.enabled")
    setter.add_argument(
        "value", help='the value (TOML syntax: true, 100, "text"; bare text is a string)'
    )
    return parser


@until_reader_leaves
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sufd``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        from sufd import settings as settings_mod

        settings = settings_mod.load(args.config)
        for warning in settings.origins.get("_warnings", "").splitlines():
            print(f"sufd: warning: {warning}", file=sys.stderr)
        return _dispatch(args, settings)
    except AlreadyRunning as exc:
        print(f"sufd: {exc}", file=sys.stderr)
        return EXIT_RUNNING
    except ConfigError as exc:
        print(f"sufd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SufdError as exc:
        print(f"sufd: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from sufd import settings as settings_mod

    cmd = args.command
    if cmd == "paths":
        return _paths(settings, as_json=args.json)
    if cmd == "ingest":
        return _ingest(settings, quiet=args.quiet, as_json=args.json, workers=args.workers)
    if cmd == "run":
        if args.no_watcher:
            settings = settings_mod.load(args.config, overrides={"watch.enabled": False})
        return _run_detached(settings, args.config) if args.daemon else _run(settings, args.config)
    if cmd in ("install", "uninstall", "start", "stop", "restart"):
        return _service(settings, args)
    if cmd == "status":
        return _status(settings)
    if cmd == "doctor":
        return _doctor(settings, as_json=args.json)
    from sufd.cli import config as config_cmd

    if args.config_command == "show":
        return config_cmd.show(settings, as_json=args.json)
    return config_cmd.set_value(settings, args.key, args.value)


def _service(settings: Settings, args: argparse.Namespace) -> int:
    from sufd.service import install as flows
    from sufd.service.runner import Runner

    runner = Runner(dry_run=getattr(args, "dry_run", False))
    if args.command == "install":
        return flows.install(
            settings, runner=runner, start_now=not args.no_start, linger=args.linger
        )
    if args.command == "uninstall":
        return flows.uninstall(settings, purge=args.purge, runner=runner)
    verb = {"start": flows.start, "stop": flows.stop, "restart": flows.restart}[args.command]
    return verb(settings, runner=runner)


def _status(settings: Settings) -> int:
    from sufd.cli import sufctl as ctl

    return ctl.main(["--config", str(settings.paths.config_file), "status"])


def _doctor(settings: Settings, *, as_json: bool) -> int:
    from sufd.cli.doctor import run_checks

    checks = run_checks(settings)
    if as_json:
        print(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(f"{c.status.upper():<4}  {c.name:<16} {c.detail}")
    return EXIT_ERROR if any(c.status == "fail" for c in checks) else EXIT_OK


def _run_detached(settings: Settings, config: Path | None) -> int:
    """``sufd run --daemon``: detach with python-daemon, then run as usual.

    Refused under a service manager: launchd and systemd must supervise the foreground
    process, and a forking child would be seen as a crash. The daemon's locks are taken
    before detaching and kept across the fork, so a daemon already serving the ledger (or
    the socket) is reported here, with exit code 75, not in a log after a silent exit 0.
    """
    markers = [k for k in ("INVOCATION_ID", "NOTIFY_SOCKET") if settings.env.get(k)]
    if settings.env.get("XPC_SERVICE_NAME", "0") != "0":
        markers.append("XPC_SERVICE_NAME")
    if markers:
        raise ConfigError(f"--daemon refused under a service manager ({', '.join(markers)} set)")
    import signal

    import daemon  # python-daemon

    from sufd.daemon.runtime import DaemonLocks, prepare_runtime_dir
    from sufd.store import private_dir

    log_dir = settings.paths.log_dir
    private_dir(log_dir)
    private_dir(settings.paths.state_dir)
    prepare_runtime_dir(settings.paths.runtime_dir)
    locks = DaemonLocks.of(settings.paths)
    locks.acquire()
    # The command returns only once the daemon answers (or has failed to start): the daemon
    # writes "ready" into this pipe after binding its socket with its ledger open.
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        return _await_detached(read_end, settings)
    os.close(read_end)
    try:
        out = open(log_dir / "sufd.stderr.log", "a", encoding="utf-8")  # noqa: SIM115 - owned by the daemon
        context = daemon.DaemonContext(
            detach_process=True,
            umask=0o077,
            working_directory=str(settings.paths.state_dir),
            stdout=out,
            stderr=out,
            files_preserve=[*locks.fds, write_end],
            signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
        )
        context.open()
    except BaseException:
        locks.release()
        raise

    def ready() -> None:
        with contextlib.suppress(OSError):
            os.write(write_end, b"ready\n")
            os.close(write_end)

    with context:
        # Logging and the watchers start after the fork; the locks were kept across it.
        return _run(settings, config, locks, on_ready=ready)


def _await_detached(read_end: int, settings: Settings) -> int:
    """(the command the user ran) Wait for the detached daemon to say it is ready."""
    import select

    deadline = time.monotonic() + DETACHED_READY_S
    got = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            chunk = pipe.read(64)
            if not chunk:
                break
            got += chunk
            if b"ready" in got:
                return EXIT_OK
    log = settings.paths.log_dir / "sufd.stderr.log"
    if not got and time.monotonic() < deadline:
        raise SufdError(f"the daemon exited during start-up; see {log} and `sufd doctor`")
    raise SufdError(f"the daemon did not become ready within {DETACHED_READY_S:g} s; see {log}")


def _run(
    settings: Settings,
    config: Path | None,
    locks: DaemonLocks | None = None,
    *,
    on_ready: Callable[[], None] | None = None,
) -> int:
    from sufd import logs
    from sufd.daemon.lifecycle import Daemon

    # Like the detached path (DaemonContext umask=0o077): whatever the daemon creates without
    # an explicit mode (a rotated log, anything a library writes) is private.
    os.umask(0o077)
    problem = logs.configure(
        settings.log_level, mode="daemon", log_dir=settings.paths.log_dir, env=settings.env
    )
    daemon = Daemon(
        settings, config_path=config, log_problem=problem, locks=locks, on_ready=on_ready
    )
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def _configure_logs(level: str) -> None:
    from sufd import logs

    logs.configure(level, mode="cli")


def _ingest(settings: Settings, *, quiet: bool, as_json: bool, workers: int) -> int:
    """``sufd ingest``: the running daemon catches up (it is the ledger's one writer);
    without one, this process writes the ledger itself."""
    from sufd.cli.catchup import DaemonAbsent, ask_daemon

    tty = sys.stderr.isatty() and not quiet and not as_json
    try:
        try:
            result = ask_daemon(settings, _progress_line if tty else None)
        finally:
            if tty:
                sys.stderr.write("\n")
    except DaemonAbsent:
        return _ingest_here(settings, quiet=quiet, as_json=as_json, workers=workers)
    if not quiet and not as_json and result.paused:
        print(
            f"  not read, paused: {', '.join(result.paused)} (sufctl resume-watcher to read them)",
            file=sys.stderr,
        )
    return _print_summary(
        result.summary,
        quiet=quiet,
        as_json=as_json,
        by=f" (by the running daemon, pid {result.pid})",
    )


def _print_summary(summary: dict[str, Any], *, quiet: bool, as_json: bool, by: str = "") -> int:
    """The end of ``sufd ingest``, whoever wrote the ledger: JSON, or the sentence and the
    first files that could not be read."""
    from sufd.ingest.summary import summary_line

    if as_json:
        print(json.dumps(summary, indent=2))
    elif not quiet:
        print(summary_line(summary) + by)
        failed = [e for e in summary.get("errors") or [] if isinstance(e, dict)]
        for item in failed[:10]:
            print(f"  could not read {item.get('path')}: {item.get('error')}", file=sys.stderr)
    return EXIT_OK


def _progress_line(files: int, total: int, bytes_read: int, events: int) -> None:
    sys.stderr.write(
        f"\ringest: {files}/{total} files, {bytes_read / 1e6:,.1f} MB read, {events:,} events"
    )
    sys.stderr.flush()


def _ingest_here(settings: Settings, *, quiet: bool, as_json: bool, workers: int) -> int:
    from sufd import logger
    from sufd.ingest.ingestor import Ingestor, IngestStats
    from sufd.prices.table import PriceTable
    from sufd.store import open_store
    from sufd.store.faults import StoreFault
    from sufd.store.ledger import Ledger

    logger.defer(settings.log_level, lambda: _configure_logs(settings.log_level))
    prices = PriceTable.bundled().with_overrides(settings.price_overrides)
    conn = open_store(settings.paths.db)
    try:
        ledger = Ledger(conn, price_version=prices.version)
        ingestor = Ingestor(settings, ledger, prices, workers=workers)
        tty = sys.stderr.isatty() and not quiet and not as_json

        def progress(stats: IngestStats, total: int) -> None:
            _progress_line(stats.files, total, stats.bytes_read, stats.inserted)

        # As in the parse workers (sufd.ingest.prefetch): the collector only slows a catch-up.
        gc.disable()
        try:
            stats = ingestor.ingest_all(progress if tty else None)
        except sqlite3.Error as exc:  # e.g. the last commit hit a full disk: nothing was lost
            raise StoreFault(exc) from exc
        finally:
            gc.enable()
            if tty:
                sys.stderr.write("\n")
    finally:
        conn.close()
    return _print_summary(stats.as_dict(), quiet=quiet, as_json=as_json)


if __name__ == "__main__":
    raise SystemExit(main())
