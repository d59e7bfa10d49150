"""Cursor source: real fixture #14, generated databases, and the real daemon beside a writer.

Expected values come from ``fixtures/real/SOURCES.md`` (#14), from the rows the tests (or
``tests/cursor_gen.py``) wrote, or from an independent SQL recount of the database. Databases
written while sufd reads are written by another process (``python -m tests.cursor_gen
writer``), as Cursor would: POSIX locks belong to a process, so an in-process writer would not
behave like Cursor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sufd.errors import SourceError
from sufd.prices.table import PriceTable
from sufd.settings import Paths, Settings
from sufd.sources import SOURCES
from sufd.sources import cursor as cursor_mod
from sufd.sources.base import FileContext, Record
from sufd.sources.cursor import Cursor
from tests.conftest import REPO, SufdEnv, shared_fixture
from tests.cursor_gen import (
    BASE_MS,
    Conversation,
    Expected,
    Row,
    create_db,
    encode_rows,
    generate,
    insert_rows,
    write_workspace,
)
from tests.daemon_harness import (
    Harness,
    wait_until,
)

_T = TypeVar("_T")
FIXTURE = ("cursor", "adameps-urpg_app-globalStorage-state.subset.vscdb")
LATENCY_S = 2.0
WRITER_BLOCK_S = 0.050
LIVE_CID = "c0ffee00-0000-4000-8000-000000000001"


# ------------------------------------------------------------------------------------------
# helpers


def _settings(home: Path, env: dict[str, str] | None = None) -> Settings:
    paths = Paths(*(home / n for n in ("c", "d", "s", "l", "r", "db")))
    return Settings(paths=paths, home=home, env=env or {}, sources={})


def _user_dir(home: Path) -> Path:
    return home / ".config" / "Cursor" / "User"


def _as_expected(records: list[Record]) -> dict[str, Expected]:
    return {
        r.key: Expected(r.key, r.ts_ms, r.session, r.project, r.model or "", r.input, r.output)
        for r in records
    }


def _read(src: Cursor, db: Path, ctx: FileContext) -> dict[str, Expected] | None:
    records = src.read_database(db, ctx)
    if records is None:
        return None
    assert all(r.estimated for r in records), "every Cursor event is an estimate"
    return _as_expected(records)


def _ledger(env: SufdEnv) -> dict[str, Expected]:
    """Every cursor event in the store (read-only), in the generator's shape."""
    if not env.db.exists():
        return {}
    conn = sqlite3.connect(f"file:{env.db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT e.key, e.ts, s.session, p.path, m.name, e.input, e.output, e.cost_kind"
            " FROM events e JOIN sessions s ON s.id = e.session_id"
            " JOIN projects p ON p.id = e.project_id JOIN models m ON m.id = e.model_id"
            " WHERE e.source = 'cursor'"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    assert all(r[7] == 3 for r in rows), "cost kind must be 'estimated' (3)"
    return {r[0]: Expected(*r[:7]) for r in rows}


def _file_errors(env: SufdEnv) -> list[str | None]:
    if not env.db.exists():
        return []
    conn = sqlite3.connect(f"file:{env.db}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in conn.execute("SELECT error FROM files WHERE source = 'cursor'")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _wait_ledger(h: Harness, expected: dict[str, Expected], timeout: float) -> None:
    def what() -> str:
        got = _ledger(h.env)
        diff = {k: (got.get(k), expected.get(k)) for k in set(got) | set(expected)}
        return f"ledger differs: {[v for v in diff.values() if v[0] != v[1]]}\n{h.diagnostics()}"

    _wait(lambda: _ledger(h.env) == expected, timeout, what)


def _wait(predicate: Callable[[], _T | None], timeout: float, what: Callable[[], str]) -> _T:
    return wait_until(predicate, timeout, interval=0.01, what=what)


def _cycles(h: Harness) -> int:
    """Ingest cycles the daemon has logged so far."""
    return len(h.log_events("ingest.cycle"))


def _report(env: SufdEnv, kind: str = "daily") -> dict[str, Any]:
    out = env.run("ctl", "report", kind, "--json", "--source", "cursor", timeout=60)
    data: dict[str, Any] = json.loads(out.stdout)
    return data


class Writer:
    """``python -m tests.cursor_gen writer``: a separate process writing like Cursor."""

    def __init__(self, db: Path, journal: str = "wal") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cursor_gen", "writer", str(db), "--journal", journal],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self._line())["ready"]
        self.seconds: list[float] = []  # each transaction, commit included

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"writer exited with {self.proc.poll()}"
        return line

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def reply(self) -> float:
        seconds = float(json.loads(self._line())["seconds"])
        self.seconds.append(seconds)
        return seconds

    def write(self, rows: list[Row]) -> float:
        self.send("write", rows=encode_rows(rows))
        return self.reply()

    def close(self) -> None:
        self.send("close")
        self.reply()
        assert self.proc.wait(10) == 0
        self._streams()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._streams()

    def _streams(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.fixture
def writers() -> Iterator[Callable[..., Writer]]:
    made: list[Writer] = []

    def make(db: Path, journal: str = "wal") -> Writer:
        made.append(Writer(db, journal))
        return made[-1]

    try:
        yield make
    finally:
        for w in made:
            w.kill()


def _script(
    steps: int, noise: int = 0, project: str = "cursor"
) -> list[tuple[list[Row], dict[str, Expected]]]:
    """Deterministic writer ops (as Cursor writes a chat) and the ledger expected after each."""
    conv = Conversation(LIVE_CID, BASE_MS, project)
    ops: list[tuple[list[Row], dict[str, Expected]]] = []
    expected: dict[str, Expected] = {}
    for i in range(steps):
        at = BASE_MS + 60_000 * (i + 1)
        user = conv.user(f"u-{i:04d}", f"question {i} " * (i + 1))
        row, exp = conv.assistant(f"a-{i:04d}", f"answer {i} " * (2 * i + 3), at, ts_style="iso")
        assert exp is not None
        expected = {**expected, exp.key: exp}
        ops.append(([user, row, conv.composer_row()], expected))
        # Tokens arrive later: the same bubble is written again (ON CONFLICT REPLACE).
        tokens = (1000 + 17 * i, 50 + i)
        row, exp = conv.assistant(
            f"a-{i:04d}", f"answer {i} " * (2 * i + 3), at, tokens=tokens, ts_style="iso", new=False
        )
        assert exp is not None
        expected = {**expected, exp.key: exp}
        ops.append(([row], expected))
    for n in range(noise):
        ops.append(([("ItemTable", f"workbench.state.{n % 5}", json.dumps({"n": n}))], expected))
    return ops


# ------------------------------------------------------------------------------------------
# roots, ownership


def test_roots_linux_honour_xdg_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cursor_mod, "PLATFORM", "linux")
    tail = Path("Cursor/User/globalStorage")
    assert Cursor().default_roots(_settings(tmp_path)) == [tmp_path / ".config" / tail]
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "x")}
    assert Cursor().default_roots(_settings(tmp_path, xdg)) == [
        tmp_path / "x" / tail,
        tmp_path / ".config" / tail,
    ]


