"""History that outlives the agents (issue 6, item 5), with the real daemon.

Claude Code deletes transcripts older than ``cleanupPeriodDays`` file by file (and with them
whole project directories); Codex rollouts get cleaned up too. Whatever is deleted, and
whenever (daemon running, stopped, or a one-shot ``sufd ingest``), every event stays in the
ledger and every report keeps its totals, while ``sufctl status`` says how many events (and
how much cost) no longer have a source file, and what share of the ledger that is.

Every expected figure comes from the lines this test wrote and from prices it sets itself
(``[prices.overrides]``), never from sufd's output.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sufd.store import open_store
from sufd.store.migrations import MIGRATIONS
from tests.conftest import make_env
from tests.daemon_harness import (
    ClaudeSession,
    CodexSession,
    Harness,
    Usage,
    append_lines,
    report_totals,
    totals_of,
    wait_until,
)

pytestmark = pytest.mark.integration

CLAUDE_MODEL = "claude-sonnet-4-20250514"
CODEX_MODEL = "gpt-5"
CODEX_CWD = "/home/dev/proj"  # what the harness's Codex lines say
# USD per million tokens, pinned in the config so the expected costs need no price table.
PRICES: dict[str, dict[str, float]] = {
    CLAUDE_MODEL: {"input": 2.0, "output": 10.0, "cache_write": 2.5, "cache_read": 0.2},
    CODEX_MODEL: {"input": 1.0, "output": 8.0, "cache_read": 0.1},
}
DAY_S = 86_400
KINDS = ("daily", "weekly", "monthly", "session", "project", "model")
ROWS = {"session": "sessions", "project": "projects", "model": "models"}
LABEL = {"session": "sessionId", "project": "project", "model": "model"}
# A deletion must be seen by the watcher: the reconcile sweep is far beyond the test.
PROMPT_S = 5.0


@dataclass
class Event:
    """One event as the ledger must hold it, and the file whose line it counts."""

    usage: Usage
    session: str
    project: str
    model: str
    file: Path

    @property
    def source(self) -> str:
        return self.usage.source

    @property
    def cost(self) -> float:
        p, u = PRICES[self.model], self.usage
        return (
            u.input * p["input"]
            + u.output * p["output"]
            + u.cache_write * p.get("cache_write", 0.0)
            + u.cache_read * p["cache_read"]
        ) / 1e6


@dataclass(frozen=True)
class Figures:
    """What ``status`` must say of one source (or of all): events, cost, and the gone part."""

    events: int
    cost: float
    gone_files: int
    gone_events: int
    gone_cost: float


# ------------------------------------------------------------------------------------------
# writing sessions


def _config() -> str:
    lines = []
    for model, prices in PRICES.items():
        lines.append(f'[prices.overrides."{model}"]')
        lines += [f"{key} = {value}" for key, value in prices.items()]
        lines.append("")
    return "\n".join(lines)


def write_claude(
    h: Harness, events: list[Event], project_dir: str, cwd: str, session: str, day: int, n: int
) -> tuple[Path, ClaudeSession]:
    """A transcript of ``n`` requests on ``day`` (days after the harness's base date)."""
    path = h.home / ".claude" / "projects" / project_dir / f"{session}.jsonl"
    rng = random.Random(session)
    s = ClaudeSession(session, cwd)
    lines = [s.user(day * DAY_S)]
    for i in range(n):
        line, usage = s.assistant(
            day * DAY_S + 90 * (i + 1),
            input=rng.randint(5, 4000),
            output=rng.randint(50, 3000),
            cache_write=rng.randint(0, 9000),
            cache_read=rng.randint(0, 90_000),
        )
        lines.append(line)
        events.append(Event(usage, session, cwd, CLAUDE_MODEL, path))
    append_lines(path, *lines)
    return path, s


def write_codex(h: Harness, events: list[Event], name: str, session: str, day: int, n: int) -> Path:
    """A rollout of ``n`` token counts on ``day``."""
    path = h.codex_file(name)
    rng = random.Random(session)
    c = CodexSession(session)
    lines = [c.meta(day * DAY_S, cwd=CODEX_CWD), c.turn_context(day * DAY_S)]
    for i in range(n):
        inp, out = rng.randint(1000, 60_000), rng.randint(10, 4000)
        line, usage = c.token_count(
            day * DAY_S + 120 * (i + 1),
            input=inp,
            cached=rng.randint(0, inp),
            output=out,
            reasoning=rng.randint(0, out),
        )
        lines.append(line)
        events.append(Event(usage, session, CODEX_CWD, CODEX_MODEL, path))
    append_lines(path, *lines)
    return path


# ------------------------------------------------------------------------------------------
# what the reports and the status must say


def _label(kind: str, e: Event) -> str:
    day = datetime.fromtimestamp(e.usage.ts / 1000, UTC).date()
    if kind == "daily":
        return day.isoformat()
    if kind == "weekly":  # weeks start on Monday
        return (day - timedelta(days=day.weekday())).isoformat()
    if kind == "monthly":
        return day.strftime("%Y-%m")
    return {"session": e.session, "project": e.project, "model": e.model}[kind]


def check_report(kind: str, report: dict[str, Any], events: list[Event]) -> None:
    """Every row of a report, and its totals, against the events written."""
    groups: dict[str, list[Event]] = {}
    for e in events:
        groups.setdefault(_label(kind, e), []).append(e)
    rows = {str(r[LABEL.get(kind, "period")]): r for r in report[ROWS.get(kind, kind)]}
    assert set(rows) == set(groups), (kind, sorted(rows), sorted(groups))
    for label, group in groups.items():
        want = totals_of(e.usage for e in group)
        assert {k: int(rows[label][k]) for k in want} == want, (kind, label)
        cost = sum(e.cost for e in group)
        assert math.isclose(rows[label]["totalCost"], cost, rel_tol=1e-9), (kind, label, cost)
    assert report_totals(report) == totals_of(e.usage for e in events), kind
    cost = sum(e.cost for e in events)
    assert math.isclose(report["totals"]["totalCost"], cost, rel_tol=1e-9), kind


def all_reports(h: Harness) -> dict[str, dict[str, Any]]:
    """``sufctl report KIND --json`` for every kind, without ``freshness`` (which names the
    daemon's pid: the figures are compared across restarts)."""
    reports = {kind: h.report(kind) for kind in KINDS}
    for report in reports.values():
        report.pop("freshness")
    return reports


def expected_figures(
    events: list[Event], gone: set[Path], files: dict[Path, str], source: str | None
) -> Figures:
    """The ``history`` block of one source (``None``: all) from what was written and deleted."""
    mine = [e for e in events if source in (None, e.source)]
    lost = [e for e in mine if e.file in gone]
    gone_files = sum(1 for p in gone if source in (None, files[p]))
    return Figures(
        len(mine), sum(e.cost for e in mine), gone_files, len(lost), sum(e.cost for e in lost)
    )


def figures_of(block: dict[str, Any]) -> Figures:
    """The figures of a ``history`` block of ``status``."""
    return Figures(
        block["events"],
        block["cost_usd"],
        block["gone_files"],
        block["gone_events"],
        block["gone_cost_usd"],
    )


def same(got: Figures, want: Figures) -> bool:
    """Counts exact, costs to 1e-9 (sums of the same terms, added in another order)."""
    return (
        (got.events, got.gone_files, got.gone_events)
        == (want.events, want.gone_files, want.gone_events)
        and math.isclose(got.cost, want.cost, rel_tol=1e-9)
        and math.isclose(got.gone_cost, want.gone_cost, rel_tol=1e-9, abs_tol=1e-12)
    )


def status_matches(
    h: Harness, events: list[Event], gone: set[Path], files: dict[Path, str]
) -> Callable[[], dict[str, Any] | None]:
    """A predicate for ``wait_until``: the status when its history figures are as expected."""

    def check() -> dict[str, Any] | None:
        st = h.status()
        by_name = {s["name"]: s for s in st["sources"]}
        for source in ("claude", "codex"):
            want = expected_figures(events, gone, files, source)
            if not same(figures_of(by_name[source]["history"]), want):
                return None
        return (
            st
            if same(figures_of(st["history"]), expected_figures(events, gone, files, None))
            else None
        )

    return check


def _history(h: Harness) -> dict[str, Any]:
    """The status's history blocks, for failure messages."""
    st = h.status()
    blocks = {s["name"]: s["history"] for s in st["sources"] if s["history"]["events"]}
    return {**blocks, "all": st["history"]}


def _pct(part: int, whole: int) -> str:
    assert 1 <= 100 * part / whole <= 99, "the test's data should give a plain share"
    return f"{100 * part / whole:.0f} %"


def check_status(h: Harness, events: list[Event], gone: set[Path], files: dict[Path, str]) -> None:
    """``sufctl status --json`` and its text: exact figures and shares, per source and overall."""
    proc = h.ctl("status", "--json")
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    text = h.ctl("status")
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if line.startswith("history ")]
    by_name = {s["name"]: s for s in st["sources"]}
    want_lines = []
    for source in ("claude", "codex"):
        want = expected_figures(events, gone, files, source)
        block = by_name[source]["history"]
        assert same(figures_of(block), want), (source, block, want)
        assert by_name[source]["events"] == want.events  # the reports' count agrees
        assert by_name[source]["files_gone"] == want.gone_files
        assert math.isclose(block["gone_events_share"], want.gone_events / want.events)
        assert math.isclose(block["gone_cost_share"], want.gone_cost / want.cost)
        if want.gone_files:
            want_lines.append(
                f"history     {source}: {want.gone_events:,} events"
                f" ({_pct(want.gone_events, want.events)}, ${want.gone_cost:,.2f})"
                f" from {want.gone_files} file{'' if want.gone_files == 1 else 's'}"
                " no longer on disk"
            )
    total = expected_figures(events, gone, files, None)
    assert same(figures_of(st["history"]), total), (st["history"], total)
    assert math.isclose(st["history"]["gone_events_share"], total.gone_events / total.events)
    want_lines.append(
        f"history     all sources: {total.gone_events:,} of {total.events:,} events"
        f" ({_pct(total.gone_events, total.events)}, ${total.gone_cost:,.2f} of"
        f" ${total.cost:,.2f}) from files no longer on disk; the ledger keeps them"
    )
    assert lines == want_lines, text.stdout


