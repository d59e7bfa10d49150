"""Cline, Roo Code and Kilo Code: one ``ui_messages.json`` per task, rewritten whole.

Files: ``<user dir>/globalStorage/<extension id>/tasks/<taskId>/ui_messages.json`` under each
VS Code-family user dir that exists (Code, Code - Insiders, VSCodium, Cursor, Windsurf), and
for Cline also ``$CLINE_DATA_DIR`` > ``$CLINE_DIR/data`` > ``~/.cline/data``, then ``/tasks``.

Events (key ``extension:taskId:ts``, session = taskId, time = ``ts`` in epoch ms):

* ``say:"api_req_started"``: ``tokensIn``/``tokensOut``/``cacheWrites``/``cacheReads``/``cost``
  from the JSON in ``text``. The row is rewritten in place as tokens arrive: an event is
  replaced whenever a value differs; an all-zero row without cost is skipped until it has
  tokens. ``input`` is ``tokensIn`` as written, cache reads and writes are their own classes.
  Some providers (OpenAI-compatible ones in Cline, recent Roo Code) include cached input in
  ``tokensIn``, which then over-states ``input``; the stored ``cost`` stays authoritative.
* ``say:"subagent_usage"``: the same values, an event of its own.
* ``say:"deleted_api_reqs"``: a checkpoint restore removes a suffix of the rows and appends
  this aggregate of them (earlier aggregates included). Events are never retracted, so
  counting it in full would count the vanished rows twice. ``ctx.state["seen"]`` keeps what
  was stored for every billable row of the task. A present aggregate at time T owns the rows
  seen before but now absent whose ts lies after the previous present aggregate and before
  T; its event is ``max(0, deleted - sum(owned))`` per token class and cost. The ledger total
  thus equals Cline's (rows present + aggregates + subagents) at every step, and rows written
  and removed while sufd was down are counted once, through the aggregate.

Model: ``modelInfo.modelId`` on the row, else the ``task_metadata.json`` ``model_usage`` entry
with the greatest ``ts <= row.ts``, else the ``<model>`` tag of the first user message of
``api_conversation_history.json`` (``provider/`` prefix stripped), else unknown. Project: the
``# Current Working/Workspace Directory (...)`` of the first request's environment details
(else of the history's first message), else ``<extension id>/<taskId>``. A row whose ``text``
is not JSON is skipped and noted in ``ctx.state["malformed"]`` (and in ``ctx.malformed``,
where the ingest context offers that list).
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson

from sufd.settings import Settings
from sufd.sources.base import FileContext, Malformed, Record, Source

__all__ = ["VSCODE_APPS", "Cline", "ClineFamily", "KiloCode", "RooCode", "current_platform"]

VSCODE_APPS = ("Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf")
UI_MESSAGES = "ui_messages.json"
_KINDS = {"api_req_started": "r", "deleted_api_reqs": "d", "subagent_usage": "s"}
_TOKENS = ("tokensIn", "tokensOut", "cacheWrites", "cacheReads")
_CWD = re.compile(r"# Current (?:Working|Workspace) Directory \((.+?)\) Files")
_MODEL_TAG = re.compile(r"<model>\s*([^<]+?)\s*</model>")
_COST_EPSILON = 1e-9
# Larger values are not usage but damage: they would overflow SQLite's 64-bit integers in
# the ledger (or its sums) and fail the whole file. A time after 2099 is damage too (reports
# would walk millennia of days, or past year 9999).
_MAX_TOKENS = 2**40
_MAX_TS_MS = 4_102_444_799_999  # 2099-12-31T23:59:59.999Z
_MAX_COST = 1e9  # USD per request
Values = list[float]  # tokensIn, tokensOut, cacheWrites, cacheReads, cost (-1: none stored)


def current_platform() -> str:
    """``sys.platform`` at call time; the seam tests patch to exercise other platforms."""
    return sys.platform


class ClineFamily(Source):
    """A VS Code extension of the Cline family, identified by its extension id."""

    kind = "document"
    suffixes = (UI_MESSAGES,)
    extension_id: ClassVar[str]
    cline_data_dir: ClassVar[bool] = False

    def default_roots(self, settings: Settings) -> list[Path]:
        """``tasks`` under each existing VS Code-family user dir (else Code's), + Cline's data."""
        home, env = settings.home, settings.env
        if current_platform() == "darwin":
            bases = [home / "Library" / "Application Support"]
        else:  # ~/.config, and $XDG_CONFIG_HOME (Electron's appData) when set
            bases = [home / ".config"]
            if env.get("XDG_CONFIG_HOME"):
                bases.append(Path(env["XDG_CONFIG_HOME"]))
        users = [base / app / "User" for base in bases for app in VSCODE_APPS]
        found = [u for u in users if u.is_dir()] or users[:1]
        roots = [u / "globalStorage" / self.extension_id / "tasks" for u in found]
        if self.cline_data_dir:
            if env.get("CLINE_DATA_DIR"):
                data = _expand(env["CLINE_DATA_DIR"], home)
            elif env.get("CLINE_DIR"):
                data = _expand(env["CLINE_DIR"], home) / "data"
            else:
                data = home / ".cline" / "data"
            roots.append(data / "tasks")
        return roots

    def owns(self, path: Path) -> bool:
        """``ui_messages.json`` directly inside ``tasks/<taskId>/``."""
        return path.name == UI_MESSAGES and path.parent.parent.name == "tasks"

    def scan(self, root: Path) -> Iterator[Path]:
        """One file per task directory (the task trees are not walked, nor symlinked task
        directories entered: the watcher does not enter them either)."""
        if root.is_dir():
            found = sorted(root.glob(f"*/{UI_MESSAGES}"))
            yield from (p for p in found if p.is_file() and not p.parent.is_symlink())

    def prefer(self, new: Record, new_cost: float, old: Record, old_cost: float) -> bool:
        """Rows are rewritten in place: the newer read wins whenever a value differs."""
        fields = ("ts_ms", "input", "output", "cache_write_5m", "cache_read")
        return new_cost != old_cost or any(getattr(new, f) != getattr(old, f) for f in fields)

    def parse_document(self, data: bytes, ctx: FileContext) -> list[Record]:
        """Every billable row of the task file; see the module docstring for the rules."""
        try:
            rows = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"invalid JSON (mid-write?): {str(exc).split(':', 1)[0]}") from None
        if not isinstance(rows, list):
            raise Malformed("not a JSON array of messages")
        old: dict[str, Any] = ctx.state
        seen: dict[str, list[Any]] = dict(old.get("seen", {}))
        entries, request, bad = _billable_rows(rows)
        sink = getattr(ctx, "malformed", None)  # a per-row malformed list, where ingest has one
        for rid, reason in bad.items():
            if isinstance(sink, list) and rid not in old.get("malformed", {}):
                sink.append((max(data.find(b'"ts":' + rid.split("#")[0].encode()), 0), reason))
        deleted = sorted((ts, rid) for rid, kind, ts, _, _ in entries if kind == "d")
        owned = _owned_absent(seen, {e[0] for e in entries}, deleted)
        task = ctx.path.parent.name
        hints = _TaskHints(ctx.path.parent, old.get("history"))
        cwd = old.get("cwd") or _match(_CWD, request) or hints.history().get("cwd")
        records = []
        for rid, kind, ts, values, msg in entries:
            stored = _residual(values, owned.get(rid, [])) if kind == "d" else values
            if not any(stored[:4]) and stored[4] <= 0 and not _nonzero(seen.get(rid)):
                seen.pop(rid, None)
                continue
            seen[rid] = [kind, ts, *stored]
            info = msg.get("modelInfo")
            model = info.get("modelId") if isinstance(info, dict) else None
            model = model if _text(model) else hints.model_at(ts)
            records.append(self._record(task, rid, ts, stored, model, cwd))
        ctx.state = {"seen": seen, "cwd": cwd, "history": hints.cached, "malformed": bad}
        return records

    def _record(
        self, task: str, rid: str, ts: int, v: Values, model: str | None, cwd: str | None
    ) -> Record:
        tin, tout, cw, cr = (int(x) for x in v[:4])
        return Record(
            key=f"{self.extension_id}:{task}:{rid}",
            ts_ms=ts,
            session=task,
            project=cwd or f"{self.extension_id}/{task}",
            model=model,
            price_model=model.rsplit("/", 1)[-1] if model else None,
            pricing="anthropic",
            input=tin,
            output=tout,
            cache_write_5m=cw,
            cache_read=cr,
            total=tin + tout + cw + cr,
            stored_cost=v[4] if v[4] >= 0 else None,
        )


class Cline(ClineFamily):
    """Cline (``saoudrizwan.claude-dev``), also under ``~/.cline/data``."""

    name = "cline"
    extension_id = "saoudrizwan.claude-dev"
    cline_data_dir = True


class RooCode(ClineFamily):
    """Roo Code (``rooveterinaryinc.roo-cline``)."""

    name = "roo-code"
    extension_id = "rooveterinaryinc.roo-cline"


class KiloCode(ClineFamily):
    """Kilo Code (``kilocode.kilo-code``)."""

    name = "kilo-code"
    extension_id = "kilocode.kilo-code"


Entry = tuple[str, str, int, Values, dict[str, Any]]  # id, kind, ts, values, message


class _TaskHints:
    """Model and cwd hints from the task's side files, each read at most once per parse."""

    def __init__(self, task_dir: Path, cached: dict[str, Any] | None) -> None:
        self.dir, self.cached = task_dir, cached  # history hints persist once readable
        self._usage: list[tuple[int, str]] | None = None
        self._tried = False

    def model_at(self, ts: int) -> str | None:
        """The ``model_usage`` entry with the greatest ``ts <= ts``, else the history tag."""
        if self._usage is None:
            meta = _load(self.dir / "task_metadata.json")
            usage = meta.get("model_usage") if isinstance(meta, dict) else None
            self._usage = sorted(
                (e["ts"], e["model_id"])
                for e in (usage if isinstance(usage, list) else [])
                if isinstance(e, dict) and type(e.get("ts")) is int and _text(e.get("model_id"))
            )
        i = bisect.bisect_right(self._usage, (ts, "\uffff"))
        if i:
            return self._usage[i - 1][1]
        tag = self.history().get("model")
        return tag.rsplit("/", 1)[-1] if tag else None

    def history(self) -> dict[str, Any]:
        """``<model>`` tag and cwd of the first user message of the API history."""
        if self.cached is None and not self._tried:
            self._tried = True
            history = _load(self.dir / "api_conversation_history.json")
            users = [m for m in history or () if isinstance(m, dict) and m.get("role") == "user"]
            if users and isinstance(history, list):
                content = users[0].get("content")
                parts = content if isinstance(content, list) else [{"text": content}]
                text = "\n".join(
                    p["text"] for p in parts if isinstance(p, dict) and _text(p.get("text"))
                )
                self.cached = {"model": _match(_MODEL_TAG, text), "cwd": _match(_CWD, text)}
        return self.cached or {}


def _billable_rows(rows: list[Any]) -> tuple[list[Entry], str | None, dict[str, str]]:
    """The billable rows with their values, the first request's text, and the bad rows."""
    entries: list[Entry] = []
    bad: dict[str, str] = {}
    request: str | None = None
    counts: dict[int, int] = {}
    for i, msg in enumerate(rows):
        say = msg.get("say") if isinstance(msg, dict) and msg.get("type") == "say" else None
        kind = _KINDS.get(say) if isinstance(say, str) else None
        if kind is None:
            continue
        ts = msg.get("ts")
        if type(ts) is not int or not 0 < ts <= _MAX_TS_MS:
            bad[f"@{i}"] = "ts is not a positive integer"
            continue
        counts[ts] = counts.get(ts, 0) + 1
        rid = str(ts) if counts[ts] == 1 else f"{ts}#{counts[ts]}"
        try:
            values, req = _values(msg.get("text"))
        except Malformed as why:
            bad[rid] = why.reason
            continue
        request = req if request is None and kind == "r" else request
        entries.append((rid, kind, ts, values, msg))
    return entries, request, bad


def _values(text: Any) -> tuple[Values, str | None]:
    """The four token counts and the cost (-1 when none is stored) of a row's ``text``."""
    try:
        info = orjson.loads(text) if isinstance(text, str) else None
    except orjson.JSONDecodeError:
        info = None
    if not isinstance(info, dict):
        raise Malformed("text is not JSON")
    out: Values = []
    for name in (*_TOKENS, "cost"):
        value = info.get(name) or 0
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise Malformed(f"{name} is not a non-negative number")
        if value > (_MAX_COST if name == "cost" else _MAX_TOKENS):
            raise Malformed(f"{name} is out of range")
        out.append(int(value) if name != "cost" else float(value))
    if info.get("cost") is None:
        out[4] = -1.0
    request = info.get("request")
    return out, request if isinstance(request, str) else None


def _owned_absent(
    seen: dict[str, list[Any]], present: set[str], deleted: list[tuple[int, str]]
) -> dict[str, list[Values]]:
    """Seen-but-absent rows, each owned by the first present aggregate after it."""
    owned: dict[str, list[Values]] = {}
    for rid, (_kind, ts, *values) in seen.items():
        i = len(deleted) if rid in present else bisect.bisect_right(deleted, (ts, "\uffff"))
        if i < len(deleted):
            owned.setdefault(deleted[i][1], []).append(values)
    return owned


def _residual(deleted: Values, owned: list[Values]) -> Values:
    """What an aggregate adds beyond the owned rows already in the ledger (never negative).

    A row priced by sufd (no stored cost) is taken at cost 0 here.
    """
    out = [max(0.0, deleted[k] - sum(v[k] for v in owned)) for k in range(4)]
    if deleted[4] < 0:
        return [*out, -1.0]
    cost = deleted[4] - sum(max(v[4], 0.0) for v in owned)
    return [*out, cost if cost > _COST_EPSILON else 0.0]


def _nonzero(entry: list[Any] | None) -> bool:
    return entry is not None and (any(entry[2:6]) or entry[6] > 0)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _match(pattern: re.Pattern[str], text: str | None) -> str | None:
    found = pattern.search(text) if text else None
    return found.group(1) if found else None


def _load(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def _expand(value: str, home: Path) -> Path:
    return home / value[2:] if value == "~" or value.startswith("~/") else Path(value)