def test_roots_macos_and_windows_through_the_seam(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cursor_mod, "PLATFORM", "darwin")
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "x")}
    assert Cursor().default_roots(_settings(tmp_path, xdg)) == [
        tmp_path / "Library" / "Application Support" / "Cursor" / "User" / "globalStorage"
    ]
    monkeypatch.setattr(cursor_mod, "PLATFORM", "win32")
    env = {"APPDATA": str(tmp_path / "Roaming")}
    assert Cursor().default_roots(_settings(tmp_path, env)) == [
        tmp_path / "Roaming" / "Cursor" / "User" / "globalStorage"
    ]


def test_registered_owns_db_and_wal_only_and_targets_the_db(tmp_path: Path) -> None:
    src = SOURCES["cursor"]
    assert isinstance(src, Cursor) and src.kind == "database"
    g = tmp_path / "globalStorage"
    assert src.owns(g / "state.vscdb") and src.owns(g / "state.vscdb-wal")
    assert not src.owns(g / "state.vscdb-shm")  # our own reads touch -shm: never a trigger
    assert not src.owns(g / "state.vscdb-journal")
    assert not src.owns(tmp_path / "workspaceStorage" / "ab12" / "state.vscdb")
    assert src.target(g / "state.vscdb-wal") == g / "state.vscdb"
    assert src.target(g / "state.vscdb") == g / "state.vscdb"


# ------------------------------------------------------------------------------------------
# the real fixture (#14)


