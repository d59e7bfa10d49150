"""Gemini CLI: chat recordings under ``<home>/.gemini/tmp/<project>/chats/``.

Files (formats.md §6): legacy ``session-*.json`` (one ``ConversationRecord``, rewritten whole)
and newer ``session-*.jsonl`` (metadata line, message records re-emitted with the same ``id``
as they update, ``{"$set":…}`` and ``{"$rewindTo":…}`` records). ccusage reads every ``*.json``
and ``*.jsonl`` below the root recursively, and so does this source.

**One source, kind "document", for both file kinds.** The registry and the ledger key a source
by its name, and ``SOURCES`` holds one instance per name, so a "lines" class for ``.jsonl`` and
a "document" class for ``.json`` cannot both be "gemini". Every file is therefore re-parsed
whole when it changes; records are upserted by key, which gives ccusage's per-file "last
emission of an id wins" whatever the read order (a re-read after a truncate or a rewrite ends
on the file's last values too), and never retracted.

Rules, as ccusage 20.0.24 applies them (``adapter/gemini/parser.rs``, checked by running it):

* ``.json``: ``messages[]`` entries with ``type == "gemini"`` and a ``tokens`` object; the model
  must be on the message; timestamp = message ``timestamp`` / ``created_at``, else the
  session's ``startTime`` / ``lastUpdated``, else the file's mtime. A file that is itself one
  ``gemini`` message, or holds headless ``stats`` (``stats.models.<model>.tokens``), counts too.
* ``.jsonl``: the last top-level ``sessionId`` and ``model`` seen carry forward; a ``gemini``
  record whose ``id`` was seen replaces the earlier event (key ``(file, id)``, last wins) —
  but only when it yields an event (a re-emission with all-zero or no tokens changes
  nothing). ``$rewindTo`` is **not** honoured: rewound turns still count. A record without a
  valid timestamp gets the file's mtime (at the time sufd reads it).
* Tokens: aliases ``input|prompt|input_tokens|prompt_tokens``, ``output|candidates|…``,
  ``cached|cached_tokens``, ``thoughts|reasoning|…``, ``tool|tool_tokens``, ``total`` (else
  ``total_tokens``); any JSON number up to 2**40 counts (negative → 0, fractions truncated;
  sufd only: a larger one is damage and counts as absent). If
  ``cached > 0`` and ``total == input + output + thoughts + tool`` the cached part is taken
  out of ``input``; otherwise ``input`` is kept and ``cached`` is added as cache reads. Tool
  tokens are added to input. Thoughts are priced as output (``extra_output``) and are not in
  ``outputTokens``; a ``total`` larger than all parts adds the rest to output when output is
  0, else to ``extra_output``. ``totalTokens`` is ``max(total, input + output + cache)``.
  ``reasoning`` keeps the raw thoughts count for information. No cache writes.
* Pricing (:meth:`GeminiCli.cost`): model candidates ``google/M``, ``gemini/M``,
  ``vertex_ai/M``, ``openrouter/google/M``, ``M``, first one with a price wins. ccusage's
  embedded LiteLLM table has no Gemini keys, so these resolve in its embedded models.dev
  snapshot. The candidates, the lookup and the snapshot are in :mod:`sufd.prices.lookup` and
  :mod:`sufd.prices.models_dev`.

Roots: ccusage's ``GEMINI_DATA_DIR`` (comma-separated, each used as is) when set, and then
only those; else ``$GEMINI_CLI_HOME/.gemini/tmp`` (Gemini CLI's own override; ccusage ignores
it) and ``~/.gemini/tmp``. Project = the directory directly below the root (the project hash
or slug); session = ``sessionId``, else the file stem.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from sufd.prices.costs import cost_at
from sufd.prices.lookup import find_price, gemini_candidates
from sufd.prices.table import PriceTable
from sufd.settings import Settings
from sufd.sources.base import (
    FileContext,
    Malformed,
    Record,
    Source,
    parse_timestamp_ms,
)

__all__ = ["GeminiCli"]

_INPUT = ("input", "prompt", "input_tokens", "prompt_tokens")
_OUTPUT = ("output", "candidates", "output_tokens", "candidates_tokens")
_CACHED = ("cached", "cached_tokens")
_THOUGHTS = ("thoughts", "reasoning", "thoughts_tokens", "reasoning_tokens")
_TOOL = ("tool", "tool_tokens")
# A larger count is damage, not usage: it would overflow SQLite's 64-bit integers in the
# ledger (or its sums) and fail the whole file. It is read as "not a number".
_MAX_TOKENS = 2**40


class GeminiCli(Source):
    """Gemini CLI chat recordings (``.json`` and ``.jsonl``), re-parsed whole on change."""

    name = "gemini"
    kind = "document"
    suffixes = (".json", ".jsonl")

    def default_roots(self, settings: Settings) -> list[Path]:
        """``GEMINI_DATA_DIR`` entries, else ``$GEMINI_CLI_HOME`` and ``~``'s ``.gemini/tmp``."""
        env, home = settings.env, settings.home
        data_dirs = [p.strip() for p in env.get("GEMINI_DATA_DIR", "").split(",") if p.strip()]
        if data_dirs:
            return [Path(p).expanduser() for p in data_dirs]
        cli_home = env.get("GEMINI_CLI_HOME", "").strip()
        homes = [Path(cli_home).expanduser()] if cli_home else []
        return list(dict.fromkeys(h / ".gemini" / "tmp" for h in [*homes, home]))

    def parse_document(self, data: bytes, ctx: FileContext) -> list[Record]:
        """Every usage event the file holds now (see the module docstring for the rules)."""
        mtime = _mtime_ms(ctx.path)
        if ctx.path.suffix == ".jsonl":
            events = _parse_jsonl(data, ctx.path, mtime)
        else:
            events = _parse_json(data, ctx.path, mtime)
        project = _project(ctx)
        return [_record(e, project) for e in events]

    def prefer(self, new: Record, new_cost: float, old: Record, old_cost: float) -> bool:
        """The file's current values replace the stored event whenever they differ."""
        return _values(new) != _values(old) or new_cost != old_cost

    def cost(self, rec: Record, prices: PriceTable) -> float | None:
        """ccusage's Gemini pricing: the first model candidate with a price (see above)."""
        if rec.model is None:
            return None
        for candidate in gemini_candidates(rec.model):
            price = find_price(candidate, prices)
            if price is not None:
                return cost_at(price, rec)  # Gemini records are never 'fast'
        return None


