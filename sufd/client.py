"""A small synchronous client of the control socket (used by ``sufctl`` and ``sufd``).

Imports only the standard library, so ``sufctl`` stays quick to start.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sufd.errors import ControlError
from sufd.protocol import MAX_LINE, PROTOCOL

__all__ = [
    "DaemonNotRunning",
    "DaemonError",
    "DaemonUnreachable",
    "call",
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
    except OSError as exc:
        sock.close()
        raise DaemonUnreachable(f"cannot connect to {path}: {exc.strerror or exc}") from exc
    return sock


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
    raise DaemonError(code, str(err.get("message", "the daemon reported an error")))


def call(
    path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request and return its result.

    Raises:
        DaemonNotRunning: nothing listens at ``path``.
        DaemonUnreachable: timeout, permission, garbage or protocol mismatch.
        DaemonError: the daemon answered with an error.
    """
    sock = _connect(path, timeout)
    with sock, sock.makefile("rb") as f:
        request = {"v": PROTOCOL, "id": next(_ids), "cmd": cmd, "args": args or {}}
        try:
            sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        except OSError as exc:
            raise DaemonUnreachable(f"cannot send to sufd at {path}: {exc}") from exc
        return _check(_read_line(f, path))


def stream(
    path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = 5.0
) -> Iterator[dict[str, Any]]:
    """Send a streaming request and yield each pushed event until the daemon closes."""
    sock = _connect(path, timeout)
    with sock, sock.makefile("rb") as f:
        request = {"v": PROTOCOL, "id": next(_ids), "cmd": cmd, "args": args or {}}
        try:
            sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        except OSError as exc:
            raise DaemonUnreachable(f"cannot send to sufd at {path}: {exc}") from exc
        _check(_read_line(f, path))
        sock.settimeout(None)
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line:
                return
            obj = json.loads(line)
            if isinstance(obj, dict) and isinstance(obj.get("event"), dict):
                yield obj["event"]