def check_store(h: Harness, events: list[Event]) -> None:
    """Exactly the events written (one per request, the longest copy) are in the ledger."""
    assert h.events_in_store() == Counter(e.usage for e in events)


def check_held(h: Harness) -> None:
    """The per-file tallies status reads equal a recount of the events table."""
    conn = sqlite3.connect(f"file:{h.db}?mode=ro", uri=True)
    try:
        held = {
            fid: (n, c)
            for fid, n, c in conn.execute("SELECT id, held_events, held_cost FROM files")
            if n or c
        }
        recount = {
            fid: (n, c)
            for fid, n, c in conn.execute(
                "SELECT file_id, COUNT(*), SUM(cost) FROM events GROUP BY file_id"
            )
        }
    finally:
        conn.close()
    assert held.keys() == recount.keys()
    for fid, (n, c) in recount.items():
        assert held[fid][0] == n and math.isclose(held[fid][1], c, rel_tol=1e-9), fid


# ------------------------------------------------------------------------------------------
# the test


def test_deleted_transcripts_keep_their_events_in_store_reports_and_status(
    harness: Harness,
) -> None:
    """Deleted while the daemon runs (then across a restart and a one-shot ingest): reports
    unchanged, events kept, status exact; a file moved away and back is not gone."""
    h = harness
    h.write_config(_config())
    h.daemon_env = {"SUFD_RECONCILE_INTERVAL_S": "600"}
    events: list[Event] = []
    files: dict[Path, str] = {}

    # Two projects a week apart, one more a fortnight later, one in the next month.
    a1, s_a1 = write_claude(h, events, "-home-dev-alpha", "/home/dev/alpha", "a1", 0, 4)
    a2, _ = write_claude(h, events, "-home-dev-alpha", "/home/dev/alpha", "a2", 1, 3)
    b1, _ = write_claude(h, events, "-home-dev-beta", "/home/dev/beta", "b1", 2, 5)
    b2, _ = write_claude(h, events, "-home-dev-beta", "/home/dev/beta", "b2", 8, 2)
    c1, _ = write_claude(h, events, "-home-dev-gamma", "/home/dev/gamma", "c1", 15, 3)
    c2, _ = write_claude(h, events, "-home-dev-gamma", "/home/dev/gamma", "c2", 31, 4)
    x1 = write_codex(h, events, "x1", "0199aaaa-0000-7000-8000-000000000001", 3, 4)
    x2 = write_codex(h, events, "x2", "0199aaaa-0000-7000-8000-000000000002", 9, 3)
    x3 = write_codex(h, events, "x3", "0199aaaa-0000-7000-8000-000000000003", 20, 5)
    files.update({p: "claude" for p in (a1, a2, b1, b2, c1, c2)})
    files.update({p: "codex" for p in (x1, x2, x3)})
    # A reply copied into another transcript (as a resumed session does), first seen there
    # with fewer output tokens; the complete line lands in a1 later and takes the event over.
    full_line, full = s_a1.assistant(300, input=700, output=2500, cache_write=100, cache_read=0)
    short = json.loads(full_line)
    short["message"]["usage"]["output_tokens"] = 400
    append_lines(a2, json.dumps(short, separators=(",", ":")).encode())
    copied = Event(
        replace(full, output=400, total=full.total - 2100),
        "a1",
        "/home/dev/alpha",
        CLAUDE_MODEL,
        a2,
    )
    events.append(copied)

    daemon = h.start()
    wait_until(
        lambda: h.events_in_store() == Counter(e.usage for e in events),
        5.0,
        what=lambda: f"the first ingest\n{h.diagnostics()}",
    )
    append_lines(a1, full_line)
    copied.usage, copied.file = full, a1
    wait_until(
        lambda: h.events_in_store() == Counter(e.usage for e in events),
        5.0,
        what=lambda: f"the longer copy to replace the event\n{h.diagnostics()}",
    )

    baseline = all_reports(h)
    for kind, report in baseline.items():
        check_report(kind, report, events)
    nothing_gone = status_matches(h, events, set(), files)
    assert nothing_gone(), h.status()

    # Moved away and back (a trash can, a backup restore): gone, then not gone again.
    trash = h.tmp / "trash"
    trash.mkdir()
    a2.rename(trash / a2.name)
    wait_until(
        status_matches(h, events, {a2}, files),
        PROMPT_S,
        what=lambda: f"a2 flagged gone; {_history(h)}",
    )
    (trash / a2.name).rename(a2)
    wait_until(nothing_gone, PROMPT_S, what=lambda: f"a2 back on disk; {_history(h)}")

    # cleanupPeriodDays while the daemon runs: one transcript, a whole project, a rollout.
    gone = {a1, b1, b2, x1}
    a1.unlink()
    shutil.rmtree(b1.parent)
    x1.unlink()
    wait_until(
        status_matches(h, events, gone, files),
        PROMPT_S,
        what=lambda: f"the deletions in status; {_history(h)}\n{h.diagnostics()}",
    )
    assert all_reports(h) == baseline
    check_store(h, events)
    check_status(h, events, gone, files)

    # Deleted while the daemon is down: the start-up scan flags it.
    rc, _ = h.stop(daemon)
    assert rc == 0, h.diagnostics(daemon)
    c1.unlink()
    gone.add(c1)
    daemon = h.start()
    assert all_reports(h) == baseline
    check_store(h, events)
    check_status(h, events, gone, files)

    # A one-shot `sufd ingest` with the daemon stopped flags what it finds deleted.
    rc, _ = h.stop(daemon)
    assert rc == 0, h.diagnostics(daemon)
    x2.unlink()
    gone.add(x2)
    proc = h.run_sufd("ingest", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["files_gone"], summary["events_new"], summary["events_replaced"]) == (1, 0, 0)
    assert all_reports(h) == baseline
    check_store(h, events)
    h.start()
    check_status(h, events, gone, files)
    check_held(h)
    for kind, report in baseline.items():
        check_report(kind, report, events)


