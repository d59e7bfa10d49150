"""``sufd install / uninstall / start / stop / restart``: the flows, platform-independent.

Paths are resolved once and written into the config file, and the unit/plist runs the
daemon with ``--config <that file>``, so the daemon, ``sufctl`` and the service manager
can never disagree about where the socket or the ledger is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from sufd import __version__
from sufd.errors import ControlError, SufdError
from sufd.service.managers import ServiceManager, SystemdUser, for_platform
from sufd.service.runner import Runner
from sufd.settings import Settings

__all__ = [
    "READY_TIMEOUT_S",
    "ensure_config",
    "install",
    "service_argv",
    "start",
    "stop",
    "uninstall",
    "wait_ready",
]

READY_TIMEOUT_S = 15.0
_EXIT_RUNNING = 75  # `sufd run`: another daemon holds the ledger's or the socket's lock
Echo = Callable[[str], None]

_CONFIG_HEADER = """\
# sufd configuration. Written by `sufd install`; yours to edit (see `sufd config show`).
# [paths] was resolved once at install time so the daemon, sufctl and the service manager
# agree on every location; change it only with `sufd install` again.
#
# Examples:
# [report]
# timezone = "Europe/Berlin"
# [sources.codex]
# enabled = false
# [prices.overrides."my-model"]
# input = 3.0    # USD per million tokens
# output = 15.0

