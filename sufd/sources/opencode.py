"""OpenCode and Kilo CLI: assistant messages in ``opencode.db`` / ``kilo.db`` (and legacy JSON).

Locations (formats.md §7.1): OpenCode keeps ``<data>/opencode.db`` (else the alphabetically
first ``opencode-<channel>.db``) with ``<data>`` = each entry of ccusage's comma-separated
``OPENCODE_DATA_DIR``, else ``$XDG_DATA_HOME/opencode`` and ``~/.local/share/opencode``; older
versions wrote one JSON file per message under ``<data>/storage/message/<session>/``. Kilo CLI
(an OpenCode fork) keeps ``${KILO_DATA_DIR:-~/.local/share/kilo}/kilo.db`` and no JSON.

**One source per agent, kind "database", for the database and the JSON files.** A source has
one kind and the registry one instance per name, so the JSON fallback cannot be a separate
"document" source named "opencode". :meth:`OpenCode.read_database` therefore reads both: a
``*.json`` message file is re-read whole when its (inode, size, mtime) changes.

**The database wins over a JSON file with the same message id** (ccusage loads the database
first and skips later duplicates). Both kinds use the message id as the event key; a database
record carries ``group`` = its id (persisted as the event's ``grp``), a JSON one none, and
:meth:`OpenCode.prefer` lets a database record replace a JSON one but never the reverse.
Within one kind, a changed record replaces the stored one. A database row with no tokens
yields no record, so a JSON duplicate still counts then (as in ccusage).

Reading the database: read-only (``mode=ro``, ``PRAGMA query_only``, 50 ms busy timeout, one
short autocommit read, closed before return); WAL-tolerant (a ``-wal`` change maps to the
database; an unchanged signature of db + ``-wal`` + ``-shm`` header returns ``None``).
OpenCode inserts an assistant message when the reply starts and UPDATEs the row in place
(same rowid, new ``time_updated``) as steps finish and at completion. Watermark in
``ctx.state``: ``hwm`` = max rowid read, plus ``pending`` = ids of messages last seen
unfinished (no ``time.completed``; younger than :data:`PENDING_MAX_AGE_MS`), which every read
re-selects by primary key. A sweep every :data:`SWEEP_EVERY_S` re-reads rows whose
``time_updated`` moved (or every row where the column is missing); a full read happens first,
on a new file identity, and when the rowid sequence went backwards (VACUUM, restore).

Mapping, as ccusage 20.0.24 does it (checked by running it): input = ``tokens.input``, output
= ``tokens.output``, cache write = ``tokens.cache.write``, cache read = ``tokens.cache.read``
(only non-negative JSON integers count, up to 2**40 in sufd; anything else is 0);
``tokens.reasoning`` is priced as output (``extra_output``; formats.md says it is ignored —
ccusage 20.0.24 counts it) and a ``tokens.total`` above all parts adds the rest to output
when output is 0, else to ``extra_output``; ``totalTokens`` includes ``extra_output``.
All-zero rows are skipped.

* OpenCode: ``modelID`` and ``providerID`` must be non-empty; any role; timestamp =
  ``time.created`` when it is a non-negative integer, else 0 (1970-01-01, as ccusage);
  stored ``cost`` is used only when it is a number > 0 (in every cost mode; an object such as
  ``{"input":…}`` is ignored), else priced.
* Kilo CLI: ``role`` must be ``assistant`` and ``modelID`` non-empty (``providerID`` may be
  missing); a message without an integer ``time.created`` is dropped; any numeric ``cost``
  up to 1e9 (0 included) is used as is. A negative one is damage: the message is skipped and
  counted as malformed with its reason (ccusage would add it, making the total fall).

Pricing (:meth:`OpenCode.cost`): candidates ``M`` (``gemini-3-pro-high`` →
``gemini-3-pro-preview``, ``k2p6`` → ``kimi-k2.6``), ``claude-sonnet-4.5`` / ``claude-sonnet-45``
→ ``claude-sonnet-4-5``, then each with ``<provider>/`` (``-`` → ``_``); the first candidate
whose cost is > 0 wins, looked up like ccusage (sufd's table, then the Gemini part of the
models.dev snapshot: :mod:`sufd.prices.lookup`). Models ccusage prices only from
models.dev under non-Gemini ids (kimi, qwen, deepseek, …) are unpriced in sufd.

Project = ``path.cwd`` (else ``path.root``, else a string ``path``, else the agent name);
session = the row's ``session_id`` (else ``sessionID``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from sufd.errors import SourceBusy, SourceError
from sufd.prices.costs import cost_at
from sufd.prices.lookup import find_price, opencode_candidates
from sufd.prices.table import PriceTable
from sufd.settings import Settings
from sufd.sources.base import (
    FileContext,
    Malformed,
    Record,
    Source,
    database_signature,
    symlinked_below,
)

__all__ = ["PENDING_MAX_AGE_MS", "SWEEP_EVERY_S", "KiloCli", "OpenCode"]

SWEEP_EVERY_S = 300.0
PENDING_MAX_AGE_MS = 3 * 86_400_000
PENDING_MAX = 2000
CHUNK_ROWS = 512
BUSY_TIMEOUT_S = 0.05
_CHANNEL_DB = re.compile(r"opencode-[A-Za-z0-9_-]*\.db")
_SEP = "\x1f"
# Larger values are damage, not usage: they would overflow SQLite's 64-bit integers (or
# make the ledger's sums infinite) and fail the whole file. They count as invalid.
_MAX_TOKENS = 2**40
_MAX_TS_MS = 4_102_444_799_999  # 2099-12-31T23:59:59.999Z: later is damage too
_MAX_COST = 1e9


class OpenCode(Source):
    """OpenCode's ``opencode.db`` (or a channel db) and legacy ``storage/message`` JSON."""

    name = "opencode"
    kind = "database"
    suffixes: ClassVar[tuple[str, ...]] = (".db", ".db-wal", ".json")
    data_env: ClassVar[str] = "OPENCODE_DATA_DIR"
    data_dir: ClassVar[str] = "opencode"
    json_fallback: ClassVar[bool] = True

    def default_roots(self, settings: Settings) -> list[Path]:
        """``$OPENCODE_DATA_DIR`` entries, else ``$XDG_DATA_HOME`` and ``~/.local/share``."""
        env = settings.env
        dirs = [p.strip() for p in env.get(self.data_env, "").split(",") if p.strip()]
        if dirs:
            return list(dict.fromkeys(Path(p).expanduser() for p in dirs))
        bases = [Path(env["XDG_DATA_HOME"])] if env.get("XDG_DATA_HOME") else []
        bases.append(settings.home / ".local" / "share")
        return list(dict.fromkeys(b / self.data_dir for b in bases))

    def is_db(self, name: str) -> bool:
        """Whether a file name is one of this agent's databases."""
        return name == f"{self.data_dir}.db" or bool(_CHANNEL_DB.fullmatch(name))

    def owns(self, path: Path) -> bool:
        """The databases (and their ``-wal``) and ``storage/message/**/*.json``."""
        name = path.name
        if name.endswith("-wal"):
            name = name[:-4]
        if self.is_db(name):
            return True
        return self.json_fallback and name.endswith(".json") and _in_message_store(path)

    def target(self, path: Path) -> Path:
        """A changed ``-wal`` means its database changed."""
        return path.with_name(path.name[:-4]) if path.name.endswith(".db-wal") else path

    def scan(self, root: Path) -> Iterator[Path]:
        """The database ccusage would read, then the legacy JSON message files."""
        if (db := self.database(root)) is not None:
            yield db
        store = root / "storage" / "message"
        # rglob enters no symlinked directory below the store; nor is the store itself read
        # through one (the watcher does not enter them).
        if self.json_fallback and store.is_dir() and not symlinked_below(root, store):
            yield from sorted(p for p in store.rglob("*.json") if p.is_file())

    def database(self, root: Path) -> Path | None:
        """``<name>.db`` if it is a file, else the alphabetically first channel database."""
        main = root / f"{self.data_dir}.db"
        if main.is_file():
            return main
        with contextlib.suppress(OSError):
            found = sorted(p for p in root.iterdir() if self.is_db(p.name) and p.is_file())
            return found[0] if found else None
        return None

    # -- reading -----------------------------------------------------------------------

    def read_database(self, path: Path, ctx: FileContext) -> list[Record] | None:
        """Records of a JSON message file, or of database rows new or changed since last."""
        if path.suffix == ".json":
            return self._read_json(path, ctx)
        if self.database(path.parent) != path:
            return None  # a channel db shadowed by the main one: ccusage ignores it
        sig, _ = database_signature(path)
        if sig == ctx.state.get("sig"):
            return None
        try:
            return self._read_db(path, sig, ctx)
        except sqlite3.Error as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise SourceBusy(f"{path.name}: database is locked (SQLITE_BUSY)") from None
            raise SourceError(f"{path.name}: {exc}") from None

    def _read_json(self, path: Path, ctx: FileContext) -> list[Record] | None:
        st = os.stat(path)
        sig = [st.st_ino, st.st_size, st.st_mtime_ns]
        if sig == ctx.state.get("sig"):
            return None
        ctx.state["sig"] = sig
        try:
            value = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            return []  # ccusage skips it; read again when it changes
        try:
            rec = self.record(value, None, None, ctx.root) if isinstance(value, dict) else None
        except Malformed as bad:
            ctx.malformed.append((0, bad.reason))
            return []
        if rec is None:
            return []
        if rec.key == "":
            rec = _with_key(rec, f"file:{path}")
        return [rec]

    def _read_db(self, path: Path, sig: list[Any], ctx: FileContext) -> list[Record]:
        old, now = dict(ctx.state), time.time()
        with contextlib.closing(_connect(path)) as conn:
            q = conn.execute
            if not q(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'message'"
            ).fetchone():
                ctx.state.clear()
                ctx.state.update(sig=sig)
                return []
            cols = {r[1] for r in q("PRAGMA table_info(message)")}
            end, end_id = q(
                "SELECT rowid, id FROM message WHERE rowid = (SELECT max(rowid) FROM message)"
            ).fetchone() or (0, None)
            hwm = int(old.get("hwm", 0)) if old.get("ident") == sig[:2] else -1
            at_hwm = q("SELECT id FROM message WHERE rowid = ?", (hwm,)).fetchone()
            full = hwm < 0 or end < hwm or (at_hwm is not None and at_hwm[0] != old.get("hwm_id"))
            sweep = not full and now - float(old.get("swept_at", 0)) >= SWEEP_EVERY_S
            rows: dict[int, tuple[Any, ...]] = {}
            updated = "time_updated" in cols
            if full or (sweep and not updated):
                _collect(rows, conn, "", (), lo=0)
            else:
                _collect(rows, conn, "", (), lo=hwm)
                pending = [str(i) for i in old.get("pending", [])]
                for i in range(0, len(pending), 500):
                    part = pending[i : i + 500]
                    _collect(rows, conn, f" AND id IN ({','.join('?' * len(part))})", part)
                if sweep:
                    since = int(old.get("max_updated", 0)) - 2000
                    _collect(rows, conn, " AND time_updated >= ?", (since,))
            max_updated = int(old.get("max_updated", 0))
            if updated:
                # Only integers: a text or real value would break the watermark in the state.
                (mu,) = q(
                    "SELECT max(time_updated) FROM message WHERE typeof(time_updated) = 'integer'"
                ).fetchone()
                max_updated = int(mu or 0)
        records, pending_ids = self._records(rows, ctx, now)
        ctx.state.clear()
        ctx.state.update(sig=sig, ident=sig[:2], hwm=end, hwm_id=end_id)
        ctx.state.update(pending=pending_ids[-PENDING_MAX:], max_updated=max_updated)
        ctx.state.update(swept_at=now if (full or sweep) else old.get("swept_at", now))
        return records

    def _records(
        self, rows: dict[int, tuple[Any, ...]], ctx: FileContext, now: float
    ) -> tuple[list[Record], list[str]]:
        records, pending = [], []
        for rowid, mid, session, data in (rows[k] for k in sorted(rows)):
            try:
                value = orjson.loads(data)
            except (orjson.JSONDecodeError, TypeError):
                continue
            if not isinstance(value, dict) or not isinstance(mid, str):
                continue
            if _unfinished(value, now):
                pending.append(mid)
            try:
                rec = self.record(
                    value, mid, session if isinstance(session, str) else None, ctx.root
                )
            except Malformed as bad:
                ctx.malformed.append((int(rowid), bad.reason))
                continue
            if rec is not None:
                records.append(rec)
        return records, pending

    # -- mapping -------------------------------------------------------------------------

    def record(
        self, value: dict[str, Any], mid: str | None, session: str | None, root: Path | None
    ) -> Record | None:
        """One message → a record (``mid`` given for database rows, which win over JSON).

        Raises:
            Malformed: the message is damaged (see :meth:`stored_cost`).
        """
        tokens = value.get("tokens")
        if not isinstance(tokens, dict):
            return None
        model = _str(value.get("modelID"))
        stamp = self.timestamp(value)
        if model is None or stamp is None or not self.accepts(value):
            return None
        cache = _dict(tokens.get("cache"))
        inp, out = _u64(tokens.get("input")), _u64(tokens.get("output"))
        cw, cr = _u64(cache.get("write")), _u64(cache.get("read"))
        extra = _u64(tokens.get("reasoning"))
        missing = max(_u64(tokens.get("total")) - (inp + out + cw + cr + extra), 0)
        if missing and out == 0:
            out = missing
        else:
            extra += missing
        if not (inp or out or cw or cr or extra):
            return None
        key = mid or _str(value.get("id")) or ""
        return Record(
            key=key,
            ts_ms=stamp,
            session=session or _str(value.get("sessionID")) or "unknown",
            project=_project(value.get("path"), self.data_dir),
            model=model,
            price_model=_price_model(_str(value.get("providerID")), model),
            pricing="anthropic",
            input=inp,
            output=out,
            cache_write_5m=cw,
            cache_read=cr,
            reasoning=_u64(tokens.get("reasoning")),
            total=inp + out + cw + cr + extra,
            stored_cost=self.stored_cost(value.get("cost")),
            extra_output=extra,
            group=mid,
        )

    def accepts(self, value: dict[str, Any]) -> bool:
        """OpenCode needs a provider; any role."""
        return _str(value.get("providerID")) is not None

    def timestamp(self, value: dict[str, Any]) -> int | None:
        """``time.created`` if a non-negative integer, else 0 (ccusage dates it 1970-01-01)."""
        created = _get(value.get("time"), "created")
        return created if type(created) is int and 0 <= created <= _MAX_TS_MS else 0

    def stored_cost(self, cost: Any) -> float | None:
        """A stored cost is used only when it is a number > 0."""
        ok = isinstance(cost, int | float) and not isinstance(cost, bool) and 0 < cost <= _MAX_COST
        return float(cost) if ok else None

    def prefer(self, new: Record, new_cost: float, old: Record, old_cost: float) -> bool:
        """A database record beats a JSON one; otherwise the newer values win if they differ."""
        new_db, old_db = new.group is not None, old.group is not None
        if new_db != old_db:
            return new_db
        return _values(new) != _values(old) or new_cost != old_cost

    def cost(self, rec: Record, prices: PriceTable) -> float | None:
        """Stored cost (every mode), else the first candidate that prices to more than 0."""
        if rec.stored_cost is not None:
            return rec.stored_cost
        provider, model = _split_price_model(rec)
        if model is None:
            return None
        found = False
        for candidate in opencode_candidates(model, provider):
            price = find_price(candidate, prices)
            if price is None:
                continue
            found = True
            cost = cost_at(price, rec)  # no 1-hour cache writes, never 'fast': see record()
            if cost > 0:
                return cost
        return 0.0 if found else None