def test_polling_backend_flags_deletions_promptly_too(harness: Harness) -> None:
    """The portable (watchfiles) backend reports deletions as well as the inotify one."""
    h = harness
    h.write_config(_config())
    h.daemon_env = {"SUFD_RECONCILE_INTERVAL_S": "600", "SUFD_FORCE_POLLING": "1"}
    events: list[Event] = []
    a1, _ = write_claude(h, events, "-home-dev-alpha", "/home/dev/alpha", "a1", 0, 3)
    a2, _ = write_claude(h, events, "-home-dev-alpha", "/home/dev/alpha", "a2", 1, 2)
    x1 = write_codex(h, events, "x1", "0199aaaa-0000-7000-8000-000000000001", 3, 2)
    x2 = write_codex(h, events, "x2", "0199aaaa-0000-7000-8000-000000000002", 4, 3)
    files = {a1: "claude", a2: "claude", x1: "codex", x2: "codex"}
    h.start()
    assert {r["backend"] for s in h.status()["sources"] for r in s["roots"]} == {"poll"}
    wait_until(
        lambda: h.events_in_store() == Counter(e.usage for e in events),
        5.0,
        what=lambda: f"the first ingest\n{h.diagnostics()}",
    )
    baseline = all_reports(h)
    a1.rename(h.tmp / a1.name)
    x1.unlink()
    wait_until(
        status_matches(h, events, {a1, x1}, files),
        PROMPT_S,
        what=lambda: f"a1 and x1 flagged gone; {_history(h)}",
    )
    (h.tmp / a1.name).rename(a1)
    wait_until(
        status_matches(h, events, {x1}, files),
        PROMPT_S,
        what=lambda: f"a1 back on disk; {_history(h)}",
    )
    check_status(h, events, {x1}, files)
    assert all_reports(h) == baseline
    check_store(h, events)


