"""A deterministic generator of realistic Claude Code and Codex CLI session logs.

The parity tests and the benchmark both need a home directory full of session logs that look like
the real thing (field names, nesting, record kinds, typical sizes) and that contain every trap
ccusage has a rule for (formats.md §1.4-§3.4), so that "sufd equals ccusage" is actually tested.

Layout written under ``home``::

    .claude/projects/<encoded cwd>/<session uuid>.jsonl
    .claude/projects/<encoded cwd>/<session uuid>/subagents/agent-<id>.jsonl (+ .meta.json)
    .claude/projects/<encoded cwd>/agent-<8 hex>.jsonl                      (legacy sub-agent)
    .codex/sessions/YYYY/MM/DD/rollout-YYYY-MM-DDThh-mm-ss-<uuid>.jsonl
    .codex/archived_sessions/rollout-YYYY-MM-DDThh-mm-ss-<uuid>.jsonl

Everything is derived from ``CorpusSpec.seed``: every session draws from its own random generator
seeded with ``"<seed>:<agent>:<index>"``, so the same spec gives byte-identical files. Files are
streamed through large buffered writes; only one session is in memory at a time.

No real prompt text is written: content is random lorem-like words, and every user prompt and every
assistant text carries :data:`SENTINEL`, so a test can grep sufd's database and logs for it.

Traps (planted when ``CorpusSpec.traps`` is true; the ``CorpusStats.traps`` counters say how many
of each were written, under the names in :data:`TRAP_NAMES`) are all things ccusage 20.0.24
resolves by a rule, and none depends on the order in which files are read. Three of those rules
are not (or not correctly) in formats.md; they were established by running ccusage 20.0.24:

* Codex ``token_count`` whose ``total_token_usage`` equals the previous total is not counted,
  whatever its ``last_token_usage`` says (formats.md's "CCU-NEXT" rule, not the CCU one).
* A Codex ``gpt-5.4`` event with more than 272,000 input tokens (cached included) is priced
  entirely at the long-context rates (input $5, cached $0.50, output $22.50 per Mtok), per event;
  formats.md says Codex has no tiering.
* A Claude ``"type":"progress"`` line whose ``data.message`` holds a sub-agent assistant message
  (``data.message.message.usage``) is a usage entry, with the inner timestamp and ids, and is
  deduplicated against the same message in the sub-agent's own file.
"""

from __future__ import annotations

import base64
import random
import shutil
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

import orjson

if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

__all__ = [
    "BOUNDARY_ZONES",
    "CLAUDE_FAST_MODELS",
    "CLAUDE_MODELS",
    "CLAUDE_TRAPS",
    "CODEX_MODELS",
    "CODEX_TRAPS",
    "SENTINEL",
    "TRAP_NAMES",
    "CorpusSpec",
    "CorpusStats",
    "append_chunks",
    "boundaries",
    "generate",
    "generate_to_size",
]

SENTINEL = "SUFD-SENTINEL-PROMPT-TEXT"
"""Planted in every user prompt and assistant text; must never show up in sufd's outputs."""

CLAUDE_MODELS = (
    "claude-sonnet-4-20250514",
    "claude-opus-4-5-20251101",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5-20250929",
)
"""Models of ordinary Claude sessions; ccusage prices all of them offline."""

CLAUDE_FAST_MODELS = ("claude-opus-4-6", "claude-opus-4-5-20251101")
"""Models of the ``usage.speed: "fast"`` traps: opus-4-6 has a x6 fast multiplier in ccusage
20.0.24, opus-4-5 has none (x1) but is still reported as ``<model>-fast``."""

CODEX_MODELS = ("gpt-5", "gpt-5-codex", "gpt-5.2-codex", "gpt-5.3-codex", "gpt-5.4")
"""Models of Codex sessions; ccusage prices all of them offline."""

BOUNDARY_ZONES = ("UTC", "America/Los_Angeles", "Asia/Kathmandu")
"""Time zones whose local midnights (and DST switches) the corpus puts events around."""

CLAUDE_TRAPS = (
    "claude_stream_growing",  # one reply written as several lines, output_tokens growing
    "claude_stream_shrinking",  # a later line of the same reply has a smaller total
    "claude_stream_cross_day",  # the lines of one reply fall on both sides of a local midnight
    "claude_boundary_pin",  # replies at exactly midnight-1ms and midnight (some zone)
    "claude_sidechain_replay",  # isSidechain line replaying a parent message.id, new requestId
    "claude_sidechain_only",  # sidechain replies with their own message.id
    "claude_cache_5m_1h",  # cache_creation breakdown with both 5m and 1h tokens
    "claude_cache_1h_only",  # breakdown with 1h tokens only
    "claude_cache_no_breakdown",  # only cache_creation_input_tokens
    "claude_tier_200k",  # one token class of one entry above 200k (cache_read 350k)
    "claude_tier_per_class",  # entry above 200k in total but no single class above it
    "claude_fast",  # usage.speed == "fast" (opus-4-6: x6; opus-4-5: x1, still "-fast")
    "claude_cost_usd",  # lines with costUSD (auto mode uses it)
    "claude_synthetic",  # model "<synthetic>" (tokens kept, no model, cost 0)
    "claude_huge_line",  # a user tool_result line of several MB
    "claude_malformed_truncated",  # an assistant line cut in half, newline-terminated
    "claude_malformed_binary",  # a line of binary garbage
    "claude_malformed_type",  # a usage line with "input_tokens":"abc"
    "claude_request_id_null",  # "requestId":null (ccusage drops such lines)
    "claude_partial_last_line",  # file ends mid-JSON without a newline
    "claude_no_message_id",  # usage lines without message.id (never deduplicated)
    "claude_subagent_file",  # <session>/subagents/agent-<id>.jsonl
    "claude_legacy_agent_file",  # <project>/agent-<8hex>.jsonl
    "claude_cross_file_duplicate",  # an assistant line copied verbatim into another file
    "claude_agent_progress",  # "progress" line with a nested sub-agent assistant message
)
"""Names of the Claude traps counted in ``CorpusStats.traps``."""

CODEX_TRAPS = (
    "codex_session_meta",  # files starting with session_meta
    "codex_model_switch",  # turn_context changing the model mid-session
    "codex_info_null",  # token_count with info:null (rate limits only)
    "codex_reemit",  # token_count re-emitted with a total that did not advance
    "codex_no_last_usage",  # token_count with only total_token_usage (delta of totals)
    "codex_non_billable",  # event_msg / response_item lines of other kinds
    "codex_no_turn_context",  # a file without turn_context (model falls back to gpt-5)
    "codex_partial_last_line",  # file ends mid-JSON without a newline
    "codex_malformed",  # a truncated line in the middle of a file
    "codex_archived_copy",  # a sessions/ file copied to archived_sessions/
    "codex_archived_only",  # a session that exists only in archived_sessions/
    "codex_boundary_pin",  # token_count at exactly midnight-1ms and midnight (some zone)
    "codex_long_context",  # gpt-5.4 request with > 272k input tokens (priced at the long rate)
)
"""Names of the Codex traps counted in ``CorpusStats.traps``."""

