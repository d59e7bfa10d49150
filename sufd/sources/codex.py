"""OpenAI Codex CLI: append-only rollout JSONL under ``$CODEX_HOME/sessions``.

Usage comes from ``event_msg``/``token_count`` lines whose ``total_token_usage`` is
cumulative for the session; the model comes from the latest ``turn_context``. The rules
follow ccusage (formats.md §3.3): the per-file previous total and current model are carried
state, persisted with the file's cursor so an incremental read continues exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sufd.settings import Settings
from sufd.sources.base import (
    FileContext,
    Malformed,
    Record,
    Source,
    looks_like_object,
    parse_timestamp_ms,
)

__all__ = ["Codex"]

_FIELDS = ("input", "cached", "output", "reasoning", "total")
_ALIASES: dict[str, tuple[str, ...]] = {
    "input": ("input_tokens", "prompt_tokens", "input"),
    "cached": ("cached_input_tokens", "cache_read_input_tokens", "cached_tokens"),
    "output": ("output_tokens", "completion_tokens", "output"),
    "reasoning": ("reasoning_output_tokens", "reasoning_tokens"),
    "total": ("total_tokens",),
}
FALLBACK_MODEL = "gpt-5"
# The markers of the lines parse_line reads (see Source.markers).
_TURN, _COUNT, _META = b'"turn_context"', b'"token_count"', b'"session_meta"'
# ccusage maps the internal reviewer model ``codex-auto-review`` to what served it from a date
# on. formats.md §3.3 gives the date of the newest cut-over only; earlier reviewer events
# keep their own name and are reported unpriced rather than guessed.
_AUTO_REVIEW = (("2026-04-23", "gpt-5.5"),)
# Larger counts are damage, not usage: they would overflow SQLite's 64-bit integers in the
# ledger (or its sums) and fail the whole file.
_MAX_TOKENS = 2**40


class Codex(Source):
    """Codex CLI rollout files."""

    name = "codex"
    suffixes = (".jsonl",)
    markers = (_TURN, _COUNT, _META)

    def default_roots(self, settings: Settings) -> list[Path]:
        """``sessions/`` and ``archived_sessions/`` of each ``CODEX_HOME`` (else ``~/.codex``)."""
        homes = [h.strip() for h in settings.env.get("CODEX_HOME", "").split(",") if h.strip()]
        paths = [Path(h).expanduser() for h in homes] or [settings.home / ".codex"]
        return [p / sub for p in paths for sub in ("sessions", "archived_sessions")]

    def new_state(self) -> dict[str, Any]:
        """No model seen yet, no previous cumulative total."""
        return {"model": None, "prev": None, "session": None, "cwd": None}

    def parse_line(self, line: bytes, offset: int, ctx: FileContext) -> Record | None:
        """A ``token_count`` line → a record; ``turn_context``/``session_meta`` update state."""
        if not (_TURN in line or _COUNT in line or _META in line):
            if not looks_like_object(line):
                raise Malformed("not a JSON object")
            return None
        obj = ctx.json(line)
        if not isinstance(obj, dict):
            raise Malformed("not a JSON object")
        payload = obj.get("payload")
        if not isinstance(payload, dict):
            return None
        kind = obj.get("type")
        state = ctx.state
        if kind == "session_meta":
            if isinstance(payload.get("id"), str):
                state["session"] = payload["id"]
            if isinstance(payload.get("cwd"), str):
                state["cwd"] = payload["cwd"]
            return None
        if kind == "turn_context":
            model = _model_of(payload)
            if model:
                state["model"] = model
            if isinstance(payload.get("cwd"), str) and not state.get("cwd"):
                state["cwd"] = payload["cwd"]
            return None
        if kind != "event_msg" or payload.get("type") != "token_count":
            return None
        return _token_count(obj, payload, offset, ctx)


def _model_of(obj: dict[str, Any]) -> str | None:
    for key in ("model", "model_name"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    meta = obj.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("model"), str) and meta["model"]:
        return str(meta["model"])
    return None


def _usage(raw: Any, name: str) -> dict[str, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise Malformed(f"{name} is not an object")
    out: dict[str, int] = {}
    for field, aliases in _ALIASES.items():
        # The first alias present and not null counts; nearly always the first one.
        value: Any = raw.get(aliases[0])
        if value is None:
            value = next((v for v in map(raw.get, aliases[1:]) if v is not None), 0)
        if type(value) is not int or not 0 <= value <= _MAX_TOKENS:
            raise Malformed(f"{name}.{aliases[0]} is not a non-negative integer up to 2**40")
        out[field] = value
    return out


def _token_count(
    obj: dict[str, Any], payload: dict[str, Any], offset: int, ctx: FileContext
) -> Record | None:
    info = payload.get("info")
    if info is None:
        return None
    if not isinstance(info, dict):
        raise Malformed("token_count info is not an object")
    ts = parse_timestamp_ms(obj.get("timestamp"))
    if ts is None:
        raise Malformed("timestamp missing or not in ccusage's accepted shape")
    total = _usage(info.get("total_token_usage"), "total_token_usage")
    last = _usage(info.get("last_token_usage"), "last_token_usage")
    state = ctx.state
    prev: dict[str, int] | None = state.get("prev")
    # A re-emitted event repeats an unchanged cumulative total: it is not new usage.
    if last is not None and (total is None or total != prev):
        raw = last
    elif total is not None:
        raw = {f: max(total[f] - (prev or {}).get(f, 0), 0) for f in _FIELDS}
    else:
        return None
    if total is not None:
        state["prev"] = total
    if not (raw["input"] or raw["cached"] or raw["output"] or raw["reasoning"]):
        return None

    model = _model_of(payload) or _model_of(info) or state.get("model")
    fallback = not model
    model = model or FALLBACK_MODEL
    stamp = str(obj["timestamp"])
    if model == "codex-auto-review":
        model = next((m for day, m in _AUTO_REVIEW if stamp[:10] >= day), model)
    cached = min(raw["cached"], raw["input"])
    inp, out, reasoning = raw["input"], raw["output"], raw["reasoning"]
    total_tokens = raw["total"] or inp + out + reasoning
    key = f"{stamp}|{model}|{inp}|{cached}|{out}|{reasoning}|{total_tokens}"
    return Record(
        key=key,
        ts_ms=ts,
        session=state.get("session") or ctx.path.stem,
        project=state.get("cwd") or "unknown",
        model=model,
        price_model=model,
        pricing="openai",
        input=inp - cached,
        output=out,
        cache_read=cached,
        reasoning=reasoning,
        total=total_tokens,
        fallback_model=fallback,
        offset=offset,
    )
