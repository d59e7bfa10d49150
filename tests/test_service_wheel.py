"""The wheel works on a fresh machine (acceptance items 5 and 6 of issue 4).

``packaging/build_dist.py`` builds the sdist and the wheel (from the sdist) once per session;
the wheel is then installed into brand-new virtual environments (no system site-packages,
dependencies from the package index) and used from there only: never from this checkout,
so a template or data file missing from the wheel fails here even though the checkout has
it. ``systemctl`` is a fake that answers "Failed to connect to bus" as it does on this
machine (see ``tests/fakebin.py``), so ``sufd install`` writes the files and exits 0.

The pipx and uv recipes of packaging/README.md are run as written there, with their homes
in a temporary directory. These tests need the package index and take tens of seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from sufd import __version__
from sufd.service.templates import render_unit
from tests.conftest import REPO, make_env
from tests.daemon_harness import kill_lock_holders
from tests.fakebin import FakeBin, decode_exec_start, unit_value

pytestmark = pytest.mark.integration

BUILD_DIST = REPO / "packaging" / "build_dist.py"
TEMPLATES = {
    "sufd/_templates/sufd.service": REPO / "systemd" / "sufd.service",
    "sufd/_templates/io.github.sufd.plist": REPO / "launchd" / "io.github.sufd.plist",
}


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    output: str


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    outdir = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(BUILD_DIST), "--outdir", str(outdir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=outdir,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    return Dist(Path(found["sdist"]), Path(found["wheel"]), proc.stdout + proc.stderr)


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


def new_venv(path: Path, *packages: str) -> Path:
    """A fresh venv (no system site-packages) with ``packages`` installed from the index.

    This test interpreter's pip installs into it (``pip --python``), which saves the slow
    ensurepip bootstrap of a second pip; the environment itself is brand new.
    """
    ok(run([sys.executable, "-m", "venv", "--without-pip", str(path)]))
    cfg = (path / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    python = path / "bin" / "python"
    if packages:
        ok(run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *packages]))
    return python


# -- build_dist.py -----------------------------------------------------------------------


def test_build_dist_builds_a_complete_wheel(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as zf:
        names = set(zf.namelist())
        for member, source in TEMPLATES.items():
            assert zf.read(member) == source.read_bytes(), member
    assert "sufd/data/prices.json" in names
    assert dist.wheel.name == f"sufd-{__version__}-py3-none-any.whl"
    assert dist.sdist.name == f"sufd-{__version__}.tar.gz"
    check = run([sys.executable, str(BUILD_DIST), "--check", str(dist.wheel), str(dist.sdist)])
    assert ok(check).stdout.splitlines() == [f"sdist: {dist.sdist}", f"wheel: {dist.wheel}"]


def test_build_dist_rejects_an_incomplete_wheel(dist: Dist, tmp_path: Path) -> None:
    broken = tmp_path / dist.wheel.name
    with zipfile.ZipFile(dist.wheel) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if item.filename == "sufd/_templates/sufd.service":
                continue
            data = src.read(item)
            if item.filename == "sufd/_templates/io.github.sufd.plist":
                data = data.replace(b"<integer>10</integer>", b"<integer>1</integer>")
            dst.writestr(item, data)
    proc = run([sys.executable, str(BUILD_DIST), "--check", str(broken)])
    assert proc.returncode == 1
    assert f"{broken.name} lacks sufd/_templates/sufd.service" in proc.stderr
    assert "io.github.sufd.plist differs from launchd/io.github.sufd.plist" in proc.stderr
    assert "the wheel is incomplete" in proc.stderr


# -- a fresh machine ---------------------------------------------------------------------


def test_fresh_venv_install_doctor_and_paths(dist: Dist, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = new_venv(venv, str(dist.wheel))
    bin_ = venv / "bin"
    user = make_env(tmp_path / "u", {"USER": "sufd-test"})
    user.env.pop("PYTHONPATH")  # nothing from this checkout
    fake = FakeBin(tmp_path / "fakebin", "systemctl", "loginctl")
    fake.systemd_unreachable()
    env = fake.env(user.env)
    where = ok(run([str(python), "-c", "import sufd; print(sufd.__file__)"], env=env, cwd=tmp_path))
    assert Path(where.stdout.strip()).is_relative_to(venv)

    install = ok(run([str(bin_ / "sufd"), "install", "--no-start"], env=env, cwd=tmp_path))
    assert "warning: systemd is not reachable" in install.stdout
    # The venv lives under /tmp, which install rightly warns about.
    assert "lives in a temporary directory" in install.stdout
    unit_path = Path(user.env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "sufd.service"
    unit = unit_path.read_text()
    command = decode_exec_start(unit_value(unit, "ExecStart"))
    assert command.path == str(python)  # THAT venv's python, not resolved to the base
    config = Path(user.env["XDG_CONFIG_HOME"]) / "sufd" / "config.toml"
    assert command.argv == [str(python), "-m", "sufd", "run", "--foreground", "--config"] + [
        str(config)
    ]
    assert config.is_file()
    # The packaged template renders exactly what the checkout's template renders.
    assert unit == render_unit(command.argv, version=__version__)

    paths = json.loads(ok(run([str(bin_ / "sufd"), "paths", "--json"], env=env)).stdout)
    assert paths["config"] == str(config)
    for key, value in paths.items():
        assert Path(value).is_relative_to(tmp_path / "u"), (key, value)

    doctor = run([str(bin_ / "sufd"), "doctor"], env=env, cwd=tmp_path)
    checks = [
        {"status": line[:4].strip().lower(), "name": line[6:22].strip(), "detail": line[23:]}
        for line in doctor.stdout.splitlines()
    ]
    assert checks and all(c["status"] in ("ok", "warn", "fail") for c in checks), doctor.stdout
    failures = [c for c in checks if c["status"] == "fail"]
    # The only justified failure: this test's venv is in a temporary directory.
    assert [c["name"] for c in failures] == ["interpreter"], doctor.stdout
    assert "temporary directory" in failures[0]["detail"]
    assert doctor.returncode == 1
    service = {c["name"]: c for c in checks}["service"]
    assert service["status"] == "warn" and "not reachable" in service["detail"]

    # The wheel's dependencies suffice to run the daemon (detached: no service manager).
    lock = Path(paths["runtime_dir"]) / "sufd.lock"
    try:
        ok(run([str(bin_ / "sufd"), "start"], env=env, cwd=tmp_path))
        ok(run([str(bin_ / "sufctl"), "status"], env=env, cwd=tmp_path))
        ok(run([str(bin_ / "sufd"), "stop"], env=env, cwd=tmp_path))
    finally:
        kill_lock_holders(lock)


# -- packaging/README.md recipes ---------------------------------------------------------


def test_pipx_install_recipe(dist: Dist, tmp_path: Path) -> None:
    tool = new_venv(tmp_path / "pipx-tool", "pipx")
    home, bin_ = tmp_path / "pipx-home", tmp_path / "pipx-bin"
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "PIPX_HOME": str(home),
        "PIPX_BIN_DIR": str(bin_),
        "PIPX_MAN_DIR": str(tmp_path / "pipx-man"),
    }
    ok(run([str(tool), "-m", "pipx", "install", str(dist.wheel)], env=env, cwd=tmp_path))
    version = ok(run([str(bin_ / "sufd"), "--version"], env=env, cwd=tmp_path))
    assert version.stdout.strip() == f"sufd {__version__}"
    assert "usage: sufctl" in ok(run([str(bin_ / "sufctl"), "--help"], env=env)).stdout
    # The console script runs pipx's venv of sufd: that interpreter ends up in ExecStart.
    assert (bin_ / "sufd").resolve().is_relative_to(home / "venvs" / "sufd")


def test_uv_tool_install_recipe(dist: Dist, tmp_path: Path) -> None:
    tool = new_venv(tmp_path / "uv-tool", "uv")
    bin_ = tmp_path / "uv-bin"
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "UV_TOOL_DIR": str(tmp_path / "uv-tools"),
        "UV_TOOL_BIN_DIR": str(bin_),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    uv = str(tool.parent / "uv")
    install = [uv, "tool", "install", "--python", sys.executable, str(dist.wheel)]
    ok(run(install, env=env, cwd=tmp_path))
    version = ok(run([str(bin_ / "sufd"), "--version"], env=env, cwd=tmp_path))
    assert version.stdout.strip() == f"sufd {__version__}"
    assert "usage: sufctl" in ok(run([str(bin_ / "sufctl"), "--help"], env=env)).stdout
