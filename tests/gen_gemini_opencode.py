"""Deterministic Gemini CLI and OpenCode corpora with every trap, and their expected sums.

``generate_gemini(home, spec)`` writes ``<home>/.gemini/tmp/<project>/chats/session-*.jsonl`` and
legacy ``session-*.json`` files; ``generate_opencode(home, spec)`` writes
``<home>/.local/share/opencode/opencode.db`` (OpenCode's DDL for ``session``/``message``/``part``,
WAL mode) plus legacy ``storage/message/<session>/<message>.json`` files. Both return an
:class:`Expected`: per (UTC day, model) token sums and cost, computed here from the values the
generator chose and :data:`PRICES` (written out by hand from ccusage 20.0.24's tables), so tests
never compare sufd with itself.

Gemini traps: re-emitted message ids (growing tokens, last emission wins; a later all-zero
re-emission changes nothing), ``$set`` records, ``$rewindTo`` (ignored: rewound turns count),
cached tokens inside input (subtracted) and cached tokens with a non-matching total (kept), thoughts
(priced as output, only in totalTokens), tool tokens (added to input), a total above all parts,
records without a model (carried from the last one), gemini records without an id, models priced
through the ``google/`` prefix (gemini-3-flash), long context above 200k (gemini-2.5-pro,
whole request at the tier rates), legacy ``.json`` with a message without timestamp (session
``startTime``).

OpenCode traps: rows inserted at the start of a reply with zero tokens and UPDATEd at completion,
JSON fallback files, JSON duplicates of database rows with other values (the database wins), a
database row with no tokens whose JSON duplicate counts, ``cost`` as an object (ignored), stored
``cost`` > 0 (used), ``tokens.total`` above all parts, ``tokens.reasoning`` (priced as output),
``claude-sonnet-4.5`` spelled with a dot behind provider ``github-copilot``, user rows, rows with
an empty ``providerID`` (skipped).

``ccusage_snapshots()`` pulls the pricing snapshots out of the pinned ccusage binary (raw deflate
streams) so a test can check :data:`sufd.prices.models_dev.MODELS_DEV` against it.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "OPENCODE_DDL",
    "PRICES",
    "Expected",
    "Spec",
    "create_opencode_db",
    "generate_gemini",
    "generate_opencode",
]

# USD per Mtok: input, output, cache write, cache read, (threshold, in, out, cache read) | None.
# Gemini rows are models.dev's (google/… where ccusage's prefix order reaches it first); the
# others are ccusage's embedded LiteLLM entries.
PRICES: dict[str, tuple[float, float, float, float, tuple[int, float, float, float] | None]] = {
    "gemini-2.5-pro": (1.25, 10, 0.375, 0.125, (200_000, 2.5, 15, 0.25)),
    # OpenCode tries the bare id first: models.dev "gemini-2.5-pro" has no cache-write price.
    "gemini-2.5-pro@opencode": (1.25, 10, 1.5625, 0.125, (200_000, 2.5, 15, 0.25)),
    "gemini-2.5-flash": (0.3, 2.5, 0.083333, 0.03, None),
    "gemini-2.5-flash-lite": (0.1, 0.4, 0.083333, 0.01, None),
    "gemini-3-flash-preview": (0.5, 3, 0.625, 0.05, (200_000, 0.5, 3, 0.05)),
    "gemini-3-pro-preview": (2, 12, 2.5, 0.2, (200_000, 4, 18, 0.4)),
    "gemini-3-flash": (0.4, 2.4, 0.5, 0.04, None),
    "claude-sonnet-4-5": (3, 15, 3.75, 0.3, None),
    "claude-sonnet-4.5": (3, 15, 3.75, 0.3, None),
    "claude-3-5-haiku-20241022": (0.8, 4, 1.0, 0.08, None),
    "gpt-4o-mini": (0.15, 0.6, 0.1875, 0.075, None),
}
GEMINI_MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3-flash-preview",
    "gemini-3-pro-preview",
    "gemini-3-flash",
)
OPENCODE_MODELS = (
    ("anthropic", "claude-sonnet-4-5"),
    ("github-copilot", "claude-sonnet-4.5"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("openai", "gpt-4o-mini"),
    ("google", "gemini-2.5-pro"),
)
# 2026-03-01 00:00 UTC; the corpus spans America/Los_Angeles' DST switch (2026-03-08).
START_MS = 1_772_323_200_000
DAY_MS = 86_400_000

OPENCODE_DDL = (
    "CREATE TABLE `project` (`id` text PRIMARY KEY, `worktree` text NOT NULL, `vcs` text,"
    " `name` text, `time_created` integer NOT NULL, `time_updated` integer NOT NULL,"
    " `sandboxes` text NOT NULL)",
    "CREATE TABLE `session` (`id` text PRIMARY KEY, `project_id` text NOT NULL, `parent_id` text,"
    " `slug` text NOT NULL, `directory` text NOT NULL, `title` text NOT NULL,"
    " `version` text NOT NULL, `time_created` integer NOT NULL, `time_updated` integer NOT NULL,"
    " CONSTRAINT `fk_session_project_id_project_id_fk` FOREIGN KEY (`project_id`)"
    " REFERENCES `project`(`id`) ON DELETE CASCADE)",
    "CREATE TABLE `message` (`id` text PRIMARY KEY, `session_id` text NOT NULL,"
    " `time_created` integer NOT NULL, `time_updated` integer NOT NULL, `data` text NOT NULL,"
    " CONSTRAINT `fk_message_session_id_session_id_fk` FOREIGN KEY (`session_id`)"
    " REFERENCES `session`(`id`) ON DELETE CASCADE)",
    "CREATE TABLE `part` (`id` text PRIMARY KEY, `message_id` text NOT NULL,"
    " `session_id` text NOT NULL, `time_created` integer NOT NULL,"
    " `time_updated` integer NOT NULL, `data` text NOT NULL,"
    " CONSTRAINT `fk_part_message_id_message_id_fk` FOREIGN KEY (`message_id`)"
    " REFERENCES `message`(`id`) ON DELETE CASCADE)",
    "CREATE INDEX `message_session_time_created_id_idx` ON `message`"
    " (`session_id`,`time_created`,`id`)",
    "CREATE INDEX `part_message_id_id_idx` ON `part` (`message_id`,`id`)",
)


@dataclass(frozen=True)
class Spec:
    """What to generate: sessions per agent, turns per session, days spanned."""

    seed: int = 7
    sessions: int = 12
    turns: tuple[int, int] = (4, 14)
    days: int = 14


@dataclass
class Expected:
    """Per (UTC day, model): [input, output, cache write, cache read, total, events] and cost."""

    tokens: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * 6)
    )
    cost: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    traps: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(
        self,
        ts: int,
        model: str,
        inp: int,
        out: int,
        cw: int,
        cr: int,
        extra: int,
        cost: float | None = None,
        price_key: str | None = None,
        total: int | None = None,
    ) -> None:
        """One event as ccusage counts it (``extra`` is priced as output; ``total`` defaults to
        the sum of all five)."""
        key = (datetime.fromtimestamp(ts / 1000, UTC).date().isoformat(), model)
        row = self.tokens[key]
        total = inp + out + cw + cr + extra if total is None else total
        for i, v in enumerate((inp, out, cw, cr, total, 1)):
            row[i] += v
        if cost is None:
            cost = price(price_key or model, inp, out + extra, cw, cr)
        self.cost[key] += cost

    def totals(self) -> list[int]:
        """Token sums over everything."""
        return [sum(r[i] for r in self.tokens.values()) for i in range(6)]


def price(model: str, inp: int, out: int, cw: int, cr: int) -> float:
    """USD of one event from :data:`PRICES` (whole request at the tier above the threshold)."""
    p_in, p_out, p_cw, p_cr, tier = PRICES[model]
    if tier is not None and inp + cw + cr > tier[0]:
        p_in, p_out, p_cr = tier[1], tier[2], tier[3]
    return (inp * p_in + out * p_out + cw * p_cw + cr * p_cr) / 1e6


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )


def _stamp(rng: random.Random, spec: Spec, session: int) -> int:
    # Spread over the days, often near UTC midnight so LA and Kathmandu put events on other days.
    day = session % spec.days
    hour = rng.choice((0, 1, 2, 6, 7, 12, 18, 19, 22, 23))
    return START_MS + day * DAY_MS + hour * 3_600_000 + rng.randrange(3_000_000)


# -- Gemini -----------------------------------------------------------------------------------


def generate_gemini(home: Path, spec: Spec) -> Expected:
    """Write the Gemini corpus under ``home/.gemini/tmp``; return what ccusage must count."""
    exp = Expected()
    for n in range(spec.sessions):
        rng = random.Random(f"{spec.seed}:gemini:{n}")
        chats = home / ".gemini" / "tmp" / f"{rng.getrandbits(64):016x}" / "chats"
        chats.mkdir(parents=True, exist_ok=True)
        if n % 4 == 3:
            _gemini_json(chats, rng, spec, n, exp)
        else:
            _gemini_jsonl(chats, rng, spec, n, exp)
    return exp


def _gemini_tokens(
    rng: random.Random, exp: Expected, model: str
) -> tuple[dict[str, int], tuple[int, int, int, int, int]]:
    """Tokens as Gemini CLI writes them, and (input, output, cache read, extra) as ccusage reads."""
    big = model in ("gemini-2.5-pro", "gemini-3-pro-preview") and rng.random() < 0.25
    inp = rng.randrange(150_000, 320_000) if big else rng.randrange(2_000, 60_000)
    cached = rng.choice((0, 0, inp // 2, inp - rng.randrange(1, 1_500)))
    out = rng.randrange(0, 3_000) if rng.random() < 0.1 else rng.randrange(5, 3_000)
    thoughts = rng.choice((0, 0, rng.randrange(1, 4_000)))
    tool = rng.choice((0, 0, 0, rng.randrange(1, 300)))
    mode = rng.random()
    if big:
        exp.traps["long_context"] += 1
    if thoughts:
        exp.traps["thoughts"] += 1
    if tool:
        exp.traps["tool"] += 1
    inclusive = inp + out + thoughts + tool
    if cached and mode < 0.7:  # Gemini CLI's own shape: cached inside input
        exp.traps["cached_inside_input"] += 1
        total, in_r, cr = inclusive, inp - cached + tool, cached
    elif cached:  # a total that does not add up: ccusage keeps input whole
        exp.traps["cached_total_mismatch"] += 1
        total, in_r, cr = inclusive + rng.randrange(1, 900), inp + tool, cached
    elif mode < 0.1:  # a total above all parts
        exp.traps["total_excess"] += 1
        total, in_r, cr = inclusive + rng.randrange(1, 900), inp + tool, 0
    else:
        total, in_r, cr = inclusive, inp + tool, 0
    missing = max(total - (in_r + out + cr + thoughts), 0)
    out_r, extra = (missing, thoughts) if missing and out == 0 else (out, thoughts + missing)
    # ccusage's totalTokens is the stated total, but never less than the counted classes.
    shown = max(total, in_r + out_r + cr)
    raw = {
        "input": inp,
        "output": out,
        "cached": cached,
        "thoughts": thoughts,
        "tool": tool,
        "total": total,
    }
    return raw, (in_r, out_r, cr, extra, shown)


def _gemini_jsonl(chats: Path, rng: random.Random, spec: Spec, n: int, exp: Expected) -> None:
    t = _stamp(rng, spec, n)
    sid = f"{rng.getrandbits(128):032x}"
    lines: list[dict[str, Any]] = [
        {"sessionId": sid, "projectHash": "x" * 64, "startTime": _iso(t), "kind": "main"}
    ]
    model = rng.choice(GEMINI_MODELS)
    for turn in range(rng.randrange(*spec.turns)):
        t += rng.randrange(5_000, 400_000)
        uid = f"u-{n}-{turn}"
        lines.append({"id": uid, "timestamp": _iso(t), "type": "user", "content": [{"text": "hi"}]})
        lines.append({"$set": {"lastUpdated": _iso(t)}})
        switched = rng.random() < 0.2
        if switched:
            model = rng.choice(GEMINI_MODELS)
        gid = f"g-{n}-{turn}"
        raw, counted = _gemini_tokens(rng, exp, model)
        rec: dict[str, Any] = {"id": gid, "timestamp": _iso(t + 900), "type": "gemini"}
        rec.update(content="ok", thoughts=[], tokens=raw)
        carried = turn > 0 and not switched and rng.random() < 0.15
        if not carried:
            rec["model"] = model
        else:
            exp.traps["model_carried"] += 1
        if rng.random() < 0.08:
            exp.traps["no_id"] += 1
            del rec["id"]
        elif rng.random() < 0.4:  # partial emissions first, then the final one
            exp.traps["re_emitted_id"] += 1
            for frac in (0.3, 0.7):
                early = dict(rec, tokens={k: int(v * frac) for k, v in raw.items()})
                lines.append(early)
        lines.append(rec)
        if rng.random() < 0.1 and "id" in rec:  # a later all-zero re-emission changes nothing
            exp.traps["zero_re_emission"] += 1
            zero = {k: 0 for k in raw} | {"total": 0}
            lines.append(dict(rec, tokens=zero))
        if rng.random() < 0.08:
            exp.traps["rewind"] += 1
            lines.append({"$rewindTo": uid})
        in_r, out_r, cr, extra, shown = counted
        exp.add(t + 900, model, in_r, out_r, 0, cr, extra, total=shown)
    path = chats / f"session-{_iso(t)[:16].replace(':', '-')}-{sid[:8]}.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _gemini_json(chats: Path, rng: random.Random, spec: Spec, n: int, exp: Expected) -> None:
    t = _stamp(rng, spec, n)
    sid = f"{rng.getrandbits(128):032x}"
    start = t
    messages: list[dict[str, Any]] = []
    for turn in range(rng.randrange(*spec.turns)):
        t += rng.randrange(5_000, 300_000)
        messages.append({"id": f"u{turn}", "timestamp": _iso(t), "type": "user", "content": "x"})
        model = rng.choice(GEMINI_MODELS)
        raw, counted = _gemini_tokens(rng, exp, model)
        msg: dict[str, Any] = {"id": f"m{turn}", "timestamp": _iso(t + 500), "type": "gemini"}
        msg.update(content="", model=model, tokens=raw)
        stamp = t + 500
        if turn == 1:
            exp.traps["json_no_timestamp"] += 1
            del msg["timestamp"]
            stamp = start
        messages.append(msg)
        in_r, out_r, cr, extra, shown = counted
        exp.add(stamp, model, in_r, out_r, 0, cr, extra, total=shown)
    messages.append({"id": "z", "timestamp": _iso(t + 1), "type": "gemini", "content": ""})
    exp.traps["legacy_json"] += 1
    doc: dict[str, Any] = {"sessionId": sid, "projectHash": "y" * 64, "startTime": _iso(start)}
    doc.update(lastUpdated=_iso(t), messages=messages)
    (chats / f"session-{_iso(start)[:16].replace(':', '-')}-{sid[:8]}.json").write_text(
        json.dumps(doc, indent=2)
    )


# -- OpenCode ---------------------------------------------------------------------------------


def create_opencode_db(path: Path) -> sqlite3.Connection:
    """An empty database with OpenCode's tables, in WAL mode (the caller closes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for ddl in OPENCODE_DDL:
        conn.execute(ddl)
    conn.execute(
        "INSERT INTO project VALUES ('p1', '/work/proj', 'git', 'proj', 0, 0, '[]')",
    )
    return conn