def test_upgrade_fills_the_per_file_tallies_of_an_existing_ledger(tmp_path: Path) -> None:
    """A ledger from before the tallies (schema 1) gets them from its events when opened."""
    env = make_env(tmp_path)
    config = Path(env.env["XDG_CONFIG_HOME"]) / "sufd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(_config())
    events: list[Event] = []
    home = env.home
    for name, day in (("a1", 0), ("a2", 1)):
        path = home / ".claude" / "projects" / "-home-dev-alpha" / f"{name}.jsonl"
        s = ClaudeSession(name, "/home/dev/alpha")
        lines = [s.user(day * DAY_S)]
        for i in range(3):
            line, usage = s.assistant(day * DAY_S + 60 * i, input=100 + i, output=50 * i)
            lines.append(line)
            events.append(Event(usage, name, "/home/dev/alpha", CLAUDE_MODEL, path))
        append_lines(path, *lines)
    env.run("ingest", "--quiet")
    conn = sqlite3.connect(env.db, isolation_level=None)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        conn.execute("ALTER TABLE files DROP COLUMN tail")  # schema 4
        conn.execute("ALTER TABLE files DROP COLUMN held_events")
        conn.execute("ALTER TABLE files DROP COLUMN held_cost")
        conn.execute("DROP TABLE agg_day")  # schema 3
        conn.execute("DROP TABLE day_zones")
        conn.execute("PRAGMA user_version = 1")
    finally:
        conn.close()
    open_store(env.db).close()
    conn = sqlite3.connect(f"file:{env.db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT path, held_events, held_cost FROM files").fetchall()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    finally:
        conn.close()
    assert version == len(MIGRATIONS)
    by_file: dict[str, list[Event]] = {}
    for e in events:
        by_file.setdefault(str(e.file), []).append(e)
    assert {p: n for p, n, _ in rows} == {p: len(evs) for p, evs in by_file.items()}
    for path, _, cost in rows:
        assert math.isclose(cost, sum(e.cost for e in by_file[path]), rel_tol=1e-9), path


