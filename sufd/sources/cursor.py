"""Cursor (the IDE): usage from the SQLite ``state.vscdb`` in ``User/globalStorage``.

Reading (formats.md §4, §8): only read-only (``mode=ro`` + ``PRAGMA query_only``, 50 ms busy
timeout, autocommit so each SELECT is one short read transaction; closed before returning).
The db file is opened ``O_RDONLY``; SQLite opens an existing ``-wal``/``-shm`` read-write even
then, but a read-only connection writes no WAL frame and cannot checkpoint. A WAL-mode db with
no ``-wal`` is closed by everyone and checkpointed: it is opened ``immutable``, so no
``-wal``/``-shm`` is created beside it (the read is dropped if the file changed meanwhile).
Locked/busy or any SQLite error raises :class:`SourceError`: ingest records it, the watermark
stays, and the next read (a change or the reconcile) retries and, once it works, clears it.

Unchanged: the db's identity, size, mtime_ns and header change counter, the ``-wal``'s size
and mtime_ns and the ``-shm`` wal-index header (changed by every write transaction) are
compared with the stored signature before opening; equal means ``None``.

Watermark: ``hwm`` = the table's max rowid at the last read; a read scans the ``bubbleId:``
rows with rowid in (hwm, max], in chunks. ``ON CONFLICT REPLACE`` gives a rewritten bubble a
rowid above all others, so updated bubbles are re-seen. Full check (scan from rowid 0): on the
first read or a new file identity; when the max rowid fell below the hwm or the hwm row now
holds another key (VACUUM renumbering, a deleted tail reused); on the
:data:`FULL_EVERY_READS`-th read that opened the db, or the first after :data:`FULL_EVERY_S`
seconds (catches in-place UPDATEs, which keep their rowid). Events are upserted by key;
:meth:`Cursor.prefer` replaces one when its tokens, time or cost differ (the ledger does not
give it the stored model or project, so a change of those alone is not propagated).

Events: one per assistant bubble (``type`` 2); key = the row key; session = the composer id
from the key (a composer segment with CR/LF/NUL is a tool sub-composer: skipped); project =
the folder of the workspace whose ``ItemTable`` lists the composer, else ``"cursor"``. Time:
bubble ``createdAt`` (ISO), else ``timingInfo.clientRpcSendTime``, else the composer's
``createdAt`` (epoch ms). Model: ``modelInfo.modelName``, else the composer's
``modelConfig.modelName``; ``"default"`` (Cursor's Auto) or none is reported as ``cursor-auto``.

Estimation: Cursor keeps no billing truth locally, so every event is ``estimated``. Tokens are
``tokenCount.inputTokens/outputTokens``; when both are 0 (current builds), output =
ceil(C_out / 4) and input = ceil(C_in / 4), where C_out = len(the bubble's ``text``) and C_in
= the summed ``text`` lengths of the user bubbles between the previous non-user bubble and
this one in the composer's ``fullConversationHeadersOnly`` (0 if the bubble is not listed
there yet). Lengths are code points; no text is kept or logged. Still 0/0: no event. Price:
Auto/none, and any model the price table lacks, is priced as ``claude-sonnet-4-5`` (codeburn,
formats.md §4.3); ``claude-4.5-sonnet``-style names are looked up as ``claude-sonnet-4-5``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import orjson

from sufd.errors import SourceBusy, SourceError
from sufd.prices.table import PriceTable
from sufd.settings import Settings
from sufd.sources.base import (
    FileContext,
    Record,
    Source,
    database_signature,
    parse_timestamp_ms,
)

__all__ = ["AUTO_MODEL", "FALLBACK_PRICE_MODEL", "PLATFORM", "Cursor"]

PLATFORM: str = sys.platform  # the seam tests patch to get another OS's roots
FALLBACK_PRICE_MODEL = "claude-sonnet-4-5"
AUTO_MODEL = "cursor-auto"
FULL_EVERY_READS = 500
FULL_EVERY_S = 6 * 3600.0
CHUNK_ROWS = 64  # rows per read transaction: short even with 100 KB values
BUSY_TIMEOUT_S = 0.05
# Larger values are damage, not usage: they would overflow SQLite's 64-bit integers in the
# ledger (or its sums) and fail the whole read. They count as missing.
_MAX_TOKENS = 2**40
_MAX_TS_MS = 4_102_444_799_999  # 2099-12-31T23:59:59.999Z: later is damage too
_OWNED = ("state.vscdb", "state.vscdb-wal")
_CLAUDE = re.compile(r"claude-(\d+)(?:\.(\d+))?-(opus|sonnet|haiku)")
_JSON = "hex(substr(value, 1, 1)) = '7B'"  # skips NULL and binary values
_BUBBLES = (
    "SELECT rowid, key, value FROM cursorDiskKV WHERE rowid > ? AND rowid <= ?"
    f" AND substr(key, 1, 9) = 'bubbleId:' AND {_JSON} ORDER BY rowid LIMIT ?"
)


class _Bubble(NamedTuple):
    rowid: int
    key: str
    cid: str
    bid: str
    input: int
    output: int
    ts: int | None
    model: str | None
    chars: int


class _Composer(NamedTuple):
    created: int | None
    model: str | None
    users_before: dict[str, list[str]]  # bubble id → the user bubbles just before it


class Cursor(Source):
    """Cursor's global ``state.vscdb``; workspace DBs only map composers to folders."""

    name = "cursor"
    kind = "database"
    suffixes = _OWNED

    def __init__(self) -> None:
        self._failed: set[str] = set()  # last read raised: the next one commits to clear it
        self._workspaces: dict[Path, tuple[list[Any], str, frozenset[str]]] = {}

    def default_roots(self, settings: Settings) -> list[Path]:
        """``~/Library/Application Support`` (macOS), ``%APPDATA%`` (Windows), else XDG."""
        home, env = settings.home, settings.env
        if PLATFORM == "darwin":
            bases = [home / "Library" / "Application Support"]
        elif PLATFORM.startswith("win"):
            bases = [Path(env.get("APPDATA") or home / "AppData" / "Roaming")]
        else:
            xdg = env.get("XDG_CONFIG_HOME")
            bases = [Path(xdg), home / ".config"] if xdg else [home / ".config"]
        return list(dict.fromkeys(b / "Cursor" / "User" / "globalStorage" for b in bases))

    def owns(self, path: Path) -> bool:
        """``state.vscdb`` and its ``-wal`` directly in a ``globalStorage`` directory."""
        return path.name in _OWNED and path.parent.name == "globalStorage"

    def scan(self, root: Path) -> Iterator[Path]:
        """Just ``root/state.vscdb`` (extensions keep large trees beside it)."""
        if self.owns(db := root / "state.vscdb") and db.is_file():
            yield db

    def target(self, path: Path) -> Path:
        """A changed ``-wal`` means its database changed."""
        return path.with_name("state.vscdb") if path.name.endswith("-wal") else path

    def read_database(self, path: Path, ctx: FileContext) -> list[Record] | None:
        """Assistant bubbles new or changed since the watermark (see the module docstring)."""
        sig, checkpointed = database_signature(path)
        failed = str(path) in self._failed
        if sig == ctx.state.get("sig") and not failed:
            return None
        self._failed.add(str(path))
        try:
            records = self._read(path, sig, checkpointed, ctx)
        except sqlite3.Error as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise SourceBusy(f"{path.name}: database is locked (SQLITE_BUSY)") from None
            raise SourceError(f"{path.name}: {exc}") from None
        self._failed.discard(str(path))
        return records

    def _read(self, path: Path, sig: list[Any], ckpt: bool, ctx: FileContext) -> list[Record]:
        old, now = dict(ctx.state), time.time()
        with contextlib.closing(_connect(path, immutable=ckpt)) as conn:
            q = conn.execute
            if not q(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cursorDiskKV'"
            ).fetchone():
                raise SourceError(f"{path.name}: no cursorDiskKV table (not a Cursor state DB)")
            end, end_key = q(
                "SELECT rowid, key FROM cursorDiskKV"
                " WHERE rowid = (SELECT max(rowid) FROM cursorDiskKV)"
            ).fetchone() or (0, None)
            hwm = int(old.get("hwm", 0)) if old.get("ident") == sig[:2] else -1
            at_hwm = q("SELECT key FROM cursorDiskKV WHERE rowid = ?", (hwm,)).fetchone()
            reads = int(old.get("reads", 0)) + 1
            full = (
                hwm < 0
                or end < hwm
                or (at_hwm is not None and at_hwm[0] != old.get("hwm_key"))
                or reads >= FULL_EVERY_READS
                or now - float(old.get("full_at", 0)) >= FULL_EVERY_S
            )
            records = self._records(conn, path, *_scan(conn, 0 if full else hwm, end))
        if ckpt and database_signature(path)[0][:4] != sig[:4]:
            raise SourceBusy(f"{path.name}: changed while read without its WAL; will retry")
        ctx.state.clear()
        ctx.state.update(sig=sig, ident=sig[:2], hwm=end, hwm_key=end_key)
        ctx.state.update(reads=0 if full else reads, full_at=now if full else old["full_at"])
        return records

    def _records(
        self,
        conn: sqlite3.Connection,
        path: Path,
        bubbles: list[_Bubble],
        users: dict[tuple[str, str], int],
    ) -> list[Record]:
        cids = {b.cid for b in bubbles}
        comps = _composers(conn, cids)
        projects = self._projects(path, cids)

        def before(b: _Bubble) -> list[str]:
            return comps[b.cid].users_before.get(b.bid, []) if b.cid in comps else []

        zero = [b for b in bubbles if b.input == 0 and b.output == 0]
        wanted = {f"bubbleId:{b.cid}:{u}" for b in zero for u in before(b)}
        wanted -= {f"bubbleId:{c}:{u}" for c, u in users}
        for _, key, value in _by_key(conn, sorted(wanted)):
            cid, _, bid = key[9:].partition(":")
            users[(cid, bid)] = _chars(_loads(value))
        out = []
        for b in bubbles:
            comp = comps.get(b.cid)
            inp, outp = b.input, b.output
            if inp == 0 and outp == 0:
                inp = -(-sum(users.get((b.cid, u), 0) for u in before(b)) // 4)
                outp = -(-b.chars // 4)
            ts = b.ts if b.ts is not None else comp.created if comp else None
            if (inp == 0 and outp == 0) or ts is None:
                continue
            raw = b.model or (comp.model if comp else None)
            auto = raw is None or raw == "default"
            out.append(
                Record(
                    key=b.key,
                    ts_ms=ts,
                    session=b.cid,
                    project=projects.get(b.cid, "cursor"),
                    model=AUTO_MODEL if auto or raw is None else raw,
                    price_model=FALLBACK_PRICE_MODEL if auto or raw is None else _price_name(raw),
                    pricing="anthropic",
                    input=inp,
                    output=outp,
                    total=inp + outp,
                    fallback_model=auto,
                    offset=b.rowid,
                    estimated=True,
                )
            )
        return out

    def _projects(self, db: Path, cids: set[str]) -> dict[str, str]:
        """Composer id → workspace folder, from ``workspaceStorage/*`` (cached by signature)."""

        def known() -> dict[str, str]:
            return {c: f for _, f, have in self._workspaces.values() for c in cids & have}

        if len(found := known()) == len(cids):
            return found
        with contextlib.suppress(OSError):
            for d in sorted((db.parent.parent / "workspaceStorage").iterdir()):
                with contextlib.suppress(OSError, sqlite3.Error, orjson.JSONDecodeError):
                    self._refresh_workspace(d)  # a busy or odd one keeps its old mapping
        return known()

    def _refresh_workspace(self, d: Path) -> None:
        sig, ckpt = database_signature(d / "state.vscdb")
        sig.append((d / "workspace.json").stat().st_mtime_ns)
        if d in self._workspaces and self._workspaces[d][0] == sig:
            return
        info = orjson.loads((d / "workspace.json").read_bytes())
        uri = (info.get("folder") or info.get("workspace")) if isinstance(info, dict) else None
        if not isinstance(uri, str):
            return
        with contextlib.closing(_connect(d / "state.vscdb", immutable=ckpt)) as conn:
            rows = conn.execute(
                "SELECT value FROM ItemTable"
                " WHERE key IN ('composer.composerData', 'composer.composerHeaders')"
            ).fetchall()
        listed = [c for (v,) in rows for c in _list(_loads(v).get("allComposers"))]
        have = frozenset(c["composerId"] for c in listed if isinstance(c.get("composerId"), str))
        folder = unquote(urlsplit(uri).path) if uri.startswith("file:") else uri
        self._workspaces[d] = (sig, folder, have)

    def cost(self, rec: Record, prices: PriceTable) -> float | None:
        """Tokens priced as the model, or as ``claude-sonnet-4-5`` when it has no price."""
        if rec.price_model is None or prices.lookup(rec.price_model) is None:
            rec = dataclasses.replace(rec, price_model=FALLBACK_PRICE_MODEL)
        return super().cost(rec, prices)

    def prefer(self, new: Record, new_cost: float, old: Record, old_cost: float) -> bool:
        """A re-read bubble replaces its event when any stored value differs."""
        return _values(new) != _values(old) or new_cost != old_cost


def _values(r: Record) -> tuple[int, ...]:
    return (r.ts_ms, r.input, r.output, r.cache_write_5m, r.cache_write_1h, r.cache_read, r.total)


def _connect(path: Path, *, immutable: bool) -> sqlite3.Connection:
    mode = "mode=ro&immutable=1" if immutable else "mode=ro"
    uri = f"file:{quote(str(path))}?{mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    # A TEXT value that is not UTF-8 must not fail the whole read (sqlite3 raises on it).
    conn.text_factory = _text
    try:
        conn.execute("PRAGMA query_only = ON")  # a connection setting, not a write
        return conn
    except BaseException:
        conn.close()
        raise


def _scan(conn: sqlite3.Connection, lo: int, hi: int) -> tuple[list[_Bubble], dict[Any, int]]:
    """Assistant bubbles with rowid in (lo, hi]; text lengths of the user bubbles seen."""
    bubbles, users = [], {}
    while lo < hi:
        chunk = conn.execute(_BUBBLES, (lo, hi, CHUNK_ROWS)).fetchall()
        for rowid, key, value in chunk:
            cid, sep, bid = str(key)[9:].partition(":")
            if not sep or not cid or any(c in cid for c in "\r\n\x00"):
                continue
            obj = _loads(value)
            if obj.get("type") == 1:
                users[(cid, bid)] = _chars(obj)
            elif obj.get("type") == 2:
                tokens, info = _dict(obj.get("tokenCount")), _dict(obj.get("modelInfo"))
                i, o = _count(tokens.get("inputTokens")), _count(tokens.get("outputTokens"))
                m, ts = _str(info.get("modelName")), _ts(obj)
                bubbles.append(_Bubble(rowid, key, cid, bid, i, o, ts, m, _chars(obj)))
        if len(chunk) < CHUNK_ROWS:
            break
        lo = chunk[-1][0]
    return bubbles, users


def _by_key(conn: sqlite3.Connection, keys: Sequence[str]) -> Iterator[tuple[int, str, Any]]:
    for i in range(0, len(keys), 500):
        part, sql = keys[i : i + 500], "SELECT rowid, key, value FROM cursorDiskKV WHERE key IN"
        marks = ",".join("?" * len(part))
        yield from conn.execute(f"{sql} ({marks}) AND {_JSON}", part).fetchall()


def _composers(conn: sqlite3.Connection, cids: set[str]) -> dict[str, _Composer]:
    out = {}
    for _, key, value in _by_key(conn, [f"composerData:{c}" for c in sorted(cids)]):
        obj = _loads(value)
        before: dict[str, list[str]] = {}
        users: list[str] = []  # user bubbles since the last non-user one
        for h in _list(obj.get("fullConversationHeadersOnly")):
            if isinstance(bid := h.get("bubbleId"), str):
                before[bid] = users
                users = [*users, bid] if h.get("type") == 1 else []
        created, model = obj.get("createdAt"), _dict(obj.get("modelConfig")).get("modelName")
        created = created if type(created) is int and 0 <= created <= _MAX_TS_MS else None
        out[key[len("composerData:") :]] = _Composer(created, _str(model), before)
    return out


def _ts(obj: dict[str, Any]) -> int | None:
    if (ts := parse_timestamp_ms(obj.get("createdAt"))) is not None:
        return ts
    return _count(_dict(obj.get("timingInfo")).get("clientRpcSendTime"), _MAX_TS_MS) or None


def _loads(value: Any) -> dict[str, Any]:
    try:
        return _dict(orjson.loads(value))
    except (orjson.JSONDecodeError, TypeError):
        return {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _chars(obj: dict[str, Any]) -> int:
    return len(text) if isinstance(text := obj.get("text"), str) else 0


def _count(value: Any, limit: int = _MAX_TOKENS) -> int:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= limit
    return int(value) if ok else 0


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _price_name(model: str) -> str:
    """``claude-4.5-sonnet-thinking`` → ``claude-sonnet-4-5-thinking`` (LiteLLM's order)."""
    if (m := _CLAUDE.match(model)) is None:
        return model
    return f"claude-{m[3]}-{m[1]}{f'-{m[2]}' if m[2] else ''}{model[m.end() :]}"