TRAP_NAMES = CLAUDE_TRAPS + CODEX_TRAPS
"""Every trap name; with ``traps=True`` each is counted at least once."""


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate.

    ``content_scale`` multiplies the size of non-usage content (tool results, texts); the
    benchmark raises it to reach a byte target. ``start``/``days`` bound the session start times;
    the default span crosses the 2026-03-08 DST switch of America/Los_Angeles.
    """

    seed: int = 1
    claude_sessions: int = 20
    codex_sessions: int = 10
    turns_per_session: tuple[int, int] = (5, 40)
    start: datetime = datetime(2026, 3, 6, tzinfo=UTC)
    days: int = 10
    traps: bool = True
    content_scale: float = 1.0


@dataclass
class CorpusStats:
    """What :func:`generate` wrote.

    ``claude_usage_lines`` counts well-formed Claude lines carrying ``message.usage`` (before any
    deduplication, including trap lines ccusage drops such as ``"requestId":null``);
    ``codex_token_count_lines`` counts well-formed ``token_count`` lines (including ``info:null``
    and re-emits). ``traps`` maps each name of :data:`TRAP_NAMES` to the number of occurrences.
    """

    files: int = 0
    bytes: int = 0
    claude_usage_lines: int = 0
    codex_token_count_lines: int = 0
    traps: Counter[str] = field(default_factory=Counter)


def generate(home: Path, spec: CorpusSpec) -> CorpusStats:
    """Write the corpus described by ``spec`` under ``home`` and return what was written.

    Existing files with the same names are overwritten; nothing else under ``home`` is touched.
    """
    return _Generator(home, spec).run()


def generate_to_size(home: Path, target_bytes: int, seed: int = 1) -> CorpusStats:
    """Write a corpus (traps included) of about ``target_bytes`` (within +-10 %) under ``home``.

    Uses shorter sessions (4-24 turns) and picks the session count for files of ~250 kB on
    average (about 2,000 files for 500 MB) and a ``content_scale`` for that size; it then stops
    starting new sessions once the target is reached (sessions carrying traps are always
    written). Targets below ~10 MB overshoot: the traps alone take ~4 MB.
    """
    sessions = max(8, round(target_bytes / _TARGET_FILE_BYTES / _FILES_PER_SESSION))
    scale = (target_bytes / sessions - _SESSION_FIXED_BYTES) / _SESSION_SCALED_BYTES
    spec = CorpusSpec(
        seed=seed,
        claude_sessions=round(sessions * 0.65 * 2),
        codex_sessions=round(sessions * 0.35 * 2),
        turns_per_session=(4, 24),
        days=30 if target_bytes > 100_000_000 else 10,
        content_scale=max(0.05, scale),
    )
    return _Generator(home, spec, byte_budget=target_bytes).run()


def append_chunks(src: Path, dst: Path, rng: random.Random) -> Iterator[None]:
    """Copy ``src`` to ``dst`` in random-sized chunks, yielding after each one is flushed.

    ``dst`` is created (truncated) before the first chunk. Chunk sizes mix tiny (1-64 B), medium
    and large (up to 256 KiB) writes, so chunk ends fall in the middle of lines, of JSON strings
    and of multi-byte UTF-8 characters. Used to check incremental ingestion against one-shot.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(_chunk_size(rng)):
            fout.write(chunk)
            fout.flush()
            yield


def boundaries(spec: CorpusSpec) -> list[int]:
    """Sorted instants (epoch ms) where the local date changes in a :data:`BOUNDARY_ZONES` zone
    during the spec's span, plus DST switches. An event at ``b - 1`` and one at ``b`` land on
    different days in at least one of the zones (DST switches excepted)."""
    return sorted({ms for ms, _ in _boundary_plan(spec)})


# ------------------------------------------------------------------------------------------------
# sizing constants (measured with 4-24 turns per session; see generate_to_size)

_TARGET_FILE_BYTES = 250_000
_FILES_PER_SESSION = 1.5  # Claude sub-agent transcripts (+ .meta.json) add files
_SESSION_FIXED_BYTES = 123_000  # bytes per session (4-24 turns) = fixed + scaled * content_scale
_SESSION_SCALED_BYTES = 254_000
_HUGE_LINE_BYTES = 3_500_000
_CLAUDE_MAX_TURN_MS = 15 * 60_000  # upper bounds of one turn (+ the pause before it), so the
_CODEX_MAX_TURN_MS = 6 * 60_000  # boundary pins come before a turn could cross the boundary

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX = "0123456789abcdef"
_LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris "
    "nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse "
    "cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui "
    "officia deserunt mollit anim id est laborum curabitur pretium tincidunt lacus nunc mauris "
    "vestibulum morbi blandit cursus risus viverra maecenas accumsan vel facilisis volutpat "
    "fn def let const return import struct impl async await yield match case self none true false "
    "src lib tests main config parse render buffer cursor ledger offset token daemon socket "
    "café naïve résumé Ærø smörgåsbord 東京 データ λ → ✓"
)
_WORDS = tuple(_LOREM.split())
_PROJECTS = (
    "webapp",
    "api-server",
    "infra",
    "data-pipeline",
    "mobile-app",
    "docs-site",
    "ml-experiments",
    "cli-tool",
    "billing",
    "search-service",
)
_TOOLS = ("Bash", "Read", "Edit", "Grep", "Glob", "Write", "TodoWrite", "WebFetch")
_CLAUDE_KINDS_EXTRA = ("system", "attachment", "progress", "file-history-snapshot")


def _chunk_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.3:
        return rng.randint(1, 64)
    if r < 0.85:
        return rng.randint(65, 16_384)
    return rng.randint(16_385, 262_144)


def _iso(ms: int) -> str:
    """ccusage's accepted timestamp shape: exactly three fractional digits and ``Z``."""
    sec, frac = divmod(ms, 1000)
    day, sec = divmod(sec, 86_400)
    hour, sec = divmod(sec, 3_600)
    minute, sec = divmod(sec, 60)
    return f"{_iso_date(day)}T{hour:02d}:{minute:02d}:{sec:02d}.{frac:03d}Z"


@lru_cache(maxsize=1024)
def _iso_date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _boundary_plan(spec: CorpusSpec) -> list[tuple[int, str]]:
    """Boundaries in the order boundary sessions take them: the interesting ones first."""
    lo = _ms(spec.start)
    hi = _ms(spec.start + timedelta(days=spec.days))
    found: dict[int, str] = {}
    for name in BOUNDARY_ZONES:
        zone = ZoneInfo(name)
        day = (spec.start - timedelta(days=1)).astimezone(zone).date()
        while True:
            mid = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
            if _ms(mid) >= hi:
                break
            if _ms(mid) > lo:
                found.setdefault(_ms(mid), f"midnight {name}")
            day += timedelta(days=1)
        hour = lo - lo % 3_600_000
        while hour < hi:  # DST switches (on the hour in every zone we use)
            before = datetime.fromtimestamp((hour - 1) / 1000, UTC).astimezone(zone).utcoffset()
            after = datetime.fromtimestamp(hour / 1000, UTC).astimezone(zone).utcoffset()
            if before != after and hour > lo:
                found[hour] = f"dst {name}"
            hour += 3_600_000
    dst = sorted(ms for ms, label in found.items() if label.startswith("dst"))
    first: list[int] = []
    for switch in dst:  # the DST switch itself, then the first midnights after it
        first.append(switch)
        first += [ms for ms in sorted(found) if ms > switch and ms not in first][:3]
    by_zone: list[list[int]] = [
        sorted(ms for ms, label in found.items() if label == f"midnight {name}")
        for name in reversed(BOUNDARY_ZONES)
    ]
    rest: list[int] = []
    for i in range(max((len(z) for z in by_zone), default=0)):
        rest += [z[i] for z in by_zone if i < len(z) and z[i] not in first]
    return [(ms, found[ms]) for ms in first + rest]


_T = TypeVar("_T")