def assistant(
    mid: str,
    sid: str,
    created: int,
    provider: str,
    model: str,
    tokens: dict[str, Any] | None,
    *,
    cost: Any = 0,
    completed: bool = True,
) -> dict[str, Any]:
    """An OpenCode assistant message (``MessageV2.Assistant``)."""
    msg: dict[str, Any] = {
        "id": mid,
        "sessionID": sid,
        "role": "assistant",
        "time": {"created": created} | ({"completed": created + 4_000} if completed else {}),
        "parentID": f"{mid}-user",
        "modelID": model,
        "providerID": provider,
        "mode": "build",
        "agent": "build",
        "path": {"cwd": "/work/proj", "root": "/work/proj"},
        "cost": cost,
        "tokens": tokens
        if tokens is not None
        else {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}},
    }
    return msg


def insert_message(conn: sqlite3.Connection, msg: dict[str, Any], updated: int) -> None:
    """Insert or update a message row the way OpenCode's upsert does (rowid kept)."""
    data = {k: v for k, v in msg.items() if k not in ("id", "sessionID")}
    conn.execute(
        "INSERT INTO message (id, session_id, time_created, time_updated, data)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data,"
        " time_updated = excluded.time_updated",
        (msg["id"], msg["sessionID"], msg["time"]["created"], updated, json.dumps(data)),
    )


