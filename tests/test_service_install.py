"""``sufd install / uninstall / start / stop / restart`` against fake service managers
(acceptance item 3 of issue 4).

There is no systemd user manager and no launchd on this Linux CI machine, so ``systemctl``,
``launchctl`` and ``loginctl`` are fakes on ``PATH`` (``tests/fakebin.py``): they record
every call, and emulate just enough of a service manager that the flows are real. A fake
``systemctl --user enable --now`` starts the unit's decoded ``ExecStart`` in the background
and waits for its ``READY=1``, so ``sufd install`` truly waits for ``hello``; ``restart``
truly replaces the process; ``disable --now`` truly stops it.

Linux runs ``python -m sufd ...`` as subprocesses in an isolated HOME/XDG tree. macOS is
exercised through the platform seam, in-process, with ``platform="darwin"`` and the fake
``launchctl``: the command sequences and the plist are checked, **not** launchd's behaviour,
which nothing here verifies.

The expected sequences come from service-design §9.6, not from the code's output:
* Linux install: probe the user manager (``show-environment``; a bus failure means "write the
  files, print the commands, exit 0"), ``daemon-reload`` because the unit file is new or
  changed, then ``enable --now``; on an upgrade of a running service a restart instead; with
  nothing changed, nothing that mutates. ``is-enabled``/``is-active`` are the read-only
  probes the flow decides with.
* Linux uninstall: ``disable --now``, remove the unit, ``daemon-reload``, ``reset-failed``.
* macOS install: pick the domain (``gui/<uid>``, else ``user/<uid>``), check whether the job
  is loaded, ``enable``, ``bootstrap`` (retried with backoff on error 5, booting out the
  half-loaded job in between); uninstall: ``bootout`` and remove the plist.
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sufd.cli import doctor
from sufd.control import client
from sufd.errors import SufdError
from sufd.service import install as flows
from sufd.service.managers import Launchd, SystemdUser, for_platform
from sufd.service.runner import Runner
from sufd.settings import load as load_settings
from tests.conftest import SufdEnv, make_env
from tests.daemon_harness import kill_lock_holders
from tests.fakebin import NO_BUS, FakeBin, pid_alive

pytestmark = pytest.mark.integration

USER = "sufd-test"  # never has a /var/lib/systemd/linger entry
LABEL = "io.github.sufd"
SYSTEMD_FIRST_INSTALL = [
    "--user show-environment",
    "--user daemon-reload",
    "--user is-enabled sufd.service",
    "--user is-active sufd.service",
    "--user enable --now sufd.service",
]
READ_ONLY = {
    "--user show-environment",
    "--user is-enabled sufd.service",
    "--user is-active sufd.service",
}


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` with its type, mode, mtime and content."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        key = str(path.relative_to(root))
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            out[key] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[key] = ("dir", mode)
        elif stat.S_ISREG(st.st_mode):
            out[key] = ("file", mode, st.st_mtime_ns, path.read_bytes())
        else:
            out[key] = ("other", mode, st.st_mtime_ns)
    return out


def hello_pid(socket_path: Path) -> int:
    pid = client.call(socket_path, "hello", timeout=5.0)["pid"]
    assert isinstance(pid, int)
    return pid


@dataclass
class Machine:
    """One isolated Linux user with fake systemctl/loginctl on PATH."""

    user: SufdEnv
    fake: FakeBin
    root: Path  # everything sufd may touch lives under here

    @property
    def env(self) -> dict[str, str]:
        return self.fake.env(self.user.env)

    @property
    def unit(self) -> Path:
        return Path(self.user.env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "sufd.service"

    def sufd(self, *args: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "sufd", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if rc is not None:
            assert proc.returncode == rc, (
                f"sufd {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\nservice:\n{self.fake.service_log}"
            )
        return proc

    def paths(self) -> dict[str, Path]:
        return {k: Path(v) for k, v in json.loads(self.sufd("paths", "--json").stdout).items()}

    def sufctl_status(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sufd.cli.sufctl", "status"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )


@pytest.fixture
def linux(tmp_path: Path) -> Iterator[Machine]:
    user = make_env(tmp_path / "u", {"USER": USER})
    fake = FakeBin(tmp_path / "bin", "systemctl", "loginctl", "launchctl")
    machine = Machine(user, fake, tmp_path / "u")
    paths = machine.paths()
    assert paths["socket"].is_relative_to(machine.root), f"{paths['socket']}: a shared dir"
    yield machine
    fake.kill_services()
    # A daemon started by hand (detached) that a failing test left behind.
    kill_lock_holders(paths["runtime_dir"] / "sufd.lock")


# -- Linux: install ----------------------------------------------------------------------


def test_first_install_enables_starts_and_waits_for_hello(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    out = linux.sufd("install").stdout
    assert linux.fake.calls("systemctl") == SYSTEMD_FIRST_INSTALL
    assert linux.fake.calls("loginctl") == []
    assert linux.fake.calls("launchctl") == []
    # `install` returned only after hello answered: status works at once, from that process.
    status = linux.sufctl_status()
    assert status.returncode == 0, status.stderr
    pid = linux.fake.service_pid
    assert pid is not None and hello_pid(linux.paths()["socket"]) == pid
    assert "sufd is running" in out
    assert f"lingering is off (to run without a login session: loginctl enable-linger {USER})" in (
        out
    )

    paths = linux.paths()
    assert stat.S_IMODE(linux.unit.stat().st_mode) == 0o644
    assert stat.S_IMODE(paths["config"].stat().st_mode) == 0o600
    for key in ("data_dir", "state_dir", "log_dir"):
        assert stat.S_IMODE(paths[key].stat().st_mode) == 0o700, key
    # The config holds every resolved path, so the unit's --config pins them all.
    config_text = paths["config"].read_text()
    for key in ("data_dir", "db", "state_dir", "log_dir", "runtime_dir"):
        assert f'{key} = "{paths[key]}"' in config_text, key
    assert f'"--config" "{paths["config"]}"' in linux.unit.read_text()


def test_reinstall_with_nothing_changed_changes_nothing(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    linux.sufd("install")
    pid = linux.fake.service_pid
    config = linux.paths()["config"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (linux.unit, config)}
    linux.fake.clear_calls()

    out = linux.sufd("install").stdout
    assert linux.fake.calls("systemctl") == [
        "--user show-environment",
        "--user is-enabled sufd.service",
        "--user is-active sufd.service",
    ]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before
    assert f"{linux.unit} is up to date" in out
    assert linux.fake.service_pid == pid


def test_upgrade_reloads_and_restarts(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    linux.sufd("install")
    old_pid = linux.fake.service_pid
    current = linux.unit.read_text()
    # What the unit of an older release looks like: different rendered text.
    older = re.sub(r"\(sufd [^)]+\)", "(sufd 0.0.1)", current, count=1)
    assert older != current
    linux.unit.write_text(older)
    linux.fake.clear_calls()

    out = linux.sufd("install").stdout
    assert linux.fake.calls("systemctl") == [
        "--user show-environment",
        "--user daemon-reload",
        "--user is-enabled sufd.service",
        "--user is-active sufd.service",
        "--user restart sufd.service",
    ]
    assert linux.unit.read_text() == current
    assert f"updated {linux.unit}" in out
    new_pid = linux.fake.service_pid
    assert new_pid is not None and new_pid != old_pid and not pid_alive(old_pid or 0)
    assert hello_pid(linux.paths()["socket"]) == new_pid


def test_unreachable_manager_still_writes_files(linux: Machine) -> None:
    linux.fake.systemd_unreachable()
    proc = linux.sufd("install")
    assert linux.fake.calls("systemctl") == ["--user show-environment"]
    assert linux.unit.is_file() and linux.paths()["config"].is_file()
    out = proc.stdout
    assert f"warning: systemd is not reachable for this user ({NO_BUS})" in out
    assert "  systemctl --user daemon-reload\n" in out
    assert "  systemctl --user enable --now sufd.service\n" in out
    assert linux.fake.service_pid is None
    assert linux.sufctl_status().returncode == 3  # nothing was started


def test_service_that_never_answers_is_reported(linux: Machine) -> None:
    """The start path's documented failure: the manager "started" it, hello never came."""
    linux.fake.systemd_user(linux.unit)
    linux.fake.rule("systemctl", "--user enable --now sufd.service", actions=["enable"])
    proc = linux.sufd("install", rc=1)
    assert "the service did not become ready within 15 s" in proc.stderr
    assert "journalctl --user -u sufd" in proc.stderr
    assert linux.unit.is_file()  # the files stay for the user to inspect


