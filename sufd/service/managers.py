"""The platform seam: one class per service manager, chosen by :func:`for_platform`.

Each knows where its unit file lives, how to render it, and the exact commands that load,
start, stop and unload it. Everything runs through a :class:`~sufd.service.runner.Runner`.
"""

from __future__ import annotations

import getpass
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sufd.errors import SufdError
from sufd.service.runner import Result, Runner
from sufd.service.templates import LABEL, UNIT_NAME, render_plist, render_unit

__all__ = ["Launchd", "ServiceManager", "SystemdUser", "for_platform"]


class ServiceManager(ABC):
    """What the installer needs from systemd or launchd."""

    name: str

    def __init__(self, runner: Runner, env: Mapping[str, str], home: Path) -> None:
        self.runner = runner
        self.env = env
        self.home = home

    @property
    @abstractmethod
    def unit_path(self) -> Path:
        """Where the unit or plist is written."""

    @abstractmethod
    def render(self, argv: Sequence[str], *, version: str, state_dir: Path, log_dir: Path) -> str:
        """The unit/plist text for this command line."""

    @abstractmethod
    def reachable(self) -> tuple[bool, str]:
        """Whether the service manager answers for this user, and why not."""

    @abstractmethod
    def activate(
        self, *, changed: bool, start: bool, before_start: Callable[[], None] = lambda: None
    ) -> None:
        """Load/enable (and start) the service; ``changed`` = the unit file was rewritten.

        ``before_start`` runs just before the service manager starts a service that is not
        running yet (the installer stops a daemon started by hand there)."""

    @abstractmethod
    def deactivate(self) -> None:
        """Stop and unload the service (the caller removes the file)."""

    @abstractmethod
    def control(self, verb: str) -> Result:
        """``start``, ``stop`` or ``restart`` the installed service."""

    @abstractmethod
    def state(self) -> dict[str, bool | str]:
        """``installed``, ``enabled``, ``active`` as the service manager reports them."""

    @abstractmethod
    def manual_commands(self) -> list[str]:
        """What to run by hand when the service manager was not reachable."""

    def after_remove(self) -> None:  # noqa: B027 - optional hook, launchd needs nothing
        """Anything to run once the unit file is gone."""


class SystemdUser(ServiceManager):
    """A systemd user unit in ``$XDG_CONFIG_HOME/systemd/user``."""

    name = "systemd"

    @property
    def unit_path(self) -> Path:
        """``~/.config/systemd/user/sufd.service`` (``XDG_CONFIG_HOME`` honoured)."""
        base = Path(self.env.get("XDG_CONFIG_HOME") or self.home / ".config")
        return base / "systemd" / "user" / UNIT_NAME

    def render(self, argv: Sequence[str], *, version: str, state_dir: Path, log_dir: Path) -> str:
        """The unit text (``state_dir``/``log_dir`` are not needed by systemd)."""
        return render_unit(argv, version=version)

    def _ctl(self, *args: str, mutates: bool = True) -> Result:
        return self.runner.run(["systemctl", "--user", *args], mutates=mutates)

    def _must(self, *args: str) -> None:
        result = self._ctl(*args)
        if not result.ok:
            message = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
            raise SufdError(f"systemctl --user {' '.join(args)} failed: {message}")

    def reachable(self) -> tuple[bool, str]:
        """``systemctl --user show-environment`` answers (fails in containers, bare SSH)."""
        result = self._ctl("show-environment", mutates=False)
        if result.ok:
            return True, ""
        reason = (result.stderr or result.stdout).strip().splitlines()
        return False, reason[0] if reason else f"systemctl exited {result.returncode}"

    def activate(
        self, *, changed: bool, start: bool, before_start: Callable[[], None] = lambda: None
    ) -> None:
        """daemon-reload when the unit changed; enable (--now); restart on upgrade."""
        if changed:
            self._ctl("daemon-reload")
        enabled = self._ctl("is-enabled", UNIT_NAME, mutates=False).ok
        active = self._ctl("is-active", UNIT_NAME, mutates=False).ok
        if start:
            if not enabled or not active:
                if not active:
                    before_start()
                self._must("enable", "--now", UNIT_NAME)
            if changed and active:
                self._must("restart", UNIT_NAME)
        elif not enabled:
            self._must("enable", UNIT_NAME)

    def deactivate(self) -> None:
        """``disable --now``."""
        self._ctl("disable", "--now", UNIT_NAME)

    def after_remove(self) -> None:
        """Forget the unit: daemon-reload and reset-failed."""
        self._ctl("daemon-reload")
        self._ctl("reset-failed", UNIT_NAME)

    def control(self, verb: str) -> Result:
        """``systemctl --user start|stop|restart sufd.service``."""
        return self._ctl(verb, UNIT_NAME)

    def state(self) -> dict[str, bool | str]:
        """From ``is-enabled`` / ``is-active``."""
        return {
            "installed": self.unit_path.exists(),
            "enabled": self._ctl("is-enabled", UNIT_NAME, mutates=False).ok,
            "active": self._ctl("is-active", UNIT_NAME, mutates=False).ok,
        }

    def manual_commands(self) -> list[str]:
        """The commands ``sufd install`` would have run."""
        return ["systemctl --user daemon-reload", f"systemctl --user enable --now {UNIT_NAME}"]

    def linger(self, enable: bool) -> tuple[bool, str]:
        """Whether the user lingers (runs services without a login session); optionally enable."""
        user = self.env.get("USER") or getpass.getuser()
        if Path(f"/var/lib/systemd/linger/{user}").exists():
            return True, "lingering is enabled"
        if not enable:
            return (
                False,
                f"lingering is off (to run without a login session: loginctl enable-linger {user})",
            )
        result = self.runner.run(["loginctl", "enable-linger", user])
        if self.runner.dry_run:
            return False, f"lingering would be enabled for {user}"
        if result.ok:
            return True, "lingering enabled"
        return (
            False,
            f"could not enable lingering ({result.stderr.strip()});"
            f" run: sudo loginctl enable-linger {user}",
        )


