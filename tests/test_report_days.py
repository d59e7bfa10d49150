"""Reports from the per-day sums (``agg_day``) equal reports from the 15-minute buckets.

The ledger keeps sums per local day for the zones reports use by default (``day_zones``);
reports in such a zone read them, others sum the buckets (``agg_time``). The buckets are the
reference: they were exact before the day sums existed and are checked against ccusage in
``test_parity_ccusage``. Here a corpus with requests on both sides of every local midnight
and every DST change of 2026 in zones with 30- and 45-minute offsets is ingested by the real
``sufd ingest`` in several zones, with replacements that move an event to another day, and
every report kind is compared both ways: tokens exactly, cost to 1e-9 relative (the two sum
the same costs in another order).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sufd.cli.report import ReportQuery, build_report
from tests.conftest import SufdEnv, make_env
from tests.daemon_harness import BASE_TS, ClaudeSession, append_lines

ZONES = ("UTC", "America/Los_Angeles", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham")
MODELS = ("claude-sonnet-4-20250514", "claude-opus-4-20250514")


def _transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """The UTC instants at which ``zone``'s offset changes in ``year`` (found by bisection)."""
    out = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    while t < end:
        nxt = t + timedelta(days=1)
        if t.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            a, b = t, nxt
            while b - a > timedelta(minutes=1):
                mid = a + (b - a) / 2
                if mid.astimezone(zone).utcoffset() == a.astimezone(zone).utcoffset():
                    a = mid
                else:
                    b = mid
            out.append(b)
        t = nxt
    return out


def _instants() -> list[datetime]:
    """Every 17 minutes for 6 hours around each DST change and the local midnights next to
    it, and every 61 hours through 2026."""
    centres: list[datetime] = []
    for name in ZONES:
        zone = ZoneInfo(name)
        for change in _transitions(zone, 2026):
            centres.append(change)
            local = change.astimezone(zone)
            midnight = datetime.combine(local.date(), datetime.min.time(), zone)
            centres += [midnight.astimezone(UTC), (midnight + timedelta(days=1)).astimezone(UTC)]
    centres.append(datetime(2026, 1, 1, tzinfo=UTC))  # the years' own midnights
    near = {c + timedelta(minutes=17 * k) for c in centres for k in range(-10, 11)}
    # And through the year at shifting hours: every week and month holds something.
    spread = {datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=61 * k) for k in range(144)}
    return sorted(near | spread)


def _write_corpus(home: Path, instants: list[datetime], part: int) -> None:
    """Part 0: one event per instant over several sessions, projects and models. Part 1:
    a second copy of every fifth of them with a larger total, 50 minutes later (ccusage's
    dedup keeps the larger: the event moves, often to another bucket or day), and more."""
    for i, at in enumerate(instants):
        if part == 1 and i % 5:
            continue
        project = f"/home/dev/p{i % 3}"
        name = f"s{i % 7}"
        session = ClaudeSession(name, project)
        session.n = i  # the message id follows the instant: a replay finds its original
        shift = timedelta(minutes=50) if part else timedelta(0)
        seconds = (at + shift - BASE_TS).total_seconds()
        line, _ = session.assistant(
            seconds,
            input=100 + i + 1000 * part,
            output=7 + i % 11,
            cache_write=3 * (i % 4),
            cache_read=5 * (i % 5),
            model=MODELS[i % 2],
        )
        path = home / ".claude" / "projects" / f"-home-dev-p{i % 3}" / f"{name}-{part}.jsonl"
        append_lines(path, line)


def _ingest(env: SufdEnv, zone: str) -> None:
    env.env["TZ"] = zone  # the default report zone: the ledger starts keeping its days
    env.run("ingest", "--quiet")


def _reports(db: Path, zone: str) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        tz = ZoneInfo(zone)
        ranges = [(None, None), (date(2026, 3, 8), date(2026, 4, 5)), (date(2026, 10, 4), None)]
        for kind in ("daily", "weekly", "monthly", "project", "model"):
            for since, until in ranges:
                query = ReportQuery(kind, tz, since, until)
                out[f"{kind} {since}..{until}"] = build_report(conn, query)
        return out
    finally:
        conn.close()