def test_real_fixture_in_process(tmp_path: Path) -> None:
    db = tmp_path / "globalStorage" / "state.vscdb"
    db.parent.mkdir()
    shutil.copyfile(shared_fixture(*FIXTURE), db)
    src, ctx = Cursor(), FileContext(db, db.parent)
    records = src.read_database(db, ctx)
    assert records is not None and len(records) == 4  # the 4 assistant (type 2) bubbles
    assert sum(r.input for r in records) == 25_692
    assert sum(r.output for r in records) == 1_385
    # No createdAt on these bubbles: timingInfo.clientRpcSendTime is the time.
    assert sorted(r.ts_ms for r in records) == [
        1757730155487,
        1757730771179,
        1757730928824,
        1757793969852,
    ]
    assert {r.session for r in records} == {
        "04fa7261-6802-4618-be42-7c4661b9821d",
        "03ddeba4-e704-40e5-a8a3-19223801e5ae",
    }
    assert all(r.estimated and r.model == "cursor-auto" for r in records)
    assert {r.price_model for r in records} == {"claude-sonnet-4-5"}
    assert {r.project for r in records} == {"cursor"}  # no workspaceStorage beside it
    assert src.read_database(db, ctx) is None  # unchanged: not even opened


@pytest.mark.integration
def test_real_fixture_ingest_and_report(sufd_env: SufdEnv) -> None:
    g = _user_dir(sufd_env.home) / "globalStorage"
    g.mkdir(parents=True)
    shutil.copyfile(shared_fixture(*FIXTURE), g / "state.vscdb")
    stats = json.loads(sufd_env.run("ingest", "--json").stdout)
    assert stats["errors"] == [] and stats["events_new"] == 4
    report = _report(sufd_env)
    totals = report["totals"]
    assert totals["events"] == 4
    assert totals["inputTokens"] == 25_692 and totals["outputTokens"] == 1_385
    assert totals["estimatedEvents"] == totals["events"]
    assert totals["unpricedEvents"] == 0
    # claude-sonnet-4-5 at $3 / $15 per Mtok (formats.md §1.2), no cache classes.
    assert totals["totalCost"] == pytest.approx(25_692 * 3e-6 + 1_385 * 15e-6, abs=1e-9)
    assert [d["period"] for d in report["daily"]] == ["2025-09-13"]
    again = json.loads(sufd_env.run("ingest", "--json").stdout)
    assert again["events_new"] == 0 and again["files_read"] == 0


# ------------------------------------------------------------------------------------------
# generated databases, in process


def test_generated_db_yields_exactly_the_written_events(tmp_path: Path) -> None:
    corpus = generate(tmp_path / "User", composers=12, turns=6)
    src, ctx = Cursor(), FileContext(corpus.db, corpus.db.parent)
    got = _read(src, corpus.db, ctx)
    assert got == corpus.expected
    projects = {e.project for e in got.values()}
    assert projects == {"/home/dev/alpha", "/home/dev/beta proj", "cursor"}
    models = {e.model for e in got.values()}
    assert {"cursor-auto", "claude-4.5-sonnet", "gpt-5"} <= models
    # Nothing beside the closed database was created by reading it.
    assert sorted(p.name for p in corpus.db.parent.iterdir()) == ["state.vscdb"]
    assert _read(src, corpus.db, ctx) is None


def test_estimation_rule_and_no_text_kept(tmp_path: Path) -> None:
    db = tmp_path / "globalStorage" / "state.vscdb"
    conv = Conversation("cid-1", BASE_MS, model="claude-4.5-sonnet-thinking")
    u1, u2 = "Ünïcode question one 🙂", "and a second user bubble"
    rows = [conv.user("u1", u1), conv.user("u2", u2)]
    text = "A reply of forty-one characters, exactly."
    row, _ = conv.assistant("a1", text, BASE_MS + 5, ts_style="iso")
    rows.append(row)
    tool, _ = conv.assistant("a2", "tool call", BASE_MS + 6)  # no user bubble in between
    rows += [tool, conv.composer_row()]
    conn = create_db(db)
    insert_rows(conn, rows)
    conn.close()
    records = Cursor().read_database(db, FileContext(db, db.parent))
    assert records is not None
    by_key = {r.key: r for r in records}
    first, second = by_key["bubbleId:cid-1:a1"], by_key["bubbleId:cid-1:a2"]
    assert first.input == math.ceil((len(u1) + len(u2)) / 4) == 12  # code points, not bytes
    assert first.output == math.ceil(len(text) / 4) == 11
    assert (second.input, second.output) == (0, math.ceil(len("tool call") / 4))
    assert first.ts_ms == BASE_MS + 5 and second.ts_ms == BASE_MS + 6
    assert first.model == "claude-4.5-sonnet-thinking"
    assert first.price_model == "claude-sonnet-4-5-thinking"
    dumped = repr(records)
    assert not any(t in dumped for t in (u1, u2, text, "tool call"))