class Launchd(ServiceManager):
    """A launchd LaunchAgent in ``~/Library/LaunchAgents``."""

    name = "launchd"
    BOOTSTRAP_TRIES = 3

    def __init__(
        self,
        runner: Runner,
        env: Mapping[str, str],
        home: Path,
        *,
        uid: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(runner, env, home)
        self.uid = os.getuid() if uid is None else uid
        self._sleep = sleep
        self._domain: str | None = None

    @property
    def unit_path(self) -> Path:
        """``~/Library/LaunchAgents/io.github.sufd.plist``."""
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    def render(self, argv: Sequence[str], *, version: str, state_dir: Path, log_dir: Path) -> str:
        """The plist text."""
        return render_plist(argv, version=version, state_dir=state_dir, log_dir=log_dir)

    @property
    def domain(self) -> str:
        """``gui/<uid>``, or ``user/<uid>`` when there is no GUI session (SSH)."""
        if self._domain is None:
            gui = f"gui/{self.uid}"
            probe = self.runner.run(["launchctl", "print", gui], mutates=False)
            self._domain = gui if probe.ok or probe.returncode == 127 else f"user/{self.uid}"
        return self._domain

    @property
    def target(self) -> str:
        """``<domain>/<label>``."""
        return f"{self.domain}/{LABEL}"

    def reachable(self) -> tuple[bool, str]:
        """``launchctl`` exists and answers for our domain."""
        result = self.runner.run(["launchctl", "print", self.domain], mutates=False)
        if result.ok:
            return True, ""
        return False, (result.stderr.strip() or f"launchctl exited {result.returncode}")

    def _loaded(self) -> bool:
        return self.runner.run(["launchctl", "print", self.target], mutates=False).ok

    def activate(
        self, *, changed: bool, start: bool, before_start: Callable[[], None] = lambda: None
    ) -> None:
        """bootout (if reloading), enable, bootstrap with retries on the transient error 5."""
        loaded = self._loaded()
        if loaded and not changed:
            return
        if loaded:
            self.runner.run(["launchctl", "bootout", self.target])
        self.runner.run(["launchctl", "enable", self.target])
        if not start:
            return
        before_start()
        for attempt in range(self.BOOTSTRAP_TRIES):
            result = self.runner.run(["launchctl", "bootstrap", self.domain, str(self.unit_path)])
            # "Bootstrap failed: 5: Input/output error" is launchd still tearing the old job down.
            if result.ok:
                return
            if result.returncode != 5 or attempt == self.BOOTSTRAP_TRIES - 1:
                message = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
                raise SufdError(f"launchctl bootstrap {self.domain} failed: {message}")
            self._sleep(0.5 * 2**attempt)
            self.runner.run(["launchctl", "bootout", self.target])

    def deactivate(self) -> None:
        """``bootout``, retried while launchd is busy."""
        for attempt in range(self.BOOTSTRAP_TRIES):
            result = self.runner.run(["launchctl", "bootout", self.target])
            if result.returncode not in (5, 36):  # 36: operation now in progress
                return
            self._sleep(0.5 * 2**attempt)

    def control(self, verb: str) -> Result:
        """``kickstart`` (start), ``kickstart -k`` (restart), ``kill SIGTERM`` (stop)."""
        if verb == "start":
            return self.runner.run(["launchctl", "kickstart", self.target])
        if verb == "restart":
            return self.runner.run(["launchctl", "kickstart", "-k", self.target])
        # A clean exit after SIGTERM stays down: KeepAlive restarts only on failure.
        return self.runner.run(["launchctl", "kill", "SIGTERM", self.target])

    def state(self) -> dict[str, bool | str]:
        """Loaded means enabled here; ``print`` shows ``state = running`` when active."""
        result = self.runner.run(["launchctl", "print", self.target], mutates=False)
        return {
            "installed": self.unit_path.exists(),
            "enabled": result.ok,
            "active": result.ok and "state = running" in result.stdout,
        }

    def manual_commands(self) -> list[str]:
        """The commands ``sufd install`` would have run."""
        return [
            f"launchctl enable {self.target}",
            f"launchctl bootstrap {self.domain} {self.unit_path}",
        ]


def for_platform(
    platform: str, runner: Runner, env: Mapping[str, str], home: Path
) -> ServiceManager:
    """The service manager of ``platform`` (``sys.platform``); tests pass ``"darwin"``."""
    if platform == "darwin":
        return Launchd(runner, env, home)
    return SystemdUser(runner, env, home)