class _Text:
    """Lorem-like content cut out of one seeded pool (fast: slicing, not word drawing)."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"{seed}:lorem")
        words = rng.choices(_WORDS, k=60_000)
        for i in range(11, len(words), rng.randint(9, 17)):
            words[i] += rng.choice((".\n", ".", ",", "\n\n", ":"))
        pool = " ".join(words)
        self.pool = pool
        self._double = pool + pool

    def take(self, rng: random.Random, n: int) -> str:
        """About ``n`` characters of lorem."""
        n = max(1, n)
        size = len(self.pool)
        if n <= size:
            off = rng.randrange(size)
            return self._double[off : off + n]
        reps, rest = divmod(n, size)
        return self.pool * reps + self.pool[:rest]

    def prose(self, rng: random.Random, n: int) -> str:
        """Lorem with the sentinel planted inside (for prompts and assistant texts)."""
        head = self.take(rng, max(8, n // 3))
        return f"{head} {SENTINEL} {self.take(rng, max(8, n - len(head)))}"


class _Sink:
    """One output file: large buffered writes, byte accounting."""

    def __init__(self, path: Path, stats: CorpusStats) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f: BinaryIO = path.open("wb", buffering=1 << 20)
        self._stats = stats
        stats.files += 1

    def obj(self, obj: dict[str, Any]) -> bytes:
        """Write one JSON line; return it (with its newline)."""
        data = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        self.raw(data)
        return data

    def raw(self, data: bytes) -> None:
        """Write bytes as they are."""
        self._f.write(data)
        self._stats.bytes += len(data)

    def close(self) -> None:
        """Flush and close."""
        self._f.close()


class _Rng(random.Random):
    """``random.Random`` with cheaper integer draws (float based; plenty for test data)."""

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            start, stop = 0, start
        if step != 1:
            return super().randrange(start, stop, step)
        if stop <= start:
            raise ValueError("empty range for randrange()")
        return start + int(self.random() * (stop - start))

    def choice(self, seq: SupportsLenAndGetItem[_T]) -> _T:
        return seq[int(self.random() * len(seq))]


def _uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _uuid7(rng: random.Random, ms: int) -> str:
    """Time-ordered id as Codex uses for sessions (``0199…``)."""
    h = f"{ms & ((1 << 48) - 1):012x}{rng.getrandbits(80):020x}"
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_TO_B62 = bytes.maketrans(b"+/", b"Qz")


def _ident(rng: random.Random, prefix: str, n: int, alphabet: str = _B62) -> str:
    """A unique-looking id: ``prefix`` + ``n`` random characters (base62 or hex)."""
    if alphabet == _HEX:
        return f"{prefix}{rng.getrandbits(4 * n):0{n}x}"
    raw = base64.b64encode(rng.randbytes(n * 3 // 4 + 3))[:n].translate(_TO_B62)
    return prefix + raw.decode()


_BLOB_POOL = base64.b64encode(random.Random(0).randbytes(96_000)).decode()


def _blob(rng: random.Random, prefix: str, n: int) -> str:
    """Opaque base64 filler (signatures, encrypted reasoning); not unique."""
    off = rng.randrange(len(_BLOB_POOL) - n) if n < len(_BLOB_POOL) else 0
    return prefix + _BLOB_POOL[off : off + n]


def _lognormal(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return min(hi, max(lo, int(rng.lognormvariate(0.0, sigma) * median)))


# ------------------------------------------------------------------------------------------------
# the generator


class _Generator:
    """Writes the sessions of one spec in a fixed interleaved order and keeps the stats."""

    def __init__(self, home: Path, spec: CorpusSpec, byte_budget: int | None = None) -> None:
        self.home = home
        self.spec = spec
        self.budget = byte_budget
        self.stats = CorpusStats()
        self.text = _Text(spec.seed)
        self.plan = _boundary_plan(spec)
        self.instants = sorted(ms for ms, _ in self.plan)
        self.t0 = _ms(spec.start)
        self.claude_trap_sessions = min(spec.claude_sessions, len(_CLAUDE_TRAP_GROUPS))
        self.codex_trap_sessions = min(spec.codex_sessions, len(_CODEX_TRAP_GROUPS))
        if not spec.traps:
            self.claude_trap_sessions = self.codex_trap_sessions = 0
        self.claude_traps: dict[int, list[str]] = {}
        for j, group in enumerate(_CLAUDE_TRAP_GROUPS if self.claude_trap_sessions else ()):
            self.claude_traps.setdefault(j % self.claude_trap_sessions, []).extend(group)
        self.codex_traps: dict[int, list[str]] = {}
        for j, group in enumerate(_CODEX_TRAP_GROUPS if self.codex_trap_sessions else ()):
            self.codex_traps.setdefault(j % self.codex_trap_sessions, []).extend(group)

    def crosses(self, a: int, b: int) -> bool:
        """Is there a day boundary in ``(a, b]``?"""
        i = bisect_left(self.instants, a + 1)
        return i < len(self.instants) and self.instants[i] <= b

    def run(self) -> CorpusStats:
        spec = self.spec
        done = {"claude": 0, "codex": 0}
        total = {"claude": spec.claude_sessions, "codex": spec.codex_sessions}
        while done["claude"] < total["claude"] or done["codex"] < total["codex"]:
            agent = min(
                (a for a in done if done[a] < total[a]),
                key=lambda a: ((done[a] + 0.5) / total[a], a),
            )
            index = done[agent]
            if agent == "claude":
                _ClaudeSession(self, index).write()
            else:
                _CodexSession(self, index).write()
            done[agent] += 1
            if (
                self.budget is not None
                and self.stats.bytes >= self.budget
                and done["claude"] >= self.claude_trap_sessions
                and done["codex"] >= self.codex_trap_sessions
            ):
                break
        return self.stats

    def start_time(self, agent: str, index: int, rng: random.Random) -> tuple[int, int | None]:
        """Session start (epoch ms) and, for a boundary session, the boundary it crosses."""
        if index % 3 == 0 and self.plan:
            k = index // 3 * 2 + (1 if agent == "codex" else 0)
            boundary = self.plan[k % len(self.plan)][0]
            return boundary - rng.randint(900_000, 3_600_000), boundary
        k = index - index // 3 - 1
        total = self.spec.claude_sessions if agent == "claude" else self.spec.codex_sessions
        plain = total - (total + 2) // 3  # sessions that are not boundary sessions
        if 0 < plain < self.spec.days:  # too few to cover every day: spread them out
            half = 1 if agent == "codex" else 0  # Codex fills the gaps Claude leaves
            k = (2 * k + half) * self.spec.days // (2 * plain)
        day = self.t0 + (k % self.spec.days) * 86_400_000
        return day + rng.randint(0, 86_400_000 - 1), None


# ------------------------------------------------------------------------------------------------
# Claude Code


_Usage = dict[str, Any]


class _ClaudeSession:
    """One Claude Code session file (+ sub-agent files)."""

    def __init__(self, gen: _Generator, index: int) -> None:
        self.g = gen
        self.index = index
        self.rng = rng = _Rng(f"{gen.spec.seed}:claude:{index}")
        self.traps = gen.claude_traps.get(index, [])
        self.session_id = _uuid4(rng)
        project = _PROJECTS[rng.randrange(len(_PROJECTS))]
        self.cwd = f"/home/dev/src/{project}"
        self.dir = gen.home / ".claude" / "projects" / self.cwd.replace("/", "-")
        legacy = rng.random() < 0.2
        self.version = f"1.0.{rng.randint(60, 128)}" if legacy else f"2.0.{rng.randint(10, 77)}"
        self.cache_mode = "none" if legacy else rng.choice(("5m", "5m", "5m", "both", "1h"))
        self.model = CLAUDE_MODELS[rng.randrange(len(CLAUDE_MODELS))]
        self.branch = rng.choice(("main", "main", "dev", f"feature/{rng.choice(_WORDS)}"))
        self.now, self.boundary = gen.start_time("claude", index, rng)
        self.gap = (5_000, 90_000) if self.boundary else (15_000, 600_000)
        self.parent: str | None = None
        self.ctx = 0
        self.sidechain = False
        self.agent_id: str | None = None
        self.out: _Sink | None = None
        self.keep: list[bytes] | None = [] if "cross_file_duplicate" in self.traps else None
        self.parent_messages: list[tuple[str, str, int]] = []
        self.subagents: list[tuple[int, bool]] = []
        self.mirrored: list[dict[str, Any]] = []  # progress-line messages to repeat in a sub-agent

    # -- plumbing

    @property
    def sink(self) -> _Sink:
        assert self.out is not None
        return self.out

    def tick(self, lo: int = 150, hi: int = 2_500) -> int:
        self.now += self.rng.randint(lo, hi)
        return self.now

    def base(self, kind: str | None = None) -> dict[str, Any]:
        line: dict[str, Any] = {
            "parentUuid": self.parent,
            "isSidechain": self.sidechain,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": self.version,
            "gitBranch": self.branch,
        }
        if self.agent_id:
            line["agentId"] = self.agent_id
        if kind:
            line["type"] = kind
        return line

    def emit(self, line: dict[str, Any], usage: bool = False) -> bytes:
        data = self.sink.obj(line)
        self.parent = line.get("uuid", self.parent)
        if usage:
            self.g.stats.claude_usage_lines += 1
        if self.keep is not None and len(self.keep) < 12:
            self.keep.append(data)
        return data

    def count(self, trap: str, n: int = 1) -> None:
        self.g.stats.traps[trap] += n

    # -- line builders

    def user_prompt(self) -> None:
        rng = self.rng
        line = self.base("user")
        line["message"] = {"role": "user", "content": self.g.text.prose(rng, rng.randint(40, 900))}
        line["uuid"] = _uuid4(rng)
        line["timestamp"] = _iso(self.tick(20_000, 240_000))
        if not self.version.startswith("1."):
            line["thinkingMetadata"] = {"level": "none", "disabled": False, "triggers": []}
            line["todos"] = []
        self.emit(line)

    def tool_result(self, tool_id: str, size: int) -> None:
        rng = self.rng
        content = self.g.text.take(rng, size)
        line = self.base("user")
        line["message"] = {
            "role": "user",
            "content": [
                {
                    "tool_use_id": tool_id,
                    "type": "tool_result",
                    "content": content,
                    "is_error": rng.random() < 0.03,
                },
            ],
        }
        line["uuid"] = _uuid4(rng)
        line["timestamp"] = _iso(self.tick(50, 30_000))
        line["toolUseResult"] = {
            "stdout": content,
            "stderr": "",
            "interrupted": False,
            "isImage": False,
        }
        self.emit(line)

    def extra_line(self) -> None:
        rng = self.rng
        kind = rng.choice(_CLAUDE_KINDS_EXTRA)
        if kind == "file-history-snapshot":
            mid = _uuid4(rng)
            line: dict[str, Any] = {
                "type": kind,
                "messageId": mid,
                "snapshot": {
                    "messageId": mid,
                    "trackedFileBackups": {},
                    "timestamp": _iso(self.now),
                },
                "isSnapshotUpdate": False,
            }
            self.sink.obj(line)
            return
        line = self.base(kind)
        if kind == "system":
            line.update(
                subtype="informational",
                content=self.g.text.take(rng, 80),
                isMeta=False,
                level="info",
            )
        elif kind == "attachment":
            line["attachment"] = {
                "type": "hook_success",
                "hookName": "PostToolUse:Edit",
                "hookEvent": "PostToolUse",
                "content": "",
                "stdout": self.g.text.take(rng, 60),
                "stderr": "",
                "exitCode": 0,
            }
        else:
            line["data"] = {
                "type": "hook_progress",
                "hookEvent": "PreToolUse",
                "hookName": "PreToolUse:Bash",
                "command": "lint-hook",
            }
            line["toolUseID"] = _ident(rng, "toolu_01", 22)
            line["parentToolUseID"] = line["toolUseID"]
        line["uuid"] = _uuid4(rng)
        line["timestamp"] = _iso(self.tick(5, 200))
        self.emit(line)

    def blocks(self, final: bool) -> list[dict[str, Any]]:
        rng = self.rng
        text = self.g.text
        out: list[dict[str, Any]] = []
        if rng.random() < 0.35:
            out.append(
                {
                    "type": "thinking",
                    "thinking": text.prose(
                        rng, int(rng.randint(100, 1_500) * self.g.spec.content_scale)
                    ),
                    "signature": _blob(rng, "", rng.randint(200, 600)),
                }
            )
        if final or rng.random() < 0.6:
            size = int(rng.randint(60, 1_200) * self.g.spec.content_scale)
            out.append({"type": "text", "text": text.prose(rng, size)})
        if not final:
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                tool = _TOOLS[rng.randrange(len(_TOOLS))]
                tool_input: dict[str, Any] = {
                    "command": text.take(rng, rng.randint(10, 120)),
                    "description": text.take(rng, rng.randint(10, 50)),
                }
                if tool in ("Read", "Edit", "Write"):
                    tool_input = {"file_path": f"{self.cwd}/src/{rng.choice(_WORDS)}.py"}
                    if tool != "Read":
                        tool_input["content"] = text.take(
                            rng, int(rng.randint(50, 2_000) * self.g.spec.content_scale)
                        )
                out.append(
                    {
                        "type": "tool_use",
                        "id": _ident(rng, "toolu_01", 22),
                        "name": tool,
                        "input": tool_input,
                    }
                )
        return out

    def numbers(self) -> tuple[int, int, int, int]:
        """input, cache_creation, cache_read, output for the next request."""
        rng = self.rng
        inp = (
            rng.choice((1, 2, 3, 3, 4, 5, 6, 8, 10, 12))
            if rng.random() < 0.9
            else rng.randint(40, 4_000)
        )
        if self.ctx == 0:
            cc = rng.randint(4_000, 22_000)
            cr = rng.choice((0, rng.randint(3_000, 15_000)))
        else:
            cc = rng.randint(50, 6_000)
            cr = self.ctx
        out = _lognormal(rng, 160, 1.1, 1, 12_000)
        self.ctx = cr + cc + inp + out
        if self.ctx > 175_000:  # auto-compact
            self.ctx = rng.randint(15_000, 35_000)
        return inp, cc, cr, out

    def usage(
        self,
        inp: int,
        cc: int,
        cr: int,
        out: int,
        mode: str | None = None,
        speed: str | None = None,
    ) -> _Usage:
        mode = mode or self.cache_mode
        usage: _Usage = {
            "input_tokens": inp,
            "cache_creation_input_tokens": cc,
            "cache_read_input_tokens": cr,
        }
        if mode != "none":
            if mode == "5m":
                cc5, cc1 = cc, 0
            elif mode == "1h":
                cc5, cc1 = 0, cc
            else:
                cc1 = cc * self.rng.randint(20, 80) // 100
                cc5 = cc - cc1
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": cc5,
                "ephemeral_1h_input_tokens": cc1,
            }
        usage["output_tokens"] = out
        usage["service_tier"] = "standard"
        if speed:
            usage["speed"] = speed
        if not self.version.startswith("1."):
            usage["server_tool_use"] = {"web_search_requests": 0, "web_fetch_requests": 0}
        return usage

    def count_cache(self, usage: _Usage) -> None:
        split = usage.get("cache_creation")
        if split is None:
            if usage["cache_creation_input_tokens"]:
                self.count("claude_cache_no_breakdown")
        elif split["ephemeral_1h_input_tokens"]:
            self.count(
                "claude_cache_5m_1h"
                if split["ephemeral_5m_input_tokens"]
                else "claude_cache_1h_only"
            )

    def message(
        self,
        blocks: list[dict[str, Any]],
        usage: _Usage,
        *,
        model: str | None = None,
        stream: str = "auto",
        mid: str | None = None,
        rid: str | None = None,
        extra: dict[str, Any] | None = None,
        times: list[int] | None = None,
        outs: list[int] | None = None,
        quiet: bool = False,
    ) -> tuple[str, str]:
        """Write one assistant reply, one line per content block (Claude Code streams them).

        ``stream`` "auto" repeats the final usage on every line ("tie") or lets output_tokens grow
        ("grow", always when the lines straddle a day boundary, so the winner's day is unique).
        """
        rng = self.rng
        mid = mid or _ident(rng, "msg_01", 22)
        rid = rid or _ident(rng, "req_011C", 20)
        n = len(blocks)
        if times is None:
            times = [self.tick(400, 4_000)]
            times += [self.tick(150, 2_500) for _ in range(n - 1)]
        else:
            self.now = max(self.now, times[-1])
        if outs is None:
            final = usage["output_tokens"]
            outs = [final] * n
            if stream == "auto" and n > 1:
                tie = rng.random() < 0.4 and not self.g.crosses(times[0], times[-1])
                stream = "tie" if tie else "grow"
            if stream == "grow" and n > 1:
                partial = sorted(rng.sample(range(1, max(final, n + 1)), n - 1))
                outs = [*partial, max(final, partial[-1] + 1)]
                self.count("claude_stream_growing")
        for i, block in enumerate(blocks):
            line = self.base()
            line["message"] = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model or self.model,
                "content": [block],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": outs[i]},
            }
            line["requestId"] = rid
            line["type"] = "assistant"
            line["uuid"] = _uuid4(rng)
            line["timestamp"] = _iso(times[i])
            if extra:
                line.update(extra)
            self.emit(line, usage=True)
        if not quiet:
            self.count_cache(usage)
            if not self.sidechain:
                self.parent_messages.append((mid, rid, times[-1]))
            elif self.agent_id:
                self.count("claude_sidechain_only")
        return mid, rid

    def request(self, final: bool, model: str | None = None) -> None:
        """One API request of a turn: the reply, then the results of its tool calls."""
        rng = self.rng
        blocks = self.blocks(final)
        if model is None and rng.random() < 0.12:
            model = "claude-haiku-4-5-20251001"
        self.message(blocks, self.usage(*self.numbers()), model=model)
        scale = self.g.spec.content_scale
        for block in blocks:
            if block["type"] == "tool_use":
                self.tool_result(block["id"], int(_lognormal(rng, 1_800, 1.3, 20, 400_000) * scale))
                if rng.random() < 0.1:
                    self.extra_line()

    def turn(self) -> None:
        rng = self.rng
        if not self.version.startswith("1.") and not self.sidechain and rng.random() < 0.5:
            self.extra_line()
        self.user_prompt()
        requests = rng.choice((1, 1, 2, 2, 3, 4))
        for r in range(requests):
            self.request(final=r == requests - 1)

    # -- session

    def write(self) -> None:
        rng = self.rng
        spec = self.g.spec
        turns = rng.randint(*spec.turns_per_session)
        path = self.dir / f"{self.session_id}.jsonl"
        self.out = _Sink(path, self.g.stats)
        positions = {name: rng.randrange(turns) for name in self.traps}
        spawns = rng.sample(range(turns), min(turns, rng.choices((0, 1, 2), (70, 25, 5))[0]))
        if rng.random() < 0.15:
            self.sink.obj(
                {"type": "summary", "summary": self.g.text.take(rng, 60), "leafUuid": _uuid4(rng)}
            )
        for t in range(turns):
            if self.boundary is not None and (
                self.boundary - self.now <= _CLAUDE_MAX_TURN_MS or t >= turns // 2
            ):
                self.now = max(self.now, self.boundary - _CLAUDE_MAX_TURN_MS)  # an idle pause
                self.pin_boundary(self.boundary)
                self.boundary = None
            self.turn()
            if t in spawns:  # a Task tool call: its sub-agent transcript is written afterwards
                self.subagents.append((self.now, rng.random() < 0.5))
            for name in [n for n, pos in positions.items() if pos == t]:
                if name != "partial_last_line":
                    _CLAUDE_TRAP_INJECTORS[name](self)
            self.now += rng.randint(*self.gap)
        if "sidechain_replay" in self.traps and not self.subagents:
            self.subagents.append((self.now, True))
        if "subagent_file" in self.traps and not self.subagents:
            self.subagents.append((self.now, False))
        if "partial_last_line" in self.traps:
            _CLAUDE_TRAP_INJECTORS["partial_last_line"](self)
        self.sink.close()
        for when, replay in self.subagents:
            self.write_subagent(when, replay)
        if "legacy_agent_file" in self.traps:
            self.write_subagent(self.now, False, legacy=True)
        if self.keep is not None:
            self.write_resumed(self.keep)

    def pin_boundary(self, b: int) -> None:
        """Replies at exactly ``b - 1`` ms and ``b``, and one streamed reply straddling ``b``:
        growing (the winning last line is after ``b``) or, every other session, shrinking (the
        winning middle line is before ``b``, a smaller last line after it)."""
        rng = self.rng
        times = [
            b - rng.randint(300, 900),
            b - 1,
            b,
            b + rng.randint(50, 400),
            b + rng.randint(500, 1_500),
        ]
        inp, cc, cr, out = self.numbers()
        out = max(out, 60)
        usage = self.usage(inp, cc, cr, out)
        blocks = [self.blocks(True)[-1], self.blocks(True)[-1], self.blocks(True)[-1]]
        if self.index % 2:
            outs = [rng.randint(1, 9), out, out - rng.randint(1, 40)]
            stream_times = [times[0], b - rng.randint(2, 250), times[4]]
            self.count("claude_stream_shrinking")
        else:
            outs = [rng.randint(1, 9), out // 2, out]
            stream_times = [times[0], times[3], times[4]]
            self.count("claude_stream_growing")
        mid, rid = _ident(rng, "msg_01", 22), _ident(rng, "req_011C", 20)
        order = sorted([(t, i) for i, t in enumerate(stream_times)] + [(b - 1, -1), (b, -2)])
        for t, i in order:
            if i < 0:
                self.message(self.blocks(True)[-1:], self.usage(*self.numbers()), times=[t])
                self.count("claude_boundary_pin")
            else:
                self.message(
                    [blocks[i]], usage, mid=mid, rid=rid, times=[t], outs=[outs[i]], quiet=i > 0
                )
        self.count("claude_stream_cross_day")

    def write_subagent(self, when: int, replay: bool, legacy: bool = False) -> None:
        """A Task sub-agent transcript: sidechain lines, own message ids, maybe a replay."""
        rng = self.rng
        saved = (self.now, self.parent, self.out, self.keep, self.ctx)
        self.sidechain, self.now, self.parent, self.keep, self.ctx = True, when, None, None, 0
        if legacy:
            self.agent_id = None
            path = self.dir / f"agent-{_ident(rng, '', 8, _HEX)}.jsonl"
            self.count("claude_legacy_agent_file")
        else:
            self.agent_id = _ident(rng, "a", 7, _HEX)
            sub = self.dir / self.session_id / "subagents"
            path = sub / f"agent-{self.agent_id}.jsonl"
            sub.mkdir(parents=True, exist_ok=True)
            meta = orjson.dumps(
                {
                    "agentId": self.agent_id,
                    "agentType": "general-purpose",
                    "description": self.g.text.take(rng, 40),
                }
            )
            (sub / f"agent-{self.agent_id}.meta.json").write_bytes(meta)
            self.g.stats.files += 1
            self.g.stats.bytes += len(meta)
            self.count("claude_subagent_file")
        self.out = _Sink(path, self.g.stats)
        for _ in range(rng.randint(1, 4)):
            self.turn()
        if self.mirrored and not legacy:  # the same reply as a progress line of the main file
            for inner in self.mirrored:
                line = self.base()
                line.update(inner)
                self.emit(line, usage=True)
            self.mirrored = []
        if replay and self.parent_messages:
            mid, _rid, _at = self.parent_messages[rng.randrange(len(self.parent_messages))]
            inp, cc, cr, out = self.numbers()
            self.message(
                self.blocks(True)[-1:],
                self.usage(inp, cc, cr + 50_000, out + 100),
                mid=mid,
                quiet=True,
            )
            self.count("claude_sidechain_replay")
        self.sink.close()
        self.now, self.parent, self.out, self.keep, self.ctx = saved
        self.sidechain, self.agent_id = False, None

    def write_resumed(self, copied: list[bytes]) -> None:
        """A resumed session: starts with lines copied verbatim from this one (global dedup)."""
        rng = self.rng
        self.session_id = _uuid4(rng)
        self.keep = None
        self.out = _Sink(self.dir / f"{self.session_id}.jsonl", self.g.stats)
        for data in copied:
            self.sink.raw(data)
            if b'"usage":{' in data:
                self.g.stats.claude_usage_lines += 1
                self.count("claude_cross_file_duplicate")
        self.parent = None
        for _ in range(rng.randint(1, 3)):
            self.turn()
        self.sink.close()


# -- Claude traps (each writes into the current file at a random turn)


def _trap_sidechain_replay(s: _ClaudeSession) -> None:
    """Sidechain line replaying the last parent message with a new requestId, bigger usage."""
    mid, _rid, _at = s.parent_messages[-1]
    inp, cc, cr, out = s.numbers()
    s.sidechain = True
    s.message(s.blocks(True)[-1:], s.usage(inp, cc, cr + 20_000, out + 500), mid=mid, quiet=True)
    s.sidechain = False
    s.count("claude_sidechain_replay")


def _trap_stream_shrink(s: _ClaudeSession) -> None:
    """A streamed reply whose last line reports fewer output tokens than the one before."""
    inp, cc, cr, out = s.numbers()
    out = max(out, 60)
    blocks = [s.blocks(True)[-1], s.blocks(True)[-1], s.blocks(True)[-1]]
    outs = [s.rng.randint(1, 9), out, out - s.rng.randint(1, 40)]
    times = [s.tick(400, 900), s.tick(150, 900), s.tick(150, 900)]
    if s.g.crosses(times[0], times[-1]):  # keep the winner's day unambiguous for every order
        times = [times[-1]] * 3
    s.message(blocks, s.usage(inp, cc, cr, out), times=times, outs=outs)
    s.count("claude_stream_shrinking")


def _trap_cache_modes(s: _ClaudeSession) -> None:
    for mode in ("both", "1h", "none"):
        s.message(s.blocks(True)[-1:], s.usage(*s.numbers(), mode=mode))


def _trap_tiers(s: _ClaudeSession) -> None:
    s.message(
        s.blocks(True)[-1:],
        s.usage(3, 1_200, 350_000, 420, mode="5m"),
        model="claude-sonnet-4-20250514",
    )
    s.count("claude_tier_200k")
    s.message(
        s.blocks(True)[-1:],
        s.usage(150_000, 30_000, 150_000, 900, mode="5m"),
        model="claude-sonnet-4-5-20250929",
    )
    s.count("claude_tier_per_class")


def _trap_fast(s: _ClaudeSession) -> None:
    for model in CLAUDE_FAST_MODELS:
        blocks = [s.blocks(True)[-1], s.blocks(True)[-1]]
        s.message(blocks, s.usage(*s.numbers(), speed="fast"), model=model, stream="grow")
        s.count("claude_fast")


def _trap_cost_usd(s: _ClaudeSession) -> None:
    for _ in range(2):
        usage = s.usage(*s.numbers(), mode="none")
        cost = round(s.rng.uniform(0.001, 0.9), 6)
        s.message(s.blocks(True)[-1:], usage, extra={"costUSD": cost})
        s.count("claude_cost_usd")


def _trap_synthetic(s: _ClaudeSession) -> None:
    rng = s.rng
    for tokens in ((0, 0), (12, 3)):
        line = s.base()
        line["message"] = {
            "id": _uuid4(rng),
            "model": "<synthetic>",
            "role": "assistant",
            "stop_reason": "stop_sequence",
            "stop_sequence": "",
            "type": "message",
            "usage": {
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "server_tool_use": {"web_search_requests": 0},
                "service_tier": None,
            },
            "content": [{"type": "text", "text": "API Error: Request timed out."}],
        }
        line["type"] = "assistant"
        line["uuid"] = _uuid4(rng)
        line["timestamp"] = _iso(s.tick())
        line["isApiErrorMessage"] = True
        s.emit(line, usage=True)
        s.count("claude_synthetic")


def _trap_huge_line(s: _ClaudeSession) -> None:
    s.tool_result(_ident(s.rng, "toolu_01", 22), _HUGE_LINE_BYTES // 2)
    s.count("claude_huge_line")


def _trap_malformed(s: _ClaudeSession) -> None:
    rng = s.rng
    line = s.base()
    line["message"] = {
        "id": _ident(rng, "msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": s.model,
        "content": s.blocks(True)[-1:],
        "usage": s.usage(*s.numbers()),
    }
    line.update(
        requestId=_ident(rng, "req_011C", 20),
        type="assistant",
        uuid=_uuid4(rng),
        timestamp=_iso(s.tick()),
    )
    data = orjson.dumps(line)
    s.sink.raw(data[: len(data) * 2 // 3] + b"\n")
    s.count("claude_malformed_truncated")
    garbage = bytes(b for b in rng.randbytes(300) if b != 0x0A)
    s.sink.raw(garbage + b"\n")
    s.count("claude_malformed_binary")
    line["message"]["id"] = _ident(rng, "msg_01", 22)
    line["timestamp"] = _iso(s.tick())
    data = orjson.dumps(line)
    head, _, tail = data.partition(b'"input_tokens":')
    digits = len(tail) - len(tail.lstrip(b"0123456789"))
    s.sink.raw(head + b'"input_tokens":"abc"' + tail[digits:] + b"\n")
    s.count("claude_malformed_type")


def _trap_request_id_null(s: _ClaudeSession) -> None:
    rng = s.rng
    line = s.base()
    line["message"] = {
        "id": _ident(rng, "msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": s.model,
        "content": s.blocks(True)[-1:],
        "usage": s.usage(*s.numbers()),
    }
    line.update(requestId=None, type="assistant", uuid=_uuid4(rng), timestamp=_iso(s.tick()))
    s.emit(line, usage=True)
    s.count("claude_request_id_null")


def _trap_no_message_id(s: _ClaudeSession) -> None:
    rng = s.rng
    usage = s.usage(*s.numbers())
    rid = _ident(rng, "req_011C", 20)
    for _ in range(2):  # identical usage, no message.id: both count
        line = s.base()
        line["message"] = {
            "type": "message",
            "role": "assistant",
            "model": s.model,
            "content": s.blocks(True)[-1:],
            "usage": usage,
        }
        line.update(requestId=rid, type="assistant", uuid=_uuid4(rng), timestamp=_iso(s.tick()))
        s.emit(line, usage=True)
        s.count("claude_no_message_id")


def _trap_partial_last_line(s: _ClaudeSession) -> None:
    rng = s.rng
    line = s.base()
    line["message"] = {
        "id": _ident(rng, "msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": s.model,
        "content": s.blocks(True)[-1:],
        "usage": s.usage(*s.numbers()),
    }
    line.update(
        requestId=_ident(rng, "req_011C", 20),
        type="assistant",
        uuid=_uuid4(rng),
        timestamp=_iso(s.tick()),
    )
    data = orjson.dumps(line)
    cut = data.index(b'"usage":{') + rng.randint(12, 60)
    s.sink.raw(data[:cut])
    s.count("claude_partial_last_line")


def _trap_agent_progress(s: _ClaudeSession) -> None:
    """Sub-agent replies mirrored into the main file as ``progress`` lines (one also kept in a
    sub-agent file is deduplicated; the others exist only here)."""
    rng = s.rng
    agent = _ident(rng, "a", 7, _HEX)
    tool_id = _ident(rng, "toolu_01", 22)
    for k in range(2):
        inp, cc, cr, out = s.numbers()
        inner = {
            "type": "assistant",
            "message": {
                "id": _ident(rng, "msg_01", 22),
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5-20251001",
                "content": s.blocks(True)[-1:],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": s.usage(inp, cc, cr, out),
            },
            "requestId": _ident(rng, "req_011C", 20),
            "uuid": _uuid4(rng),
            "timestamp": _iso(s.tick()),
        }
        line = s.base("progress")
        line["data"] = {
            "type": "agent_progress",
            "message": inner,
            "normalizedMessages": [],
            "prompt": "",
            "agentId": agent,
        }
        line.update(
            toolUseID=tool_id, parentToolUseID=tool_id, uuid=_uuid4(rng), timestamp=_iso(s.tick())
        )
        s.emit(line, usage=True)
        s.count("claude_agent_progress")
        if k == 0:
            s.mirrored.append(inner)
    if not s.subagents:
        s.subagents.append((s.now, False))


def _noop(s: _ClaudeSession) -> None:
    """Handled by the session itself (sub-agent, legacy agent and resumed files)."""


_CLAUDE_TRAP_INJECTORS: dict[str, Callable[[_ClaudeSession], None]] = {
    "stream_shrink": _trap_stream_shrink,
    "sidechain_replay": _trap_sidechain_replay,
    "cache_modes": _trap_cache_modes,
    "tiers": _trap_tiers,
    "fast": _trap_fast,
    "cost_usd": _trap_cost_usd,
    "synthetic": _trap_synthetic,
    "huge_line": _trap_huge_line,
    "malformed": _trap_malformed,
    "request_id_null": _trap_request_id_null,
    "no_message_id": _trap_no_message_id,
    "partial_last_line": _trap_partial_last_line,
    "agent_progress": _trap_agent_progress,
    "subagent_file": _noop,
    "legacy_agent_file": _noop,
    "cross_file_duplicate": _noop,
}
_CLAUDE_TRAP_GROUPS = (  # trap session i gets group i (modulo the number of sessions)
    ("sidechain_replay", "cache_modes", "cross_file_duplicate"),
    ("tiers", "fast", "malformed", "subagent_file", "stream_shrink"),
    ("cost_usd", "synthetic", "partial_last_line", "legacy_agent_file"),
    ("request_id_null", "no_message_id", "agent_progress", "huge_line"),
)


# ------------------------------------------------------------------------------------------------
# Codex CLI


def _codex_usage(inp: int, cached: int, out: int, reasoning: int) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + out,
    }


class _CodexSession:
    """One Codex rollout file."""

    def __init__(self, gen: _Generator, index: int) -> None:
        self.g = gen
        self.index = index
        self.rng = rng = _Rng(f"{gen.spec.seed}:codex:{index}")
        self.traps = gen.codex_traps.get(index, [])
        self.now, self.boundary = gen.start_time("codex", index, rng)
        self.gap = (5_000, 60_000) if self.boundary else (10_000, 400_000)
        self.session_id = _uuid7(rng, self.now)
        self.cwd = f"/home/dev/src/{_PROJECTS[rng.randrange(len(_PROJECTS))]}"
        self.model = CODEX_MODELS[rng.randrange(len(CODEX_MODELS))]
        self.cli = f"0.{rng.randint(40, 99)}.0"
        self.no_turn_context = "no_turn_context" in self.traps
        self.old_style = rng.random() < 0.1  # no last_token_usage anywhere in the file
        self.total = [0, 0, 0, 0]
        self.last: dict[str, int] | None = None
        self.ctx = 0
        self.primary = rng.uniform(0, 40)
        self.out: _Sink | None = None

    @property
    def sink(self) -> _Sink:
        assert self.out is not None
        return self.out

    def count(self, trap: str, n: int = 1) -> None:
        self.g.stats.traps[trap] += n

    def tick(self, lo: int = 5, hi: int = 1_500) -> int:
        self.now += self.rng.randint(lo, hi)
        return self.now

    def line(self, kind: str, payload: dict[str, Any], at: int | None = None) -> None:
        ts = _iso(self.tick() if at is None else at)
        self.sink.obj({"timestamp": ts, "type": kind, "payload": payload})

    def event(self, payload: dict[str, Any]) -> None:
        self.line("event_msg", payload)
        if payload["type"] != "token_count":
            self.count("codex_non_billable")

    def item(self, payload: dict[str, Any]) -> None:
        self.line("response_item", payload)
        self.count("codex_non_billable")

    def rate_limits(self) -> dict[str, Any]:
        self.primary = min(100.0, self.primary + self.rng.uniform(0, 0.8))
        return {
            "primary": {
                "used_percent": round(self.primary, 1),
                "window_minutes": 300,
                "resets_in_seconds": self.rng.randint(60, 18_000),
            },
            "secondary": {
                "used_percent": round(self.primary / 7, 1),
                "window_minutes": 10_080,
                "resets_in_seconds": self.rng.randint(3_600, 604_800),
            },
        }

    def token_count(
        self,
        inp: int,
        cached: int,
        out: int,
        reasoning: int,
        at: int | None = None,
        no_last: bool = False,
    ) -> None:
        """A usage event: cumulative total advances by this request's usage."""
        last = _codex_usage(inp, cached, out, reasoning)
        for i, v in enumerate((inp, cached, out, reasoning)):
            self.total[i] += v
        info: dict[str, Any] = {"total_token_usage": _codex_usage(*self.total)}
        if no_last or self.old_style:
            self.count("codex_no_last_usage")
        else:
            info["last_token_usage"] = last
        info["model_context_window"] = 272_000
        self.last = last
        self.line(
            "event_msg",
            {"type": "token_count", "info": info, "rate_limits": self.rate_limits()},
            at,
        )
        self.g.stats.codex_token_count_lines += 1

    def reemit(self) -> None:
        """The previous token_count again, fresh timestamp, total not advanced."""
        info: dict[str, Any] = {"total_token_usage": _codex_usage(*self.total)}
        if self.last is not None and not self.old_style:
            info["last_token_usage"] = self.last
        info["model_context_window"] = 272_000
        self.line(
            "event_msg", {"type": "token_count", "info": info, "rate_limits": self.rate_limits()}
        )
        self.g.stats.codex_token_count_lines += 1
        self.count("codex_reemit")

    def info_null(self) -> None:
        self.line(
            "event_msg", {"type": "token_count", "info": None, "rate_limits": self.rate_limits()}
        )
        self.g.stats.codex_token_count_lines += 1
        self.count("codex_info_null")

    def request_numbers(self) -> tuple[int, int, int, int]:
        rng = self.rng
        if self.ctx == 0:
            inp = rng.randint(5_000, 14_000)
            cached = rng.choice((0, rng.randint(2_000, 4_000)))
        else:
            inp = self.ctx + rng.randint(200, 9_000)
            cached = max(0, self.ctx - rng.randint(0, 2_000)) // 128 * 128
        out = _lognormal(rng, 250, 1.1, 5, 20_000)
        reasoning = 0 if rng.random() < 0.3 else rng.randint(0, out)
        self.ctx = inp + out
        if self.ctx > 230_000:  # auto-compact
            self.ctx = rng.randint(12_000, 30_000)
        return inp, cached, out, reasoning

    def turn_context(self) -> None:
        if self.no_turn_context:
            return
        self.line(
            "turn_context",
            {
                "cwd": self.cwd,
                "approval_policy": "on-request",
                "sandbox_policy": {
                    "type": "workspace-write",
                    "network_access": False,
                    "exclude_tmpdir_env_var": False,
                    "exclude_slash_tmp": False,
                },
                "model": self.model,
                "effort": self.rng.choice(("low", "medium", "high")),
                "summary": "auto",
            },
        )

    def step(self) -> None:
        """One sampling request: reasoning, a tool call and its output, then the usage."""
        rng = self.rng
        text = self.g.text
        scale = self.g.spec.content_scale
        self.item(
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": text.take(rng, rng.randint(40, 400))}],
                "content": None,
                "encrypted_content": _blob(rng, "gAAAAA", rng.randint(300, 2_000)),
            }
        )
        if rng.random() < 0.5:
            self.event({"type": "agent_reasoning", "text": text.take(rng, rng.randint(40, 400))})
        call_id = _ident(rng, "call_", 24)
        command = ["bash", "-lc", text.take(rng, rng.randint(10, 100))]
        self.item(
            {
                "type": "function_call",
                "name": "shell",
                "arguments": orjson.dumps({"command": command, "workdir": self.cwd}).decode(),
                "call_id": call_id,
            }
        )
        output = text.take(rng, int(_lognormal(rng, 2_500, 1.2, 10, 300_000) * scale))
        self.event(
            {
                "type": "exec_command_end",
                "call_id": call_id,
                "stdout": output[:2_000],
                "stderr": "",
                "exit_code": 0,
                "duration": {"secs": 0, "nanos": 41_000_000},
            }
        )
        self.item(
            {
                "type": "function_call_output",
                "call_id": call_id,
                "output": orjson.dumps(
                    {"output": output, "metadata": {"exit_code": 0, "duration_seconds": 0.1}}
                ).decode(),
            }
        )
        self.now += rng.randint(1_000, 20_000)
        self.token_count(*self.request_numbers())

    def turn(self) -> None:
        rng = self.rng
        prompt = self.g.text.prose(rng, rng.randint(30, 700))
        self.now += rng.randint(*self.gap)
        self.event({"type": "user_message", "message": prompt, "images": []})
        self.turn_context()
        self.item(
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}
        )
        self.event({"type": "task_started", "model_context_window": 272_000})
        for _ in range(rng.choice((0, 1, 1, 2, 3, 5))):
            self.step()
            if rng.random() < 0.08:
                self.info_null()
        answer = self.g.text.prose(rng, int(rng.randint(60, 1_500) * self.g.spec.content_scale))
        self.item(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": answer}],
            }
        )
        self.event({"type": "agent_message", "message": answer})
        self.token_count(*self.request_numbers())
        if rng.random() < 0.06:
            self.reemit()
        self.event({"type": "task_complete", "last_agent_message": answer[:200]})

    def path(self, archived: bool = False) -> Path:
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(self.now // 1000))
        name = f"rollout-{stamp}-{self.session_id}.jsonl"
        root = self.g.home / ".codex"
        if archived:
            return root / "archived_sessions" / name
        return root / "sessions" / stamp[:4] / stamp[5:7] / stamp[8:10] / name

    def write(self) -> None:
        rng = self.rng
        turns = rng.randint(*self.g.spec.turns_per_session)
        archived_only = "archived_only" in self.traps
        self.out = _Sink(self.path(archived=archived_only), self.g.stats)
        if archived_only:
            self.count("codex_archived_only")
        self.line(
            "session_meta",
            {
                "id": self.session_id,
                "timestamp": _iso(self.now),
                "cwd": self.cwd,
                "originator": "codex_cli_rs",
                "cli_version": self.cli,
                "instructions": None,
                "source": "cli",
                "model_provider": "openai",
                "git": {
                    "commit_hash": _ident(rng, "", 40, _HEX),
                    "branch": "main",
                    "repository_url": f"git@github.com:example/{self.cwd.rsplit('/', 1)[1]}.git",
                },
            },
            at=self.now,
        )
        self.count("codex_session_meta")
        if self.no_turn_context:
            self.count("codex_no_turn_context")
        self.item(
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": f"<environment_context><cwd>{self.cwd}</cwd></environment_context>",
                    }
                ],
            }
        )
        positions = {name: rng.randrange(turns) for name in self.traps}
        switch_at = rng.randrange(1, turns) if turns > 1 and rng.random() < 0.3 else None
        for t in range(turns):
            if t == switch_at and not self.no_turn_context:
                self.switch_model()
            if self.boundary is not None and (
                self.boundary - self.now <= _CODEX_MAX_TURN_MS or t >= turns // 2
            ):
                self.now = max(self.now, self.boundary - _CODEX_MAX_TURN_MS)  # an idle pause
                self.pin_boundary(self.boundary)
                self.boundary = None
            self.turn()
            for name in [n for n, pos in positions.items() if pos == t]:
                if name not in ("partial_last_line", "archived_copy"):
                    _CODEX_TRAP_INJECTORS[name](self)
        if "partial_last_line" in self.traps:
            _CODEX_TRAP_INJECTORS["partial_last_line"](self)
        self.sink.close()
        if "archived_copy" in self.traps:
            src = self.sink.path
            dst = self.g.home / ".codex" / "archived_sessions" / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            self.g.stats.files += 1
            self.g.stats.bytes += src.stat().st_size
            self.count("codex_archived_copy")

    def switch_model(self) -> None:
        choices = [m for m in CODEX_MODELS if m != self.model]
        self.model = choices[self.rng.randrange(len(choices))]
        self.count("codex_model_switch")

    def pin_boundary(self, boundary: int) -> None:
        """Usage events at exactly ``boundary - 1`` ms and ``boundary``."""
        for at in (boundary - 1, boundary):
            self.now = max(self.now, at - self.rng.randint(1_600, 3_000))
            self.event({"type": "agent_message", "message": self.g.text.prose(self.rng, 80)})
            self.token_count(*self.request_numbers(), at=at)
            self.now = at
            self.count("codex_boundary_pin")


