"""Cline / Roo Code / Kilo Code source: the real fixture, a generated corpus, a live daemon.

Every expected number is computed here from the rows the test wrote (``cline_rule`` is
Cline's own ``getApiMetrics`` rule: the sum of the api_req_started, deleted_api_reqs and
subagent_usage rows present in the file), or taken from ``fixtures/real/SOURCES.md`` (#9),
never from sufd's output.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from sufd.sources import cline
from sufd.sources.base import FileContext
from tests.conftest import SufdEnv, shared_fixture
from tests.daemon_harness import (
    Harness,
    wait_until,
)

EXT = {
    "cline": "saoudrizwan.claude-dev",
    "roo-code": "rooveterinaryinc.roo-cline",
    "kilo-code": "kilocode.kilo-code",
}
REAL = ("cline", "coregems-cline-xray-ui_messages.json")
REAL_TASK = "1763475462391"
DAY_MS = 86_400_000
T0 = 1_772_359_200_000  # 2026-03-01T10:00:00Z


# ------------------------------------------------------------------------------------------
# rows, files and Cline's own rule


@dataclass(frozen=True)
class Usage:
    """Token classes and cost, named as Cline names them."""

    tokensIn: int = 0  # Cline's field names
    tokensOut: int = 0
    cacheWrites: int = 0
    cacheReads: int = 0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def assert_equals(self, other: Usage, what: str = "") -> None:
        tokens = (self.tokensIn, self.tokensOut, self.cacheWrites, self.cacheReads)
        theirs = (other.tokensIn, other.tokensOut, other.cacheWrites, other.cacheReads)
        assert tokens == theirs and other.cost == pytest.approx(self.cost, abs=1e-9), (
            f"{what}: expected {self}, got {other}"
        )


def req(
    ts: int, usage: Usage | None = None, *, model: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An ``api_req_started`` row; without usage it is the row as first written."""
    info: dict[str, Any] = {"request": "<task>\ndo it\n</task>", **extra}
    if usage is not None:
        info.update(usage.json())
    row: dict[str, Any] = {"ts": ts, "type": "say", "say": "api_req_started"}
    row["text"] = json.dumps(info)
    if model:
        row["modelInfo"] = {"providerId": "anthropic", "modelId": model, "mode": "act"}
    return row


def deleted(ts: int, usage: Usage) -> dict[str, Any]:
    return {"ts": ts, "type": "say", "say": "deleted_api_reqs", "text": json.dumps(usage.json())}


def subagent(ts: int, usage: Usage) -> dict[str, Any]:
    text = json.dumps({"source": "subagents", **usage.json()})
    return {"ts": ts, "type": "say", "say": "subagent_usage", "text": text}


def chatter(ts: int) -> dict[str, Any]:
    return {"ts": ts, "type": "say", "say": "text", "text": "thinking…", "partial": False}


def cline_rule(rows: list[dict[str, Any]]) -> Usage:
    """Cline's task total: every billable row present, rows whose text is not JSON ignored."""
    total = Usage()
    for row in rows:
        if row.get("type") != "say" or row.get("say") not in (
            "api_req_started",
            "deleted_api_reqs",
            "subagent_usage",
        ):
            continue
        try:
            info = json.loads(row["text"])
        except (TypeError, ValueError):
            continue
        total += Usage(*(info.get(f.name) or 0 for f in fields(Usage)))
    return total


def task_file(home: Path, source: str, task: str, app: str = "Code") -> Path:
    user = home / ".config" / app / "User"
    return user / "globalStorage" / EXT[source] / "tasks" / task / "ui_messages.json"


def write_atomic(path: Path, rows: list[dict[str, Any]] | bytes) -> None:
    """Write like Cline's ``atomicWriteFile``: a temp file beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = rows if isinstance(rows, bytes) else json.dumps(rows, separators=(",", ":")).encode()
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def clean_env(env: SufdEnv) -> SufdEnv:
    for var in ("CLINE_DATA_DIR", "CLINE_DIR"):
        env.env.pop(var, None)
    return env


# ------------------------------------------------------------------------------------------
# reading the ledger


def store_total(db: Path, source: str, session: str) -> tuple[int, Usage]:
    """Event count and sums of one task's events, straight from the events table."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(input), 0), coalesce(sum(output), 0),"
            " coalesce(sum(cache_write_5m), 0), coalesce(sum(cache_read), 0),"
            " coalesce(sum(cost), 0.0) FROM events e JOIN sessions s ON s.id = e.session_id"
            " WHERE e.source = ? AND s.session = ?",
            (source, session),
        ).fetchone()
    conn.close()
    return row[0], Usage(*row[1:])


