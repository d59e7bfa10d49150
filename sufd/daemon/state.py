"""Daemon-owned runtime state that must survive restarts (pause state), in ``state.json``.

Written atomically (temporary file + rename, 0600) so a crash never leaves half a file.
:class:`Pauses` is the daemon's pause policy over it.
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

__all__ = ["CLOCK_JUMP_S", "Pause", "Pauses", "State", "load_state", "save_state"]

log = get_logger(__name__)

# A change of the wall clock against the steady one larger than this is a jump (NTP slews
# by far less per heartbeat).
CLOCK_JUMP_S = 2.0
# Linux: counts suspend. Elsewhere CLOCK_MONOTONIC (on macOS it counts sleep too).
_STEADY_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


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


class Pauses:
    """Which sources are paused, kept in ``state.json``.

    A pause ``--for`` N lasts N seconds of real time (suspend included) whatever is done to
    the wall clock: when the clock is set, its deadline moves with it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = State()
        self._wall_offset = _wall_offset()

    def load(self) -> None:
        """Read the pauses that survived the last run."""
        self.state = load_state(self.path)

    def active(self) -> set[str]:
        """The sources paused now."""
        self._clock_watch()
        return {name for name, p in self.state.paused.items() if not p.expired()}

    def expired(self) -> list[str]:
        """The sources whose ``--for`` pause has run out (still recorded as paused)."""
        self._clock_watch()
        return [name for name, p in self.state.paused.items() if p.expired()]

    def pause(self, sources: list[str], until: float | None, reason: str, pid: int | None) -> None:
        """Record (and save) a pause of these sources."""
        now = time.time()
        for name in sources:
            self.state.paused[name] = Pause(since=now, until=until, reason=reason, by_pid=pid)
        save_state(self.path, self.state)

    def resume(self, sources: list[str]) -> None:
        """Forget (and save) the pauses of these sources."""
        for name in sources:
            self.state.paused.pop(name, None)
        save_state(self.path, self.state)

    def as_status(self) -> dict[str, dict[str, Any]]:
        """The ``pause`` object of ``status``."""
        return {
            name: {"since": p.since, "until": p.until, "reason": p.reason, "by_pid": p.by_pid}
            for name, p in self.state.paused.items()
        }

    def _clock_watch(self) -> None:
        offset = _wall_offset()
        jump, self._wall_offset = offset - self._wall_offset, offset
        if abs(jump) < CLOCK_JUMP_S:
            return
        log.warning("clock.jumped", by_s=round(jump, 1), paused=sorted(self.state.paused))
        timed = [p for p in self.state.paused.values() if p.until is not None]
        for p in timed:
            assert p.until is not None
            p.since, p.until = p.since + jump, p.until + jump
        if timed:
            save_state(self.path, self.state)


def _wall_offset() -> float:
    """The wall clock minus a clock that counts suspend but is never set: it changes only
    when the wall clock is set (by hand, or stepped by NTP)."""
    return time.time() - time.clock_gettime(_STEADY_CLOCK)
