"""OpenCode / Kilo CLI source: real fixtures, rules, watermark, corpus, parity, a live daemon.

Expected numbers come from ``fixtures/real/SOURCES.md`` (#12, #13), from values computed here,
from the generator's recount (``tests/gen_gemini_opencode.py``) or from ccusage 20.0.24 (parity).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from sufd.prices.lookup import opencode_candidates
from sufd.prices.table import PriceTable
from sufd.sources import SOURCES
from sufd.sources import opencode as oc
from sufd.sources.base import FileContext, Record
from sufd.sources.opencode import KiloCli, OpenCode
from tests.ccusage import run_ccusage
from tests.conftest import SufdEnv, make_env, shared_fixture
from tests.daemon_harness import (
    Harness,
    wait_until,
)
from tests.gen_gemini_opencode import (
    Expected,
    Spec,
    assistant,
    create_opencode_db,
    generate_opencode,
    insert_message,
)
from tests.test_source_gemini import TOKENS, ZONES, compare, events

SRC, KILO = OpenCode(), KiloCli()
PRICES = PriceTable.bundled()
T = 1_772_445_600_000  # 2026-03-02T10:00:00Z
NOW = int(time.time() * 1000) // 1000 * 1000  # unfinished messages are tracked for 3 days
TOK = {"input": 1000, "output": 500, "reasoning": 0, "cache": {"read": 200, "write": 100}}


def data_dir(home: Path, name: str = "opencode") -> Path:
    return home / ".local" / "share" / name


def report(env: SufdEnv, source: str = "opencode", zone: str = "UTC") -> dict[str, Any]:
    out = env.run("ctl", "report", "daily", "--json", "--source", source, "--timezone", zone)
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def write_json(home: Path, msg: dict[str, Any]) -> Path:
    folder = data_dir(home) / "storage" / "message" / str(msg.get("sessionID", "s"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{msg.get('id', 'x')}.json"
    path.write_text(json.dumps(msg))
    return path


# ------------------------------------------------------------------------------------------
# registry, paths


def test_registered_database_sources_and_owned_paths(tmp_path: Path) -> None:
    assert isinstance(SOURCES["opencode"], OpenCode) and isinstance(SOURCES["kilo-cli"], KiloCli)
    assert SRC.kind == KILO.kind == "database"
    root = tmp_path
    assert SRC.owns(root / "opencode.db") and SRC.owns(root / "opencode-beta.db-wal")
    assert SRC.owns(root / "storage" / "message" / "s" / "m.json")
    assert not SRC.owns(root / "storage" / "part" / "m" / "p.json")
    assert SRC.target(root / "opencode.db-wal") == root / "opencode.db"
    assert KILO.owns(root / "kilo.db") and not KILO.owns(root / "opencode.db")
    assert not KILO.owns(root / "storage" / "message" / "s" / "m.json")
    (root / "opencode-b.db").write_bytes(b"")
    (root / "opencode-a.db").write_bytes(b"")
    assert SRC.database(root) == root / "opencode-a.db"
    (root / "opencode.db").write_bytes(b"")
    assert SRC.database(root) == root / "opencode.db"


def test_candidates() -> None:
    assert opencode_candidates("claude-sonnet-4.5", "github-copilot") == [
        "claude-sonnet-4.5",
        "claude-sonnet-4-5",
        "github_copilot/claude-sonnet-4.5",
        "github_copilot/claude-sonnet-4-5",
    ]
    assert opencode_candidates("claude-opus-45", None) == ["claude-opus-45", "claude-opus-4-5"]
    assert opencode_candidates("gemini-3-pro-high", "unknown") == ["gemini-3-pro-preview"]


# ------------------------------------------------------------------------------------------
# mapping rules


def test_mapping_rules_opencode_and_kilo() -> None:
    def rec(src: OpenCode, **over: Any) -> Record | None:
        msg = assistant("m", "s", T, "anthropic", "claude-sonnet-4-5", TOK) | over
        return src.record(msg, "m", "s", None)

    r = rec(SRC)
    assert r is not None and (r.input, r.output, r.cache_write_5m, r.cache_read, r.total) == (
        1000,
        500,
        100,
        200,
        1800,
    )
    assert SRC.cost(r, PRICES) == pytest.approx(0.010935)
    assert r.project == "/work/proj" and r.group == "m"
    # reasoning is priced as output and counted in the total; a larger total adds the rest
    t2 = TOK | {"reasoning": 300, "total": 2500}  # 2500 - (1000+500+100+200+300) = 400 more
    r = rec(SRC, tokens=t2)
    assert r is not None and (r.output, r.extra_output, r.total) == (500, 300 + 400, 2500)
    r = rec(SRC, tokens={"input": 1000, "output": 0, "total": 2000})
    assert r is not None and (r.output, r.extra_output) == (1000, 0)
    # only non-negative integers are tokens
    r = rec(SRC, tokens={"input": 1000.5, "output": -3, "cache": {"read": "7"}, "reasoning": 2})
    assert r is not None and (r.input, r.output, r.cache_read, r.total) == (0, 0, 0, 2)
    assert rec(SRC, tokens={"input": 0, "output": 0}) is None
    assert rec(SRC, providerID="") is None and rec(SRC, modelID=" ") is None
    # stored cost: > 0 only (OpenCode); an object is ignored
    assert rec(SRC, cost=0.5).stored_cost == 0.5  # type: ignore[union-attr]
    assert rec(SRC, cost={"input": 1}).stored_cost is None  # type: ignore[union-attr]
    assert rec(SRC, cost=-1).stored_cost is None  # type: ignore[union-attr]
    # time.created: a non-integer dates the message 1970-01-01 (OpenCode) or drops it (Kilo)
    assert rec(SRC, time={"created": 1.5}).ts_ms == 0  # type: ignore[union-attr]
    assert rec(KILO, time={"created": 1.5}) is None
    assert rec(KILO, cost=0).stored_cost == 0.0  # type: ignore[union-attr]
    assert rec(KILO, providerID="") is not None and rec(KILO, role="user") is None
    assert rec(SRC, role="user") is not None


def test_db_record_wins_over_json_either_order() -> None:
    msg = assistant("m", "s", T, "anthropic", "claude-sonnet-4-5", TOK)
    db_rec = SRC.record(msg, "m", "s", None)
    js_rec = SRC.record(msg | {"tokens": {"input": 9}}, None, None, None)
    assert db_rec is not None and js_rec is not None and db_rec.key == js_rec.key == "m"
    assert SRC.prefer(db_rec, 0.0, js_rec, 0.0) and not SRC.prefer(js_rec, 0.0, db_rec, 0.0)


# ------------------------------------------------------------------------------------------
# real fixtures (#12, #13)


@pytest.mark.integration
def test_real_fixtures_ingest_and_report(sufd_env: SufdEnv) -> None:
    store = data_dir(sufd_env.home) / "storage" / "message"
    for sub, name in (
        ("s_stage0_large", "agentsessions-storage_v2-msg_0002.json"),
        ("test-project", "tokscale-msg_test001.json"),
    ):
        (store / sub).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_fixture("opencode", name), store / sub / name)
    sufd_env.run("ingest")
    days = {r["period"]: r for r in report(sufd_env)["daily"]}
    # #12: 2024-10-27 gpt-4o-mini in 120 / out 16; the object `cost` is ignored → priced
    d = days["2024-10-27"]
    assert [d[k] for k in (*TOKENS, "totalTokens")] == [120, 16, 0, 0, 136]
    assert d["totalCost"] == pytest.approx(120 * 0.15e-6 + 16 * 0.6e-6, abs=1e-15)
    # #13: 2024-12-01 claude-3-5-sonnet-20241022: 1000 / 500 / write 100 / read 200, no cost
    d = days["2024-12-01"]
    assert [d[k] for k in (*TOKENS, "totalTokens")] == [1000, 500, 100, 200, 1800]
    want = run_ccusage(sufd_env.home, "opencode", "daily", "--timezone", "UTC")
    assert compare(want, report(sufd_env)) == []


@pytest.mark.integration
def test_many_sessions_from_the_real_fixtures_reconcile_and_equal_ccusage(
    sufd_env: SufdEnv,
) -> None:
    """#12 and #13 copied into 300 sessions (new ids, created 5 h later per copy), against
    SOURCES.md's numbers per copy and against ccusage."""
    base = [
        json.loads(shared_fixture("opencode", n).read_text())
        for n in ("agentsessions-storage_v2-msg_0002.json", "tokscale-msg_test001.json")
    ]
    # SOURCES.md: #12 gpt-4o-mini in 120 / out 16 (the object cost ignored); #13
    # claude-3-5-sonnet-20241022 in 1000 / out 500 / write 100 / read 200, no cost.
    tokens = {"gpt-4o-mini": [120, 16, 0, 0], "claude-3-5-sonnet-20241022": [1000, 500, 100, 200]}
    want: dict[tuple[str, str], list[int]] = {}
    for k in range(150):
        for msg in base:
            copy = json.loads(json.dumps(msg))
            copy["id"], copy["sessionID"] = f"{msg['id']}-{k}", f"ses-{k}"
            copy["time"]["created"] += k * 5 * 3_600_000
            write_json(sufd_env.home, copy)
            day = time.strftime("%Y-%m-%d", time.gmtime(copy["time"]["created"] // 1000))
            row = want.setdefault((day, msg["modelID"]), [0, 0, 0, 0])
            for i, v in enumerate(tokens[msg["modelID"]]):
                row[i] += v
    sufd_env.run("ingest", timeout=120)
    data = report(sufd_env)
    got = {
        (d["period"], b["modelName"]): [b[t] for t in TOKENS]
        for d in data["daily"]
        for b in d["modelBreakdowns"]
    }
    assert got == want
    assert data["totals"]["events"] == 300
    mini = [
        b["cost"] for d in data["daily"] for b in d["modelBreakdowns"] if "mini" in b["modelName"]
    ]
    assert sum(mini) == pytest.approx(150 * (120 * 0.15e-6 + 16 * 0.6e-6), rel=1e-9)
    problems = compare(run_ccusage(sufd_env.home, "opencode", "daily", "--timezone", "UTC"), data)
    assert not problems, "\n".join(problems[:40])


# ------------------------------------------------------------------------------------------
# watermark: new rows, rows updated at completion, sweep, JSON files


def _read(src: OpenCode, db: Path, ctx: FileContext) -> dict[str, tuple[int, int]] | None:
    recs = src.read_database(db, ctx)
    return None if recs is None else {r.key: (r.input, r.output) for r in recs}


def test_watermark_new_updated_and_swept_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = data_dir(tmp_path) / "opencode.db"
    conn = create_opencode_db(db)
    ctx = FileContext(db, db.parent)
    done = assistant("a", "s", NOW, "anthropic", "claude-sonnet-4-5", TOK)
    insert_message(conn, done, NOW)
    insert_message(
        conn, assistant("b", "s", NOW, "openai", "gpt-4o-mini", None, completed=False), NOW
    )
    assert _read(SRC, db, ctx) == {"a": (1000, 500)}  # first read: everything
    assert _read(SRC, db, ctx) is None  # unchanged signature
    assert ctx.state["pending"] == ["b"]
    insert_message(conn, assistant("b", "s", NOW, "openai", "gpt-4o-mini", TOK), NOW + 5)
    insert_message(conn, assistant("c", "s", NOW, "openai", "gpt-4o-mini", TOK), NOW + 6)
    assert _read(SRC, db, ctx) == {"b": (1000, 500), "c": (1000, 500)}  # pending + new
    assert ctx.state["pending"] == []
    # a finished row changed in place is only seen by the sweep
    insert_message(conn, done | {"tokens": TOK | {"input": 7}}, NOW + 60_000)
    assert _read(SRC, db, ctx) == {}
    monkeypatch.setattr(oc, "SWEEP_EVERY_S", 0.0)
    insert_message(conn, assistant("d", "s", NOW, "openai", "gpt-4o-mini", TOK), NOW + 61_000)
    assert _read(SRC, db, ctx) == {"a": (7, 500), "d": (1000, 500)}
    # VACUUM after deleting the tail renumbers nothing here, but a shrunk table → full read
    conn.execute("DELETE FROM message WHERE id IN ('c', 'd')")
    got = _read(SRC, db, ctx)
    assert got is not None and set(got) == {"a", "b"}
    conn.close()


def test_json_file_is_reread_only_when_it_changes(tmp_path: Path) -> None:
    msg = assistant("j", "s", T, "anthropic", "claude-sonnet-4-5", TOK)
    path = write_json(tmp_path, msg)
    ctx = FileContext(path, data_dir(tmp_path))
    assert _read(SRC, path, ctx) == {"j": (1000, 500)}
    assert _read(SRC, path, ctx) is None
    path.write_text("{broken")
    assert _read(SRC, path, ctx) == {}
    no_id = {k: v for k, v in msg.items() if k != "id"}
    path.write_text(json.dumps(no_id))
    assert _read(SRC, path, ctx) == {f"file:{path}": (1000, 500)}


@pytest.mark.integration
def test_db_wins_over_json_duplicates_in_both_orders(sufd_env: SufdEnv) -> None:
    home = sufd_env.home
    stale = assistant("m", "s", T, "anthropic", "claude-sonnet-4-5", {"input": 9, "output": 9})
    write_json(home, stale)
    sufd_env.run("ingest")  # only the JSON file exists yet
    assert report(sufd_env)["totals"]["inputTokens"] == 9
    conn = create_opencode_db(data_dir(home) / "opencode.db")
    insert_message(conn, assistant("m", "s", T, "anthropic", "claude-sonnet-4-5", TOK), T)
    conn.close()
    sufd_env.run("ingest")
    assert report(sufd_env)["totals"]["inputTokens"] == 1000
    write_json(home, stale | {"tokens": {"input": 11, "output": 1}})  # newer JSON: still loses
    sufd_env.run("ingest")
    assert report(sufd_env)["totals"]["inputTokens"] == 1000
    want = run_ccusage(home, "opencode", "daily", "--timezone", "UTC")
    assert compare(want, report(sufd_env)) == []


@pytest.mark.integration
def test_kilo_cli_database_equals_ccusage_kilo(sufd_env: SufdEnv) -> None:
    db = data_dir(sufd_env.home, "kilo") / "kilo.db"
    conn = create_opencode_db(db)
    overrides: tuple[dict[str, Any], ...] = (
        {},
        {"cost": 0},
        {"cost": 0.25},
        {"providerID": ""},
        {"role": "user"},
        {"time": {"created": 1.5}},
        {"tokens": TOK | {"reasoning": 40, "total": 9000}},
        {"modelID": "claude-sonnet-4.5", "providerID": "github-copilot"},
    )
    for i, over in enumerate(overrides):
        msg = assistant(f"k{i}", "s", T + i * 86_400_000, "anthropic", "claude-sonnet-4-5", TOK)
        insert_message(conn, msg | over, T)
    conn.close()
    sufd_env.run("ingest")
    want = run_ccusage(sufd_env.home, "kilo", "daily", "--timezone", "UTC")
    assert compare(want, report(sufd_env, "kilo-cli")) == []
    assert len(want["daily"]) == 6


# ------------------------------------------------------------------------------------------
# generated corpus: recount and parity with ccusage


SPEC = Spec(seed=20260302, sessions=60, turns=(4, 16), days=14)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[SufdEnv, Expected]:
    env = make_env(tmp_path_factory.mktemp("opencode-corpus"))
    expected = generate_opencode(env.home, SPEC)
    env.run("ingest")
    return env, expected


@pytest.mark.integration
def test_corpus_has_every_trap_and_reconciles(corpus: tuple[SufdEnv, Expected]) -> None:
    env, expected = corpus
    traps = (
        "updated_row",
        "json_only",
        "json_duplicate",
        "zero_row_json_counts",
        "object_cost",
        "stored_cost",
        "total_excess",
        "reasoning",
        "empty_provider",
        "long_context",
    )
    assert [t for t in traps if expected.traps[t] < 1] == []
    data = report(env)
    got, cost = {}, {}
    for row in data["daily"]:
        for b in row["modelBreakdowns"]:
            got[(row["period"], b["modelName"])] = [b[k] for k in TOKENS]
            cost[(row["period"], b["modelName"])] = b["cost"]
    assert got == {k: v[:4] for k, v in expected.tokens.items()}
    assert [k for k in got if not math.isclose(cost[k], expected.cost[k], rel_tol=1e-6)] == []
    assert data["totals"]["totalTokens"] == expected.totals()[4]


@pytest.mark.integration
@pytest.mark.parametrize("zone", ZONES)
def test_daily_equals_ccusage_opencode_daily(corpus: tuple[SufdEnv, Expected], zone: str) -> None:
    env, _ = corpus
    want = run_ccusage(env.home, "opencode", "daily", "--timezone", zone)
    problems = compare(want, report(env, zone=zone))
    assert not problems, f"{len(problems)} differences in {zone}:\n" + "\n".join(problems[:40])


# ------------------------------------------------------------------------------------------
# live daemon: a WAL writer completes a message


@pytest.mark.integration
def test_live_updated_row_ingested_within_2s(harness: Harness) -> None:
    h = harness
    db = data_dir(h.home) / "opencode.db"
    writer = create_opencode_db(db)  # WAL mode, kept open like OpenCode keeps it
    try:
        insert_message(writer, assistant("a", "s", NOW, "anthropic", "claude-sonnet-4-5", TOK), NOW)
        pending = assistant("b", "s", NOW, "anthropic", "claude-sonnet-4-5", None, completed=False)
        insert_message(writer, pending, NOW)
        h.start()
        wait_until(
            lambda: events(h.env, "opencode") == {"a": 1000},
            20,
            interval=0.02,
            what=h.with_diagnostics("the first message in the ledger"),
        )
        insert_message(
            writer, assistant("b", "s", NOW, "anthropic", "claude-sonnet-4-5", TOK), NOW + 9
        )
        t0 = time.monotonic()
        wait_until(
            lambda: events(h.env, "opencode") == {"a": 1000, "b": 1000},
            2,
            interval=0.02,
            what=lambda: f"the completed message; have {events(h.env, 'opencode')}",
        )
        assert time.monotonic() - t0 < 2
        with contextlib.suppress(sqlite3.Error):
            assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        writer.close()
    time.sleep(0)
