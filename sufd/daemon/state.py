"""Daemon-owned runtime state that must survive restarts (pause state), in ``state.json``.

Written atomically (temporary file + rename, 0600) so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sufd.logger import get_logger

__all__ = ["Pause", "State", "load_state", "save_state"]

log = get_logger(__name__)


@dataclass
class Pause:
    """Why and until when a source is paused."""

    since: float
    until: float | None = None
    reason: str = ""
    by_pid: int | None = None

    def expired(self, now: float | None = None) -> bool:
        """Whether a ``--for`` pause has run out."""
        return self.until is not None and (now or time.time()) >= self.until


@dataclass
class State:
    """Everything in ``state.json``."""

    paused: dict[str, Pause] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``json.dumps``."""
        return {"version": 1, "paused": {k: asdict(v) for k, v in self.paused.items()}}


def load_state(path: Path) -> State:
    """Read ``state.json``; a missing file is an empty state, a broken one is logged and reset."""
    try:
        raw = json.loads(path.read_text())
        paused = {
            str(name): Pause(
                since=float(p["since"]),
                until=None if p.get("until") is None else float(p["until"]),
                reason=str(p.get("reason", "")),
                by_pid=p.get("by_pid"),
            )
            for name, p in raw.get("paused", {}).items()
        }
        return State(paused=paused)
    except FileNotFoundError:
        return State()
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.error("state.unreadable", path=str(path), error=str(exc))
        return State()


def save_state(path: Path, state: State) -> None:
    """Atomically replace ``state.json``."""
    from sufd.store import private_dir

    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".state.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_json(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