def _equal(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} rows != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _without_days(db: Path, tmp: Path) -> Path:
    """A copy of the ledger whose reports must sum the buckets (no zone's days are kept)."""
    copy = tmp / "buckets-only.sqlite3"
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.execute("DELETE FROM day_zones")
    dst.execute("DELETE FROM agg_day")
    dst.commit()
    dst.close()
    return copy


def test_day_sums_equal_bucket_sums_in_every_zone(tmp_path: Path) -> None:
    env = make_env(tmp_path / "user")
    instants = _instants()
    assert len(instants) > 500, len(instants)
    _write_corpus(env.home, instants, 0)
    _ingest(env, "UTC")
    for zone in ZONES[1:]:  # each one's days summed from the buckets when first kept
        _ingest(env, zone)
    _write_corpus(env.home, instants, 1)
    _ingest(env, "Asia/Kathmandu")  # the replays update every zone's days, not only its own

    conn = sqlite3.connect(f"file:{env.db}?mode=ro", uri=True)
    tracked = {z for (z,) in conn.execute("SELECT zone FROM day_zones")}
    replaced = conn.execute("SELECT COUNT(*) FROM events WHERE input >= 1000").fetchone()[0]
    conn.close()
    assert tracked == set(ZONES)
    assert replaced == len(instants[::5]), "the replays replaced their originals"

    reference = _without_days(env.db, tmp_path)
    for zone in ZONES:
        fast, slow = _reports(env.db, zone), _reports(reference, zone)
        assert fast["daily None..None"]["daily"], "the reports are not empty"
        _equal(fast, slow, zone)


def test_day_sums_kept_by_deltas_equal_a_fresh_sum(tmp_path: Path) -> None:
    """After incremental ingests with replacements, each zone's ``agg_day`` rows equal the
    rows summed afresh from ``agg_time`` when the zone is first tracked."""
    env = make_env(tmp_path / "user")
    instants = _instants()
    _write_corpus(env.home, instants, 0)
    _ingest(env, "Pacific/Chatham")
    _ingest(env, "America/Los_Angeles")
    _write_corpus(env.home, instants, 1)
    _ingest(env, "UTC")

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    copy = fresh / "ledger.sqlite3"
    shutil.copy(env.db, copy)
    conn = sqlite3.connect(copy)
    conn.execute("DELETE FROM day_zones")
    conn.execute("DELETE FROM agg_day")
    conn.commit()
    conn.close()

    from sufd.store import open_store
    from sufd.store.ledger import Ledger

    def rows(db: Path, zone: str) -> list[tuple[Any, ...]]:
        c = sqlite3.connect(db)
        try:
            return c.execute(
                "SELECT day, source, project_id, model_id, events, input, output,"
                " cache_write_5m, cache_write_1h, cache_read, reasoning, total, cost,"
                " unpriced, estimated FROM agg_day WHERE zone = ? ORDER BY 1, 2, 3, 4",
                (zone,),
            ).fetchall()
        finally:
            c.close()

    w = open_store(copy)
    ledger = Ledger(w, price_version="test")
    for zone in ("Pacific/Chatham", "America/Los_Angeles", "UTC"):
        ledger.track_zone(zone)
    w.close()
    for zone in ("Pacific/Chatham", "America/Los_Angeles", "UTC"):
        kept, summed = rows(env.db, zone), rows(copy, zone)
        assert kept, zone
        _equal([list(r) for r in kept], [list(r) for r in summed], zone)


def test_a_ledger_from_before_the_day_sums_still_reports(tmp_path: Path) -> None:
    """``sufctl report`` of a new sufd reads a schema-2 ledger (not yet migrated: the old
    daemon still runs) from the buckets instead of failing on the missing table."""
    env = make_env(tmp_path / "user")
    _write_corpus(env.home, _instants()[:50], 0)
    _ingest(env, "UTC")
    want = env.run("ctl", "report", "daily", "--json").stdout
    conn = sqlite3.connect(env.db)
    conn.execute("DROP TABLE agg_day")
    conn.execute("DROP TABLE day_zones")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    got = env.run("ctl", "report", "daily", "--json").stdout
    assert json.loads(want)["daily"], "the report is not empty"
    _equal(json.loads(got), json.loads(want), "schema 2")