def test_a_file_gone_before_it_is_read_is_flagged_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the soak found: a change (or a sweep) lists a file, the agent moves it away
    before it is read. That is a deletion, not an error: no ``files.error``, the file is
    flagged gone, its events stay."""
    from sufd.ingest.ingestor import Ingestor
    from sufd.prices.table import PriceTable
    from sufd.settings import load
    from sufd.sources import SOURCES
    from sufd.store.ledger import Ledger

    env = make_env(tmp_path)
    for key, value in env.env.items():
        monkeypatch.setenv(key, value)
    root = env.home / ".claude" / "projects"
    path = root / "-home-dev-proj" / "s1.jsonl"
    path.parent.mkdir(parents=True)
    line, _ = ClaudeSession("s1").assistant(1, input=10, output=5)
    path.write_bytes(line + b"\n")
    settings = load(None)
    prices = PriceTable.bundled()
    conn = open_store(settings.paths.db)
    try:
        ingestor = Ingestor(settings, Ledger(conn, price_version=prices.version), prices)
        assert ingestor.ingest_all().inserted == 1
        path.write_bytes(line + b"\n" + line + b"\n")  # changed: it will be read again...
        path.unlink()  # ...but it is gone by then
        result = ingestor.ingest_file(SOURCES["claude"], root, path)
        assert result.error is None
        row = conn.execute("SELECT gone, error FROM files WHERE path = ?", (str(path),)).fetchone()
        assert tuple(row) == (1, None)
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    finally:
        conn.close()
