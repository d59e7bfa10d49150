"""``sufd start / stop / restart`` without a service manager (acceptance item 4 of issue 4).

No unit is installed, so the verbs manage a real detached daemon (``sufd run --daemon``:
python-daemon's double fork): ``start`` returns only once ``hello`` answers, the instance
lock holds the daemon's pid and is flocked, ``stop`` leaves no process, socket or lock.
Fake ``systemctl``/``launchctl`` are on PATH only to prove nobody asks a service manager.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sufd.control import client
from sufd.daemon.runtime import read_lock_pid
from tests.conftest import SufdEnv, make_env
from tests.daemon_harness import kill_lock_holders
from tests.fakebin import FakeBin, pid_alive

pytestmark = pytest.mark.integration


@dataclass
class Host:
    user: SufdEnv
    fake: FakeBin

    @property
    def env(self) -> dict[str, str]:
        return self.fake.env(self.user.env)

    @property
    def runtime(self) -> Path:
        return Path(self.user.env["XDG_RUNTIME_DIR"]) / "sufd"

    @property
    def lock(self) -> Path:
        return self.runtime / "sufd.lock"

    @property
    def socket(self) -> Path:
        return self.runtime / "sufd.sock"

    def run(
        self, module: str, *args: str, rc: int | None = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if rc is not None:
            assert proc.returncode == rc, (
                f"{module} {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def sufd(self, *args: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        return self.run("sufd", *args, rc=rc)

    def status_rc(self) -> int:
        return self.run("sufd.cli.sufctl", "status", rc=None).returncode

    def hello_pid(self) -> int:
        pid = client.call(self.socket, "hello")["pid"]
        assert isinstance(pid, int)
        return pid


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(make_env(tmp_path / "u"), FakeBin(tmp_path / "bin", "systemctl", "launchctl"))
    assert len(os.fsencode(h.socket)) <= 100, "the runtime dir would fall back to /tmp/sufd-UID"
    yield h
    kill_lock_holders(h.lock)


def test_start_lock_and_stop(host: Host) -> None:
    assert "sufd is running" in host.sufd("start").stdout
    # start returned only after hello answered: status works immediately.
    assert host.status_rc() == 0

    pid = read_lock_pid(host.lock)
    assert pid is not None and pid == host.hello_pid()
    assert pid_alive(pid)
    # Detached: not our child, in a session of its own.
    assert os.getsid(pid) != os.getsid(0)
    fd = os.open(host.lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)

    again = host.sufd("start").stdout
    assert "sufd is already running" in again
    assert host.hello_pid() == pid

    assert "sufd stopped" in host.sufd("stop").stdout
    assert not pid_alive(pid)
    assert not host.socket.exists()
    assert not host.lock.exists()
    assert host.status_rc() == 3
    assert "sufd is not running" in host.sufd("stop").stdout
    # No unit installed: no service manager was asked anything.
    assert host.fake.calls("systemctl") == [] and host.fake.calls("launchctl") == []


def test_restart_replaces_the_process(host: Host) -> None:
    host.sufd("start")
    first = host.hello_pid()
    assert "sufd is running" in host.sufd("restart").stdout
    second = host.hello_pid()
    assert second != first
    assert not pid_alive(first)
    assert read_lock_pid(host.lock) == second
    host.sufd("stop")
    assert not pid_alive(second)


def test_start_from_inside_a_service_still_detaches(host: Host) -> None:
    """A shell inside a systemd service carries its variables; `start` strips them so the
    detached child is not refused (`run --daemon` refuses them, see below)."""
    env = {**host.env, "NOTIFY_SOCKET": "/nonexistent/notify", "INVOCATION_ID": "0" * 32}
    host.run("sufd", "start", env=env)
    assert host.status_rc() == 0
    host.sufd("stop")


@pytest.mark.parametrize(
    "marker",
    [
        {"NOTIFY_SOCKET": "/run/user/1000/systemd/notify"},
        {"INVOCATION_ID": "0123456789abcdef0123456789abcdef"},
        {"XPC_SERVICE_NAME": "io.github.sufd"},
    ],
    ids=["NOTIFY_SOCKET", "INVOCATION_ID", "XPC_SERVICE_NAME"],
)
def test_run_daemon_is_refused_under_a_service_manager(host: Host, marker: dict[str, str]) -> None:
    proc = host.run("sufd", "run", "--daemon", rc=78, env={**host.env, **marker})
    (name,) = marker
    assert f"--daemon refused under a service manager ({name} set)" in proc.stderr
    assert not host.lock.exists() and not host.socket.exists()
