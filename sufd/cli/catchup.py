"""``sufd ingest`` while the daemon runs: ask the ledger's one writer to catch up.

The daemon is the only process that writes a ledger it serves. ``sufd ingest`` therefore
first asks the daemon of its ledger over the control socket (a streaming ``ingest``
request: progress lines, then the same summary a local run prints); only when no daemon
answers does it write the ledger itself. Imports only the standard library and the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sufd.control import client
from sufd.errors import SufdError

if TYPE_CHECKING:
    from sufd.settings import Settings

__all__ = ["CatchUpFailed", "DaemonAbsent", "DaemonCatchUp", "ask_daemon"]

# How long the daemon may take to accept the request (it answers in milliseconds when well).
HELLO_TIMEOUT_S = 5.0
# A daemon lost mid-request is asked again this often, after RETRY_S, 2 × RETRY_S, ...
ATTEMPTS = 5
RETRY_S = 0.2

Progress = Callable[[int, int, int, int], None]


class DaemonAbsent(SufdError):
    """No daemon serves this ledger: the caller writes it itself."""


class CatchUpFailed(SufdError):
    """The daemon was asked to catch up and could not (the ledger cannot be written, or it
    stopped before the catch-up finished)."""


@dataclass
class DaemonCatchUp:
    """What the daemon reported at the end of the catch-up it ran for us."""

    pid: int
    summary: dict[str, Any]
    paused: list[str] = field(default_factory=list)


def ask_daemon(settings: Settings, progress: Progress | None = None) -> DaemonCatchUp:
    """Have the daemon serving ``settings``' ledger run a full catch-up; wait for its end.

    ``progress(files_done, files_total, bytes_read, events_new)`` is called as the daemon
    reports. A daemon that stops or dies under the request is asked again (a service manager
    restarts it); once none answers, the caller writes the ledger itself.

    Raises:
        DaemonAbsent: no daemon listens on the socket, or the one that does serves another
            ledger (then this ledger has no writer but the caller).
        CatchUpFailed: the daemon could not complete the catch-up.
        client.DaemonUnreachable: a daemon is there but does not answer properly (writing
            beside it would make a second writer, so the caller must not fall back).
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _ask_once(settings, progress)
        except (_Lost, client.DaemonUnreachable) as exc:
            if attempt == ATTEMPTS:
                raise CatchUpFailed(f"{exc}; nothing is lost: run `sufd ingest` again") from exc
            time.sleep(RETRY_S * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


class _Lost(SufdError):
    """The daemon went away during the request (stopped, killed, restarted)."""


def _ask_once(settings: Settings, progress: Progress | None) -> DaemonCatchUp:
    path = settings.paths.socket
    try:
        hello = client.hello(path, settings.paths.db, timeout=HELLO_TIMEOUT_S)
    except (client.DaemonNotRunning, client.OtherLedger) as exc:
        raise DaemonAbsent(str(exc)) from exc
    if "cmd-ingest" not in (hello.get("capabilities") or []):
        raise CatchUpFailed(
            f"the running daemon (pid {hello.get('pid')}, version {hello.get('version')}) is"
            " older than this sufd and cannot catch up on request: run `sufd restart`"
        )
    pid = int(hello.get("pid") or 0)
    try:
        for item in client.stream(path, "ingest", timeout=HELLO_TIMEOUT_S):
            if isinstance(step := item.get("progress"), dict):
                if progress is not None:
                    progress(
                        int(step.get("files", 0)),
                        int(step.get("total", 0)),
                        int(step.get("bytes_read", 0)),
                        int(step.get("events_new", 0)),
                    )
            elif isinstance(done := item.get("done"), dict):
                paused = item.get("paused")
                return DaemonCatchUp(pid, done, [str(p) for p in paused or []])
            elif "error" in item:
                raise CatchUpFailed(f"the daemon (pid {pid}) could not catch up: {item['error']}")
    except client.DaemonNotRunning as exc:
        raise _Lost(f"the daemon (pid {pid}) stopped before the catch-up finished") from exc
    except (client.DaemonUnreachable, OSError, ValueError) as exc:
        raise _Lost(f"lost the daemon (pid {pid}) during the catch-up: {exc}") from exc
    raise _Lost(f"the daemon (pid {pid}) stopped before the catch-up finished")