def test_cost_fallback_and_prefer() -> None:
    prices, src = PriceTable.bundled(), Cursor()
    base = Record(
        key="k", ts_ms=1, session="s", project="p", model="composer-1",
        price_model="composer-1", pricing="anthropic", input=1000, output=100, total=1100,
    )  # fmt: skip
    assert prices.lookup("composer-1") is None
    sonnet = 1000 * 3e-6 + 100 * 15e-6
    assert src.cost(base, prices) == pytest.approx(sonnet)  # unknown model: sonnet-4-5 prices
    gpt5 = dataclasses.replace(base, model="gpt-5", price_model="gpt-5")
    assert src.cost(gpt5, prices) == pytest.approx(1000 * 1.25e-6 + 100 * 10e-6)
    # Cursor's "claude-4.1-opus" is looked up in LiteLLM's order, claude-opus-4-1 ($15/$75).
    opus = dataclasses.replace(base, price_model=cursor_mod._price_name("claude-4.1-opus"))
    assert src.cost(opus, prices) == pytest.approx(1000 * 15e-6 + 100 * 75e-6)
    later = dataclasses.replace(base, input=1200, total=1300)
    assert src.prefer(later, 1.0, base, 1.0)
    assert not src.prefer(base, 1.0, base, 1.0)
    assert src.prefer(base, 2.0, base, 1.0)


def test_watermark_sees_new_and_replaced_bubbles_only(
    tmp_path: Path, writers: Callable[..., Writer]
) -> None:
    db = tmp_path / "globalStorage" / "state.vscdb"
    w = writers(db)
    ops = _script(4)
    src, ctx = Cursor(), FileContext(db, db.parent)
    w.write(ops[0][0])
    assert _read(src, db, ctx) == ops[0][1]
    assert (db.parent / "state.vscdb-wal").exists()  # the writer is open: normal WAL read
    hwm = ctx.state["hwm"]
    for rows, expected in ops[1:]:
        w.write(rows)
        got = _read(src, db, ctx)
        assert got is not None
        # Only what this op wrote comes back, with its latest values.
        written = {k for _, k, _ in rows if k.startswith("bubbleId:")}
        assert got == {k: expected[k] for k in written if k in expected}
        assert ctx.state["hwm"] > hwm and ctx.state["reads"] > 0  # incremental, not full
        hwm = ctx.state["hwm"]
    assert src.read_database(db, ctx) is None


