"""Fuzzing every source parser through the real ingest boundary (issue 6, item 3).

Every example runs the real :class:`sufd.ingest.ingestor.Ingestor` (``ingest_all`` as ``sufd
ingest`` does, ``ingest_paths`` as the daemon's watcher does) over a real SQLite ledger in
``tmp_path``, with the source files laid out where each agent keeps them in an isolated HOME.
Inputs start from the real samples in ``../shared/fixtures/real/<source>/`` (read in place; the
tests skip where that folder is absent) and are damaged by: byte flips, deletions, insertions
(newlines included), splices of two lines, two lines glued together, cut lines, random bytes and
random JSON, and JSON-level edits (a value turned into a string, null, a negative, a huge or a
float, NaN/Infinity, nested 50 or 1,100 levels deep, a key removed, a scalar wrapped in a list
or object). Database sources (Cursor ``state.vscdb``, OpenCode ``opencode.db``) get the same
edits on one row's values in a copy of the database, plus SQLite-level type changes (NULL,
integer, real, BLOB, text that is not UTF-8) and changed keys/ids.

Properties, for every source:

* **Nothing escapes the ingest boundary and no bad input fails a whole file.** Ingest never
  raises; a line or document source never reports a file error (bad lines and entries are
  skipped and counted as malformed); a database source reports at most a ``SourceError``, and
  only for a file that is not a readable database (random bytes, truncated).
* **The daemon-facing stats stay consistent** (:func:`check_store`): the ``IngestStats`` the
  daemon sums (new events, malformed lines, bytes read, errors) agree with the ledger's events,
  ``malformed`` and ``files`` tables; ``agg_time`` and ``agg_session`` hold exactly the sums of
  the events; re-reading the same bytes (the file replaced by an identical copy) adds and
  replaces nothing.
* **No malformed input changes an unrelated event** (compared per event key: ts, model, the
  token classes, cost and its kind). What "unrelated" means follows each format:

  - *Line files* (Claude, Codex, Gemini ``.jsonl``): ``P + bad + Q`` is compared with
    ``P + blank + Q``, where ``blank`` is the bad segment with every byte but ``\\n`` turned
    into a space (every reader skips blank lines, so offsets, and keys that contain offsets,
    stay the same). The bad line may claim the keys it states itself: those whose event
    differs between ``P + bad`` and ``P + blank`` (Claude: and every key of the same
    ``message.id``, which ccusage's dedup ties together). Every other event must be
    identical. A line that changes the carried state (Codex: the cursor state sufd persists,
    i.e. model/previous total/session; Gemini: the last top-level ``sessionId``/``model``,
    which ccusage carries forward) legitimately changes the lines after it; then only the
    events of ``P`` that no later line re-emits are compared.
  - *Cline ``ui_messages.json``*: one array entry is mutated (its fields, or the JSON inside
    its ``text``). Related are the entry's own event before and after (key ``ts``) and the
    events sharing its old or new ``ts`` (rows with the same ``ts`` are numbered ``ts#n`` in
    order). Project/session are derived from the whole task and are not compared.
  - *Gemini legacy ``.json``*: one ``messages[]`` entry is mutated; related are its own
    positional key and the keys of its old and new ``id`` (repeated ids are numbered).
  - Either way, if the edit leaves the document invalid JSON (NaN, 1,100 levels of nesting,
    bytes damaged), the document is unreadable as a whole, as when caught mid-write: no event,
    one malformed record, no error, and once the file is rewritten intact every event equals
    the one-shot ingest of the intact file.
  - *OpenCode message files*: one file per message; related are the keys that file yields
    before and after the edit (a database row or file with the same id shares the key).
  - *Cursor*: a bubble row's own event (old and new key); a ``composerData`` row relates to
    every bubble of its composer (model, fallback time). The fixture has no zero-token
    assistant bubble, so no estimate reads another row (asserted).
  - *OpenCode database*: the row's own event (old and new id).

* **Truncated files**: a line file cut at random offsets and completed piece by piece yields,
  after each piece, exactly the events of its complete lines and, at the end, exactly the
  one-shot ingest of the whole file (carried Codex state included). A document cut short is
  unreadable or yields only events equal to the whole file's; a database cut short yields no
  event the whole one lacks (at most a ``SourceError``); once complete, either yields exactly
  the one-shot result.

Budget: the default run is derandomized with a fixed number of examples per test (total well
under a minute on two cores). Long mode, random and as long as you like::

    SUFD_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz_sources.py \\
        --hypothesis-show-statistics -p no:cacheprovider -o timeout=0

(``SUFD_FUZZ_EXAMPLES`` is the number of examples per test; each test/source pair runs that
many.) ``python -m benchmarks.fuzz_bench --examples 1000`` runs the same and prints a summary
of what ran (examples per test, failures, time).

The bugs this fuzzing found are pinned as regression examples at the end of this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from sufd.ingest.ingestor import Ingestor, IngestStats
from sufd.prices.table import PriceTable
from sufd.settings import Paths, Settings
from sufd.sources.base import FileContext, Malformed, parse_timestamp_ms
from sufd.sources.claude import ClaudeCode
from sufd.store import open_store
from sufd.store.ledger import Ledger
from tests.conftest import shared_fixture
from tests.gen_gemini_opencode import create_opencode_db, insert_message

EXAMPLES = int(os.environ.get("SUFD_FUZZ_EXAMPLES", "0") or 0)
LONG = EXAMPLES > 0
PRICES = PriceTable.bundled()
FIXED_MTIME_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z: gemini dates by mtime
# Sources whose parsers let a token count past SQLite's INTEGER through (none any more: the
# regression tests below pin the bounds that claude.py and codex.py now apply).
KNOWN_OVERFLOW: tuple[str, ...] = ()
OVERFLOW_FROM = 2**62


def budget(default: int) -> Callable[[Any], Any]:
    """A fixed, derandomized budget by default; ``SUFD_FUZZ_EXAMPLES`` random examples else."""
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=not LONG,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Ingest logs every malformed line; thousands of examples would flood the capture."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**saved)


# ------------------------------------------------------------------------------------------
# the real ingest over a real ledger, and what is compared


@dataclass(frozen=True, slots=True)
class Event:
    """What must not change for an unrelated event."""

    ts: int
    model: str
    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    reasoning: int
    total: int
    cost: float
    cost_kind: int


class Store:
    """A fresh ledger file and the real Ingestor over an isolated HOME (default roots)."""

    def __init__(self, db: Path, home: Path, template: Path) -> None:
        shutil.copyfile(template, db)  # open_store's migrations cost 10-20 ms on a slow disk
        self.conn = open_store(db)
        # Durability is not under test here: skip fsync, which dominates on a shared disk.
        self.conn.execute("PRAGMA synchronous = OFF")
        config, data, state, logs, run = (
            db.with_name(f"{db.stem}-{n}") for n in ("config", "data", "state", "log", "run")
        )
        paths = Paths(config, data, state, logs, run, db)
        self.settings = Settings(paths=paths, home=home, env={}, sources={})
        self.ingestor = Ingestor(
            self.settings, Ledger(self.conn, price_version=PRICES.version), PRICES
        )
        # Fresh adapter instances: Cursor keeps per-path caches that must not leak between
        # the stores of one example, which read files at the same path.
        self.ingestor.sources = [type(s)() for s in self.ingestor.sources]
        self.runs: list[IngestStats] = []
        self.first: dict[str, IngestStats] = {}

    def ingest_all(self, source: str) -> IngestStats:
        """What ``sufd ingest`` (and the daemon's catch-up) runs."""
        return self._keep(self.ingestor.ingest_all(only={source}))

    def ingest_paths(self, *paths: Path) -> IngestStats:
        """What the daemon runs for a watcher batch."""
        return self._keep(self.ingestor.ingest_paths(paths))

    def _keep(self, stats: IngestStats) -> IngestStats:
        self.runs.append(stats)
        return stats

    def events(self) -> dict[str, Event]:
        rows = self.conn.execute(
            "SELECT e.key, e.ts, m.name, e.input, e.output, e.cache_write_5m, e.cache_write_1h,"
            " e.cache_read, e.reasoning, e.total, e.cost, e.cost_kind"
            " FROM events e JOIN models m ON m.id = e.model_id"
        ).fetchall()
        return {r[0]: Event(*r[1:]) for r in rows}

    def file_state(self, path: Path) -> str | None:
        row = self.conn.execute("SELECT state FROM files WHERE path = ?", (str(path),)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.conn.close()


def check_store(store: Store, *, errors_allowed: bool = False) -> None:
    """The daemon-facing stats agree with the ledger, and the aggregates with the events."""
    q = store.conn.execute
    runs = store.runs
    for stats in runs:
        if errors_allowed:
            bad = [e for _, e in stats.errors if not e.startswith("SourceError: ")]
            assert not bad, (
                f"a database failed with something else than a SourceError: {short(bad, 300)}"
            )
        else:
            assert not stats.errors, (
                f"a bad line or entry failed the whole file: {short(stats.errors, 300)}"
            )
    if not errors_allowed:
        (failed,) = q("SELECT count(*) FROM files WHERE error IS NOT NULL").fetchone()
        assert failed == 0, "a file is marked failed in the ledger"
    (events,) = q("SELECT count(*) FROM events").fetchone()
    assert sum(s.inserted for s in runs) == events, "IngestStats.inserted != events in the ledger"
    (file_events, file_bad) = q("SELECT coalesce(sum(events), 0), coalesce(sum(malformed), 0)"
                                " FROM files").fetchone()  # fmt: skip
    assert file_events == events, "files.events != events in the ledger"
    (bad_rows,) = q("SELECT count(*) FROM malformed").fetchone()
    assert file_bad == bad_rows, "files.malformed != rows of the malformed table"
    assert sum(s.malformed for s in runs) >= bad_rows, "malformed rows nobody counted"
    first_bad = sum(s.malformed for s in runs[:1])
    if len(runs) == 1:
        assert first_bad == bad_rows, "malformed lines of one read counted != recorded"
    cols = "input, output, cache_write_5m, cache_write_1h, cache_read, reasoning, total"
    sums = ", ".join(f"coalesce(sum({c}), 0)" for c in cols.split(", "))
    by_events = q(f"SELECT count(*), {sums}, coalesce(sum(cost), 0.0) FROM events").fetchone()
    for table in ("agg_time", "agg_session"):
        agg = q(f"SELECT coalesce(sum(events), 0), {sums}, coalesce(sum(cost), 0.0)"
                f" FROM {table}").fetchone()  # fmt: skip
        assert agg[:-1] == by_events[:-1], f"{table} sums differ from the events: {agg} {by_events}"
        assert math.isclose(agg[-1], by_events[-1], rel_tol=1e-9, abs_tol=1e-9), (
            f"{table} cost differs from the events"
        )
    (negative,) = q(
        "SELECT count(*) FROM events WHERE input < 0 OR output < 0 OR cache_write_5m < 0"
        " OR cache_write_1h < 0 OR cache_read < 0 OR reasoning < 0 OR total < 0"
    ).fetchone()
    assert negative == 0, "an event with negative tokens"


def short(value: object, limit: int = 60) -> str:
    """At most ``limit`` characters: keys and fixture bytes may hold prompt text."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def assert_unchanged(
    base: dict[str, Event],
    got: dict[str, Event],
    keys: set[str],
    what: str,
    *,
    restored: bool = False,
) -> None:
    """Every key in ``keys`` has the same event in ``got`` as in ``base``.

    ``restored``: after a rewrite that undoes a damaged entry, the model and the cost's kind
    are not compared. A re-read replaces a stored event only when its tokens, time or cost
    differ (the ledger gives ``prefer`` neither the stored model nor the cost's kind), so a
    change of those alone is not propagated; pinned by
    :func:`test_pinned_model_or_cost_kind_change_is_propagated`.
    """
    for key in sorted(keys):
        assert key in got, f"{what}: unrelated event {short(key)} vanished"
        want = base[key]
        if restored:
            want = dataclasses.replace(want, model=got[key].model, cost_kind=got[key].cost_kind)
        assert got[key] == want, (
            f"{what}: unrelated event {short(key)} changed: {base[key]} -> {got[key]}"
        )


def write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (a new inode, as editors and agents do), at a fixed mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".fuzz-tmp")
    tmp.write_bytes(data)
    os.utime(tmp, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))
    os.replace(tmp, path)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)
    os.utime(path, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))


@contextlib.contextmanager
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory per hypothesis example (``tmp_path`` is per test)."""
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        yield Path(d)


class Stores:
    """The ledgers of one example, closed at its end."""

    def __init__(self, base: Path, template: Path) -> None:
        self.base, self.home, self.template = base, base / "home", template
        self.opened: list[Store] = []

    def new(self, name: str) -> Store:
        store = Store(self.base / f"{name}.sqlite3", self.home, self.template)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty ledger made by the real ``open_store`` (migrations applied), copied per store."""
    path = tmp_path_factory.mktemp("fuzz-template") / "ledger.sqlite3"
    conn = open_store(path)
    try:
        Ledger(conn, price_version=PRICES.version)
    finally:
        conn.close()
    return path


@contextlib.contextmanager
def stores(tmp_path: Path, template: Path) -> Iterator[Stores]:
    with workdir(tmp_path) as base:
        s = Stores(base, template)
        try:
            yield s
        finally:
            s.close()


def ingest_once(stores_: Stores, name: str, source: str, path: Path, data: bytes) -> Store:
    """Write ``data`` at ``path`` and ingest it into a fresh ledger, as ``sufd ingest`` does."""
    write(path, data)
    store = stores_.new(name)
    store.ingest_all(source)
    return store


def reread_is_idempotent(store: Store, source: str, path: Path, *, db: bool = False) -> None:
    """The same bytes under a new inode (a rotation, a restore) add and replace nothing."""
    before = store.events()
    data = path.read_bytes()
    write(path, data)
    stats = store.ingest_paths(path)
    if db:
        assert not stats.errors or stats.errors[0][1].startswith("SourceError: ")
    else:
        assert not stats.errors, f"re-read failed: {short(stats.errors, 300)}"
    assert (stats.inserted, stats.replaced) == (0, 0), (
        f"re-reading identical bytes changed the ledger: {stats.inserted} new,"
        f" {stats.replaced} replaced"
    )
    assert store.events() == before, "re-reading identical bytes changed events"


# ------------------------------------------------------------------------------------------
# fixtures and mutations


def fixture_bytes(directory: str, name: str) -> bytes:
    return shared_fixture(directory, name).read_bytes()


@cache
def fixture_lines(directory: str, name: str) -> tuple[bytes, ...]:
    data = fixture_bytes(directory, name)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return tuple(lines)


FOCUS = frozenset(
    """usage input_tokens output_tokens cache_creation_input_tokens cache_read_input_tokens
    cache_creation ephemeral_5m_input_tokens ephemeral_1h_input_tokens speed costUSD timestamp
    model id requestId sessionId isSidechain version cwd type message data payload info
    total_token_usage last_token_usage cached_input_tokens reasoning_output_tokens
    total_tokens model_name metadata tokens input output cached thoughts tool total prompt
    candidates stats models startTime lastUpdated say ts text tokensIn tokensOut cacheWrites
    cacheReads cost modelInfo modelId tokenCount inputTokens outputTokens modelName createdAt
    timingInfo clientRpcSendTime fullConversationHeadersOnly bubbleId modelConfig time created
    completed providerID modelID role cache read write reasoning path root session_id""".split()  # noqa: SIM905
)

# JSON text that replaces a value: (label, text or a function of the value's JSON text).
Raw = str | Callable[[str], str]
RAW_VALUES: tuple[tuple[str, Raw], ...] = (
    ("as-string", lambda o: json.dumps(o)),
    ("null", "null"),
    ("zero", "0"),
    ("minus-one", "-1"),
    ("negated", lambda o: "-" + o if o[:1].isdigit() else "-1"),
    ("plus-half", lambda o: o + ".5" if o.isdigit() else "0.5"),
    ("half", "0.5"),
    ("minus-zero", "-0.0"),
    ("exponent", "1e3"),
    ("1e308", "1e308"),
    ("1e400", "1e400"),
    ("i64-max", str(2**63 - 1)),
    ("i64-max+1", str(2**63)),
    ("u64-max", str(2**64 - 1)),
    ("u64-max+1", str(2**64)),
    ("1e30-int", "1" + "0" * 30),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("true", "true"),
    ("false", "false"),
    ("empty-list", "[]"),
    ("empty-object", "{}"),
    ("empty-string", '""'),
    ("blank-string", '"   "'),
    ("wrap-list", lambda o: f"[{o}]"),
    ("wrap-object", lambda o: f'{{"v":{o}}}'),
    ("nest-50", lambda o: "[" * 50 + o + "]" * 50),
    ("nest-1100", lambda o: "[" * 1100 + o + "]" * 1100),
    ("bad-date", '"2026-02-30T25:61:61.000Z"'),
    ("date-no-zone", '"2026-01-01T00:00:00"'),
    ("year-9999", '"9999-12-31T23:59:59.999Z"'),
    ("year-0001", '"0001-01-01T00:00:00.000Z"'),
    ("epoch-ms", "1767225600000"),
    ("nul-char", '"\\u0000"'),
    ("lone-surrogate", '"\\ud800"'),
    ("long-string", '"' + "x" * 70_000 + '"'),
    ("leading-zero", "0123"),
)
HUGE_INTS = frozenset({"i64-max", "i64-max+1", "u64-max"})
SENTINEL = "\x00sufd-fuzz\x00"


def json_paths(obj: Any, limit: int = 2000) -> list[tuple[str | int, ...]]:
    """Every node of a JSON value, root first, in a stable order (at most ``limit``)."""
    out: list[tuple[str | int, ...]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), obj)]
    while stack and len(out) < limit:
        path, node = stack.pop(0)
        out.append(path)
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))
    return out


def _get(obj: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_edit(obj: Any, path: tuple[str | int, ...], op: str, raw: str) -> bytes:
    """``obj`` with the node at ``path`` replaced by the JSON text ``raw`` or removed."""
    obj = orjson.loads(orjson.dumps(obj))  # a deep copy
    if op == "delete" and path:
        parent = _get(obj, path[:-1])
        del parent[path[-1]]
        return _dumps(obj).encode()
    original = _dumps(_get(obj, path))
    if not path:
        return _raw_text(raw, original).encode()
    _get(obj, path[:-1])[path[-1]] = SENTINEL
    return _dumps(obj).replace(_dumps(SENTINEL), _raw_text(raw, original), 1).encode()


def _raw_text(label: str, original: str) -> str:
    value = dict(RAW_VALUES)[label]
    return value if isinstance(value, str) else value(original)


@dataclass(frozen=True)
class Mutation:
    """A recipe for one bad unit (line, entry, row value): no fixture text in its repr."""

    kind: str
    base: int
    pos: int = 0
    size: int = 0
    other: int = 0
    blob: bytes = b""
    path: tuple[str | int, ...] = ()
    raw: str = ""

    def __repr__(self) -> str:
        fields = [f"{self.kind} of #{self.base}"]
        if self.kind in ("flip", "delete", "insert", "splice", "cut"):
            fields.append(f"at {self.pos}")
        if self.kind in ("flip", "delete"):
            fields.append(f"size/mask {self.size}")
        if self.kind == "splice":
            fields.append(f"with #{self.other}@{self.size}")
        if self.blob:
            fields.append(f"blob {self.blob[:24]!r}")
        if self.kind.startswith("json"):
            fields.append(f"path {'/'.join(map(str, self.path))[:80]} -> {self.raw}")
        return f"Mutation({', '.join(fields)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def apply(self, units: Sequence[bytes]) -> bytes:
        line = units[self.base]
        n = len(line)
        if self.kind == "flip":
            out = bytearray(line)
            if n:
                for i in range(1 + self.size % 4):
                    out[(self.pos + 7919 * i) % n] ^= 1 + (self.size * (i + 1)) % 255
            return bytes(out)
        if self.kind == "delete":
            p = self.pos % (n + 1)
            return line[:p] + line[p + 1 + self.size :]
        if self.kind == "insert":
            p = self.pos % (n + 1)
            return line[:p] + self.blob + line[p:]
        if self.kind == "splice":
            other = units[self.other]
            return line[: self.pos % (n + 1)] + other[self.size % (len(other) + 1) :]
        if self.kind == "cut":
            return line[: self.pos % (n + 1)]
        if self.kind == "glue":
            return line + units[self.other]
        if self.kind == "random":
            return self.blob
        if self.kind == "random-json":
            return self.blob
        obj = orjson.loads(line)
        return json_edit(
            obj, self.path, "delete" if self.kind == "json-delete" else "set", self.raw
        )


BYTE_KINDS = ("flip", "delete", "insert", "splice", "cut", "glue", "random", "random-json")

_KEYS = st.sampled_from(sorted(FOCUS)) | st.text(max_size=6)


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function, not a lambda: hypothesis checks that ``extend`` uses its argument
    # by reading its source, and a lambda inside a multi-line call is not always found.
    return st.lists(inner, min_size=1, max_size=4) | st.dictionaries(
        _KEYS, inner, min_size=1, max_size=6
    )


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**62), max_value=2**62)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["2026-01-01T00:00:00.000Z", "assistant", "gemini", "token_count"])
    | st.sampled_from([[], {}]),
    _json_containers,
    max_leaves=24,
)


@st.composite
def mutations(
    draw: st.DrawFn,
    units: Sequence[bytes],
    *,
    prefer: Sequence[int] = (),
    huge: bool = True,
    json_only: bool = False,
) -> Mutation:
    """A mutation of one of ``units`` (mostly one of ``prefer``, the ones carrying usage)."""
    if prefer and draw(st.integers(0, 9)) < 7:
        base = draw(st.sampled_from(list(prefer)))
    else:
        base = draw(st.integers(0, len(units) - 1))
    line = units[base]
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    kinds = ["json-set", "json-delete"] if obj is not None else []
    if not json_only or not kinds:
        kinds += BYTE_KINDS
    weights = ["json-set"] * 3 + kinds if "json-set" in kinds else kinds
    kind = draw(st.sampled_from(weights))
    if kind.startswith("json"):
        paths = json_paths(obj)
        focus = [p for p in paths if any(part in FOCUS for part in p if isinstance(part, str))]
        pool: list[tuple[str | int, ...]] = paths
        if focus and draw(st.integers(0, 4)) > 0:
            pool = focus
        if kind == "json-delete":
            pool = [p for p in pool if p] or [p for p in paths if p]
            if not pool:
                kind, pool = "json-set", paths
        path = draw(st.sampled_from(pool))
        labels = [label for label, _ in RAW_VALUES if huge or label not in HUGE_INTS]
        raw = draw(st.sampled_from(labels)) if kind == "json-set" else ""
        return Mutation(kind, base, path=path, raw=raw)
    n = len(line)
    pos = draw(st.integers(0, max(n, 1)))
    size = draw(st.integers(0, 255))
    other = draw(st.integers(0, len(units) - 1))
    blob = b""
    if kind == "insert":
        blob = draw(st.binary(min_size=1, max_size=16))
    elif kind == "random":
        blob = draw(st.binary(min_size=1, max_size=300))
    elif kind == "random-json":
        blob = orjson.dumps(draw(JSON_VALUES))
    if kind == "splice":
        size = draw(st.integers(0, len(units[other])))
    return Mutation(kind, base, pos=pos, size=size, other=other, blob=blob)


def max_int(data: bytes) -> int:
    """The largest absolute integer in ``data`` read as JSON (0 when it is not JSON)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0
    best, stack = 0, [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int) and not isinstance(node, bool):
            best = max(best, abs(node))
    return best


def known_overflow(source: str, segment: bytes) -> bool:
    """A line that hits the pinned integer-overflow bug (see :data:`KNOWN_OVERFLOW`)."""
    return source in KNOWN_OVERFLOW and any(
        max_int(line) >= OVERFLOW_FROM for line in segment.split(b"\n")
    )


def blank(segment: bytes) -> bytes:
    """The segment with every byte but the newline turned into a space: skipped, same size."""
    return bytes(c if c == 0x0A else 0x20 for c in segment)


# ------------------------------------------------------------------------------------------
# line files: Claude, Codex, Gemini .jsonl


@dataclass(frozen=True)
class LineCase:
    source: str
    directory: str
    files: tuple[str, ...]
    rel: str  # the file below HOME, where the agent writes it
    markers: tuple[bytes, ...]  # lines holding one of these are mutated most often

    def path(self, home: Path) -> Path:
        return home / self.rel

    def usage_lines(self, lines: Sequence[bytes]) -> list[int]:
        return [i for i, line in enumerate(lines) if any(m in line for m in self.markers)]


LINE_CASES = {
    "claude": LineCase(
        "claude",
        "claude",
        (
            "agentsessions-stage0-claude-small.jsonl",
            "ccusage-project-alpha-session-alpha-chat.jsonl",
            "dkimuson-1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl",
            "dkimuson-5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
        ),
        ".claude/projects/-home-dev-proj/5c0375b4-fuzz.jsonl",
        (b'"usage"',),
    ),
    "codex": LineCase(
        "codex",
        "codex",
        (
            "agentsessions-stage0-codex-large.jsonl",
            "ccusage-session-alpha.jsonl",
            "agentsessions-codex_053_rate_limit.jsonl",
            "agentsessions-stage0-codex-small.jsonl",
        ),
        ".codex/sessions/2026/01/01/rollout-2026-01-01T00-00-00-fuzz.jsonl",
        (b'"token_count"', b'"turn_context"', b'"session_meta"'),
    ),
    "gemini-jsonl": LineCase(
        "gemini",
        "gemini",
        ("agentsessions-gemini-jsonl_v040.jsonl",),
        ".gemini/tmp/proj/chats/session-2026-04-29T21-39-fuzz.jsonl",
        (b'"gemini"', b'"sessionId"', b'"model"'),
    ),
}


def gemini_carried(data: bytes) -> tuple[str | None, str | None]:
    """(sessionId, model) a Gemini ``.jsonl`` carries forward after ``data``: the last
    non-blank top-level ``sessionId``/``session_id`` and ``model`` of any JSON object line."""
    session = model = None
    for line in data.split(b"\n"):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            for key in ("sessionId", "session_id"):
                if isinstance(obj.get(key), str) and obj[key].strip():
                    session = obj[key].strip()
                    break
            if isinstance(obj.get("model"), str) and obj["model"].strip():
                model = obj["model"].strip()
    return session, model


def carries_state(
    case: LineCase, store_bad: Store, store_blank: Store, path: Path, head: bytes, bad: bytes
) -> bool:
    """Whether the bad segment changed what later lines inherit (see the module docstring)."""
    if case.source == "codex":
        return store_bad.file_state(path) != store_blank.file_state(path)
    if case.source == "gemini":
        return gemini_carried(head + bad) != gemini_carried(head)
    assert store_bad.file_state(path) is None, "Claude carries no state between lines"
    return False


def claimed(case: LineCase, bad: dict[str, Event], blank_: dict[str, Event],
            everything: Sequence[dict[str, Event]]) -> set[str]:  # fmt: skip
    """Keys the bad segment states itself: those whose event it changed when read after P."""
    keys = {k for k in bad.keys() | blank_.keys() if bad.get(k) != blank_.get(k)}
    if case.source == "claude":
        # One message.id is one dedup group (sidechain replays alias into it).
        groups = {k.split(":", 1)[0] for k in keys if not k.startswith("@")}
        keys |= {k for ev in everything for k in ev if k.split(":", 1)[0] in groups}
    return keys


@pytest.mark.parametrize("name", sorted(LINE_CASES))
@budget(30)
@given(data=st.data())
def test_bad_line_changes_no_unrelated_event(
    name: str, tmp_path: Path, template: Path, data: st.DataObject
) -> None:
    case = LINE_CASES[name]
    file = data.draw(st.sampled_from(case.files), label="fixture")
    lines = fixture_lines(case.directory, file)
    huge = case.source not in KNOWN_OVERFLOW
    mutation = data.draw(mutations(lines, prefer=case.usage_lines(lines), huge=huge), label="bad")
    at = data.draw(st.integers(0, len(lines)), label="inserted before line")
    segment = mutation.apply(lines)
    assume(not known_overflow(case.source, segment))
    note(f"bad segment: {len(segment)} bytes, starts {segment[:40]!r}")
    with stores(tmp_path, template) as s:
        check_bad_line(case, lines, segment, at, s)


def check_bad_line(
    case: LineCase, lines: Sequence[bytes], segment: bytes, at: int, s: Stores
) -> None:
    """The line-file properties for ``segment`` inserted before ``lines[at]``."""
    name = case.source
    head = b"".join(line + b"\n" for line in lines[:at])
    tail = b"".join(line + b"\n" for line in lines[at:])
    bad, quiet = segment + b"\n", blank(segment) + b"\n"
    path = case.path(s.home)
    runs = {
        "base": head + quiet + tail,
        "mutated": head + bad + tail,
        "prefix-blank": head + quiet,
        "prefix-bad": head + bad,
    }
    done = {run: ingest_once(s, run, case.source, path, blob) for run, blob in runs.items()}
    for run, store in done.items():
        check_store(store)
        assert sum(r.bytes_read for r in store.runs) == len(runs[run]), f"{run}: bytes_read"
    ev_base, ev_bad = done["base"].events(), done["mutated"].events()
    ev_pb, ev_pq = done["prefix-bad"].events(), done["prefix-blank"].events()
    claims = claimed(case, ev_pb, ev_pq, (ev_base, ev_bad, ev_pb, ev_pq))
    if carries_state(case, done["prefix-bad"], done["prefix-blank"], path, head, bad):
        # Only what P says on its own, and no later line re-emits, is fixed.
        keep = {k for k in ev_pq.keys() - claims if ev_base.get(k) == ev_pq[k]}
        assert_unchanged(ev_base, ev_bad, keep, f"{name} (state-changing line)")
    else:
        assert_unchanged(ev_base, ev_bad, ev_base.keys() - claims, name)
        extra = ev_bad.keys() - ev_base.keys() - claims
        assert not extra, f"{name}: events from nowhere: {short(sorted(extra))}"
    write(path, runs["mutated"])
    reread_is_idempotent(done["mutated"], case.source, path)


@pytest.mark.parametrize("name", sorted(LINE_CASES))
@budget(12)
@given(data=st.data())
def test_line_file_cut_and_completed(
    name: str, tmp_path: Path, template: Path, data: st.DataObject
) -> None:
    """Cut at random offsets, completed piece by piece: each read = its complete lines."""
    case = LINE_CASES[name]
    file = data.draw(st.sampled_from(case.files), label="fixture")
    whole = fixture_bytes(case.directory, file)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), min_size=1, max_size=4)))
    with stores(tmp_path, template) as s:
        path = case.path(s.home)
        oneshot = ingest_once(s, "oneshot", case.source, path, whole)
        check_store(oneshot)
        # What the complete lines before each cut yield when ingested in one go. Gemini's
        # .jsonl is re-parsed whole: its last line counts once it is complete JSON, newline
        # or not (a proper prefix of a JSON object is never valid JSON).
        lines_only = case.source != "gemini"
        complete = [
            whole[: whole.rfind(b"\n", 0, c) + 1] if lines_only else whole[:c] for c in cuts
        ]
        refs = [ingest_once(s, f"ref{i}", case.source, path, c) for i, c in enumerate(complete)]
        growing = s.new("growing")
        write(path, b"")
        growing.ingest_all(case.source)
        done = 0
        for i, cut in enumerate([*cuts, len(whole)]):
            append(path, whole[done:cut])
            done = cut
            growing.ingest_paths(path)
            check_store(growing)
            if cut == len(whole):
                break
            if lines_only:  # a line source never consumes a partial line
                consumed = sum(r.bytes_read for r in growing.runs)
                assert consumed == len(complete[i]), f"consumed {consumed} of {len(complete[i])}"
            assert growing.events() == refs[i].events(), f"after {cut} of {len(whole)} bytes"
        assert growing.events() == oneshot.events(), "piecewise != one-shot ingest"