class KiloCli(OpenCode):
    """Kilo CLI's ``kilo.db`` (same table; stricter rows, stored cost used as is)."""

    name = "kilo-cli"
    suffixes = (".db", ".db-wal")
    data_env = "KILO_DATA_DIR"
    data_dir = "kilo"
    json_fallback = False

    def is_db(self, name: str) -> bool:
        """Only ``kilo.db``."""
        return name == "kilo.db"

    def accepts(self, value: dict[str, Any]) -> bool:
        """Only assistant messages; the provider may be missing."""
        return value.get("role") == "assistant"

    def timestamp(self, value: dict[str, Any]) -> int | None:
        """``time.created`` must be a non-negative integer, else the message is dropped."""
        created = _get(value.get("time"), "created")
        return created if type(created) is int and 0 <= created <= _MAX_TS_MS else None

    def stored_cost(self, cost: Any) -> float | None:
        """Any numeric stored cost up to 1e9 is used, 0 included.

        Raises:
            Malformed: the cost is negative.
        """
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            return None
        if cost < 0:
            raise Malformed("cost is negative")
        return float(cost) if cost <= _MAX_COST else None


def _price_model(provider: str | None, model: str) -> str:
    """``price_model`` carries the provider too (it is used only for pricing, never stored)."""
    return f"{provider or ''}{_SEP}{model}"


