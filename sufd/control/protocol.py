"""The control protocol, v1: newline-delimited JSON over a Unix stream socket.

Request:  ``{"v": 1, "id": "<any>", "cmd": "status", "args": {}}``
Response: ``{"v": 1, "id": "<same>", "ok": true, "result": {...}}`` or
          ``{"v": 1, "id": "<same>", "ok": false, "error": {"code": "...", "message": "..."}}``

Streaming commands (``tail``) answer once, then send ``{"v": 1, "event": {...}}`` lines until
either side closes. Shared by the daemon and by clients, so it imports only ``json``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CAPABILITIES",
    "COMMANDS",
    "MAX_LINE",
    "PROTOCOL",
    "ProtocolError",
    "decode_request",
    "encode",
    "error",
    "ok",
]

PROTOCOL = 1
MAX_LINE = 1024 * 1024
COMMANDS = (
    "hello",
    "ping",
    "status",
    "pause-watcher",
    "resume-watcher",
    "rescan",
    "reload",
    "shutdown",
    "tail",
    "statusline",
    "ingest",
)
CAPABILITIES = tuple(f"cmd-{c}" for c in COMMANDS) + ("pause-ttl", "pause-sources", "tail-push")


class ProtocolError(Exception):
    """A request that cannot be served; ``code`` is the stable machine-readable reason."""

    def __init__(self, code: str, message: str, req_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.req_id = req_id


def encode(obj: dict[str, Any]) -> bytes:
    """One compact JSON line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def ok(req_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    """A success response."""
    return {"v": PROTOCOL, "id": req_id, "ok": True, "result": result}


def error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    """An error response."""
    return {"v": PROTOCOL, "id": req_id, "ok": False, "error": {"code": code, "message": message}}


def decode_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """Parse one request line into ``(id, cmd, args)``.

    Raises:
        ProtocolError: ``bad_json``, ``bad_request``, ``unsupported_protocol`` or
            ``unknown_command``.
    """
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("bad_json", "request is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "request must be a JSON object")
    req_id = obj.get("id")
    version = obj.get("v", PROTOCOL)
    if version != PROTOCOL:
        raise ProtocolError(
            "unsupported_protocol",
            f"daemon speaks protocol {PROTOCOL}, request uses {version!r}",
            req_id,
        )
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("bad_request", "request has no 'cmd' string", req_id)
    if cmd not in COMMANDS:
        raise ProtocolError("unknown_command", f"unknown command {cmd!r}", req_id)
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "'args' must be an object", req_id)
    return req_id, cmd, args
