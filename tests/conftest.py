"""Shared fixtures: an isolated HOME with XDG dirs, and helpers to run sufd for real."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

# The running-daemon fixture ``harness`` is registered once here, for every test module.
pytest_plugins = ("tests.daemon_harness",)

REPO = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures" / "real"

# Agents' own location overrides: a test must never read the real user's logs.
_ISOLATED_VARS = (
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "CLINE_DATA_DIR",
    "CLINE_DIR",
    "GEMINI_CLI_HOME",
    "GEMINI_DATA_DIR",
    "OPENCODE_DATA_DIR",
    "KILO_DATA_DIR",
    "TZ",
)


@dataclass
class SufdEnv:
    """An isolated user: HOME, XDG dirs and the environment to run sufd in."""

    home: Path
    env: dict[str, str]

    @property
    def db(self) -> Path:
        return Path(self.env["XDG_DATA_HOME"]) / "sufd" / "ledger.sqlite3"

    def run(
        self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m sufd ARGS`` (or ``sufd.cli.sufctl`` when the first arg is ``ctl``)."""
        module = "sufd"
        if args and args[0] == "ctl":
            module, args = "sufd.cli.sufctl", args[1:]
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"sufd {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)


def fresh_ledger_env(env: SufdEnv, base: Path) -> SufdEnv:
    """The same HOME with new, empty XDG dirs under ``base``: where a one-shot ``sufd ingest``
    builds a reference ledger of the same files."""
    out = dict(env.env)
    for var, sub in (
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("XDG_DATA_HOME", "xdg-data"),
        ("XDG_STATE_HOME", "xdg-state"),
        ("XDG_CACHE_HOME", "xdg-cache"),
        ("XDG_RUNTIME_DIR", "run"),
    ):
        (base / sub).mkdir(parents=True, mode=0o700, exist_ok=True)
        out[var] = str(base / sub)
    ref = SufdEnv(env.home, out)
    assert ref.db != env.db
    return ref


def make_env(base: Path, extra: Mapping[str, str] | None = None) -> SufdEnv:
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SUFD_") and k not in _ISOLATED_VARS
    }
    runtime = base / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(base / "xdg-config"),
        XDG_DATA_HOME=str(base / "xdg-data"),
        XDG_STATE_HOME=str(base / "xdg-state"),
        XDG_CACHE_HOME=str(base / "xdg-cache"),
        XDG_RUNTIME_DIR=str(runtime),
        TZ="UTC",
        PYTHONPATH=str(REPO),
    )
    env.update(extra or {})
    return SufdEnv(home, env)


@pytest.fixture
def sufd_env(tmp_path: Path) -> SufdEnv:
    """A fresh isolated user for subprocess runs of sufd."""
    return make_env(tmp_path)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SufdEnv]:
    """The same isolation applied to this process, for in-process tests."""
    env = make_env(tmp_path)
    for key in list(os.environ):
        if key.startswith("SUFD_") or key in _ISOLATED_VARS:
            monkeypatch.delenv(key, raising=False)
    for key in (
        "HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        "XDG_CACHE_HOME",
        "XDG_RUNTIME_DIR",
        "TZ",
    ):
        monkeypatch.setenv(key, env.env[key])
    yield env


def shared_fixture(*parts: str) -> Path:
    """A file from ../shared/fixtures/real, read in place; skip clearly where it is absent."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"shared fixture {path} is not present (it lives beside the repository, not in it)"
        )
    return path
