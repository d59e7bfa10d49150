"""Cursor-like ``state.vscdb`` databases for tests and benchmarks, and a writer process.

The databases have Cursor's schema (``ItemTable`` and ``cursorDiskKV``, both
``key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB``, formats.md §4.2), WAL journal mode, and the
row kinds a real global DB holds: ``composerData:``/``bubbleId:`` JSON, ``agentKv:blob:`` binary
values, NULL values, tool sub-composer keys with a newline, a truncated JSON value. Workspace
DBs (``workspaceStorage/<hash>/state.vscdb`` + ``workspace.json``) map composers to folders.

Every assistant bubble written through :class:`Conversation` comes with the event the ledger
must hold (:class:`Expected`), computed from the values the generator chose — including the
chars/4 estimate for bubbles whose ``tokenCount`` is ``{0,0}``, from the texts it wrote — so
tests never compare sufd with itself.

``python -m tests.cursor_gen writer DB [--journal wal|delete]`` is the stand-in for Cursor:
it keeps one connection open, reads one JSON op per stdin line, answers one JSON line with the
op's wall time (transaction including commit), and never checkpoints until ``close``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_MS",
    "Conversation",
    "Corpus",
    "Expected",
    "create_db",
    "generate",
    "insert_rows",
    "write_workspace",
]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)",
    "CREATE TABLE IF NOT EXISTS cursorDiskKV (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)",
)
BASE_MS = 1_767_261_600_000  # 2026-01-01T10:00:00Z
_WORDS = (
    "the", "a", "fix", "test", "parse", "file", "ledger", "sqlite", "wal", "rowid", "bubble",
    "café", "日本語", "naïve", "λ", "🙂",
)  # fmt: skip

Row = tuple[str, str, Any]  # (table, key, value: str | bytes | None)


@dataclass(frozen=True, order=True)
class Expected:
    """One Cursor event as the ledger must hold it."""

    key: str
    ts_ms: int
    session: str
    project: str
    model: str
    input: int
    output: int


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _iso(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Conversation:
    """One composer: builds its rows as Cursor writes them, and the events they must become."""

    composer_id: str
    created_ms: int
    project: str = "cursor"
    model: str | None = "default"  # composer modelConfig.modelName; None: no modelConfig
    headers: list[dict[str, Any]] = field(default_factory=list)
    pending_user_chars: int = 0
    user_chars_for: dict[str, int] = field(default_factory=dict)  # assistant → user text before
    padding: int = 0  # extra bytes of context per bubble, to reach realistic value sizes

    def composer_row(self) -> Row:
        """``composerData:<id>`` with the headers written so far (Cursor rewrites it whole)."""
        obj: dict[str, Any] = {
            "_v": 9,
            "composerId": self.composer_id,
            "createdAt": self.created_ms,
            "lastUpdatedAt": self.created_ms,
            "name": "chat",
            "status": "completed",
            "fullConversationHeadersOnly": self.headers,
            "usageData": {},
            "conversation": None,
        }
        if self.model is not None:
            obj["modelConfig"] = {"modelName": self.model, "maxMode": False}
        return ("cursorDiskKV", f"composerData:{self.composer_id}", _dumps(obj))

    def user(self, bubble_id: str, text: str) -> Row:
        """A user bubble (``type`` 1, tokenCount {0,0})."""
        self.headers.append({"bubbleId": bubble_id, "type": 1})
        self.pending_user_chars += len(text)
        obj = {
            "_v": 2,
            "type": 1,
            "bubbleId": bubble_id,
            "text": text,
            "richText": _dumps({"root": {"children": [{"text": text}]}}),
            "tokenCount": {"inputTokens": 0, "outputTokens": 0},
            "requestId": f"req-{bubble_id}",
            "context": {"padding": "x" * self.padding},
        }
        return ("cursorDiskKV", f"bubbleId:{self.composer_id}:{bubble_id}", _dumps(obj))

    def assistant(
        self,
        bubble_id: str,
        text: str,
        at_ms: int,
        *,
        tokens: tuple[int, int] = (0, 0),
        ts_style: str = "rpc",
        model: str | None = None,
        new: bool = True,
    ) -> tuple[Row, Expected | None]:
        """An assistant bubble (``type`` 2) and the event it must become (None: no usage).

        ``ts_style``: ``iso`` (``createdAt``), ``rpc`` (``timingInfo.clientRpcSendTime``) or
        ``none`` (the composer's ``createdAt`` applies). ``new=False`` rewrites a bubble
        already in the headers (tokens arriving later): the input estimate is unchanged.
        """
        if new:
            self.headers.append({"bubbleId": bubble_id, "type": 2, "serverBubbleId": bubble_id})
            self.user_chars_for[bubble_id] = self.pending_user_chars
            self.pending_user_chars = 0
        obj: dict[str, Any] = {
            "_v": 2,
            "type": 2,
            "bubbleId": bubble_id,
            "text": text,
            "tokenCount": {"inputTokens": tokens[0], "outputTokens": tokens[1]},
            "usageUuid": f"usage-{bubble_id}",
            "requestId": "",
            "codeBlocks": [],
            "toolResults": [],
            "isAgentic": True,
            "context": {"padding": "y" * self.padding},
        }
        if ts_style == "iso":
            obj["createdAt"] = _iso(at_ms)
        elif ts_style == "rpc":
            obj["timingInfo"] = {
                "clientStartTime": 1234.5,
                "clientRpcSendTime": at_ms,
                "clientSettleTime": at_ms + 900,
                "clientEndTime": at_ms + 900,
            }
        if model is not None:
            obj["modelInfo"] = {"modelName": model}
        row: Row = ("cursorDiskKV", f"bubbleId:{self.composer_id}:{bubble_id}", _dumps(obj))
        inp, out = tokens
        if inp == 0 and out == 0:
            inp = math.ceil(self.user_chars_for[bubble_id] / 4)
            out = math.ceil(len(text) / 4)
        if inp == 0 and out == 0:
            return row, None
        raw = model or self.model
        ts = self.created_ms if ts_style == "none" else at_ms
        shown = "cursor-auto" if raw in (None, "default") else raw
        assert shown is not None
        return row, Expected(row[1], ts, self.composer_id, self.project, shown, inp, out)


def create_db(path: Path, *, journal: str = "wal") -> sqlite3.Connection:
    """A new Cursor-schema database; returns the writer's open autocommit connection."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute(f"PRAGMA journal_mode={journal}")
    for ddl in SCHEMA:
        conn.execute(ddl)
    return conn


def insert_rows(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Insert (or, by the column's ON CONFLICT REPLACE, rewrite) rows in one transaction."""
    conn.execute("BEGIN")
    try:
        for table, key, value in rows:
            conn.execute(f"INSERT INTO {table} (key, value) VALUES (?, ?)", (key, value))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def write_workspace(
    user_dir: Path, name: str, folder_uri: str | None, composer_ids: Sequence[str], *, key: str
) -> None:
    """``workspaceStorage/<name>/`` with ``workspace.json`` and a DB listing the composers."""
    d = user_dir / "workspaceStorage" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "workspace.json").write_text(_dumps({"folder": folder_uri} if folder_uri else {}))
    conn = create_db(d / "state.vscdb")
    value = _dumps({"allComposers": [{"composerId": c, "type": "head"} for c in composer_ids]})
    insert_rows(conn, [("ItemTable", key, value), ("ItemTable", "workbench.x", "{}")])
    conn.close()


@dataclass
class Corpus:
    """A generated Cursor ``User`` directory and the events it must produce."""

    user_dir: Path
    db: Path
    expected: dict[str, Expected]
    bubble_rows: int = 0


def generate(
    user_dir: Path,
    *,
    composers: int = 6,
    turns: int = 4,
    seed: int = 7,
    padding: int = 200,
    batch: int = 2000,
) -> Corpus:
    """Write a Cursor ``User`` dir: global DB (WAL) + workspace DBs; return what it must yield.

    Composers cycle through: Auto model with real tokens, a named model with ``{0,0}`` tokens
    (estimated), bubbles carrying ``modelInfo``/``createdAt``, no timestamp at all; every
    third composer belongs to no workspace (project ``cursor``).
    """
    rng = random.Random(seed)
    db = user_dir / "globalStorage" / "state.vscdb"
    conn = create_db(db)
    expected: dict[str, Expected] = {}
    rows: list[Row] = [("ItemTable", "cursor/theme", '{"dark":true}')]
    by_ws: dict[int, list[str]] = {0: [], 1: []}
    folders = {0: "/home/dev/alpha", 1: "/home/dev/beta proj"}
    bubble_rows = 0
    for c in range(composers):
        cid = _uid(rng)
        ws = c % 3
        project = folders.get(ws, "cursor")
        if ws in by_ws:
            by_ws[ws].append(cid)
        model = ("default", "claude-4.5-sonnet", None, "gpt-5")[c % 4]
        conv = Conversation(cid, BASE_MS + c * 3_600_000, project, model, padding=padding)
        for t in range(turns):
            at = conv.created_ms + t * 60_000
            rows.append(conv.user(_uid(rng), _text(rng, rng.randint(0, 30))))
            real = c % 2 == 0 and t % 3 != 2
            tokens = (rng.randint(1, 9000), rng.randint(1, 900)) if real else (0, 0)
            style = ("rpc", "iso", "none")[(c + t) % 3]
            bubble_model = "gpt-5" if t % 4 == 3 else None
            row, exp = conv.assistant(
                _uid(rng), _text(rng, rng.randint(0, 60)), at, tokens=tokens,
                ts_style=style, model=bubble_model,
            )  # fmt: skip
            rows.append(row)
            bubble_rows += 2
            if exp is not None:
                expected[exp.key] = exp
            if t % 2 == 1:  # a tool-call sub-composer row: never an event
                sub = f"bubbleId:task-call_{t}\nfc_{c}:{_uid(rng)}"
                tool = {"type": 2, "tokenCount": {"inputTokens": 500, "outputTokens": 50}}
                tool["timingInfo"] = {"clientRpcSendTime": at}
                rows.append(("cursorDiskKV", sub, _dumps(tool)))
        rows.append(conv.composer_row())
        rows.append(("cursorDiskKV", f"agentKv:blob:{_uid(rng)}", rng.randbytes(64)))
        rows.append(("cursorDiskKV", f"checkpointId:{cid}:{_uid(rng)}", None))
        rows.append(("cursorDiskKV", f"bubbleId:{cid}:{_uid(rng)}", None))
        rows.append(("cursorDiskKV", f"bubbleId:{cid}:{_uid(rng)}", b"\x00\x01binary"))
        rows.append(("cursorDiskKV", f"bubbleId:{cid}:{_uid(rng)}", '{"type":2,"tokenCount":'))
        rows.append(("cursorDiskKV", f"messageRequestContext:{cid}", "{}"))
        if len(rows) >= batch:
            insert_rows(conn, rows)
            rows = []
    insert_rows(conn, rows)
    conn.close()
    write_workspace(user_dir, "a1", "file:///home/dev/alpha", by_ws[0], key="composer.composerData")
    uri = "file:///home/dev/beta%20proj"
    write_workspace(user_dir, "b2", uri, by_ws[1], key="composer.composerHeaders")
    (user_dir / "workspaceStorage" / "empty").mkdir()
    return Corpus(user_dir, db, expected, bubble_rows)


# ------------------------------------------------------------------------------------------
# the writer process


def _value(v: Any) -> Any:
    return bytes.fromhex(v["hex"]) if isinstance(v, dict) else v


def encode_rows(rows: Iterable[Row]) -> list[list[Any]]:
    """Rows as JSON for the writer's stdin (bytes as ``{"hex": …}``)."""
    return [[t, k, {"hex": v.hex()} if isinstance(v, bytes) else v] for t, k, v in rows]


def _writer(db: Path, journal: str) -> int:
    conn = create_db(db, journal=journal)
    # No fsync: a transaction's time is then its own work plus any wait for a lock (which is
    # what the tests measure), not the disk's flush latency.
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA wal_autocheckpoint = 1000")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        op = json.loads(line)
        rows = [(t, k, _value(v)) for t, k, v in op.get("rows", [])]
        t0 = time.perf_counter()
        if op["op"] == "write":
            insert_rows(conn, rows)
        elif op["op"] == "hold":  # commit `rows`, then keep readers out while writing `more`
            # (``rollback``: the lock then ends without a write, so nothing signals its end)
            insert_rows(conn, rows)
            if journal == "wal":
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            for t, k, v in [(t, k, _value(v)) for t, k, v in op["more"]]:
                conn.execute(f"INSERT INTO {t} (key, value) VALUES (?, ?)", (k, v))
            time.sleep(op["seconds"])
            conn.execute("ROLLBACK" if op.get("rollback") else "COMMIT")
            if journal == "wal":
                conn.execute("PRAGMA locking_mode = NORMAL")
                conn.execute("SELECT count(*) FROM ItemTable").fetchone()  # drops the lock
        elif op["op"] == "close":
            if journal == "wal":
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            conn.close()
        elapsed = time.perf_counter() - t0
        print(json.dumps({"ok": op["op"], "seconds": elapsed}), flush=True)
        if op["op"] == "close":
            return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``writer DB``: act as Cursor writing ``DB`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.cursor_gen")
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writer")
    w.add_argument("db", type=Path)
    w.add_argument("--journal", choices=("wal", "delete"), default="wal")
    g = sub.add_parser("generate")
    g.add_argument("user_dir", type=Path)
    g.add_argument("--composers", type=int, default=200)
    g.add_argument("--turns", type=int, default=25)
    args = parser.parse_args(argv)
    if args.cmd == "writer":
        return _writer(args.db, args.journal)
    corpus = generate(args.user_dir, composers=args.composers, turns=args.turns)
    print(json.dumps({"db": str(corpus.db), "events": len(corpus.expected)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