def test_full_check_rules(
    tmp_path: Path, writers: Callable[..., Writer], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "globalStorage" / "state.vscdb"
    w = writers(db)
    ops = _script(3)
    src, ctx = Cursor(), FileContext(db, db.parent)
    w.write(ops[0][0])
    _read(src, db, ctx)
    key = next(iter(ops[0][1]))
    # An in-place UPDATE keeps the rowid: the watermark cannot see it ...
    value = json.dumps({"type": 2, "tokenCount": {"inputTokens": 7, "outputTokens": 3}})
    conn = sqlite3.connect(db, timeout=5)  # a short-lived second writer for the UPDATE
    conn.execute("UPDATE cursorDiskKV SET value = ? WHERE key = ?", (value, key))
    conn.commit()
    conn.close()
    assert _read(src, db, ctx) == {}
    # ... the periodic full check does (every FULL_EVERY_READS reads).
    monkeypatch.setattr(cursor_mod, "FULL_EVERY_READS", ctx.state["reads"] + 1)
    w.write([("ItemTable", "poke", "1")])
    got = _read(src, db, ctx)
    assert got is not None and (got[key].input, got[key].output) == (7, 3)
    assert ctx.state["reads"] == 0
    monkeypatch.setattr(cursor_mod, "FULL_EVERY_READS", 500)
    # A deleted tail whose rowid is reused by another key triggers a full check.
    w.write(ops[1][0])
    _read(src, db, ctx)
    top_key = ctx.state["hwm_key"]
    conn = sqlite3.connect(db, timeout=5)
    conn.execute("DELETE FROM cursorDiskKV WHERE key = ?", (top_key,))
    conn.execute("INSERT INTO cursorDiskKV VALUES ('zzz:other', '{}')")
    conn.commit()
    conn.close()
    _read(src, db, ctx)
    assert ctx.state["reads"] == 0, "rowid reuse must force a full check"
    # The max rowid going down (VACUUM renumbering) triggers one too.
    w.write(ops[2][0])
    _read(src, db, ctx)
    conn = sqlite3.connect(db, timeout=5)
    conn.execute("DELETE FROM cursorDiskKV WHERE rowid > 3")
    conn.commit()
    conn.close()
    assert _read(src, db, ctx) is not None and ctx.state["reads"] == 0
    # The same rows in a new file (another inode) are read again from the start.
    w.write(ops[0][0])
    w.write(ops[1][0])
    assert _read(src, db, ctx) == ops[1][1]
    w.close()
    copy = db.with_name("copy")
    shutil.copyfile(db, copy)
    os.replace(copy, db)
    assert _read(src, db, ctx) == ops[1][1] and ctx.state["reads"] == 0


def test_locked_database_raises_source_error_then_recovers(
    tmp_path: Path, writers: Callable[..., Writer]
) -> None:
    db = tmp_path / "globalStorage" / "state.vscdb"
    w = writers(db, "delete")  # rollback journal: an EXCLUSIVE writer keeps readers out
    ops = _script(2)
    w.write(ops[0][0])
    src, ctx = Cursor(), FileContext(db, db.parent)
    assert _read(src, db, ctx) == ops[0][1]
    state = dict(ctx.state)
    w.send("hold", rows=encode_rows(ops[1][0]), more=encode_rows(ops[2][0]), seconds=1.0)
    time.sleep(0.3)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="database is locked"):
        src.read_database(db, ctx)
    assert time.monotonic() - t0 < 0.5  # a short busy timeout, not a wait
    assert ctx.state == state  # the watermark did not move
    assert w.reply() >= 1.0
    # Both the bubble committed just before the lock and the one written under it.
    assert _read(src, db, ctx) == ops[2][1]


def test_db_without_cursordiskkv_is_an_error_not_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "globalStorage" / "state.vscdb"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)")
    conn.close()
    with pytest.raises(SourceError, match="no cursorDiskKV"):
        Cursor().read_database(db, FileContext(db, db.parent))


@pytest.mark.integration
def test_db_without_cursordiskkv_is_recorded_by_ingest(sufd_env: SufdEnv) -> None:
    g = _user_dir(sufd_env.home) / "globalStorage"
    g.mkdir(parents=True)
    conn = sqlite3.connect(g / "state.vscdb")
    conn.execute("CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)")
    conn.close()
    stats = json.loads(sufd_env.run("ingest", "--json").stdout)
    assert [e["path"] for e in stats["errors"]] == [str(g / "state.vscdb")]
    assert "no cursorDiskKV" in stats["errors"][0]["error"]
    assert _file_errors(sufd_env) == [stats["errors"][0]["error"]]
    report = json.loads(sufd_env.run("ctl", "report", "daily", "--json").stdout)
    assert report["totals"]["events"] == 0


# ------------------------------------------------------------------------------------------
# full-size generated corpus through sufd ingest, against an independent recount