def _oc_tokens(
    rng: random.Random, exp: Expected, model: str
) -> tuple[dict[str, Any], tuple[int, int, int, int, int]]:
    big = model == "gemini-2.5-pro" and rng.random() < 0.3
    inp = rng.randrange(100_000, 260_000) if big else rng.randrange(10, 40_000)
    out = rng.randrange(1, 4_000)
    cw = rng.choice((0, rng.randrange(1, 20_000)))
    cr = rng.choice((0, 0, rng.randrange(1, 80_000)))
    if big:
        exp.traps["long_context"] += 1
    reasoning = rng.choice((0, 0, rng.randrange(1, 2_000)))
    if reasoning:
        exp.traps["reasoning"] += 1
    tokens: dict[str, Any] = {"input": inp, "output": out, "reasoning": reasoning}
    tokens["cache"] = {"read": cr, "write": cw}
    extra = reasoning
    if rng.random() < 0.1:
        exp.traps["total_excess"] += 1
        excess = rng.randrange(1, 3_000)
        tokens["total"] = inp + out + cw + cr + reasoning + excess
        extra += excess
    return tokens, (inp, out, cw, cr, extra)


def generate_opencode(home: Path, spec: Spec) -> Expected:
    """Write the OpenCode corpus under ``home/.local/share/opencode``; return the expected sums."""
    exp = Expected()
    base = home / ".local" / "share" / "opencode"
    conn = create_opencode_db(base / "opencode.db")
    store = base / "storage" / "message"
    for n in range(spec.sessions):
        rng = random.Random(f"{spec.seed}:opencode:{n}")
        sid = f"ses_{rng.getrandbits(64):016x}"
        t = _stamp(rng, spec, n)
        conn.execute(
            "INSERT INTO session (id, project_id, slug, directory, title, version, time_created,"
            " time_updated) VALUES (?, 'p1', 's', '/work/proj', 't', '1.2.0', ?, ?)",
            (sid, t, t),
        )
        legacy = n % 5 == 4  # a session that only exists as JSON files
        for turn in range(rng.randrange(*spec.turns)):
            t += rng.randrange(5_000, 500_000)
            _oc_turn(conn, store, rng, exp, sid, f"msg_{n:03d}_{turn:03d}", t, legacy)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.close()
    return exp


