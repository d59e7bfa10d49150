"""The unit's ExecStart runs the daemon as systemd would (acceptance item 2 of issue 4).

``sufd install`` writes the unit (the fake ``systemctl`` answers "Failed to connect to bus",
as on this machine, so install writes the files and exits 0). The ``ExecStart=`` line is
decoded with systemd's rules (``tests/fakebin.py``; the decoder itself is checked against
systemd's parser in ``test_service_render.py``) and run as-is: the decoded path and argv,
the unit's ``Environment=``, the working directory and the variables a systemd user manager
sets (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``INVOCATION_ID``), and nothing from the test's
own environment such as ``PYTHONPATH`` or ``XDG_CONFIG_HOME``. The notify socket is the
harness's datagram socket (:mod:`tests.daemon_harness`), as systemd binds one for
``Type=notify``; the harness waits for the daemon and kills it at teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_harness import (
    Harness,
    wait_until,
)
from tests.fakebin import FakeBin, decode_exec_start, unit_environment, unit_value

pytestmark = pytest.mark.integration


def test_exec_start_runs_the_daemon(harness: Harness, tmp_path: Path) -> None:
    h = harness
    h.env.env["USER"] = "sufd-test"
    user = h.env
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
        "NOTIFY_SOCKET": str(h.notify.path),
        "WATCHDOG_USEC": str(int(float(unit_value(unit, "WatchdogSec")) * 1_000_000)),
        **unit_environment(unit),
    }
    # a user manager's default WorkingDirectory
    daemon = h.launch(command.argv, env=env, executable=command.path, cwd=home)
    problem = h.wait_ready(daemon, 20)
    if problem is not None:
        h.fail(problem, daemon)
    ready = h.notify.wait_for("READY=1", daemon.notify_mark)
    assert any(f.startswith("STATUS=") for f in h.notify.notices[ready].fields), h.notify.summary()

    status = h.ctl("--config", str(config), "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"pid {daemon.pid}" in status.stdout, status.stdout

    # The heartbeat feeds the watchdog (WatchdogSec= in the unit).
    h.notify.wait_for("WATCHDOG=1", ready + 1, timeout=5)

    rc, _ = h.stop(daemon, timeout=15)
    assert rc == 0, f"exit {rc} (within TimeoutStopSec?)\n{h.diagnostics(daemon)}"
    wait_until(
        lambda: ("STOPPING=1",) in [n.fields for n in h.notify.notices],
        5,
        what=lambda: f"a STOPPING=1 datagram; got {h.notify.summary()}",
    )
    assert not h.socket.exists()
    assert not h.lock.exists()


def test_ready_wait_can_fail(harness: Harness) -> None:
    """The READY check above can fail: a process that never notifies is reported."""
    sleeper = harness.launch(
        [sys.executable, "-c", "import time; time.sleep(30)"], env=harness.command_env()
    )
    problem = harness.wait_ready(sleeper, 0.5)
    assert problem is not None and "no READY=1" in problem, problem
