"""Claude Code: append-only JSONL transcripts under ``<config dir>/projects``.

Only ``assistant`` lines (and nested agent-progress lines) carry usage. The line filter and
the dedup rule follow ccusage >= 20 (formats.md §2.3-§2.4): one JSONL line is written per
content block of a streamed reply, all sharing ``message.id`` + ``requestId``; the line with
the largest token total wins, and a sidechain replay of a parent message (same id, new
request id) is the same request.
"""

from __future__ import annotations

import re
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
    short_hash,
)

__all__ = ["ClaudeCode"]

_USAGE_MARKER = b'"usage":{'
# ccusage drops a line where any of these fields is literally null, wherever it appears.
_NULL_FIELDS = frozenset(
    (b"id", b"cwd", b"model", b"speed", b"costUSD", b"version", b"sessionId", b"requestId")
    + (b"isApiErrorMessage", b"cache_read_input_tokens", b"cache_creation_input_tokens")
)
_NULL = b'":null'
_SEMVER_PREFIX = re.compile(r"\d+\.\d+\.\d")
_VERSIONS_SEEN: set[str] = set()  # versions that passed _SEMVER_PREFIX (a few per machine)
_PROFILES = ("opus", "sonnet", "haiku", "glm")
# Larger values are damage, not usage: they would overflow SQLite's 64-bit integers in the
# ledger (or make its cost sums infinite) and fail the whole file.
_MAX_TOKENS = 2**40
_MAX_COST = 1e9


class ClaudeCode(Source):
    """Claude Code session transcripts."""

    name = "claude"
    suffixes = (".jsonl",)
    markers = (_USAGE_MARKER,)

    def default_roots(self, settings: Settings) -> list[Path]:
        """``CLAUDE_CONFIG_DIR`` entries when set, else the XDG and ``~/.claude*`` dirs."""
        env, home = settings.env, settings.home
        configured = [p.strip() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
        if configured:
            return [_projects_dir(_expand_home(p, home)) for p in configured]
        xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        roots = [xdg / "claude" / "projects", home / ".claude" / "projects"]
        roots += [home / f".claude-{p}" / "projects" for p in _PROFILES]
        if home.is_dir():
            roots += sorted(p / "projects" for p in home.glob(".claude-*") if p.is_dir())
        return roots

    def parse_line(self, line: bytes, offset: int, ctx: FileContext) -> Record | None:
        """One assistant usage line → a record; see the module docstring for the rules."""
        if _USAGE_MARKER not in line:
            if not looks_like_object(line):
                raise Malformed("not a JSON object")
            return None
        if _has_null_field(line):
            return None
        obj = ctx.json(line)
        if not isinstance(obj, dict):
            raise Malformed("not a JSON object")
        message = obj.get("message")
        if isinstance(message, dict) and isinstance(message.get("usage"), dict):
            return _record(obj, obj, message, obj.get("version"), line, offset, ctx)
        # A nested agent-progress line: usage under data.message.message.
        data = obj.get("data")
        outer = data.get("message") if isinstance(data, dict) else None
        if isinstance(outer, dict):
            message = outer.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                return _record(obj, outer, message, None, line, offset, ctx)
        raise Malformed("usage line without the fields ccusage requires")

    def prefer(self, new: Record, new_cost: float, old: Record, old_cost: float) -> bool:
        """ccusage's rule: non-sidechain first, then larger total, higher cost, has speed."""
        if new.sidechain != old.sidechain:
            return old.sidechain
        if new.dedup_total != old.dedup_total:
            return new.dedup_total > old.dedup_total
        if new_cost != old_cost:
            return new_cost > old_cost
        return new.has_speed and not old.has_speed

    def alias_match(self, new: Record, slot: Record) -> bool:
        """A sidechain line matches any slot of the same message id (ccusage#913)."""
        return (
            new.group is not None and new.group == slot.group and (new.sidechain or slot.sidechain)
        )


def _has_null_field(line: bytes) -> bool:
    """Whether ``"<name>":null`` occurs for a name in ``_NULL_FIELDS`` (every usage line has
    a few other nulls; a regular expression over the whole line cost 8 µs)."""
    at = line.find(_NULL)
    while at >= 0:
        quote = line.rfind(b'"', 0, at)
        if quote >= 0 and line[quote + 1 : at] in _NULL_FIELDS:
            return True
        at = line.find(_NULL, at + 6)
    return False


def _projects_dir(path: Path) -> Path:
    return path if path.name == "projects" else path / "projects"


def _expand_home(value: str, home: Path) -> Path:
    if value == "~" or value.startswith("~/"):
        return home / value[2:]
    return Path(value)


def _uint(value: Any, name: str, *, required: bool = False) -> int:
    if value is None and not required:
        return 0
    if type(value) is not int or not 0 <= value <= _MAX_TOKENS:
        raise Malformed(f"{name} is not a non-negative integer up to 2**40")
    return value


def _opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"{name} is not a string")
    if not value:
        raise Malformed(f"{name} is empty")
    return value


def _check_version(version: object) -> None:
    if not (isinstance(version, str) and _SEMVER_PREFIX.match(version)):
        raise Malformed("version is not N.N.N")
    if len(_VERSIONS_SEEN) < 1000:
        _VERSIONS_SEEN.add(version)