def _oc_turn(
    conn: sqlite3.Connection,
    store: Path,
    rng: random.Random,
    exp: Expected,
    sid: str,
    mid: str,
    t: int,
    legacy: bool,
) -> None:
    user = {"id": f"{mid}-user", "sessionID": sid, "role": "user", "time": {"created": t}}
    provider, model = rng.choice(OPENCODE_MODELS)
    tokens, (inp, out, cw, cr, extra) = _oc_tokens(rng, exp, model)
    cost: Any = 0
    stored: float | None = None
    r = rng.random()
    if r < 0.1:
        exp.traps["stored_cost"] += 1
        cost = stored = round(rng.uniform(0.001, 0.5), 6)
    elif r < 0.2:
        exp.traps["object_cost"] += 1
        cost = {"input": 1, "output": 2}
    msg = assistant(mid, sid, t + 300, provider, model, tokens, cost=cost)
    if legacy:
        exp.traps["json_only"] += 1
        _write_json(store, sid, user)
        _write_json(store, sid, msg)
        exp.add(t + 300, model, inp, out, cw, cr, extra, stored, _oc_price_key(model))
        return
    insert_message(conn, {**user, "time": {"created": t}}, t)
    if rng.random() < 0.5:  # the reply starts with zero tokens and is updated at completion
        exp.traps["updated_row"] += 1
        empty = assistant(mid, sid, t + 300, provider, model, None, completed=False)
        insert_message(conn, empty, t + 300)
    if rng.random() < 0.06:
        exp.traps["empty_provider"] += 1
        insert_message(conn, msg | {"providerID": ""}, t + 4_300)
        return
    if rng.random() < 0.05:  # a row that never got tokens: its JSON duplicate counts
        exp.traps["zero_row_json_counts"] += 1
        insert_message(conn, assistant(mid, sid, t + 300, provider, model, None), t + 4_300)
        _write_json(store, sid, msg)
        exp.add(t + 300, model, inp, out, cw, cr, extra, stored, _oc_price_key(model))
        return
    insert_message(conn, msg, t + 4_300)
    if rng.random() < 0.15:  # a stale JSON copy with other numbers: the database wins
        exp.traps["json_duplicate"] += 1
        stale = dict(msg, tokens={"input": 99_999, "output": 99_999}, cost=9.99)
        _write_json(store, sid, stale)
    exp.add(t + 300, model, inp, out, cw, cr, extra, stored, _oc_price_key(model))


def _oc_price_key(model: str) -> str:
    return f"{model}@opencode" if f"{model}@opencode" in PRICES else model


def _write_json(store: Path, sid: str, msg: dict[str, Any]) -> None:
    folder = store / sid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{msg['id']}.json").write_text(json.dumps(msg, indent=2))