# -- parsing -------------------------------------------------------------------------------

_Event = dict[str, Any]


def _parse_json(data: bytes, path: Path, mtime: int) -> list[_Event]:
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise Malformed("invalid JSON (caught mid-write?)") from None
    if not isinstance(record, dict):
        return []
    session = _str(record, "sessionId") or _str(record, "session_id") or path.stem
    messages = record.get("messages")
    if isinstance(messages, list):
        start = _first_ts(_ts(record, "startTime"), _ts(record, "lastUpdated"), mtime)
        events: list[_Event] = []
        seen: dict[str | None, int] = {}
        for index, msg in enumerate(messages):
            if not isinstance(msg, dict) or msg.get("type") != "gemini":
                continue
            event = _direct(msg, None, session, start)
            if event is not None:
                mid = _str(msg, "id")
                n = seen[mid] = seen.get(mid, 0) + 1
                event["key"] = f"{path}#{mid}#{n}" if mid else f"{path}[{index}]"
                events.append(event)
        return events
    if record.get("type") == "gemini":
        event = _direct(record, None, session, mtime)
        if event is not None:
            event["key"] = f"{path}#"
        return [event] if event is not None else []
    stamp = _first_ts(_ts(record, "timestamp"), mtime)
    return _stats(record, _str(record, "model"), session, stamp, f"{path}@0")


def _parse_jsonl(data: bytes, path: Path, mtime: int) -> list[_Event]:
    session, model = path.stem, None
    events: dict[str, _Event] = {}
    offset = 0
    for line in data.split(b"\n"):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # ccusage skips what it cannot read; a partial last line comes back later
        if not isinstance(record, dict):
            continue
        session = _str(record, "sessionId") or _str(record, "session_id") or session
        model = _str(record, "model") or model
        if record.get("type") == "gemini":
            event = _direct(record, model, session, mtime)
            if event is not None:
                mid = _str(record, "id")
                event["key"] = f"{path}#{mid}" if mid else f"{path}@{start}"
                events.pop(event["key"], None)
                events[event["key"]] = event
            continue
        stamp = _first_ts(_ts(record, "timestamp"), mtime)
        for event in _stats(record, model, session, stamp, f"{path}@{start}"):
            events[event["key"]] = event
    return list(events.values())


def _direct(record: dict[str, Any], hint: str | None, session: str, fallback: int) -> _Event | None:
    tokens = _tokens(record.get("tokens"))
    if tokens is None:
        return None
    stamp = _first_ts(_ts(record, "timestamp"), _ts(record, "created_at"), fallback)
    return _event(_str(record, "model") or hint, session, stamp, tokens, _normalise_session)