def report(env: SufdEnv, kind: str, source: str) -> dict[str, Any]:
    proc = env.run("ctl", "report", kind, "--json", "--source", source, timeout=60)
    return dict(json.loads(proc.stdout))


def usage_of(row: dict[str, Any]) -> Usage:
    cost = row.get("totalCost", row.get("cost", 0.0))
    return Usage(
        row["inputTokens"], row["outputTokens"], row["cacheCreationTokens"],
        row["cacheReadTokens"], cost,
    )  # fmt: skip


def session_total(env: SufdEnv, source: str, session: str) -> tuple[int, Usage]:
    rows = [r for r in report(env, "session", source)["sessions"] if r["sessionId"] == session]
    return (rows[0]["events"], usage_of(rows[0])) if rows else (0, Usage())


def file_row(db: Path, path: Path) -> tuple[Any, ...] | None:
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT size, mtime_ns, malformed, error, gone, state FROM files WHERE path = ?",
            (str(path),),
        ).fetchone()
    conn.close()
    return tuple(row) if row else None


def ingested(db: Path, path: Path) -> Callable[[], bool]:
    """Whether the store's cursor of ``path`` has reached the file as it is now."""
    st = os.stat(path)

    def done() -> bool:
        row = file_row(db, path)
        return row is not None and row[:2] == (st.st_size, st.st_mtime_ns)

    return done


# ------------------------------------------------------------------------------------------
# in-process ingest (fast unit-level checks through the real Ingestor and Ledger)


class InProcess:
    """The real ingest path in this process, over an isolated HOME."""

    def __init__(self, env: SufdEnv) -> None:
        from sufd.ingest.ingestor import Ingestor
        from sufd.prices.table import PriceTable
        from sufd.settings import load
        from sufd.store import open_store
        from sufd.store.ledger import Ledger

        self.env = env
        self.settings = load()
        self.conn = open_store(self.settings.paths.db)
        prices = PriceTable.bundled()
        self.ingestor = Ingestor(
            self.settings, Ledger(self.conn, price_version=prices.version), prices
        )

    def ingest(self) -> Any:
        return self.ingestor.ingest_all()

    def total(self, source: str, session: str) -> tuple[int, Usage]:
        count, by_events = store_total(self.settings.paths.db, source, session)
        agg = self.conn.execute(
            "SELECT coalesce(sum(events), 0), coalesce(sum(input), 0), coalesce(sum(output), 0),"
            " coalesce(sum(cache_write_5m), 0), coalesce(sum(cache_read), 0),"
            " coalesce(sum(cost), 0.0) FROM agg_session a JOIN sessions s ON s.id = a.session_id"
            " WHERE s.source = ? AND s.session = ?",
            (source, session),
        ).fetchone()
        assert agg[0] == count, "agg_session events disagree with the events table"
        by_events.assert_equals(Usage(*agg[1:]), "agg_session vs events")
        return count, by_events


@pytest.fixture
def inproc(isolated: SufdEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcess]:
    for var in ("CLINE_DATA_DIR", "CLINE_DIR"):
        monkeypatch.delenv(var, raising=False)
    run = InProcess(isolated)
    yield run
    run.conn.close()


# ------------------------------------------------------------------------------------------
# the real fixture (#9)