def _tokens(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """Input, output, 5-minute and 1-hour cache writes, and cache reads of a usage object."""
    get = usage.get
    inp = get("input_tokens")
    out = get("output_tokens")
    cache_create = get("cache_creation_input_tokens", 0)
    cache_read = get("cache_read_input_tokens", 0)
    if not (
        type(inp) is int
        and type(out) is int
        and type(cache_create) is int
        and type(cache_read) is int
        and 0 <= inp <= _MAX_TOKENS
        and 0 <= out <= _MAX_TOKENS
        and 0 <= cache_create <= _MAX_TOKENS
        and 0 <= cache_read <= _MAX_TOKENS
    ):
        inp = _uint(inp, "input_tokens", required=True)
        out = _uint(out, "output_tokens", required=True)
        cache_create = _uint(cache_create, "cache_creation_input_tokens")
        cache_read = _uint(cache_read, "cache_read_input_tokens")
    breakdown = get("cache_creation")
    if breakdown is None:
        return inp, out, cache_create, 0, cache_read
    if not isinstance(breakdown, dict):
        raise Malformed("usage.cache_creation is not an object")
    cw5m = _uint(breakdown.get("ephemeral_5m_input_tokens"), "ephemeral_5m_input_tokens")
    cw1h = _uint(breakdown.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens")
    return inp, out, cw5m, cw1h, cache_read


def _record(
    obj: dict[str, Any],
    fields: dict[str, Any],
    message: dict[str, Any],
    version: Any,
    line: bytes,
    offset: int,
    ctx: FileContext,
) -> Record | None:
    """The record of a usage line: ``fields`` holds the entry's own fields (the line itself,
    or a progress line's inner entry), ``obj`` the line's session and working dir."""
    # Once per usage line of every transcript: each check takes the common case first and
    # leaves the rest (and the error message) to the helpers.
    usage: dict[str, Any] = message["usage"]
    get = fields.get
    ts = parse_timestamp_ms(get("timestamp"))
    if ts is None:
        raise Malformed("timestamp missing or not in ccusage's accepted shape")
    if version is not None and (type(version) is not str or version not in _VERSIONS_SEEN):
        _check_version(version)
    session = obj.get("sessionId")
    if type(session) is not str or not session:
        session = _opt_str(session, "sessionId")
    request_id = get("requestId")
    if type(request_id) is not str or not request_id:
        request_id = _opt_str(request_id, "requestId")
    message_id = message.get("id")
    if type(message_id) is not str or not message_id:
        message_id = _opt_str(message_id, "message.id")
    model = message.get("model")
    if type(model) is not str or not model:
        model = _opt_str(model, "message.model")
    cost = get("costUSD")
    # A negative cost is damage, as a negative token count is.
    if cost is not None and (
        isinstance(cost, bool) or not isinstance(cost, int | float) or not 0 <= cost <= _MAX_COST
    ):
        raise Malformed("costUSD is not a non-negative number up to 1e9")
    sidechain = get("isSidechain")
    if sidechain is not None and sidechain is not True and sidechain is not False:
        raise Malformed("isSidechain is not a boolean")
    speed = usage.get("speed")
    if speed is not None and speed != "standard" and speed != "fast":
        raise Malformed("usage.speed is neither standard nor fast")

    inp, out, cw5m, cw1h, cache_read = _tokens(usage)
    fast = speed == "fast"
    reported = None if model is None or model == "<synthetic>" else model
    if reported is not None and fast and not reported.endswith("-fast"):
        reported += "-fast"
    cwd = obj.get("cwd")
    if not (isinstance(cwd, str) and cwd):
        cwd = None
    # A line without an id is its own event: keyed by file, offset and content, so a
    # re-read of the same bytes is idempotent and different bytes at that offset are new.
    key = (
        f"{message_id}:{request_id or ''}"
        if message_id
        else f"@{short_hash(str(ctx.path))}:{offset}:{short_hash(line)}"
    )
    # Positional, in Record's field order: keywords took a third of this function's time.
    # tests/test_source_claude.py checks every field of a line built to tell them apart.
    return Record(
        key,  # key
        ts,  # ts_ms
        session or _session_from_path(ctx),  # session
        cwd or _project_from_path(ctx),  # project
        reported,  # model
        None if reported is None else model,  # price_model
        "anthropic",  # pricing
        inp,  # input
        out,  # output
        cw5m,  # cache_write_5m
        cw1h,  # cache_write_1h
        cache_read,  # cache_read
        0,  # reasoning
        inp + out + cw5m + cw1h + cache_read,  # total
        float(cost) if cost is not None else None,  # stored_cost
        fast,  # fast
        False,  # fallback_model
        offset,  # offset
        message_id,  # group
        sidechain is True,  # sidechain
        speed is not None,  # has_speed
    )


def _relative_parts(ctx: FileContext) -> tuple[str, ...]:
    if ctx.root is not None:
        try:
            return ctx.path.relative_to(ctx.root).parts
        except ValueError:
            pass
    return ctx.path.parts[-2:]


def _project_from_path(ctx: FileContext) -> str:
    parts = _relative_parts(ctx)
    return parts[0] if len(parts) > 1 else "unknown"


def _session_from_path(ctx: FileContext) -> str:
    parts = _relative_parts(ctx)
    if "subagents" in parts[:-1]:
        return parts[parts.index("subagents") - 1]
    if len(parts) == 2:
        return Path(parts[1]).stem
    return parts[-2] if len(parts) > 2 else ctx.path.stem