"""


def service_argv(settings: Settings) -> list[str]:
    """The daemon's command line in the unit/plist.

    ``sys.executable`` is used as is, not resolved: a venv's python is a symlink and
    resolving it would escape the venv.
    """
    return [
        sys.executable,
        "-m",
        "sufd",
        "run",
        "--foreground",
        "--config",
        str(settings.paths.config_file),
    ]


def _path_values(settings: Settings) -> dict[str, str]:
    p = settings.paths
    return {
        "data_dir": str(p.data_dir),
        "db": str(p.db),
        "state_dir": str(p.state_dir),
        "log_dir": str(p.log_dir),
        "runtime_dir": str(p.runtime_dir),
    }


def _atomic_write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_config(settings: Settings, *, dry_run: bool, echo: Echo) -> bool:
    """Make sure the config file holds every resolved path; return whether it changed."""
    path = settings.paths.config_file
    wanted = _path_values(settings)
    if not path.exists():
        text = _CONFIG_HEADER + tomli_w.dumps({"paths": wanted})
        if dry_run:
            echo(f"would write {path}:\n{text}")
        else:
            _atomic_write(path, text, 0o600)
            echo(f"wrote {path}")
        return True
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    current = data.get("paths", {})
    missing = {k: v for k, v in wanted.items() if k not in current}
    if not missing:
        return False
    data.setdefault("paths", {}).update(missing)
    text = _CONFIG_HEADER + tomli_w.dumps(data)
    if dry_run:
        echo(f"would add [paths] {', '.join(sorted(missing))} to {path}")
    else:
        shutil.copy2(path, path.with_name(path.name + ".bak"))
        _atomic_write(path, text, 0o600)
        echo(
            f"added [paths] {', '.join(sorted(missing))} to {path}"
            f" (previous file kept as {path.name}.bak)"
        )
    return True


def _volatile_interpreter() -> str | None:
    exe = sys.executable
    tmp = tempfile.gettempdir()
    if exe.startswith((tmp + os.sep, "/tmp/", "/var/tmp/")):
        return (
            f"the Python interpreter {exe} lives in a temporary directory;"
            " the service will break when it is removed"
        )
    return None


def _manager(settings: Settings, runner: Runner, platform: str) -> ServiceManager:
    return for_platform(platform, runner, settings.env, settings.home)


def install(
    settings: Settings,
    *,
    platform: str = sys.platform,
    runner: Runner | None = None,
    start_now: bool = True,
    linger: bool = False,
    echo: Echo = print,
) -> int:
    """Write config and unit/plist, enable start at login, start now, wait until ready.

    Idempotent: with nothing changed, nothing is rewritten and nothing restarted. Where the
    service manager is unreachable (a container, SSH without a user session) the files are
    still written, the manual commands are printed, and the result is success.
    """
    runner = runner or Runner(echo=echo)
    dry = runner.dry_run
    mgr = _manager(settings, runner, platform)
    warning = _volatile_interpreter()
    if warning:
        echo(f"warning: {warning}")
    ensure_config(settings, dry_run=dry, echo=echo)
    paths = settings.paths
    if not dry:
        for d in (paths.data_dir, paths.state_dir, paths.log_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = mgr.render(
        service_argv(settings),
        version=__version__,
        state_dir=paths.state_dir,
        log_dir=paths.log_dir,
    )
    old = mgr.unit_path.read_text(encoding="utf-8") if mgr.unit_path.exists() else None
    changed = old != text
    if changed and dry:
        echo(f"would write {mgr.unit_path}:\n{text}")
    elif changed:
        _atomic_write(mgr.unit_path, text, 0o644)
        echo(f"{'updated' if old is not None else 'wrote'} {mgr.unit_path}")
    else:
        echo(f"{mgr.unit_path} is up to date")
    ok, why = mgr.reachable()
    if not ok:
        where = "the files would be written" if dry else "the files are in place"
        echo(f"warning: {mgr.name} is not reachable for this user ({why}); {where}.")
        echo("Run these once a user session is available:")
        for cmd in mgr.manual_commands():
            echo(f"  {cmd}")
        echo(f"Meanwhile you can run the daemon by hand: {sys.executable} -m sufd start")
        return 0
    mgr.activate(
        changed=changed, start=start_now, before_start=lambda: _stop_unmanaged(settings, echo, dry)
    )
    if isinstance(mgr, SystemdUser):
        _, message = mgr.linger(linger)
        echo(message)
    if start_now and not dry:
        if not wait_ready(settings, READY_TIMEOUT_S):
            raise SufdError(
                f"the service did not become ready within {READY_TIMEOUT_S:g} s; see "
                + (
                    "`journalctl --user -u sufd`"
                    if isinstance(mgr, SystemdUser)
                    else str(paths.log_dir / "launchd.stderr.log")
                )
                + f" and {paths.log_dir / 'sufd.log'}"
            )
        echo("sufd is running. Check it with: sufctl status")
    elif not dry:
        echo("sufd is installed and will start at your next login (or run: sufd start).")
    return 0


def uninstall(
    settings: Settings,
    *,
    purge: bool = False,
    platform: str = sys.platform,
    runner: Runner | None = None,
    echo: Echo = print,
) -> int:
    """Stop, disable, remove the unit/plist; ``purge`` also deletes config, state, logs, ledger."""
    runner = runner or Runner(echo=echo)
    dry = runner.dry_run
    mgr = _manager(settings, runner, platform)
    reachable, why = mgr.reachable()
    if mgr.unit_path.exists():
        if reachable:
            mgr.deactivate()
        else:
            echo(f"warning: {mgr.name} is not reachable ({why}); removing the file only")
            # A daemon started by hand (`sufd start`, as install suggested) must not outlive it.
            _stop_detached(settings, echo, dry=dry)
        if dry:
            echo(f"would remove {mgr.unit_path}")
        else:
            mgr.unit_path.unlink()
            echo(f"removed {mgr.unit_path}")
        if reachable:
            mgr.after_remove()
    else:
        echo(f"no service installed at {mgr.unit_path}")
        _stop_detached(settings, echo, dry=dry)
    if purge:
        p = settings.paths
        targets = [
            p.config_file,
            p.config_file.with_name(p.config_file.name + ".bak"),
            p.state_dir,
            p.log_dir,
            p.data_dir,
            p.db,
            p.lock,
        ]
        present = [t for t in dict.fromkeys(targets) if t.exists()]
        if not present:
            echo("nothing else to delete")
        echo(("would delete" if dry else "deleting") + f" {len(present)} paths:")
        for t in present:
            echo(f"  {t}{'/' if t.is_dir() else ''}")
        if not dry:
            for t in present:
                if t.is_dir():
                    shutil.rmtree(t, ignore_errors=True)
                elif t.exists():
                    t.unlink()
    return 0


def wait_ready(settings: Settings, timeout: float) -> bool:
    """Poll ``hello`` until the daemon of this ledger answers or ``timeout`` passes.

    Raises:
        OtherLedger: the daemon answering at the socket serves another ledger.
    """
    from sufd.control import client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.hello(settings.paths.socket, settings.paths.db, timeout=1.0)
            return True
        except client.OtherLedger:
            raise
        except ControlError:
            time.sleep(0.1)
    return False


def _via_manager(settings: Settings, runner: Runner, platform: str, verb: str) -> bool:
    """Run ``verb`` through the service manager when the service is installed and reachable.

    Returns False when it is not (the caller then acts on a hand-started daemon).

    Raises:
        SufdError: the service manager refused, with its message.
    """
    mgr = _manager(settings, runner, platform)
    if not (mgr.unit_path.exists() and mgr.reachable()[0]):
        return False
    result = mgr.control(verb)
    if not result.ok:
        raise SufdError(f"{mgr.name} could not {verb} sufd: {result.stderr.strip()}")
    return True


def start(
    settings: Settings,
    *,
    platform: str = sys.platform,
    runner: Runner | None = None,
    echo: Echo = print,
) -> int:
    """Start via the service manager when installed, else as a detached background process."""
    from sufd.control import client
    from sufd.daemon.runtime import SocketInUse

    runner = runner or Runner(echo=echo)
    if not _via_manager(settings, runner, platform, "start"):
        try:
            if wait_ready(settings, 0.2):
                echo(f"sufd is already running (ledger {settings.paths.db})")
                return 0
        except client.OtherLedger as exc:
            raise SocketInUse(f"sufd cannot start here: {exc}") from None
        _spawn_detached(settings)
    if not wait_ready(settings, READY_TIMEOUT_S):
        raise SufdError(f"sufd did not become ready: {_last_error(settings)}")
    echo("sufd is running")
    return 0


def stop(
    settings: Settings,
    *,
    platform: str = sys.platform,
    runner: Runner | None = None,
    echo: Echo = print,
) -> int:
    """Stop via the service manager when installed, else over the socket, then SIGTERM."""
    runner = runner or Runner(echo=echo)
    if _via_manager(settings, runner, platform, "stop"):
        echo("sufd stopped")
        return 0
    _stop_detached(settings, echo, dry=runner.dry_run)
    return 0


def restart(
    settings: Settings,
    *,
    platform: str = sys.platform,
    runner: Runner | None = None,
    echo: Echo = print,
) -> int:
    """``stop`` then ``start`` (the service manager's own restart when installed)."""
    runner = runner or Runner(echo=echo)
    if _via_manager(settings, runner, platform, "restart"):
        if not wait_ready(settings, READY_TIMEOUT_S):
            raise SufdError(f"sufd did not become ready after restart: {_last_error(settings)}")
        echo("sufd restarted")
        return 0
    stop(settings, platform=platform, runner=runner, echo=echo)
    return start(settings, platform=platform, runner=runner, echo=echo)


def _stop_unmanaged(settings: Settings, echo: Echo, dry: bool) -> None:
    """Stop a daemon started by hand before the service manager starts its own (which could
    not take the instance lock while the other one runs)."""
    if not dry and wait_ready(settings, 0.2):
        echo("stopping the sufd started by hand; the service manager runs it from now on")
        _stop_detached(settings, echo, dry=False)


def _spawn_detached(settings: Settings) -> None:
    argv = [
        sys.executable,
        "-m",
        "sufd",
        "run",
        "--daemon",
        "--config",
        str(settings.paths.config_file),
    ]
    env = {
        k: v
        for k, v in settings.env.items()
        if k not in ("NOTIFY_SOCKET", "INVOCATION_ID", "WATCHDOG_USEC")
    }
    # The child detaches (double fork) and returns at once; the daemon then reports via hello.
    proc = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    if proc.returncode == _EXIT_RUNNING:
        from sufd.daemon.runtime import AlreadyRunning

        raise AlreadyRunning(proc.stderr.strip().removeprefix("sufd: "))
    if proc.returncode != 0:
        raise SufdError(f"sufd could not start: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def _stop_detached(settings: Settings, echo: Echo, *, dry: bool) -> None:
    from sufd.control import client
    from sufd.daemon.runtime import read_lock_pid

    pid = read_lock_pid(settings.paths.lock)
    if dry:
        echo(f"would stop the daemon (pid {pid or 'unknown'}) over its socket, then SIGTERM")
        return
    try:
        client.hello(settings.paths.socket, settings.paths.db, timeout=2.0)
        client.call(settings.paths.socket, "shutdown", timeout=2.0)
    except client.OtherLedger as exc:
        # Never stop the daemon of another ledger; ours (if any) holds the ledger's lock.
        echo(f"not stopping the daemon of another ledger: {exc}")
        if pid is None:
            echo("sufd is not running")
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    except client.DaemonNotRunning:
        if pid is None:
            echo("sufd is not running")
            return
    except ControlError:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid is not None and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid is not None and _alive(pid):
        raise SufdError(f"sufd (pid {pid}) did not stop within 10 s")
    echo("sufd stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A zombie has exited; only its parent has not collected it yet.
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _last_error(settings: Settings) -> str:
    log = settings.paths.log_dir / "sufd.stderr.log"
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return (
        lines[-1]
        if lines
        else f"no answer on {settings.paths.socket}; see {settings.paths.log_dir / 'sufd.log'}"
    )