def _split_price_model(rec: Record) -> tuple[str | None, str | None]:
    provider, sep, model = (rec.price_model or "").partition(_SEP)
    return (provider or None, model) if sep else (None, rec.price_model)


def _collect(
    rows: dict[int, tuple[Any, ...]],
    conn: sqlite3.Connection,
    where: str,
    params: Any,
    lo: int | None = None,
) -> None:
    """Rows matching ``where`` (rowid above ``lo`` if given), read in rowid chunks."""
    cursor = -1 if lo is None else lo
    while True:
        chunk = conn.execute(
            "SELECT rowid, id, session_id, data FROM message WHERE rowid > ?"
            f"{where} ORDER BY rowid LIMIT {CHUNK_ROWS}",
            (cursor, *params),
        ).fetchall()
        for row in chunk:
            rows[int(row[0])] = row
        if len(chunk) < CHUNK_ROWS:
            return
        cursor = int(chunk[-1][0])


def _unfinished(value: dict[str, Any], now: float) -> bool:
    if value.get("role") not in ("assistant", None):
        return False
    time_info = _dict(value.get("time"))
    if isinstance(time_info.get("completed"), int | float):
        return False
    created = time_info.get("created")
    return isinstance(created, int | float) and now * 1000 - created < PENDING_MAX_AGE_MS