def _codex_trap_model_switch(s: _CodexSession) -> None:
    s.switch_model()
    s.turn_context()
    s.turn()


def _codex_trap_info_null(s: _CodexSession) -> None:
    s.info_null()


def _codex_trap_reemit(s: _CodexSession) -> None:
    s.reemit()
    s.reemit()


def _codex_trap_no_last(s: _CodexSession) -> None:
    for _ in range(2):
        s.token_count(*s.request_numbers(), no_last=True)


def _codex_trap_malformed(s: _CodexSession) -> None:
    data = orjson.dumps(
        {
            "timestamp": _iso(s.tick()),
            "type": "event_msg",
            "payload": {
                "type": "token_count",
                "info": {"total_token_usage": _codex_usage(*s.total)},
            },
        }
    )
    s.sink.raw(data[: len(data) // 2] + b"\n")
    s.count("codex_malformed")


def _codex_trap_partial_last_line(s: _CodexSession) -> None:
    inp, cached, out, reasoning = s.request_numbers()
    total = [a + b for a, b in zip(s.total, (inp, cached, out, reasoning), strict=True)]
    data = orjson.dumps(
        {
            "timestamp": _iso(s.tick()),
            "type": "event_msg",
            "payload": {
                "type": "token_count",
                "info": {
                    "total_token_usage": _codex_usage(*total),
                    "last_token_usage": _codex_usage(inp, cached, out, reasoning),
                },
            },
        }
    )
    s.sink.raw(data[: data.index(b'"last_token_usage"') + 30])
    s.count("codex_partial_last_line")


def _codex_trap_long_context(s: _CodexSession) -> None:
    if not s.no_turn_context:
        s.model = "gpt-5.4"
        s.turn_context()
        s.count("codex_model_switch")
    s.token_count(s.rng.randint(300_000, 380_000), 256_000, s.rng.randint(500, 3_000), 200)
    s.ctx = 20_000
    s.count("codex_long_context")


def _codex_noop(s: _CodexSession) -> None:
    """Handled by the session itself."""


_CODEX_TRAP_INJECTORS: dict[str, Callable[[_CodexSession], None]] = {
    "model_switch": _codex_trap_model_switch,
    "info_null": _codex_trap_info_null,
    "reemit": _codex_trap_reemit,
    "no_last_usage": _codex_trap_no_last,
    "malformed": _codex_trap_malformed,
    "partial_last_line": _codex_trap_partial_last_line,
    "long_context": _codex_trap_long_context,
    "no_turn_context": _codex_noop,
    "archived_copy": _codex_noop,
    "archived_only": _codex_noop,
}
_CODEX_TRAP_GROUPS = (  # trap session i gets group i (modulo the number of sessions)
    ("model_switch", "reemit", "malformed", "archived_copy", "long_context"),
    ("no_turn_context", "info_null", "partial_last_line"),
    ("no_last_usage", "archived_only", "reemit"),
)