@pytest.mark.integration
def test_real_fixture_matches_sources_md(sufd_env: SufdEnv) -> None:
    env = clean_env(sufd_env)
    src = shared_fixture(*REAL)
    path = task_file(env.home, "cline", REAL_TASK)
    path.parent.mkdir(parents=True)
    shutil.copyfile(src, path)  # into the temp HOME only, never into the repository
    summary = json.loads(env.run("ingest", "--json").stdout)
    assert (summary["events_new"], summary["malformed_lines"], summary["errors"]) == (4, 0, [])

    daily = report(env, "daily", "cline")["daily"]
    assert [d["period"] for d in daily] == ["2025-11-18"]
    assert daily[0]["events"] == 4
    Usage(40, 2_488, 28_108, 24_686, 0.1502508).assert_equals(usage_of(daily[0]), "#9")
    assert daily[0]["cacheCreation1hTokens"] == 0
    assert daily[0]["modelsUsed"] == ["claude-sonnet-4-5-20250929"]
    assert daily[0]["unpricedEvents"] == 0
    # The cwd the first request's environment_details states, read here independently.
    first = next(m for m in json.loads(src.read_text()) if m.get("say") == "api_req_started")
    cwd = re.search(
        r"Current Working Directory \((.+?)\) Files", json.loads(first["text"])["request"]
    )
    assert cwd is not None
    projects = report(env, "project", "cline")["projects"]
    assert [p["project"] for p in projects] == [cwd.group(1)]
    again = json.loads(env.run("ingest", "--json").stdout)
    assert (again["events_new"], again["events_replaced"], again["bytes_read"]) == (0, 0, 0)


# ------------------------------------------------------------------------------------------
# a full-size corpus generated from the real fixture


@dataclass
class Expected:
    events: int = 0
    usage: Usage = Usage()


def _variant(base: list[dict[str, Any]], k: int, repeats: int) -> tuple[list[dict[str, Any]], int]:
    """``repeats`` copies of the fixture's messages, shifted in time, tokens scaled by k."""
    first = base[0]["ts"]
    start = T0 + k * 7 * 3_600_000
    rows = []
    for r in range(repeats):
        for msg in base:
            row = copy.deepcopy(msg)
            row["ts"] = start + r * 600_000 + (msg["ts"] - first)
            if row.get("say") == "api_req_started":
                info = json.loads(row["text"])
                for name in ("tokensIn", "tokensOut", "cacheWrites", "cacheReads"):
                    info[name] = info[name] * (1 + k % 5) + r
                info["cost"] = round(info["cost"] * (1 + k % 5) + r * 1e-4, 10)
                row["text"] = json.dumps(info)
            rows.append(row)
    return rows, start