def _connect(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    # A TEXT value that is not UTF-8 must not fail the whole read (sqlite3 raises on it).
    conn.text_factory = _text
    try:
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _in_message_store(path: Path) -> bool:
    parts = path.parts
    return any(a == "storage" and b == "message" for a, b in zip(parts, parts[1:], strict=False))


def _values(r: Record) -> tuple[Any, ...]:
    # Only what the ledger gives back for a stored event (its slot has no model, extra_output
    # or stored cost): comparing those made every re-read "replace" every event. A changed
    # stored cost shows in the cost, extra output in ``total``; a model only through the cost.
    return (
        r.ts_ms,
        r.input,
        r.output,
        r.cache_write_5m,
        r.cache_read,
        r.reasoning,
        r.total,
    )


def _with_key(rec: Record, key: str) -> Record:
    return dataclasses.replace(rec, key=key)


def _project(path: Any, default: str) -> str:
    if isinstance(path, dict):
        for key in ("cwd", "root"):
            if isinstance(value := path.get(key), str) and value:
                return value
    return path if isinstance(path, str) and path else default


def _u64(value: Any) -> int:
    """A token count as ccusage reads it: non-negative JSON integers only, else 0."""
    return value if type(value) is int and 0 <= value <= _MAX_TOKENS else 0


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None