def test_install_takes_over_a_hand_started_daemon(linux: Machine) -> None:
    """`sufd start` before `sufd install` (what install itself suggests while the manager is
    unreachable): the service's own daemon cannot take the lock (exit 75) while the hand-
    started one answers hello, so install must stop that one first; else it reports "running"
    for a process nothing supervises and the unit sits in a restart loop."""
    linux.fake.systemd_user(linux.unit)
    linux.sufd("start")
    hand = hello_pid(linux.paths()["socket"])
    linux.sufd("install")
    service = linux.fake.service_pid
    assert service is not None, f"the service's daemon died:\n{linux.fake.service_log[-1500:]}"
    assert hello_pid(linux.paths()["socket"]) == service
    assert not pid_alive(hand)


def test_no_start_enables_without_starting(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    out = linux.sufd("install", "--no-start").stdout
    assert linux.fake.calls("systemctl") == [
        "--user show-environment",
        "--user daemon-reload",
        "--user is-enabled sufd.service",
        "--user is-active sufd.service",
        "--user enable sufd.service",
    ]
    assert linux.fake.service_pid is None
    assert "will start at your next login" in out


def test_dry_run_changes_nothing_and_prints_everything(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    before = snapshot(linux.root)
    out = linux.sufd("install", "--dry-run").stdout
    assert snapshot(linux.root) == before
    # Only read-only probes ran; every mutating command was printed instead.
    calls = linux.fake.calls("systemctl")
    assert set(calls) <= READ_ONLY, calls
    assert linux.fake.calls("loginctl") == []
    assert linux.fake.service_pid is None
    config = linux.paths()["config"]
    assert f"would write {config}:\n" in out
    assert f"would write {linux.unit}:\n" in out
    assert "ExecStart=" in out and "[paths]" in out  # the files' content is shown
    assert "would run: systemctl --user daemon-reload\n" in out
    assert "would run: systemctl --user enable --now sufd.service\n" in out


def test_dry_run_shows_the_linger_command(linux: Machine) -> None:
    """``install --linger`` runs ``loginctl enable-linger``; its dry run must say so."""
    linux.fake.systemd_user(linux.unit)
    before = snapshot(linux.root)
    out = linux.sufd("install", "--dry-run", "--linger").stdout
    assert snapshot(linux.root) == before
    assert linux.fake.calls("loginctl") == []
    assert f"would run: loginctl enable-linger {USER}\n" in out, out


def test_dry_run_while_unreachable_claims_nothing(linux: Machine) -> None:
    linux.fake.systemd_unreachable()
    before = snapshot(linux.root)
    out = linux.sufd("install", "--dry-run").stdout
    assert snapshot(linux.root) == before
    assert f"would write {linux.unit}:" in out
    assert "the files are in place" not in out, out  # they are not: it was a dry run


def test_dry_run_uninstall_purge_changes_nothing(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    linux.sufd("install", "--no-start")
    linux.fake.clear_calls()
    before = snapshot(linux.root)
    out = linux.sufd("uninstall", "--purge", "--dry-run").stdout
    assert snapshot(linux.root) == before
    assert set(linux.fake.calls("systemctl")) <= READ_ONLY
    assert "would run: systemctl --user disable --now sufd.service\n" in out
    assert f"would remove {linux.unit}\n" in out
    assert "would run: systemctl --user daemon-reload\n" in out
    assert "would run: systemctl --user reset-failed sufd.service\n" in out
    assert "would delete" in out and str(linux.paths()["config"]) in out


def test_linger_is_enabled_on_request(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    out = linux.sufd("install", "--no-start", "--linger").stdout
    assert linux.fake.calls("loginctl") == [f"enable-linger {USER}"]
    assert "lingering enabled" in out


def test_linger_failure_prints_the_sudo_command(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    linux.fake.rule(
        "loginctl", "enable-linger *", rc=1, stderr="Could not enable linger: Access denied\n"
    )
    out = linux.sufd("install", "--no-start", "--linger").stdout
    assert linux.fake.calls("loginctl") == [f"enable-linger {USER}"]
    assert f"run: sudo loginctl enable-linger {USER}" in out
    assert "Access denied" in out


def test_install_adds_paths_to_an_existing_config(linux: Machine) -> None:
    """A config the user wrote before `sufd install` keeps its settings, gains every
    resolved path, and the previous text is kept as config.toml.bak."""
    linux.fake.systemd_unreachable()
    paths = linux.paths()
    original = '[report]\ntimezone = "Europe/Berlin"\n'
    paths["config"].parent.mkdir(parents=True)
    paths["config"].write_text(original)
    out = linux.sufd("install", "--no-start").stdout
    text = paths["config"].read_text()
    assert 'timezone = "Europe/Berlin"' in text
    for key in ("data_dir", "db", "state_dir", "log_dir", "runtime_dir"):
        assert f'{key} = "{paths[key]}"' in text, key
    assert paths["config"].with_name("config.toml.bak").read_text() == original
    assert "(previous file kept as config.toml.bak)" in out
    assert stat.S_IMODE(paths["config"].stat().st_mode) == 0o600


def test_unit_is_replaced_atomically(
    isolated: SufdEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, with a fake `systemctl` that cannot reach a user bus (none here), so only
    the files are written. A failed write leaves the old unit whole and no temporary file
    behind; a successful one swaps in a new file (new inode) instead of rewriting the old one
    in place, so a reader (systemd's daemon-reload) never sees a half-written unit."""
    fake = FakeBin(tmp_path / "bin", "systemctl", "loginctl")
    fake.systemd_unreachable()
    monkeypatch.setenv("PATH", f"{fake.bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("USER", USER)
    settings = load_settings()
    unit = SystemdUser(Runner(), settings.env, settings.home).unit_path
    out: list[str] = []

    def install() -> int:
        runner = Runner(echo=out.append)
        return flows.install(settings, platform="linux", runner=runner, echo=runner.echo)

    assert install() == 0
    current = unit.read_text()
    older = re.sub(r"\(sufd [^)]+\)", "(sufd 0.0.1)", current, count=1)
    unit.write_text(older)
    inode = unit.stat().st_ino

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", disk_full)
        with pytest.raises(OSError, match="No space left"):
            install()
    assert unit.read_text() == older
    assert sorted(p.name for p in unit.parent.iterdir()) == [unit.name]

    with unit.open() as reader:  # what a reader holding the old file sees
        assert install() == 0
        assert reader.read() == older
    assert unit.read_text() == current
    assert unit.stat().st_ino != inode
    assert sorted(p.name for p in unit.parent.iterdir()) == [unit.name]


# -- Linux: start / stop / restart through the service manager ---------------------------


def test_lifecycle_verbs_delegate_to_systemd(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    linux.sufd("install")
    first = linux.fake.service_pid
    socket = linux.paths()["socket"]
    linux.fake.clear_calls()

    linux.sufd("stop")
    assert linux.fake.calls("systemctl") == ["--user show-environment", "--user stop sufd.service"]
    assert linux.fake.service_pid is None and not pid_alive(first or 0)

    linux.fake.clear_calls()
    linux.sufd("start")
    assert linux.fake.calls("systemctl") == ["--user show-environment", "--user start sufd.service"]
    second = linux.fake.service_pid
    assert second is not None and hello_pid(socket) == second

    linux.fake.clear_calls()
    linux.sufd("restart")
    assert linux.fake.calls("systemctl") == [
        "--user show-environment",
        "--user restart sufd.service",
    ]
    third = linux.fake.service_pid
    assert third not in (None, second) and hello_pid(socket) == third


# -- Linux: doctor -----------------------------------------------------------------------


def doctor_lines(out: str) -> dict[str, tuple[str, str]]:
    """``sufd doctor`` text: ``{name: (STATUS, detail)}``."""
    return {line[6:22].strip(): (line[:4].strip(), line[23:]) for line in out.splitlines()}


def test_doctor_reports_the_installed_service(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    before = linux.sufd("doctor", rc=None)
    assert doctor_lines(before.stdout)["service"][0] == "WARN", before.stdout  # not installed
    linux.sufd("install")
    linux.fake.clear_calls()
    proc = linux.sufd("doctor", rc=None)
    found = doctor_lines(proc.stdout)
    assert found["service enabled"] == ("OK", "systemd: enabled"), proc.stdout
    assert found["service active"] == ("OK", "systemd: active"), proc.stdout
    assert found["linger"][0] == "WARN" and f"loginctl enable-linger {USER}" in found["linger"][1]
    assert set(linux.fake.calls("systemctl")) <= READ_ONLY  # doctor only looks
    fails = [name for name, (status, _) in found.items() if status == "FAIL"]
    assert proc.returncode == (1 if fails else 0)
    assert fails in ([], ["interpreter"]), proc.stdout  # a checkout in /tmp is a fair FAIL

    linux.sufd("stop")
    stopped = doctor_lines(linux.sufd("doctor", rc=None).stdout)
    assert stopped["service active"][0] == "FAIL"


def test_doctor_json(linux: Machine) -> None:
    linux.fake.systemd_unreachable()
    linux.sufd("install", "--no-start")
    proc = linux.sufd("doctor", "--json", rc=None)
    assert proc.returncode in (0, 1), proc.stderr
    checks = json.loads(proc.stdout)
    assert all(set(c) == {"status", "name", "detail"} for c in checks), checks
    assert {c["name"]: c["status"] for c in checks}["service"] == "warn"


def doctor_checks(**kw: Any) -> dict[str, tuple[str, str]]:
    """``run_checks`` in-process for the ``isolated`` user (no unit is installed, so no
    service manager is asked anything): ``{name: (status, detail)}``."""
    checks = doctor.run_checks(load_settings(), platform="linux", runner=Runner(), **kw)
    return {c.name: (c.status, c.detail) for c in checks}


def test_doctor_fails_an_unsafe_runtime_dir(isolated: SufdEnv) -> None:
    runtime = load_settings().paths.runtime_dir
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)  # whatever the umask
    status, detail = doctor_checks()["runtime dir"]
    assert status == "fail" and f"chmod 700 {runtime}" in detail, detail
    runtime.chmod(0o700)
    assert doctor_checks()["runtime dir"][0] == "ok"


def test_doctor_reports_roots_per_source(isolated: SufdEnv) -> None:
    claude = isolated.home / ".claude" / "projects"
    claude.mkdir(parents=True)
    found = doctor_checks()
    assert found["roots claude"] == ("ok", str(claude)), found
    assert found["roots codex"][0] == "warn" and "no log directory" in found["roots codex"][1]


@pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux-only")
def test_doctor_compares_watched_dirs_with_the_inotify_limit(
    isolated: SufdEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated.home / ".claude" / "projects" / "a" / "b").mkdir(parents=True)
    (isolated.home / ".codex" / "sessions").mkdir(parents=True)
    real = Path("/proc/sys/fs/inotify/max_user_watches")
    assert real.exists(), "inotify limits are in /proc on Linux"
    status, detail = doctor_checks()["watch limits"]
    assert status == "ok" and detail.startswith("4 directories to watch"), detail
    # A lower limit than the kernel's: the only way to reach the warning without root-owned
    # sysctls. doctor reads the limit through sufd.cli.doctor.Path; point that one file elsewhere.
    limit = tmp_path / "max_user_watches"
    limit.write_text("4\n")
    monkeypatch.setattr(doctor, "Path", lambda p: limit if Path(p) == real else Path(p))
    status, detail = doctor_checks()["watch limits"]
    assert status == "warn", detail
    assert "4 directories to watch, limit 4" in detail and "max_user_watches" in detail


def test_doctor_fails_a_dir_under_a_regular_file(
    isolated: SufdEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("SUFD_DATA_DIR", str(blocker / "data"))
    assert doctor_checks()["data dir"][0] == "fail"


# -- Linux: uninstall --------------------------------------------------------------------


def test_uninstall_stops_and_removes_the_unit(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    linux.sufd("install")
    pid = linux.fake.service_pid
    config = linux.paths()["config"]
    linux.fake.clear_calls()

    linux.sufd("uninstall")
    assert linux.fake.calls("systemctl") == [
        "--user show-environment",
        "--user disable --now sufd.service",
        "--user daemon-reload",
        "--user reset-failed sufd.service",
    ]
    assert not linux.unit.exists()
    assert not pid_alive(pid or 0)
    assert config.exists()  # without --purge the user's config stays

    linux.fake.clear_calls()
    again = linux.sufd("uninstall").stdout  # idempotent
    assert f"no service installed at {linux.unit}" in again
    assert "--user disable --now sufd.service" not in linux.fake.calls("systemctl")


def test_uninstall_while_unreachable_stops_the_hand_started_daemon(linux: Machine) -> None:
    """Unit written, manager unreachable, daemon started by hand as install suggests: the
    uninstall must stop that daemon (as it does when no unit is installed), not leave it
    running while --purge deletes its ledger and config."""
    linux.fake.systemd_unreachable()
    linux.sufd("install")
    linux.sufd("start")
    pid = hello_pid(linux.paths()["socket"])
    linux.sufd("uninstall", "--purge")
    assert not linux.unit.exists()
    assert not pid_alive(pid), "uninstall left the daemon running"


def test_purge_lists_exactly_what_it_deletes(linux: Machine) -> None:
    linux.fake.systemd_user(linux.unit)
    linux.sufd("install")
    paths = linux.paths()
    backup = paths["config"].with_name("config.toml.bak")
    backup.write_text("# an older config\n")
    keep = [linux.user.home / ".claude" / "projects", linux.unit.parent]
    keep[0].mkdir(parents=True)
    assert paths["db"].exists()  # the daemon created the ledger
    wanted = ("config", "state_dir", "log_dir", "data_dir", "db")
    expected = {paths[k] for k in wanted} | {backup}
    before = snapshot(linux.root)

    out = linux.sufd("uninstall", "--purge").stdout
    match = re.search(r"^deleting (\d+) paths:\n((?:  .*\n)*)", out, re.M)
    assert match, out
    listed = [Path(line.strip().rstrip("/")) for line in match.group(2).splitlines()]
    assert int(match.group(1)) == len(listed)
    assert set(listed) == expected
    for path in listed:
        assert not path.exists(), path
    for path in keep:
        assert path.exists(), path
    # Nothing else went: every vanished path is the unit, lies under a listed path, or is
    # the stopped daemon's own socket and lock.
    after = snapshot(linux.root)
    own = {paths["socket"], paths["runtime_dir"] / "sufd.lock"}
    for key in set(before) - set(after):
        gone = linux.root / key
        assert gone in own or gone == linux.unit or any(gone.is_relative_to(p) for p in listed), (
            gone
        )
    assert not linux.unit.exists()


# -- macOS through the platform seam (in-process, on Linux) ------------------------------


@dataclass
class Mac:
    settings: Any
    fake: FakeBin
    plist: Path
    uid: int
    sleeps: list[float]
    out: list[str]

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"

    @property
    def target(self) -> str:
        return f"gui/{self.uid}/{LABEL}"

    def install(self, **kw: Any) -> int:
        runner = Runner(echo=self.out.append)
        return flows.install(
            self.settings, platform="darwin", runner=runner, echo=runner.echo, **kw
        )

    def uninstall(self, **kw: Any) -> int:
        runner = Runner(echo=self.out.append)
        return flows.uninstall(
            self.settings, platform="darwin", runner=runner, echo=runner.echo, **kw
        )


@pytest.fixture
def mac(isolated: SufdEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mac]:
    fake = FakeBin(tmp_path / "bin", "launchctl", "systemctl", "loginctl")
    monkeypatch.setenv("PATH", f"{fake.bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("USER", USER)
    # Launchd's backoff sleeps are injectable (Launchd(..., sleep=...)); for_platform builds
    # it with the default, so record instead of sleeping through that default.
    sleeps: list[float] = []
    assert Launchd.__init__.__kwdefaults__ is not None
    monkeypatch.setitem(Launchd.__init__.__kwdefaults__, "sleep", sleeps.append)
    settings = load_settings()
    uid = os.getuid()
    plist = isolated.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    fake.launchd(plist, f"gui/{uid}/{LABEL}", f"gui/{uid}")
    yield Mac(settings, fake, plist, uid, sleeps, [])
    fake.kill_services()


def test_for_platform_is_the_seam(tmp_path: Path) -> None:
    runner = Runner(dry_run=True)
    assert isinstance(for_platform("darwin", runner, {}, tmp_path), Launchd)
    assert isinstance(for_platform("linux", runner, {}, tmp_path), SystemdUser)


def test_mac_first_install(mac: Mac) -> None:
    assert mac.install() == 0
    assert mac.fake.calls("launchctl") == [
        f"print {mac.domain}",  # which domain: gui/<uid> answers
        f"print {mac.domain}",  # is launchd reachable there (the same probe, repeated)
        f"print {mac.target}",  # is the job loaded already
        f"enable {mac.target}",
        f"bootstrap {mac.domain} {mac.plist}",
    ]
    assert mac.fake.calls("systemctl") == [] and mac.fake.calls("loginctl") == []
    assert mac.plist.parent == mac.settings.home / "Library" / "LaunchAgents"
    assert stat.S_IMODE(mac.plist.stat().st_mode) == 0o644
    data = plistlib.loads(mac.plist.read_bytes())
    assert data["ProgramArguments"] == flows.service_argv(mac.settings)
    assert Path(data["StandardErrorPath"]).parent == mac.settings.paths.log_dir
    # The fake bootstrap ran ProgramArguments (RunAtLoad); install returned after hello.
    pid = mac.fake.service_pid
    assert pid is not None and hello_pid(mac.settings.paths.socket) == pid
    assert "sufd is running. Check it with: sufctl status" in mac.out
    assert mac.sleeps == []


def test_mac_bootstrap_retries_on_error_5(mac: Mac) -> None:
    busy = {"rc": 5, "stderr": "Bootstrap failed: 5: Input/output error\n"}
    ok = {"rc": 0, "actions": ["load", f"start:{mac.plist}"]}
    mac.fake.rule("launchctl", f"bootstrap {mac.domain} *", seq=[busy, busy, ok])
    assert mac.install() == 0
    bootstrap = f"bootstrap {mac.domain} {mac.plist}"
    assert mac.fake.calls("launchctl")[3:] == [
        f"enable {mac.target}",
        bootstrap,
        f"bootout {mac.target}",
        bootstrap,
        f"bootout {mac.target}",
        bootstrap,
    ]
    assert mac.sleeps == [0.5, 1.0]
    assert mac.fake.service_pid is not None


def test_mac_reinstall_unchanged_does_nothing(mac: Mac) -> None:
    mac.install()
    pid = mac.fake.service_pid
    before = (mac.plist.stat().st_mtime_ns, mac.plist.read_bytes())
    mac.fake.clear_calls()
    assert mac.install() == 0
    assert mac.fake.calls("launchctl") == [
        f"print {mac.domain}",
        f"print {mac.domain}",
        f"print {mac.target}",
    ]
    assert (mac.plist.stat().st_mtime_ns, mac.plist.read_bytes()) == before
    assert mac.fake.service_pid == pid


def test_mac_upgrade_boots_out_and_bootstraps_again(mac: Mac) -> None:
    mac.install()
    old = mac.fake.service_pid
    mac.plist.write_text(
        mac.plist.read_text().replace("<integer>10</integer>", "<integer>9</integer>")
    )
    mac.fake.clear_calls()
    assert mac.install() == 0
    assert mac.fake.calls("launchctl")[2:] == [
        f"print {mac.target}",
        f"bootout {mac.target}",
        f"enable {mac.target}",
        f"bootstrap {mac.domain} {mac.plist}",
    ]
    new = mac.fake.service_pid
    assert new is not None and new != old and hello_pid(mac.settings.paths.socket) == new


def test_mac_without_gui_session_uses_user_domain(mac: Mac) -> None:
    user_domain = f"user/{mac.uid}"
    mac.fake.rule("launchctl", f"print {mac.domain}", rc=113, stderr="Bad request.\n")
    mac.fake.launchd(mac.plist, f"{user_domain}/{LABEL}", user_domain)
    assert mac.install(start_now=False) == 0
    assert mac.fake.calls("launchctl") == [
        f"print {mac.domain}",
        f"print {user_domain}",
        f"print {user_domain}/{LABEL}",
        f"enable {user_domain}/{LABEL}",
    ]


def test_mac_unreachable_prints_manual_commands(mac: Mac) -> None:
    mac.fake.rule("launchctl", "print *", rc=113, stderr="Bad request.\n")
    assert mac.install() == 0
    assert mac.plist.is_file()
    text = "\n".join(mac.out)
    assert "warning: launchd is not reachable" in text
    assert f"  launchctl bootstrap user/{mac.uid} {mac.plist}" in text
    assert mac.fake.service_pid is None


def test_mac_uninstall_boots_out_and_removes_the_plist(mac: Mac) -> None:
    mac.install()
    pid = mac.fake.service_pid
    mac.fake.clear_calls()
    assert mac.uninstall() == 0
    assert mac.fake.calls("launchctl") == [
        f"print {mac.domain}",
        f"print {mac.domain}",
        f"bootout {mac.target}",
    ]
    assert not mac.plist.exists()
    assert not pid_alive(pid or 0)


def test_mac_dry_run_changes_nothing(mac: Mac, tmp_path: Path) -> None:
    def state() -> dict[str, tuple[Any, ...]]:
        return {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("bin")}

    before = state()
    runner = Runner(dry_run=True, echo=mac.out.append)
    assert flows.install(mac.settings, platform="darwin", runner=runner, echo=runner.echo) == 0
    assert state() == before
    assert mac.fake.calls("launchctl") == [  # the read-only probes only
        f"print {mac.domain}",
        f"print {mac.domain}",
        f"print {mac.target}",
    ]
    text = "\n".join(mac.out)
    assert f"would write {mac.plist}:\n" in text and "<key>ProgramArguments</key>" in text
    assert f"would run: launchctl enable {mac.target}" in mac.out
    assert f"would run: launchctl bootstrap {mac.domain} {mac.plist}" in mac.out
    assert mac.fake.service_pid is None


@pytest.mark.parametrize(
    ("rc", "stderr", "bootstraps"),
    [
        (5, "Bootstrap failed: 5: Input/output error\n", 3),
        (37, "Bootstrap failed: 37: Operation already in progress\n", 1),
    ],
    ids=["error-5-every-time", "other-error"],
)
def test_mac_bootstrap_gives_up(mac: Mac, rc: int, stderr: str, bootstraps: int) -> None:
    """Error 5 is retried (3 tries, backoff, bootout in between), then reported; any other
    error is reported at once."""
    mac.fake.rule("launchctl", f"bootstrap {mac.domain} *", rc=rc, stderr=stderr)
    message = f"launchctl bootstrap {mac.domain} failed: {stderr.strip()}"
    with pytest.raises(SufdError, match=re.escape(message)):
        mac.install()
    calls = mac.fake.calls("launchctl")
    assert calls.count(f"bootstrap {mac.domain} {mac.plist}") == bootstraps
    assert calls.count(f"bootout {mac.target}") == bootstraps - 1
    assert mac.sleeps == [0.5, 1.0][: bootstraps - 1]
    assert mac.plist.is_file()  # left for the user to inspect


def test_mac_uninstall_purge(mac: Mac) -> None:
    mac.install()
    pid = mac.fake.service_pid
    p = mac.settings.paths
    assert p.db.exists()
    mac.fake.clear_calls()
    assert mac.uninstall(purge=True) == 0
    assert mac.fake.calls("launchctl")[-1] == f"bootout {mac.target}"
    assert not pid_alive(pid or 0)
    assert not mac.plist.exists()
    for path in (p.config_file, p.state_dir, p.log_dir, p.data_dir, p.db):
        assert not path.exists(), path
    listed = mac.out[mac.out.index(next(o for o in mac.out if o.startswith("deleting "))) :]
    assert listed[0] == f"deleting {len(listed) - 1} paths:", listed