# ------------------------------------------------------------------------------------------
# whole-file JSON documents: Cline ui_messages.json, Gemini legacy .json


CLINE_TASK = "1763475462000"
CLINE_REL = (
    f".config/Code/User/globalStorage/saoudrizwan.claude-dev/tasks/{CLINE_TASK}/ui_messages.json"
)
GEMINI_JSON_REL = ".gemini/tmp/proj/chats/session-2025-12-16T23-47-b4f17607.json"


@cache
def cline_rows() -> tuple[bytes, ...]:
    rows = orjson.loads(fixture_bytes("cline", "coregems-cline-xray-ui_messages.json"))
    return tuple(orjson.dumps(r) for r in rows)


@cache
def gemini_doc() -> tuple[dict[str, Any], tuple[bytes, ...]]:
    """The legacy session (top level, messages); the one billable message is varied into a
    few more (new ids, other tokens, no id, a repeated id), so there are unrelated events."""
    top = orjson.loads(fixture_bytes("gemini", "agentsessions-gemini-large.json"))
    messages: list[dict[str, Any]] = top.pop("messages")
    real = next(m for m in messages if isinstance(m.get("tokens"), dict))
    derived = []
    for n, (mid, scale) in enumerate([("m2-copy-1", 2), ("m2-copy-2", 3), (None, 5), ("m2", 7)]):
        m = json.loads(json.dumps(real))
        m["tokens"] = {k: v * scale for k, v in real["tokens"].items()}
        m["timestamp"] = f"2025-12-16T23:5{n}:00.000Z"
        if mid is None:
            del m["id"]
        else:
            m["id"] = mid
        derived.append(m)
    return top, tuple(orjson.dumps(m) for m in [*messages, *derived])


