"""``sufd-statusline``: the one-line status for Claude Code's ``statusLine`` setting.

Claude Code runs the command on every refresh with its status JSON on stdin (``session_id``,
``model``, ``workspace``, ...). This command asks the running daemon, which answers from
its open ledger in well under a millisecond; when the daemon is down it reads the ledger
file itself. It imports only the standard library (and ``sufd.settings`` only when no
``--socket``/``--db`` is given), so a call costs little more than starting Python.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from sufd.control.statusline import day_bounds_ms, format_line

__all__ = ["main"]


def _read_input() -> dict[str, Any]:
    if sys.stdin is None or sys.stdin.isatty():
        return {}
    try:
        data = json.loads(sys.stdin.read() or "{}")
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _from_daemon(socket_path: str, session: str | None, db: str) -> dict[str, Any] | None:
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(socket_path)
            start, end = day_bounds_ms(time.time())
            args = {"session_id": session, "day_start_ms": start, "day_end_ms": end}
            req = {"v": 1, "id": 1, "cmd": "statusline", "args": args}
            sock.sendall(json.dumps(req).encode() + b"\n")
            with sock.makefile("rb") as f:
                reply = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    result = reply.get("result") if isinstance(reply, dict) and reply.get("ok") else None
    if not isinstance(result, dict):
        return None
    theirs = result.get("db")
    if isinstance(theirs, str) and not _same_file(theirs, db):
        return None  # the daemon of another ledger answers here: read ours instead
    return dict(result)


def _same_file(a: str, b: str) -> bool:
    import os

    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _from_store(db: str, session: str | None, now: float) -> dict[str, Any] | None:
    import sqlite3

    from sufd.store.queries import statusline

    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return statusline(conn, session, day_ms=day_bounds_ms(now), now_ms=int(now * 1000))
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Print one status line; never fails loudly (a status line must not break the UI)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="sufd-statusline",
        description="One line for Claude Code's statusLine: session cost, today's cost and the"
        " last hour's spend, from the sufd ledger. Reads Claude Code's status JSON on stdin.",
    )
    parser.add_argument("--socket", help="control socket (skips config resolution)")
    parser.add_argument("--db", help="ledger file, read when the daemon is down")
    args = parser.parse_args(argv)
    data = _read_input()
    session = data.get("session_id") if isinstance(data.get("session_id"), str) else None
    model_info = data.get("model")
    model = model_info.get("display_name") if isinstance(model_info, dict) else None
    socket_path, db = args.socket, args.db
    if socket_path is None or db is None:
        from sufd.settings import load

        try:
            paths = load().paths
        except Exception:
            print("sufd · config error (run `sufd config show`)")
            return 0
        socket_path = socket_path or str(paths.socket)
        db = db or str(paths.db)
    now = time.time()
    numbers = _from_daemon(socket_path, session, db) or _from_store(db, session, now)
    if numbers is None:
        print("sufd · no ledger yet")
        return 0
    print(format_line(numbers, model if isinstance(model, str) else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
