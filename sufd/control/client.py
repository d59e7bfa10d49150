"""A small synchronous client of the control socket (used by ``sufctl`` and ``sufd``).

Imports only the standard library, so ``sufctl`` stays quick to start.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sufd.control.protocol import MAX_LINE, PROTOCOL
from sufd.errors import ControlError

__all__ = [
    "DaemonBusy",
    "DaemonNotRunning",
    "DaemonError",
    "DaemonUnreachable",
    "OtherLedger",
    "call",
    "hello",
    "same_ledger",
    "stream",
]

_ids = itertools.count(1)


class DaemonNotRunning(ControlError):
    """Nothing listens on the socket (no file, or connection refused)."""


class DaemonUnreachable(ControlError):
    """The daemon did not answer in time, answered garbage, or refused us."""


class DaemonError(ControlError):
    """The daemon answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class DaemonBusy(DaemonError):
    """The daemon runs but turned the request away for now (``busy``): try again shortly."""


class OtherLedger(ControlError):
    """The daemon answering at the socket serves another ledger than the caller's."""

    def __init__(self, path: Path, pid: object, theirs: str, ours: Path) -> None:
        super().__init__(
            f"the sufd at {path} (pid {pid}) serves the ledger {theirs}, not {ours} (the one"
            " your settings name); the daemon of your ledger is not running there. Give each"
            " configuration its own paths.runtime_dir, or stop that daemon."
        )
        self.pid = pid
        self.theirs = theirs
        self.ours = ours


def same_ledger(theirs: str, ours: Path) -> bool:
    """Whether the ledger path a daemon reports is the file ``ours`` names."""
    if theirs == str(ours):
        return True
    try:
        return os.path.samefile(theirs, ours)
    except OSError:  # not created yet: compare the paths themselves
        return os.path.realpath(theirs) == os.path.realpath(ours)


def _connect(path: Path, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonNotRunning(
            f"sufd is not running (no daemon at {path}); start it with `sufd start`"
            " (or `sufd run` in the foreground)"
        ) from exc
    except PermissionError as exc:
        sock.close()
        raise DaemonUnreachable(f"permission denied on {path}: {exc.strerror}") from exc
    except TimeoutError as exc:
        sock.close()
        raise DaemonUnreachable(f"timed out connecting to {path}") from exc
    except BlockingIOError:
        # EAGAIN: the daemon's listen queue is full (a burst of clients it has not accepted
        # yet). A Unix socket with a timeout does not wait for room, so wait here.
        sock.close()
        return _connect_when_queue_has_room(path, timeout)
    except OSError as exc:
        sock.close()
        raise DaemonUnreachable(f"cannot connect to {path}: {exc.strerror or exc}") from exc
    return sock


def _connect_when_queue_has_room(path: Path, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        time.sleep(delay)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(os.fspath(path))
            return sock
        except BlockingIOError as exc:
            sock.close()
            if time.monotonic() + delay >= deadline:
                raise DaemonUnreachable(
                    f"sufd at {path} accepted no connection within {timeout:g} s"
                    " (its queue stayed full)"
                ) from exc
            delay = min(delay * 2, 0.1)
        except BaseException:
            sock.close()
            raise


def _read_line(f: Any, path: Path) -> dict[str, Any]:
    try:
        line = f.readline(MAX_LINE + 1)
    except TimeoutError as exc:
        raise DaemonUnreachable(f"sufd at {path} did not answer in time") from exc
    except OSError as exc:
        raise DaemonUnreachable(f"lost the connection to sufd at {path}: {exc}") from exc
    if not line:
        raise DaemonUnreachable(f"sufd at {path} closed the connection without answering")
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise DaemonUnreachable(f"sufd at {path} answered something that is not JSON") from exc
    if not isinstance(obj, dict):
        raise DaemonUnreachable(f"sufd at {path} answered something that is not an object")
    return obj


def _check(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("ok") is True:
        result = obj.get("result")
        return result if isinstance(result, dict) else {}
    err = obj.get("error") or {}
    code = str(err.get("code", "error"))
    if code == "unsupported_protocol":
        raise DaemonUnreachable(f"daemon protocol mismatch (client {PROTOCOL}): run `sufd restart`")
    if code == "busy":
        raise DaemonBusy(code, str(err.get("message", "the daemon is busy")))
    raise DaemonError(code, str(err.get("message", "the daemon reported an error")))


def call(
    path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request and return its result.

    Raises:
        DaemonNotRunning: nothing listens at ``path``.
        DaemonUnreachable: timeout, permission, garbage or protocol mismatch.
        DaemonBusy: the daemon runs but turned the request away for now.
        DaemonError: the daemon answered with another error.
    """
    sock = _connect(path, timeout)
    with sock, sock.makefile("rb") as f:
        _send(sock, f, path, cmd, args)
        return _check(_read_line(f, path))


def _send(sock: socket.socket, f: Any, path: Path, cmd: str, args: dict[str, Any] | None) -> None:
    request = {"v": PROTOCOL, "id": next(_ids), "cmd": cmd, "args": args or {}}
    try:
        sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
    except OSError as exc:
        # The daemon may have answered (``busy``) and hung up before the request went out:
        # that answer, not the broken pipe, is what to report.
        try:
            answer = _read_line(f, path)
        except DaemonUnreachable:
            raise DaemonUnreachable(f"cannot send to sufd at {path}: {exc}") from exc
        _check(answer)
        raise DaemonUnreachable(f"cannot send to sufd at {path}: {exc}") from exc


def hello(path: Path, db: Path, *, timeout: float = 5.0) -> dict[str, Any]:
    """``hello``, checking that the daemon at ``path`` serves the ledger ``db``.

    A daemon too old to say which ledger it serves is taken at its word.

    Raises:
        OtherLedger: it serves another ledger.
        DaemonNotRunning, DaemonUnreachable, DaemonError: as :func:`call`.
    """
    info = call(path, "hello", timeout=timeout)
    theirs = info.get("db")
    if isinstance(theirs, str) and not same_ledger(theirs, db):
        raise OtherLedger(path, info.get("pid"), theirs, db)
    return info


def stream(
    path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = 5.0
) -> Iterator[dict[str, Any]]:
    """Send a streaming request and yield each pushed event until the daemon closes.

    Raises:
        ControlError: as :func:`call`, before the first event.
    """
    sock = _connect(path, timeout)
    with sock, sock.makefile("rb") as f:
        _send(sock, f, path, cmd, args)
        _check(_read_line(f, path))
        sock.settimeout(None)
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line:
                return
            obj = json.loads(line)
            if isinstance(obj, dict) and isinstance(obj.get("event"), dict):
                yield obj["event"]