def json_array(entries: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(entries) + b"]"


def gemini_bytes(top: dict[str, Any], entries: Sequence[bytes]) -> bytes:
    doc = _dumps(dict(top, messages=SENTINEL)).encode()
    return doc.replace(_dumps(SENTINEL).encode(), json_array(entries), 1)


def entry_of(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def cline_related(path: Path, old: Any, new: Any, index: int) -> Callable[[str], bool]:
    stamps = {str(e["ts"]) for e in (old, new) if isinstance(e, dict) and type(e.get("ts")) is int}
    stamps.add(f"@{index}")
    return lambda key: key.rsplit(":", 1)[-1].split("#")[0] in stamps


def gemini_related(path: Path, old: Any, new: Any, index: int) -> Callable[[str], bool]:
    ids = {
        e["id"].strip() for e in (old, new) if isinstance(e, dict) and isinstance(e.get("id"), str)
    }
    prefixes = tuple(f"{path}#{i}#" for i in ids if i)
    return lambda key: key == f"{path}[{index}]" or key.startswith(prefixes)


@dataclass(frozen=True)
class DocCase:
    source: str
    rel: str
    entries: Callable[[], tuple[bytes, ...]]
    build: Callable[[Sequence[bytes]], bytes]
    related: Callable[[Path, Any, Any, int], Callable[[str], bool]]
    billable: Callable[[bytes], bool]
    inner: str | None = None  # a string field holding JSON of its own (Cline's ``text``)


DOC_CASES = {
    "cline": DocCase(
        "cline",
        CLINE_REL,
        cline_rows,
        json_array,
        cline_related,
        lambda e: b'"api_req_started"' in e,
        inner="text",
    ),
    "gemini-json": DocCase(
        "gemini",
        GEMINI_JSON_REL,
        lambda: gemini_doc()[1],
        lambda entries: gemini_bytes(gemini_doc()[0], entries),
        gemini_related,
        lambda e: b'"tokens"' in e,
    ),
}


@dataclass(frozen=True)
class EntryEdit:
    """A mutation of one document entry, or of the JSON inside its ``inner`` string field."""

    mutation: Mutation
    index: int
    inner: str | None = None

    def __repr__(self) -> str:
        where = f"{self.inner} of entry {self.index}" if self.inner else f"entry {self.index}"
        return f"EntryEdit({where}: {self.mutation!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def apply(self, entries: Sequence[bytes]) -> bytes:
        """The new bytes of the entry (no fixture text is kept in the recipe)."""
        if self.inner is None:
            return self.mutation.apply(entries)
        entry = orjson.loads(entries[self.index])
        inner = [entry[self.inner].encode()]
        entry[self.inner] = self.mutation.apply(inner).decode("utf-8", "replace")
        return orjson.dumps(entry)


@st.composite
def entry_edits(draw: st.DrawFn, case: DocCase) -> EntryEdit:
    """One entry of the document damaged (mostly a billable one)."""
    entries = case.entries()
    billable = [i for i, e in enumerate(entries) if case.billable(e)]
    if case.inner and draw(st.booleans()):
        # Damage the JSON inside the entry's string field; the document stays valid JSON.
        index = draw(st.sampled_from(billable))
        inner = [orjson.loads(entries[index])[case.inner].encode()]
        return EntryEdit(draw(mutations(inner)), index, case.inner)
    mutation = draw(mutations(entries, prefer=billable))
    return EntryEdit(mutation, mutation.base)


@pytest.mark.parametrize("name", sorted(DOC_CASES))
@budget(30)
@given(data=st.data())
def test_bad_entry_changes_no_unrelated_event(
    name: str, tmp_path: Path, template: Path, data: st.DataObject
) -> None:
    case = DOC_CASES[name]
    entries = case.entries()
    edit = data.draw(entry_edits(case), label="edit")
    index, new = edit.index, edit.apply(entries)
    bad_entries = [*entries[:index], new, *entries[index + 1 :]]
    whole, bad_doc = case.build(entries), case.build(bad_entries)
    with stores(tmp_path, template) as s:
        path = s.home / case.rel
        base = ingest_once(s, "base", case.source, path, whole)
        mutated = ingest_once(s, "mutated", case.source, path, bad_doc)
        check_store(base)
        check_store(mutated)
        ev_base, ev_bad = base.events(), mutated.events()
        assert ev_base, "the fixture document yields events"
        if entry_of(bad_doc) is None:
            # Unreadable as a whole (as when caught mid-write): nothing, counted once.
            assert not ev_bad, "an unreadable document yielded events"
            assert mutated.runs[0].malformed == 1, "an unreadable document is one malformed"
        else:
            related = case.related(path, entry_of(entries[index]), entry_of(new), index)
            unrelated = {k for k in ev_base if not related(k)}
            assert_unchanged(ev_base, ev_bad, unrelated, name)
            extra = {k for k in ev_bad.keys() - ev_base.keys() if not related(k)}
            assert not extra, f"{name}: events from nowhere: {short(sorted(extra))}"
        reread_is_idempotent(mutated, case.source, path)
        # The writer rewrites the file intact: every event is the one-shot ingest's again.
        write(path, whole)
        mutated.ingest_paths(path)
        check_store(mutated)
        assert_unchanged(
            ev_base, mutated.events(), set(ev_base), f"{name} after the rewrite", restored=True
        )


# ------------------------------------------------------------------------------------------
# OpenCode: legacy message files and the database


OC_ROOT = ".local/share/opencode"


@cache
def opencode_messages() -> tuple[dict[str, Any], ...]:
    """The two real messages, and variants of them with new ids and other token counts."""
    real = [
        orjson.loads(fixture_bytes("opencode", name))
        for name in ("agentsessions-storage_v2-msg_0002.json", "tokscale-msg_test001.json")
    ]
    out = list(real)
    for n, msg in enumerate(real * 2):
        copy = json.loads(json.dumps(msg))
        copy["id"] = f"{msg['id']}-v{n}"
        copy["tokens"]["input"] = msg["tokens"]["input"] * (n + 2)
        copy["time"]["created"] = msg["time"]["created"] + 60_000 * (n + 1)
        out.append(copy)
    return tuple(out)


def opencode_json_path(home: Path, msg: dict[str, Any], n: int) -> Path:
    return home / OC_ROOT / "storage" / "message" / str(msg.get("sessionID")) / f"msg{n}.json"


def opencode_key(data: bytes, path: Path) -> str | None:
    """The key ccusage's rule gives a message file: its ``id``, else the file."""
    value = entry_of(data)
    if not isinstance(value, dict):
        return None
    mid = value.get("id")
    return mid.strip() if isinstance(mid, str) and mid.strip() else f"file:{path}"


@budget(25)
@given(data=st.data())
def test_bad_opencode_message_file_changes_no_other(
    tmp_path: Path, template: Path, data: st.DataObject
) -> None:
    """One message file damaged: the other files' events are unchanged."""
    msgs = opencode_messages()
    files = [orjson.dumps(m) for m in msgs]
    mutation = data.draw(mutations(files), label="file edit")
    bad = mutation.apply(files)
    with stores(tmp_path, template) as s:
        paths = [opencode_json_path(s.home, m, n) for n, m in enumerate(msgs)]
        for path, blob in zip(paths, files, strict=True):
            write(path, blob)
        base = s.new("base")
        base.ingest_all("opencode")
        write(paths[mutation.base], bad)
        mutated = s.new("mutated")
        mutated.ingest_all("opencode")
        for store in (base, mutated):
            check_store(store)
        ev_base, ev_bad = base.events(), mutated.events()
        assert len(ev_base) == len(msgs), "every real message file yields an event"
        target = paths[mutation.base]
        related = {opencode_key(files[mutation.base], target), opencode_key(bad, target)}
        assert_unchanged(ev_base, ev_bad, set(ev_base) - related, "opencode json")
        extra = ev_bad.keys() - ev_base.keys() - related
        assert not extra, f"events from nowhere: {short(sorted(extra))}"
        reread_is_idempotent(mutated, "opencode", target, db=True)
        write(target, files[mutation.base])
        mutated.ingest_paths(target)
        check_store(mutated)
        assert_unchanged(
            ev_base, mutated.events(), set(ev_base), "after the rewrite", restored=True
        )


def build_opencode_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = create_opencode_db(path)
    try:
        for n, msg in enumerate(opencode_messages()):
            insert_message(conn, msg, msg["time"]["created"] + n)
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()


CURSOR_REL = ".config/Cursor/User/globalStorage/state.vscdb"
CURSOR_FIXTURE = ("cursor", "adameps-urpg_app-globalStorage-state.subset.vscdb")


@cache
def cursor_rows() -> tuple[tuple[int, str, bytes], ...]:
    conn = sqlite3.connect(f"file:{shared_fixture(*CURSOR_FIXTURE)}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT rowid, key, value FROM cursorDiskKV ORDER BY rowid").fetchall()
    finally:
        conn.close()
    out = tuple((r, k, v.encode() if isinstance(v, str) else bytes(v)) for r, k, v in rows)
    # No estimate reads another row: every assistant bubble states its own tokens.
    for _, key, value in out:
        obj = orjson.loads(value)
        if key.startswith("bubbleId:") and obj.get("type") == 2:
            tokens = obj.get("tokenCount") or {}
            assert tokens.get("inputTokens") or tokens.get("outputTokens"), "fixture changed"
    return out


@cache
def opencode_rows() -> tuple[tuple[int, str, bytes], ...]:
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "opencode.db"
        build_opencode_db(db)
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("SELECT rowid, id, data FROM message ORDER BY rowid").fetchall()
        finally:
            conn.close()
    return tuple((r, k, v.encode()) for r, k, v in rows)


# SQLite-level replacements of a column: (label, SQL expression, parameter).
SQL_VALUES: tuple[tuple[str, str, Any], ...] = (
    ("NULL", "?", None),
    ("integer", "?", 7),
    ("huge-integer", "?", 2**63 - 1),
    ("negative", "?", -5),
    ("real", "?", 1.5),
    ("huge-real", "?", 1e300),
    ("empty-text", "?", ""),
    ("text", "?", "abc"),
    ("blob-json", "?", b'{"type":2}'),
    ("random-blob", "?", bytes(range(256))),
    ("not-utf8-text", "CAST(? AS TEXT)", b'{"type":2,"text":"\xff\xfe"}'),
    ("huge-text", "?", '{"type":2,"text":"' + "x" * 300_000 + '"}'),
)


@dataclass(frozen=True)
class DbCase:
    source: str
    rel: str
    table: str
    key_col: str
    value_col: str
    other_cols: tuple[str, ...]
    rows: Callable[[], tuple[tuple[int, str, bytes], ...]]
    build: Callable[[Path], None]

    def related(self, old_key: str, new_key: object) -> Callable[[str], bool]:
        keys = {old_key, new_key if isinstance(new_key, str) else None}
        if self.source == "cursor":
            scope = tuple(f"bubbleId:{k[len('composerData:'):]}:" for k in keys
                          if k and k.startswith("composerData:"))  # fmt: skip
            return lambda key: key in keys or (bool(scope) and key.startswith(scope))
        return lambda key: key in keys


def copy_cursor_fixture(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_fixture(*CURSOR_FIXTURE), path)


DB_CASES = {
    "cursor": DbCase(
        "cursor", CURSOR_REL, "cursorDiskKV", "key", "value", (), cursor_rows, copy_cursor_fixture
    ),
    "opencode": DbCase(
        "opencode",
        f"{OC_ROOT}/opencode.db",
        "message",
        "id",
        "data",
        ("session_id", "time_updated", "time_created"),
        opencode_rows,
        build_opencode_db,
    ),
}


@dataclass(frozen=True)
class RowEdit:
    """One column of one row changed: by a :class:`Mutation` of its text, or to an SQL value."""

    row: int
    column: str
    mutation: Mutation | None = None
    sql: str = ""
    suffix: str = ""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        how = repr(self.mutation) if self.mutation else self.sql or f"+{self.suffix!r}"
        return f"RowEdit(row #{self.row}, {self.column}: {how})"

    def apply(self, case: DbCase, db: Path) -> object:
        """Edit the database; returns the row's key afterwards (the old one if unchanged)."""
        rowid, key, value = case.rows()[self.row]
        if self.mutation is not None:
            values = [v for _, _, v in case.rows()]
            expr, param = "?", self.mutation.apply(values).decode("utf-8", "surrogateescape")
            with contextlib.suppress(UnicodeEncodeError):
                param.encode()
            if not _utf8(self.mutation.apply(values)):
                expr, param = "CAST(? AS TEXT)", self.mutation.apply(values)  # type: ignore[assignment]
        elif self.sql:
            _, expr, param = next(v for v in SQL_VALUES if v[0] == self.sql)
        else:
            expr, param = "?", key + self.suffix
        conn = sqlite3.connect(db, isolation_level=None)
        conn.text_factory = lambda b: b.decode("utf-8", "replace")
        try:
            conn.execute(f"UPDATE {case.table} SET {self.column} = {expr} WHERE rowid = ?",
                         (param, rowid))  # fmt: skip
            (new_key,) = conn.execute(
                f"SELECT {case.key_col} FROM {case.table} WHERE rowid = ?", (rowid,)
            ).fetchone()
        finally:
            conn.close()
        return new_key if not isinstance(new_key, bytes) else new_key.decode("utf-8", "replace")


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def row_edits(draw: st.DrawFn, case: DbCase) -> RowEdit:
    rows = case.rows()
    values = [v for _, _, v in rows]
    what = draw(st.sampled_from(["mutate"] * 4 + ["sql", "key", "other"]))
    if what == "mutate":
        m = draw(mutations(values))
        return RowEdit(m.base, case.value_col, mutation=m)
    row = draw(st.integers(0, len(rows) - 1))
    if what == "sql":
        return RowEdit(row, case.value_col, sql=draw(st.sampled_from([v[0] for v in SQL_VALUES])))
    if what == "key" or not case.other_cols:
        if draw(st.booleans()):
            return RowEdit(
                row, case.key_col, sql=draw(st.sampled_from(["NULL", "integer", "not-utf8-text"]))
            )
        return RowEdit(
            row, case.key_col, suffix=draw(st.sampled_from(["-x", "\n", ":", "\x00z", " "]))
        )
    column = draw(st.sampled_from(case.other_cols))
    return RowEdit(row, column, sql=draw(st.sampled_from([v[0] for v in SQL_VALUES])))


@pytest.mark.parametrize("name", sorted(DB_CASES))
@budget(25)
@given(data=st.data())
def test_bad_row_changes_no_unrelated_event(
    name: str, tmp_path: Path, template: Path, data: st.DataObject
) -> None:
    case = DB_CASES[name]
    edit = data.draw(row_edits(case), label="edit")
    with stores(tmp_path, template) as s:
        db = s.home / case.rel
        original = s.base / "original.db"
        case.build(original)
        write(db, original.read_bytes())
        base = s.new("base")
        base.ingest_all(case.source)
        edited = s.base / "edited.db"
        shutil.copyfile(original, edited)
        try:
            new_key = edit.apply(case, edited)
        except sqlite3.IntegrityError:  # e.g. NULL where the schema says NOT NULL
            assume(False)
            raise
        write(db, edited.read_bytes())
        mutated = s.new("mutated")
        mutated.ingest_all(case.source)
        for store in (base, mutated):
            check_store(store)
        ev_base, ev_bad = base.events(), mutated.events()
        assert ev_base, "the fixture database yields events"
        related = case.related(case.rows()[edit.row][1], new_key)
        unrelated = {k for k in ev_base if not related(k)}
        assert_unchanged(ev_base, ev_bad, unrelated, name)
        extra = {k for k in ev_bad.keys() - ev_base.keys() if not related(k)}
        assert not extra, f"{name}: events from nowhere: {short(sorted(extra))}"
        reread_is_idempotent(mutated, case.source, db, db=True)
        # The owner rewrites the database intact (a new file): every event is back.
        write(db, original.read_bytes())
        mutated.ingest_paths(db)
        check_store(mutated)
        assert_unchanged(
            ev_base, mutated.events(), set(ev_base), f"{name} after the rewrite", restored=True
        )


# ------------------------------------------------------------------------------------------
# random bytes and truncated documents/databases, for every layout


@dataclass(frozen=True)
class Layout:
    source: str
    rel: str
    kind: str  # lines | document | database
    whole: Callable[[Path], bytes] | None = None  # the intact file, for the truncation test


def _cursor_bytes(tmp: Path) -> bytes:
    return shared_fixture(*CURSOR_FIXTURE).read_bytes()


def _opencode_db_bytes(tmp: Path) -> bytes:
    path = tmp / "built-opencode.db"
    if not path.exists():
        build_opencode_db(path)
    return path.read_bytes()


LAYOUTS = {
    "claude": Layout("claude", LINE_CASES["claude"].rel, "lines"),
    "codex": Layout("codex", LINE_CASES["codex"].rel, "lines"),
    "gemini-jsonl": Layout("gemini", LINE_CASES["gemini-jsonl"].rel, "document"),
    "gemini-json": Layout(
        "gemini",
        GEMINI_JSON_REL,
        "document",
        lambda _: DOC_CASES["gemini-json"].build(gemini_doc()[1]),
    ),
    "cline": Layout("cline", CLINE_REL, "document", lambda _: json_array(cline_rows())),
    "opencode-json": Layout(
        "opencode",
        f"{OC_ROOT}/storage/message/ses_test001/msg_test001.json",
        "document",
        lambda _: fixture_bytes("opencode", "tokscale-msg_test001.json"),
    ),
    "cursor": Layout("cursor", CURSOR_REL, "database", _cursor_bytes),
    "opencode-db": Layout("opencode", f"{OC_ROOT}/opencode.db", "database", _opencode_db_bytes),
}

SQLITE_HEADER = b"SQLite format 3\x00"
random_lines = st.lists(st.binary(max_size=80) | JSON_VALUES.map(orjson.dumps), max_size=12).map(
    lambda lines: b"\n".join(lines)
)
random_files = st.one_of(
    st.binary(max_size=4096),
    random_lines,
    random_lines.map(lambda b: b + b"\n"),
    st.binary(max_size=4096).map(lambda b: SQLITE_HEADER + b),
)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@budget(10)
@given(blob=random_files)
def test_random_bytes(name: str, tmp_path: Path, template: Path, blob: bytes) -> None:
    """Random bytes where a source expects its file: nothing escapes, stats stay consistent."""
    layout = LAYOUTS[name]
    db = layout.kind == "database"
    with stores(tmp_path, template) as s:
        path = s.home / layout.rel
        store = ingest_once(s, "random", layout.source, path, blob)
        check_store(store, errors_allowed=db)
        if layout.kind == "lines":
            assert store.runs[0].bytes_read == blob.rfind(b"\n") + 1, "a partial line was read"
        reread_is_idempotent(store, layout.source, path, db=db)


TRUNCATABLE = sorted(n for n, layout in LAYOUTS.items() if layout.whole is not None)


@pytest.mark.parametrize("name", TRUNCATABLE)
@budget(10)
@given(data=st.data())
def test_truncated_then_whole(
    name: str, tmp_path: Path, template: Path, data: st.DataObject
) -> None:
    """Caught mid-write: what a cut file yields is right, and the whole file yields the rest."""
    layout = LAYOUTS[name]
    assert layout.whole is not None
    db = layout.kind == "database"
    with stores(tmp_path, template) as s:
        whole = layout.whole(s.base)
        cut = data.draw(st.integers(0, len(whole) - 1), label="cut at")
        path = s.home / layout.rel
        oneshot = ingest_once(s, "oneshot", layout.source, path, whole)
        check_store(oneshot)
        want = oneshot.events()
        assert want, "the intact file yields events"
        store = ingest_once(s, "cut", layout.source, path, whole[:cut])
        check_store(store, errors_allowed=db)
        got = store.events()
        assert got.keys() <= want.keys(), (
            f"a cut file yielded events from nowhere: {short(sorted(got.keys() - want.keys()))}"
        )
        if layout.kind == "document":
            assert_unchanged(want, got, set(got), f"{name} cut at {cut}")
        write(path, whole)
        store.ingest_paths(path)
        check_store(store, errors_allowed=db)
        assert store.events() == want, "the whole file after a cut != its one-shot ingest"


# ------------------------------------------------------------------------------------------
# the shared timestamp parser, against the plain datetime reading it replaced


_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?(Z|[+-]\d{2}:\d{2})", re.ASCII)


def reference_timestamp_ms(value: object) -> int | None:
    """The documented rule spelled out: the exact shape (a regular expression), a year from
    1970 to 2099, then one ``datetime.fromisoformat`` per value."""
    if not isinstance(value, str) or not _SHAPE.fullmatch(value):
        return None
    if not 1970 <= int(value[:4]) <= 2099:
        return None
    n = len(value)
    if n not in (20, 24, 25, 29) or value[10] != "T":
        return None
    body_end = 23 if n in (24, 29) else 19
    if body_end == 23 and value[19] != ".":
        return None
    zone = value[body_end:]
    if zone != "Z" and not (len(zone) == 6 and zone[0] in "+-" and zone[3] == ":"):
        return None
    try:
        dt = datetime.fromisoformat(value[:body_end] + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    return int(dt.replace(microsecond=0).timestamp()) * 1000 + dt.microsecond // 1000


_ODD = "0123456789" * 4 + "-:T.Z+ _x٣\u00b2"
_FIELD = st.text(alphabet=_ODD, min_size=1, max_size=3)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Mostly the accepted shape with one field off; sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet=_ODD, max_size=30))
    parts = [
        f"{draw(st.integers(0, 9999)):04d}",
        "-",
        f"{draw(st.integers(0, 13)):02d}",
        "-",
        f"{draw(st.integers(0, 32)):02d}",
        "T",
        f"{draw(st.integers(0, 25)):02d}",
        ":",
        f"{draw(st.integers(0, 61)):02d}",
        ":",
        f"{draw(st.integers(0, 61)):02d}",
        draw(st.sampled_from(["", ".000", f".{draw(st.integers(0, 999)):03d}", ".5", ",123"])),
        draw(st.sampled_from(["Z", "+00:00", "-07:00", "+05:30", "+14:00", "-23:59", "+24:00"])),
    ]
    if draw(st.booleans()):
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = draw(_FIELD)
    return "".join(parts)


@budget(300)
@given(value=timestamps())
def test_timestamp_parser_matches_fromisoformat(value: str) -> None:
    """Every source dates events with it: the fast path must agree with ``fromisoformat``."""
    assert parse_timestamp_ms(value) == reference_timestamp_ms(value), repr(value)


# ------------------------------------------------------------------------------------------
# pinned bugs: regression examples


OVERFLOW_REASON = (
    "Claude/Codex accept any JSON integer as a token count; from 2**63 (or a sum past it) the"
    " ledger's INSERT raises OverflowError and the whole file fails: every other event of the"
    " file is lost and the file is retried forever. Fix: bound counts in claude._uint and"
    " codex._usage (and/or reject out-of-range records at the ingest boundary)."
)


@pytest.mark.parametrize(
    ("source", "file", "line", "path", "raw"),
    [
        pytest.param(
            "claude",
            "ccusage-project-alpha-session-alpha-chat.jsonl",
            0,
            ("message", "usage", "input_tokens"),
            "i64-max+1",
            id="claude-input-2**63",
        ),
        pytest.param(
            "claude",
            "ccusage-project-alpha-session-alpha-chat.jsonl",
            1,
            ("message", "usage", "output_tokens"),
            "i64-max",
            id="claude-output-i64-max-sum-overflows",
        ),
        pytest.param(
            "codex",
            "ccusage-session-alpha.jsonl",
            1,
            ("payload", "info", "last_token_usage", "input_tokens"),
            "u64-max",
            id="codex-last-input-u64-max",
        ),
    ],
)
def test_pinned_huge_token_count_does_not_fail_the_file(
    source: str,
    file: str,
    line: int,
    path: tuple[str, ...],
    raw: str,
    tmp_path: Path,
    template: Path,
) -> None:
    case = next(c for c in LINE_CASES.values() if c.source == source)
    lines = fixture_lines(case.directory, file)
    bad = json_edit(orjson.loads(lines[line]), path, "set", raw)
    good = b"".join(x + b"\n" for x in lines)
    with stores(tmp_path, template) as s:
        file_path = case.path(s.home)
        base = ingest_once(s, "base", source, file_path, good + blank(bad) + b"\n")
        mutated = ingest_once(s, "mutated", source, file_path, good + bad + b"\n")
        check_store(base)
        expected = base.events()
        assert expected, "the fixture yields events"
        check_store(mutated)  # fails today: OverflowError fails the whole file
        assert_unchanged(expected, mutated.events(), set(expected), f"{source} huge count")


COST_REASON = (
    "Claude takes any finite JSON number as costUSD. Two events of 1e308 in one file/bucket"
    " make the summed costs inf; replacing both in one later batch subtracts inf, SQLite stores"
    " the NaN as NULL, a NOT NULL cost column (files.held_cost, agg_time.cost) raises"
    " IntegrityError, and ingest turns it into a StoreFault that escapes the ingest boundary:"
    " the daemon treats its store as failing and retries the same batch forever. Fix: bound"
    " costUSD in claude._record (e.g. |cost| <= 1e9, else Malformed)."
)


def test_pinned_huge_claude_cost_does_not_escape(tmp_path: Path, template: Path) -> None:
    case = LINE_CASES["claude"]
    lines = fixture_lines(case.directory, "ccusage-project-alpha-session-alpha-chat.jsonl")
    first = [orjson.loads(line) for line in lines[:2]]  # two replies, 2026-01-09, same bucket
    assert all("costUSD" in obj for obj in first)

    def variant(obj: dict[str, Any], cost: float, extra_output: int) -> bytes:
        obj = json.loads(json.dumps(obj))
        obj["costUSD"] = cost
        obj["message"]["usage"]["output_tokens"] += extra_output
        return _dumps(obj).encode() + b"\n"

    with stores(tmp_path, template) as s:
        path = case.path(s.home)
        store = s.new("ledger")
        write(path, b"".join(variant(obj, 1e308, 0) for obj in first))
        store.ingest_paths(path)
        check_store(store)
        # The agent streams larger totals for both replies: each replaces its event.
        append(path, b"".join(variant(obj, 0.5, 100) for obj in first))
        store.ingest_paths(path)  # raises StoreFault today
        check_store(store)
        assert len(store.events()) == 2


# Found by fuzzing: a re-read replaced a stored event only when prefer() saw a difference
# in values, and the stored event prefer() is given has no names; so a change of the model
# alone (a Cline row whose modelInfo arrives or is repaired later) or of the cost's
# provenance alone (a stored cost equal to the computed one) was never propagated.


def _damage_model(row: dict[str, Any]) -> None:
    row["modelInfo"] = "damaged"  # not an object: the row's model is unknown


def _damage_cost(row: dict[str, Any]) -> None:
    text = orjson.loads(row["text"])
    del text["cost"]  # priced by sufd instead: the same amount, another kind
    row["text"] = orjson.dumps(text).decode()


@pytest.mark.parametrize("damage", [_damage_model, _damage_cost], ids=["model", "cost-kind"])
def test_pinned_model_or_cost_kind_change_is_propagated(
    damage: Callable[[dict[str, Any]], None], tmp_path: Path, template: Path
) -> None:
    entries = cline_rows()
    index = next(i for i, e in enumerate(entries) if b'"api_req_started"' in e)
    row = orjson.loads(entries[index])
    damage(row)
    damaged = [*entries[:index], orjson.dumps(row), *entries[index + 1 :]]
    with stores(tmp_path, template) as s:
        path = s.home / CLINE_REL
        want = ingest_once(s, "oneshot", "cline", path, json_array(entries)).events()
        store = ingest_once(s, "store", "cline", path, json_array(damaged))
        assert store.events() != want, "the damage shows"
        write(path, json_array(entries))
        store.ingest_paths(path)
        check_store(store)
        assert store.events() == want


# ------------------------------------------------------------------------------------------
# the harness can fail: deliberately broken Claude parsers are caught


def _raises_on_bad_lines(self: ClaudeCode, line: bytes, offset: int, ctx: FileContext) -> Any:
    try:
        return ORIGINAL_CLAUDE_PARSE(self, line, offset, ctx)
    except Malformed as bad:
        raise ValueError(bad.reason) from None  # not Malformed: fails the whole file


def _leaks_into_next_line(self: ClaudeCode, line: bytes, offset: int, ctx: FileContext) -> Any:
    if vars(self).pop("skip_next", False):
        return None  # the line after a bad one loses its event
    try:
        return ORIGINAL_CLAUDE_PARSE(self, line, offset, ctx)
    except Malformed:
        vars(self)["skip_next"] = True
        raise


ORIGINAL_CLAUDE_PARSE = ClaudeCode.parse_line


@pytest.mark.parametrize(
    ("broken", "caught"),
    [
        (_raises_on_bad_lines, "failed the whole file"),
        (_leaks_into_next_line, "unrelated event .* vanished"),
    ],
)
def test_broken_parser_is_caught(
    broken: Callable[..., Any],
    caught: str,
    tmp_path: Path,
    template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = LINE_CASES["claude"]
    lines = fixture_lines(case.directory, "ccusage-project-alpha-session-alpha-chat.jsonl")
    cut_line = Mutation("cut", 0, pos=10).apply(lines)  # a partial line: Malformed
    with stores(tmp_path, template) as s:
        check_bad_line(case, lines, cut_line, 1, s)  # the real parser passes
    monkeypatch.setattr(ClaudeCode, "parse_line", broken)
    with stores(tmp_path, template) as s, pytest.raises(AssertionError, match=caught):
        check_bad_line(case, lines, cut_line, 1, s)


YEAR_9999_REASON = (
    "parse_timestamp_ms (sufd/sources/base.py, used by Claude, Codex, Gemini, Cursor) accepts"
    " any year up to 9999. One line dated 9999-12-31T23:59Z makes every non-UTC report raise"
    " OverflowError in zones.offset_s (year 10000 in Asia/Tokyo), and any event far from the"
    " others makes reports walk the whole span day by day (years 1970 and 9999 in one ledger:"
    " about 8 s of CPU per report). Fix: bound the year in parse_timestamp_ms (e.g. 1970-2099,"
    " else None, so the line is malformed), and make zones._segments skip spans without data."
)


def test_pinned_year_9999_does_not_break_reports(tmp_path: Path, template: Path) -> None:
    from zoneinfo import ZoneInfo

    from sufd.cli.report import ReportQuery, build_report

    case = LINE_CASES["claude"]
    lines = fixture_lines(case.directory, "ccusage-project-alpha-session-alpha-chat.jsonl")
    late = json_edit(orjson.loads(lines[0]), ("timestamp",), "set", "year-9999")
    late = late.replace(b"23:59:59.999Z", b"23:59:00.000Z")  # the last minute of year 9999
    with stores(tmp_path, template) as s:
        store = ingest_once(s, "store", "claude", case.path(s.home), late + b"\n")
        check_store(store)
        build_report(store.conn, ReportQuery("daily", ZoneInfo("Asia/Tokyo")))