@pytest.mark.integration
def test_full_size_corpus_reconciles_with_recount(sufd_env: SufdEnv) -> None:
    env = clean_env(sufd_env)
    base = json.loads(shared_fixture(*REAL).read_text())
    homes = {
        "cline": [env.home / ".config" / "Code" / "User", env.home / ".cline" / "data"],
        "roo-code": [env.home / ".config" / a / "User" for a in ("VSCodium", "Cursor")],
        "kilo-code": [env.home / ".config" / a / "User" for a in ("Code - Insiders", "Windsurf")],
    }
    by_source: dict[str, Expected] = {s: Expected() for s in EXT}
    by_model: dict[tuple[str, str], Usage] = {}
    for source, dirs in homes.items():
        for k in range(16):
            rows, start = _variant(base, k, repeats=8)
            task = f"task-{source}-{k:02d}"
            where = dirs[k % 2]
            if where.name == "data":  # ~/.cline/data
                tasks = where / "tasks"
            else:
                tasks = where / "globalStorage" / EXT[source] / "tasks"
            mid = rows[len(rows) // 2]["ts"]
            first_req = next(r["ts"] for r in rows if r.get("say") == "api_req_started")
            usage: list[dict[str, Any]] = []
            tag = None
            variant = k % 3
            if variant:
                for row in rows:
                    row.pop("modelInfo", None)
            if variant == 1:  # a model switch in task_metadata.json; the first request is before
                # its first entry and the task has no history: that one's model is unknown
                usage = [
                    {"ts": first_req + 1, "model_id": "claude-sonnet-4-20250514", "mode": "act"},
                    {"ts": mid, "model_id": "claude-opus-4-1-20250805", "mode": "act"},
                ]
                write_atomic(tasks / task / "task_metadata.json", json.dumps(
                    {"files_in_context": [], "model_usage": usage}
                ).encode())  # fmt: skip
            if variant == 2:  # only the history's <model> tag, with a provider prefix
                tag = "claude-3-5-haiku-20241022"
                history = [{"role": "user", "content": [{"type": "text", "text": (
                    "<task>x</task><environment_details>\n# Current Mode\nACT MODE\n"
                    "<model>anthropic/claude-3-5-haiku-20241022</model>\n</environment_details>"
                )}]}]  # fmt: skip
                write_atomic(tasks / task / "api_conversation_history.json", json.dumps(
                    history
                ).encode())  # fmt: skip
            extra = rows[-1]["ts"]
            if k % 4 == 0:
                rows.append(subagent(extra + 10, Usage(100 + k, 20, 5, 7, 0.0031)))
            if k % 4 == 1:
                rows.append(deleted(extra + 20, Usage(300, 40 + k, 0, 9, 0.0123)))
            write_atomic(tasks / task / "ui_messages.json", rows)
            # the independent recount
            for row in rows:
                if row.get("say") not in ("api_req_started", "subagent_usage", "deleted_api_reqs"):
                    continue
                u = cline_rule([row])
                by_source[source].events += 1
                by_source[source].usage += u
                before = [e["model_id"] for e in usage if e["ts"] <= row["ts"]]
                model = (
                    (row.get("modelInfo") or {}).get("modelId")
                    or (before[-1] if before else None)
                    or tag
                    or "<unknown>"
                )
                by_model[(source, model)] = by_model.get((source, model), Usage()) + u

    summary = json.loads(env.run("ingest", "--json").stdout)
    assert summary["files"] == 48 and summary["malformed_lines"] == 0 and not summary["errors"]
    assert summary["events_new"] == sum(e.events for e in by_source.values())
    for source, want in by_source.items():
        totals = report(env, "daily", source)["totals"]
        assert totals["events"] == want.events, source
        want.usage.assert_equals(usage_of(totals), source)
        models = {m["model"]: usage_of(m) for m in report(env, "model", source)["models"]}
        expected = {m: u for (s, m), u in by_model.items() if s == source}
        assert sorted(models) == sorted(expected), source
        for model, want_usage in expected.items():
            want_usage.assert_equals(models[model], f"{source} {model}")


# ------------------------------------------------------------------------------------------
# the live daemon


@pytest.mark.integration
def test_live_daemon_follows_rewrites_restores_and_deletion(harness: Harness) -> None:
    h = harness
    # A 1 s reconcile sweep, so a deleted task file is marked gone within the deadline.
    h.daemon_env["SUFD_RECONCILE_INTERVAL_S"] = "1"
    env, task = h.env, "1772359200000"
    path = task_file(env.home, "cline", task)
    path.parent.mkdir(parents=True)
    h.start()
    h.wait_root(path.parent.parent, timeout=15)
    model = "claude-sonnet-4-5-20250929"
    a, b, c = T0 + 1_000, T0 + 60_000, T0 + 120_000
    ua, ub = Usage(10, 641, 12_027, 0, 0.05474625), Usage(9, 630, 632, 12_027, 0.0154581)
    uc = Usage(7, 856, 529, 12_659, 0.01865145)
    steps: list[tuple[str, list[dict[str, Any]]]] = [
        ("row without tokens", [chatter(T0), req(a, model=model)]),
        ("tokens arrive", [chatter(T0), req(a, ua, model=model)]),
        ("two more requests", [chatter(T0), req(a, ua, model=model),
                               req(b, ub, model=model), req(c, Usage(7, 300, 0, 100, 0.004),
                                                            model=model)]),
        ("the last one finishes", [chatter(T0), req(a, ua, model=model),
                                   req(b, ub, model=model), req(c, uc, model=model)]),
        ("checkpoint restore", [chatter(T0), req(a, ua, model=model),
                                deleted(T0 + 200_000, ub + uc)]),
        ("subagent usage", [chatter(T0), req(a, ua, model=model), deleted(T0 + 200_000, ub + uc),
                            subagent(T0 + 250_000, Usage(120, 40, 0, 300, 0.0021))]),
    ]  # fmt: skip
    last: tuple[int, Usage] = (0, Usage())
    for what, rows in steps:
        write_atomic(path, rows)
        wait_until(
            ingested(env.db, path),
            5.0,
            what=h.with_diagnostics(f"the daemon to ingest {what!r}"),
        )
        expected = cline_rule(rows)
        count, got = store_total(env.db, "cline", task)
        expected.assert_equals(got, f"store after {what!r}")
        events, reported = session_total(env, "cline", task)
        expected.assert_equals(reported, f"sufctl report session after {what!r}")
        assert events == count
        last = (count, got)
    # a, b, c (kept though gone from the file) and the subagent row; b and c were seen in
    # full, so the aggregate leaves no residual and makes no event of its own.
    assert last[0] == 4
    path.unlink()
    wait_until(
        lambda: (row := file_row(env.db, path)) and row[4],
        5.0,
        what=h.with_diagnostics("the daemon's reconcile sweep to mark the file gone"),
    )
    count, got = store_total(env.db, "cline", task)
    assert count == last[0]
    last[1].assert_equals(got, "after deletion")
    events, reported = session_total(env, "cline", task)
    assert events == last[0]
    last[1].assert_equals(reported, "sufctl report after deletion")


# ------------------------------------------------------------------------------------------
# deleted_api_reqs when sufd was down, and restores of restores


def test_rows_written_and_removed_while_down_count_once(inproc: InProcess) -> None:
    home = inproc.env.home
    path = task_file(home, "cline", "t-down")
    r1, r2, r3 = Usage(5, 50, 500, 0, 0.01), Usage(6, 60, 0, 600, 0.02), Usage(7, 70, 0, 700, 0.03)
    rows = [req(T0, r1), deleted(T0 + 9_000, r2 + r3)]  # r2, r3 never seen by sufd
    write_atomic(path, rows)
    assert inproc.ingest().inserted == 2
    count, got = inproc.total("cline", "t-down")
    assert count == 2
    cline_rule(rows).assert_equals(got, "never-seen rows counted via deleted_api_reqs")

    # Seen with partial tokens, then finished and removed while sufd was down.
    other = task_file(home, "cline", "t-partial")
    write_atomic(other, [req(T0, r1), req(T0 + 1_000, Usage(6, 10, 0, 600, 0.004))])
    inproc.ingest()
    rows = [req(T0, r1), deleted(T0 + 9_000, r2 + r3)]
    write_atomic(other, rows)
    inproc.ingest()
    count, got = inproc.total("cline", "t-partial")
    assert count == 3  # r1, r2 as last seen, the residual of the aggregate
    cline_rule(rows).assert_equals(got, "partly seen rows")
    inproc.ingest()
    assert inproc.total("cline", "t-partial")[1] == got


def test_restore_that_removes_an_earlier_aggregate(inproc: InProcess) -> None:
    path = task_file(inproc.env.home, "roo-code", "t-nested", app="VSCodium")
    u1, u2, u3, u4 = (Usage(i, 10 * i, 100 * i, 1000 * i, 0.001 * i) for i in (1, 2, 3, 4))
    d1 = deleted(T0 + 5_000, u3)
    steps = [
        [req(T0, u1), req(T0 + 1_000, u2), req(T0 + 2_000, u3)],
        [req(T0, u1), req(T0 + 1_000, u2), d1],  # restore 1 removes u3
        [req(T0, u1), req(T0 + 1_000, u2), d1, req(T0 + 6_000, u4)],
        [req(T0, u1), deleted(T0 + 9_000, u2 + u3 + u4)],  # restore 2 removes u2, d1 and u4
        [req(T0, u1), deleted(T0 + 9_000, u2 + u3 + u4), subagent(T0 + 9_500, u1)],
    ]
    for i, rows in enumerate(steps):
        write_atomic(path, rows)
        inproc.ingest()
        cline_rule(rows).assert_equals(inproc.total("roo-code", "t-nested")[1], f"step {i}")


def test_each_aggregate_owns_only_rows_removed_after_the_previous_one(
    inproc: InProcess,
) -> None:
    """Two surviving aggregates: the later one owns the rows it removed, not the earlier one."""
    path = task_file(inproc.env.home, "cline", "t-two")
    # The earlier aggregate is smaller than the rows the later one removed: charging those
    # to it would clip it at zero and count them twice.
    u1, unseen, u2 = Usage(1, 2, 3, 4, 0.01), Usage(1, 1, 1, 1, 0.001), Usage(9, 8, 7, 6, 0.2)
    steps = [
        [req(T0, u1), deleted(T0 + 5_000, unseen)],  # restored away before sufd saw anything
        [req(T0, u1), deleted(T0 + 5_000, unseen), req(T0 + 6_000, u2)],
        [req(T0, u1), deleted(T0 + 5_000, unseen), deleted(T0 + 9_000, u2)],  # removes u2
    ]
    for i, rows in enumerate(steps):
        write_atomic(path, rows)
        inproc.ingest()
        cline_rule(rows).assert_equals(inproc.total("cline", "t-two")[1], f"step {i}")


# ------------------------------------------------------------------------------------------
# bad input


def test_half_written_file_is_malformed_then_recovers(inproc: InProcess) -> None:
    path = task_file(inproc.env.home, "kilo-code", "t-trunc", app="Cursor")
    rows = [chatter(T0), req(T0 + 1, Usage(1, 2, 3, 4, 0.5)), req(T0 + 2, Usage(5, 6, 7, 8, 0.25))]
    full = json.dumps(rows).encode()
    write_atomic(path, full[: len(full) // 2])
    stats = inproc.ingest()
    assert (stats.inserted, stats.malformed, stats.errors) == (0, 1, [])
    reasons = [r[0] for r in inproc.conn.execute("SELECT reason FROM malformed")]
    assert len(reasons) == 1 and "invalid JSON" in reasons[0]
    write_atomic(path, full)
    stats = inproc.ingest()
    assert (stats.inserted, stats.malformed) == (2, 0)
    count, got = inproc.total("kilo-code", "t-trunc")
    assert count == 2
    cline_rule(rows).assert_equals(got, "after the good rewrite")


def test_row_with_non_json_text_is_skipped_and_noted(inproc: InProcess) -> None:
    path = task_file(inproc.env.home, "cline", "t-badrow")
    bad = {"ts": T0 + 2, "type": "say", "say": "api_req_started", "text": '{"tokensIn": 4'}
    rows = [req(T0 + 1, Usage(1, 2, 3, 4, 0.5)), bad, req(T0 + 3, Usage(5, 6, 7, 8, 0.25))]
    write_atomic(path, rows)
    stats = inproc.ingest()
    assert stats.inserted == 2
    count, got = inproc.total("cline", "t-badrow")
    assert count == 2
    cline_rule(rows).assert_equals(got, "the bad row alone is skipped")
    state = json.loads(file_row(inproc.settings.paths.db, path)[5])  # type: ignore[index]
    assert state["malformed"] == {str(T0 + 2): "text is not JSON"}
    # Fixed on a later rewrite: counted then, and no longer noted as malformed.
    rows[1] = req(T0 + 2, Usage(9, 9, 9, 9, 0.125))
    write_atomic(path, rows)
    inproc.ingest()
    cline_rule(rows).assert_equals(inproc.total("cline", "t-badrow")[1], "after the fix")
    state = json.loads(file_row(inproc.settings.paths.db, path)[5])  # type: ignore[index]
    assert state["malformed"] == {}


def test_bad_row_is_handed_to_a_collecting_context(tmp_path: Path) -> None:
    """Where ingest offers ``ctx.malformed`` the bad row is reported once, at its offset."""
    bad = {"ts": T0 + 2, "type": "say", "say": "api_req_started", "text": "not json"}
    data = json.dumps([req(T0 + 1, Usage(1, 1, 1, 1, 0.1)), bad], separators=(",", ":")).encode()
    ctx = FileContext(tmp_path / "tasks" / "t" / "ui_messages.json", None, {}, [])
    assert len(cline.Cline().parse_document(data, ctx)) == 1
    assert ctx.malformed == [(data.index(b'"ts":%d' % (T0 + 2)), "text is not JSON")]
    again = FileContext(ctx.path, None, ctx.state, [])
    cline.Cline().parse_document(data, again)
    assert again.malformed == []


def test_zero_rows_skipped_until_tokens_and_model_fallbacks(tmp_path: Path) -> None:
    task = tmp_path / "tasks" / "t1"
    task.mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps({"model_usage": [
        {"ts": T0 + 10, "model_id": "model-a", "model_provider_id": "x", "mode": "act"},
        {"ts": T0 + 30, "model_id": "model-b", "model_provider_id": "x", "mode": "act"},
    ]}))  # fmt: skip
    (task / "api_conversation_history.json").write_text(json.dumps([
        {"role": "user", "content": "<environment_details># Current Workspace Directory "
         "(/home/u/proj) Files\n<model>openrouter/model-h</model></environment_details>"},
    ]))  # fmt: skip
    rows = [
        req(T0 + 5, Usage(1, 1, 0, 0, 0.1)),  # before any model_usage entry: history tag
        req(T0 + 20, Usage(1, 1, 0, 0, 0.1)),  # model-a
        req(T0 + 30, Usage(1, 1, 0, 0, 0.1)),  # model-b (ts equal counts)
        req(T0 + 40, Usage(1, 1, 0, 0, 0.1), model="on-the-row"),
        req(T0 + 50),  # no tokens yet: skipped
        req(T0 + 60, Usage()),  # all zero, no cost: skipped
    ]
    ctx = FileContext(task / "ui_messages.json", tmp_path / "tasks", {})
    recs = cline.RooCode().parse_document(json.dumps(rows).encode(), ctx)
    assert [r.model for r in recs] == ["model-h", "model-a", "model-b", "on-the-row"]
    assert {r.project for r in recs} == {"/home/u/proj"}
    assert {r.session for r in recs} == {"t1"}
    assert [r.key for r in recs][0] == f"{EXT['roo-code']}:t1:{T0 + 5}"
    rows[4] = req(T0 + 50, Usage(0, 3, 0, 0, 0.2))
    recs = cline.RooCode().parse_document(json.dumps(rows).encode(), ctx)
    assert [r.ts_ms for r in recs][-1] == T0 + 50 and recs[-1].output == 3
    assert recs[-1].stored_cost == 0.2 and recs[-1].model == "model-b"
    bare = FileContext(tmp_path / "tasks" / "t2" / "ui_messages.json", None, {})
    (rec,) = cline.KiloCode().parse_document(json.dumps(rows[:1]).encode(), bare)
    assert (rec.model, rec.project) == (None, f"{EXT['kilo-code']}/t2")


# ------------------------------------------------------------------------------------------
# roots


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    from sufd.settings import load

    for var in ("CLINE_DATA_DIR", "CLINE_DIR"):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load()


def test_cline_data_dir_env_overrides(isolated: SufdEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    home = isolated.home
    monkeypatch.setattr(cline, "current_platform", lambda: "linux")
    default = cline.Cline().default_roots(_settings(monkeypatch))
    assert default[-1] == home / ".cline" / "data" / "tasks"
    roots = cline.Cline().default_roots(_settings(monkeypatch, CLINE_DIR="/opt/cl"))
    assert roots[-1] == Path("/opt/cl/data/tasks")
    both = _settings(monkeypatch, CLINE_DIR="/opt/cl", CLINE_DATA_DIR="~/cdata")
    assert cline.Cline().default_roots(both)[-1] == home / "cdata" / "tasks"
    assert all(".cline" not in str(r) for r in cline.RooCode().default_roots(both))


def test_vscode_user_dirs_linux_and_macos_seam(
    inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = inproc.env.home
    monkeypatch.setattr(cline, "current_platform", lambda: "linux")
    settings = inproc.settings
    assert cline.KiloCode().default_roots(settings) == [
        home / ".config" / "Code" / "User" / "globalStorage" / EXT["kilo-code"] / "tasks"
    ]  # no user dir exists: the default one, reported missing
    (home / ".config" / "Cursor" / "User").mkdir(parents=True)
    assert cline.KiloCode().default_roots(settings) == [
        home / ".config" / "Cursor" / "User" / "globalStorage" / EXT["kilo-code"] / "tasks"
    ]

    monkeypatch.setattr(cline, "current_platform", lambda: "darwin")
    support = home / "Library" / "Application Support"
    for app in ("Code", "VSCodium"):
        (support / app / "User").mkdir(parents=True)
    roots = cline.Cline().default_roots(settings)
    assert roots == [
        support / "Code" / "User" / "globalStorage" / EXT["cline"] / "tasks",
        support / "VSCodium" / "User" / "globalStorage" / EXT["cline"] / "tasks",
        home / ".cline" / "data" / "tasks",
    ]
    path = roots[1] / "t-mac" / "ui_messages.json"
    rows = [req(T0, Usage(3, 4, 5, 6, 0.75))]
    write_atomic(path, rows)
    (path.parent / "subagents" / "s1").mkdir(parents=True)  # nested task files are not owned
    write_atomic(path.parent / "subagents" / "s1" / "ui_messages.json", rows)
    assert inproc.ingest().inserted == 1
    cline_rule(rows).assert_equals(inproc.total("cline", "t-mac")[1], "macOS root")
    assert not cline.Cline().owns(path.parent / "subagents" / "s1" / "ui_messages.json")
    assert not cline.Cline().owns(path.with_name("ui_messages.json.tmp-1"))
