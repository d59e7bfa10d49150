"""Locate and run the pinned ccusage CLI that sufd's parity tests compare against.

CI installs it with ``npm install --prefix .ci ccusage@20.0.24``; ``SUFD_CCUSAGE``
points at another binary.  A missing ccusage fails the test unless
``SUFD_ALLOW_NO_CCUSAGE=1`` is set, in which case it is skipped.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CCUSAGE_VERSION", "ccusage_bin", "run_ccusage"]

CCUSAGE_VERSION = "20.0.24"
REPO = Path(__file__).resolve().parent.parent


@functools.cache
def _checked_bin() -> Path | str:
    """The binary, or why it cannot be used (cached: the answer does not change in a run)."""
    configured = os.environ.get("SUFD_CCUSAGE")
    path = Path(configured) if configured else REPO / ".ci" / "node_modules" / ".bin" / "ccusage"
    if not path.is_file():
        return (
            f"ccusage not found at {path}; run `npm install --prefix .ci ccusage@{CCUSAGE_VERSION}`"
            " or set SUFD_CCUSAGE"
        )
    proc = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, timeout=60, env=_env(REPO)
    )
    version = proc.stdout.strip()  # "ccusage 20.0.24"
    if version.split()[-1:] != [CCUSAGE_VERSION]:
        # Parity expectations are pinned to one ccusage release; another one is a test setup error.
        return f"{path} reports version {version!r}, expected {CCUSAGE_VERSION}"
    return path


def ccusage_bin() -> Path:
    """Path of the pinned ccusage; fails (or skips with SUFD_ALLOW_NO_CCUSAGE=1) without it."""
    found = _checked_bin()
    if isinstance(found, Path):
        return found
    if os.environ.get("SUFD_ALLOW_NO_CCUSAGE") == "1":
        pytest.skip(found)
    pytest.fail(found)


def _env(home: Path) -> dict[str, str]:
    # Nothing of the developer's own setup may leak in: no CLAUDE_CONFIG_DIR, CODEX_HOME,
    # XDG dirs or ccusage settings; only node on PATH.
    return {
        "HOME": str(home),
        "TZ": "UTC",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NO_COLOR": "1",
    }


def run_ccusage(home: Path, *args: str) -> dict[str, Any]:
    """Run ``ccusage ARGS --json --offline`` as a user whose home is ``home``; return the JSON."""
    proc = subprocess.run(
        [str(ccusage_bin()), *args, "--json", "--offline"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(home),
        cwd=home,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"ccusage {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