def _stats(
    record: dict[str, Any], hint: str | None, session: str, stamp: int, key: str
) -> list[_Event]:
    stats = record["stats"] if "stats" in record else _get(record.get("result"), "stats")
    if not isinstance(stats, dict):
        return []
    models = stats.get("models")
    events = []
    if isinstance(models, dict):
        for name, value in models.items():
            tokens = _tokens(value.get("tokens")) if isinstance(value, dict) else None
            event = _event(name, session, stamp, tokens, _subtract_cached) if tokens else None
            if event is not None:
                event["key"] = f"{key}:{name}"
                events.append(event)
        if events:
            return events
    tokens = _tokens(stats)
    event = _event(hint or "unknown", session, stamp, tokens, _subtract_cached) if tokens else None
    if event is not None:
        event["key"] = key
    return [event] if event is not None else []


def _event(
    model: str | None,
    session: str,
    stamp: int,
    t: dict[str, Any],
    normalise: Callable[[dict[str, Any]], tuple[int, int]],
) -> _Event | None:
    model = model.strip() if isinstance(model, str) else None
    if not model:
        return None
    input_no_cache, cache_read = normalise(t)
    inp = input_no_cache + t["tool"]
    total = t["total"] if t["total"] is not None else inp + t["output"] + cache_read + t["thoughts"]
    output, extra = t["output"], t["thoughts"]
    missing = max(total - (inp + output + cache_read + extra), 0)
    if missing:
        if output == 0:
            output = missing
        else:
            extra += missing
    if not (inp or output or cache_read or extra):
        return None
    return {
        "model": model,
        "session": session,
        "ts": stamp,
        "input": inp,
        "output": output,
        "cache_read": cache_read,
        "extra": extra,
        "total": max(total, inp + output + cache_read),
        "thoughts": t["thoughts"],
    }


def _tokens(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    total_raw = value["total"] if "total" in value else value.get("total_tokens")
    return {
        "input": _first(value, _INPUT),
        "output": _first(value, _OUTPUT),
        "cached": _first(value, _CACHED),
        "thoughts": _first(value, _THOUGHTS),
        "tool": _first(value, _TOOL),
        "total": _u64(total_raw),
    }


def _first(record: Mapping[str, Any], keys: tuple[str, ...]) -> int:
    for key in keys:
        if (value := _u64(record.get(key))) is not None:
            return value
    return 0


def _u64(value: Any) -> int | None:
    """A JSON number as ccusage reads it (``as_f64``, negatives → 0, truncated).

    Above :data:`_MAX_TOKENS` it is not a number (ccusage would count it).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or value > _MAX_TOKENS:
        return None
    return int(max(float(value), 0.0))


def _subtract_cached(t: dict[str, Any]) -> tuple[int, int]:
    return t["input"] - min(t["input"], t["cached"]), t["cached"]


def _normalise_session(t: dict[str, Any]) -> tuple[int, int]:
    inclusive = t["input"] + t["output"] + t["thoughts"] + t["tool"]
    if t["cached"] > 0 and t["total"] == inclusive and t["total"] != inclusive + t["cached"]:
        return _subtract_cached(t)
    return t["input"], t["cached"]


def _record(e: _Event, project: str) -> Record:
    return Record(
        key=e["key"],
        ts_ms=e["ts"],
        session=e["session"],
        project=project,
        model=e["model"],
        price_model=e["model"],
        pricing="anthropic",
        input=e["input"],
        output=e["output"],
        cache_read=e["cache_read"],
        reasoning=e["thoughts"],
        total=e["total"],
        extra_output=e["extra"],
    )


def _values(r: Record) -> tuple[Any, ...]:
    # Only what the ledger gives back for a stored event (its slot has no session, model or
    # extra_output): comparing those made every re-read "replace" every event. A change of
    # thoughts shows in ``reasoning``/``total``; a change of model only through the cost.
    return (r.ts_ms, r.input, r.output, r.cache_read, r.reasoning, r.total)


def _project(ctx: FileContext) -> str:
    if ctx.root is not None and ctx.path.is_relative_to(ctx.root):
        parts = ctx.path.relative_to(ctx.root).parts
        if len(parts) > 1:
            return parts[0]
    return "gemini"


def _mtime_ms(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns // 1_000_000
    except OSError:
        return 0


def _str(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _ts(record: Mapping[str, Any], key: str) -> int | None:
    return parse_timestamp_ms(record.get(key))


def _first_ts(*stamps: int | None) -> int:
    return next((s for s in stamps if s is not None), 0)
