"""The unit's ExecStart runs the daemon as systemd would (acceptance item 2 of issue 4).

``sufd install`` writes the unit (the fake ``systemctl`` answers "Failed to connect to bus",
as on this machine, so install writes the files and exits 0). The ``ExecStart=`` line is
decoded with systemd's rules (``tests/fakebin.py``; the decoder itself is checked against
systemd's parser in ``test_service_render.py``) and run as-is: the decoded path and argv,
the unit's ``Environment=``, the working directory and the variables a systemd user manager
sets (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``INVOCATION_ID``), and nothing from the test's
own environment such as ``PYTHONPATH`` or ``XDG_CONFIG_HOME``. The notify socket is a
datagram socket bound by the test, as systemd binds one for ``Type=notify``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_env
from tests.fakebin import FakeBin, decode_exec_start, unit_environment, unit_value

pytestmark = pytest.mark.integration


class NotifySocket:
    """What systemd listens on for sd_notify datagrams."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sufd-notify-")  # short: sun_path is 108 bytes
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[list[str]] = []

    def wait_for(self, field: str, timeout: float, proc: subprocess.Popen[bytes]) -> list[str]:
        """Receive datagrams until one holds ``field``; return that datagram's lines."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                lines = self.sock.recv(65536).decode().split("\n")
            except TimeoutError:
                assert proc.poll() is None, f"the daemon exited {proc.returncode} before {field}"
                continue
            self.messages.append(lines)
            if field in lines:
                return lines
        raise AssertionError(f"no {field} within {timeout} s; got {self.messages}")

    def drain(self) -> list[list[str]]:
        """Every datagram received so far, including those nobody waited for."""
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self.sock.recv(65536).decode().split("\n"))
        return self.messages

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    ns = NotifySocket()
    yield ns
    ns.close()


def test_exec_start_runs_the_daemon(tmp_path: Path, notify: NotifySocket) -> None:
    user = make_env(tmp_path / "u", {"USER": "sufd-test"})
    fake = FakeBin(tmp_path / "bin", "systemctl", "loginctl")
    fake.systemd_unreachable()
    # A config path with every character systemd's syntax treats specially.
    config = tmp_path / "u" / "conf dir" / "100%$HOME\"\\'.toml"
    install = subprocess.run(
        [sys.executable, "-m", "sufd", "--config", str(config), "install"],
        env=fake.env(user.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    unit_path = Path(user.env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "sufd.service"
    unit = unit_path.read_text()
    assert config.is_file()

    command = decode_exec_start(unit_value(unit, "ExecStart"))
    assert command.path == sys.executable  # the interpreter that ran `sufd install`
    assert command.argv == [sys.executable, "-m", "sufd", "run", "--foreground"] + [
        "--config",
        str(config),
    ]

    home = user.env["HOME"]
    env = {
        "HOME": home,
        "USER": "sufd-test",
        "LANG": "C.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "XDG_RUNTIME_DIR": user.env["XDG_RUNTIME_DIR"],
        "INVOCATION_ID": os.urandom(16).hex(),
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": str(int(float(unit_value(unit, "WatchdogSec")) * 1_000_000)),
        **unit_environment(unit),
    }
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        command.argv,
        executable=command.path,
        env=env,
        cwd=home,  # a user manager's default WorkingDirectory
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        ready = notify.wait_for("READY=1", 20, daemon)
        assert any(line.startswith("STATUS=") for line in ready), ready

        status = subprocess.run(
            [sys.executable, "-m", "sufd.cli.sufctl", "--config", str(config), "status"],
            env=user.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"pid {daemon.pid}" in status.stdout, status.stdout

        # The heartbeat feeds the watchdog (WatchdogSec= in the unit).
        notify.wait_for("WATCHDOG=1", 5, daemon)

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0  # within TimeoutStopSec
        assert ["STOPPING=1"] in notify.drain()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
    runtime = Path(user.env["XDG_RUNTIME_DIR"]) / "sufd"
    assert not (runtime / "sufd.sock").exists()
    assert not (runtime / "sufd.lock").exists()


def test_notify_socket_wait_can_fail(notify: NotifySocket) -> None:
    """The READY check above can fail: a process that never notifies is reported."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(AssertionError, match="no READY=1"):
            notify.wait_for("READY=1", 0.5, proc)
    finally:
        proc.kill()
        proc.wait()