@pytest.mark.integration
def test_full_size_generated_corpus_reconciles(sufd_env: SufdEnv) -> None:
    corpus = generate(_user_dir(sufd_env.home), composers=200, turns=25, padding=400)
    # Independent recount with SQLite's own JSON functions over the raw rows.
    conn = sqlite3.connect(f"file:{corpus.db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT key, json_extract(value, '$.tokenCount.inputTokens'),"
            " json_extract(value, '$.tokenCount.outputTokens') FROM cursorDiskKV"
            " WHERE key LIKE 'bubbleId:%' AND instr(key, char(10)) = 0"
            " AND hex(substr(value, 1, 1)) = '7B' AND json_valid(value)"
            " AND json_extract(value, '$.type') = 2"
        ).fetchall()
    finally:
        conn.close()
    real = {k: (i, o) for k, i, o in rows if i or o}
    assert len(rows) == corpus.bubble_rows // 2  # every assistant bubble, none of the extras
    assert all((corpus.expected[k].input, corpus.expected[k].output) == v for k, v in real.items())
    estimated = [e for k, e in corpus.expected.items() if k not in real]
    assert len(real) > 1000 and len(estimated) > 1000
    stats = json.loads(sufd_env.run("ingest", "--json", timeout=120).stdout)
    assert stats["errors"] == []
    report = _report(sufd_env)
    totals = report["totals"]
    assert totals["events"] == len(real) + len(estimated)
    assert totals["inputTokens"] == sum(i for i, _ in real.values()) + sum(
        e.input for e in estimated
    )
    assert totals["outputTokens"] == sum(o for _, o in real.values()) + sum(
        e.output for e in estimated
    )
    assert totals["estimatedEvents"] == totals["events"]
    days: dict[str, int] = {}
    for e in corpus.expected.values():
        day = time.strftime("%Y-%m-%d", time.gmtime(e.ts_ms // 1000))
        days[day] = days.get(day, 0) + e.input + e.output
    assert {d["period"]: d["totalTokens"] for d in report["daily"]} == days
    assert _ledger(sufd_env) == corpus.expected


@pytest.mark.integration
def test_full_size_variant_of_the_real_fixture_reconciles(sufd_env: SufdEnv) -> None:
    """Fixture #14's 10 rows copied into 400 composers (new ids, tokens scaled, times
    shifted by 5 h each), checked against a recount of the values written here."""
    g = _user_dir(sufd_env.home) / "globalStorage"
    g.mkdir(parents=True)
    db = g / "state.vscdb"
    shutil.copyfile(shared_fixture(*FIXTURE), db)
    conn = sqlite3.connect(db)
    base = conn.execute("SELECT key, value FROM cursorDiskKV").fetchall()
    composers = {k.split(":")[1] for k, _ in base}
    assert len(base) == 10 and len(composers) == 2  # SOURCES.md #14
    days: dict[str, list[int]] = {}
    copies, events, tin, tout = 200, 0, 0, 0
    for k in range(copies + 1):  # copy 0 is the fixture itself, as it is
        shift, scale = k * 5 * 3_600_000, 1 + k % 7
        rows = []
        for key, value in base:
            old = key.split(":")[1]
            new = old if k == 0 else f"{old[:-12]}{k:012d}"
            doc = json.loads(value)
            if key.startswith("composerData:"):
                doc["composerId"] = new
                doc["createdAt"] += shift
            elif doc.get("type") == 2:
                tc = doc["tokenCount"]
                tc["inputTokens"] *= scale
                tc["outputTokens"] *= scale
                doc["timingInfo"]["clientRpcSendTime"] += shift
                day = time.strftime(
                    "%Y-%m-%d", time.gmtime(doc["timingInfo"]["clientRpcSendTime"] // 1000)
                )
                slot = days.setdefault(day, [0, 0, 0])
                slot[0] += 1
                slot[1] += tc["inputTokens"]
                slot[2] += tc["outputTokens"]
                events, tin, tout = events + 1, tin + tc["inputTokens"], tout + tc["outputTokens"]
            rows.append((key.replace(old, new), json.dumps(doc)))
        if k:
            conn.executemany("INSERT INTO cursorDiskKV (key, value) VALUES (?, ?)", rows)
    conn.commit()
    conn.close()
    assert events == 4 * (copies + 1)
    stats = json.loads(sufd_env.run("ingest", "--json", timeout=120).stdout)
    assert stats["errors"] == [] and stats["events_new"] == events
    report = _report(sufd_env)
    totals = report["totals"]
    assert (totals["events"], totals["inputTokens"], totals["outputTokens"]) == (
        events,
        tin,
        tout,
    )
    assert totals["estimatedEvents"] == events
    # Auto ("default") is priced as claude-sonnet-4-5, $3 / $15 per Mtok (formats.md §1.2, §4.3)
    assert totals["totalCost"] == pytest.approx(tin * 3e-6 + tout * 15e-6, rel=1e-9)
    got = {d["period"]: [d["events"], d["inputTokens"], d["outputTokens"]] for d in report["daily"]}
    assert got == days


# ------------------------------------------------------------------------------------------
# the real daemon beside a writer


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_live_new_and_updated_bubbles_within_2s_writer_never_blocked(
    harness: Harness, writers: Callable[..., Writer], journal: str
) -> None:
    """WAL is what Cursor uses; a rollback-journal DB is the case where readers can block."""
    h = harness
    h.daemon_env["SUFD_DEBOUNCE_MS"] = "20"
    user = _user_dir(h.home)
    write_workspace(user, "ws1", "file:///home/dev/live", [LIVE_CID], key="composer.composerData")
    ops = _script(6, noise=150, project="/home/dev/live")
    alone = writers(h.home.parent / "alone" / "state.vscdb", journal)  # nobody reads
    for rows, _ in ops:
        alone.write(rows)
        time.sleep(0.005)
    w = writers(user / "globalStorage" / "state.vscdb", journal)
    w.write(ops[0][0])
    h.start()
    _wait_ledger(h, ops[0][1], 10)
    latencies = []
    for rows, expected in ops[1:12]:
        w.write(rows)
        t0 = time.monotonic()
        _wait_ledger(h, expected, LATENCY_S)
        latencies.append(time.monotonic() - t0)
    # A burst of small transactions (as Cursor writes UI state) while sufd reads repeatedly.
    cycles = _cycles(h)
    burst = []
    for rows, _ in ops[12:]:
        burst.append(w.write(rows))
        time.sleep(0.01)
    reads = _cycles(h) - cycles
    _wait_ledger(h, ops[-1][1], LATENCY_S)
    worst = max(w.seconds)
    print(
        f"\ncursor live ({journal}): ingest latency max {max(latencies) * 1000:.0f} ms;"
        f" writer transaction max {worst * 1000:.1f} ms over {len(w.seconds)} transactions"
        f" ({len(burst)} in a burst during which sufd read {reads} times);"
        f" the same writer alone: max {max(alone.seconds) * 1000:.1f} ms"
    )
    assert reads >= 5, "sufd should have read the database repeatedly during the burst"
    assert worst < WRITER_BLOCK_S, f"writer blocked {worst * 1000:.1f} ms"
    assert _file_errors(h.env) == [None]


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_live_locked_database_error_then_ingested(
    harness: Harness, writers: Callable[..., Writer], journal: str
) -> None:
    """The writer commits, then at once holds the lock 1 s (WAL: ``locking_mode=EXCLUSIVE``,
    since a WAL ``BEGIN EXCLUSIVE`` does not keep readers out; rollback: ``BEGIN EXCLUSIVE``)."""
    h = harness
    w = writers(_user_dir(h.home) / "globalStorage" / "state.vscdb", journal)
    ops = _script(2)
    w.write(ops[0][0])
    h.start()
    _wait_ledger(h, ops[0][1], 10)
    time.sleep(0.5)
    w.send("hold", rows=encode_rows(ops[1][0]), more=encode_rows(ops[2][0]), seconds=1.0)
    errors = _wait(
        lambda: [e for e in _file_errors(h.env) if e and "locked" in e],
        1.0,
        lambda: f"no lock error recorded: {_file_errors(h.env)}\n{h.diagnostics()}",
    )
    assert "database is locked" in errors[0]
    assert w.reply() >= 1.0
    final = ops[2][1]
    _wait(
        lambda: _ledger(h.env) == final and _file_errors(h.env) == [None],
        LATENCY_S,
        lambda: f"{_ledger(h.env)} / {_file_errors(h.env)}\n{h.diagnostics()}",
    )


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_live_lock_that_ends_without_a_write_is_retried(
    harness: Harness, writers: Callable[..., Writer], journal: str
) -> None:
    """As above, but the writer rolls back under the lock: no change marks its end, so only a
    retry by sufd itself ingests the bubble committed just before the lock."""
    h = harness  # default reconcile interval
    w = writers(_user_dir(h.home) / "globalStorage" / "state.vscdb", journal)
    ops = _script(2)
    w.write(ops[0][0])
    h.start()
    try:  # preconditions: a failure here is a real failure, not the expected one
        _wait_ledger(h, ops[0][1], 10)
        time.sleep(0.5)
        w.send("hold", rows=encode_rows(ops[1][0]), more=encode_rows(ops[2][0]), seconds=1.0,
               rollback=True)  # fmt: skip
        _wait(
            lambda: [e for e in _file_errors(h.env) if e and "locked" in e],
            1.0,
            lambda: f"no lock error recorded: {_file_errors(h.env)}\n{h.diagnostics()}",
        )
        assert w.reply() >= 1.0
    except AssertionError as exc:
        pytest.fail(f"precondition: {exc}")
    _wait(
        lambda: _ledger(h.env) == ops[1][1] and _file_errors(h.env) == [None],
        LATENCY_S,
        lambda: f"not retried: {_ledger(h.env)} / {_file_errors(h.env)}\n{h.diagnostics()}",
    )


# strace -y lines: `PID openat(AT_FDCWD</cwd>, "/path", O_RDONLY|O_CLOEXEC) = 17</path>`
_OPEN = re.compile(r'^\d+ +open(?:at)?\((?:AT_FDCWD[^,]*, )?"([^"]+)", ([A-Z_|]+)')
_WRITEISH = re.compile(r"^\d+ +(write|pwrite64|ftruncate)\(\d+<([^>]+)>")
_UNLINK = re.compile(r'^\d+ +(unlink|unlinkat|truncate|rename\w*)\((?:AT_FDCWD[^,]*, )?"([^"]+)"')


def _run_script(
    db: Path,
    ops: list[tuple[list[Row], dict[str, Expected]]],
    after: Callable[[dict[str, Expected]], None] | None = None,
) -> None:
    """Run the writer over ``ops`` then checkpoint and close; ``after`` runs after each op."""
    w = Writer(db)
    try:
        for rows, expected in ops:
            w.write(rows)
            if after is not None:
                after(expected)
        w.close()
    finally:
        w.kill()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_live_db_and_wal_bytes_identical_and_never_opened_writable(
    tmp_path: Path, harness: Harness
) -> None:
    ops = _script(5, noise=20)
    alone = tmp_path / "alone" / "globalStorage" / "state.vscdb"
    _run_script(alone, ops)
    wal_alone = alone.with_name("state.vscdb-wal")

    h = harness
    h.daemon_env["SUFD_DEBOUNCE_MS"] = "20"
    db = _user_dir(h.home) / "globalStorage" / "state.vscdb"
    db.parent.mkdir(parents=True)
    use_strace = shutil.which("strace") is not None
    trace = tmp_path / "strace.txt"
    if use_strace:
        calls = "openat,open,write,pwrite64,ftruncate,truncate,unlink,unlinkat,rename,renameat2"
        h.launcher = ["strace", "-f", "-qq", "-y", "-e", f"trace={calls}", "-o", str(trace)]
        h.launcher_forks = True  # the daemon is strace's child: its pid comes from hello
    d = h.start()
    samples: list[tuple[str, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_fds, args=(d.pid, db, samples, stop), daemon=True)
    sampler.start()
    try:
        _run_script(db, ops, after=lambda expected: _wait_ledger(h, expected, LATENCY_S))
        wal_after_close = db.with_name("state.vscdb-wal").exists()
        time.sleep(1.0)  # sufd sees the checkpointed db change and reads it once more
    finally:
        stop.set()
        sampler.join(5)
    wal = db.with_name("state.vscdb-wal")
    assert db.read_bytes() == alone.read_bytes(), "the database differs from the writer's own"
    wal_bytes = wal.read_bytes() if wal.exists() else b""
    assert wal_bytes == (wal_alone.read_bytes() if wal_alone.exists() else b"")
    assert wal.exists() == wal_after_close, "sufd created (or removed) the -wal"
    assert _ledger(h.env) == ops[-1][1]
    # Every fd sufd had on the database file was read-only.
    assert all(flags & os.O_ACCMODE == os.O_RDONLY for path, flags in samples if path == str(db))
    if not use_strace:
        return
    h.kill(d)  # strace flushes its log as the tracee dies
    opens, bad = [], []
    for line in trace.read_text(errors="replace").splitlines():
        if (m := _OPEN.match(line)) and m[1].startswith(str(db)):
            opens.append((m[1], m[2]))
        if (m := _WRITEISH.match(line)) and m[2] in (str(db), f"{db}-wal"):
            bad.append(line)
        if (m := _UNLINK.match(line)) and m[2] in (str(db), f"{db}-wal"):
            bad.append(line)
    db_opens = [flags for path, flags in opens if path == str(db)]
    assert db_opens, "strace saw no open of the database"
    assert all("O_RDONLY" in f and "O_CREAT" not in f for f in db_opens), db_opens
    assert not bad, f"sufd wrote to, truncated or unlinked the database or its -wal: {bad}"
    wal_flags = sorted({f for path, f in opens if path == f"{db}-wal"})
    print(f"\ncursor fds: db opened {len(db_opens)}x {sorted(set(db_opens))}; -wal {wal_flags}")


def _sample_fds(pid: int, db: Path, out: list[tuple[str, int]], stop: threading.Event) -> None:
    """Poll ``/proc/<pid>/fd`` of the daemon for fds on the Cursor files, with their flags."""
    while not stop.is_set():
        if not Path(f"/proc/{pid}/fd").is_dir():
            time.sleep(0.01)
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith(str(db)):
                        info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                        if m := re.search(r"flags:\s*(\d+)", info):
                            out.append((target, int(m[1], 8)))
        time.sleep(0.0005)
