"""Every window relative to now has an end (issue 12 item 8).

A history may hold events dated after now (a clock set wrong, another machine's clock). The
status line's "today" is the local day [midnight, next midnight), its last hour is
[now - 1 h, now] and its session cost counts what the session did up to now; ``sufctl report
--until DAY`` holds that whole day and nothing after. The events themselves stay in the ledger
and show on their own days in reports without ``--until``.

The lines written here carry ``costUSD`` (used as is in the default cost mode), so every
expected figure is a sum of amounts chosen here, never sufd's own output. The daemon runs as a
real subprocess through :mod:`tests.daemon_harness`, with ``TZ=UTC``.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from sufd.control import statusline
from tests.daemon_harness import (
    BASE_TS,
    ClaudeSession,
    Harness,
    Usage,
    append_lines,
    wait_until,
)

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
SESSION = "sess-now"
OTHER = "sess-other"
_T = TypeVar("_T")
STATUS_JSON = json.dumps(
    {"session_id": SESSION, "model": {"id": "claude-sonnet-4", "display_name": "Sonnet 4"}}
).encode()


@dataclass(frozen=True)
class Written:
    """One request written to a transcript: its session, date and stored cost."""

    session: str
    ts_ms: int
    cost: float
    usage: Usage


def write_history(h: Harness, now_ms: int) -> list[Written]:
    """Two sessions with requests yesterday, earlier today, in the last hour, a few minutes
    ahead of now and days ahead of now. Each cost is a distinct power of two in cents, so a
    sum names exactly the requests it holds."""
    day_start = now_ms - now_ms % DAY_MS  # TZ=UTC
    plan = [
        (SESSION, day_start - 3 * HOUR_MS),  # yesterday
        (SESSION, now_ms - 20 * MINUTE_MS),  # last hour
        (SESSION, now_ms - 50 * MINUTE_MS),  # last hour
        (SESSION, now_ms + 5 * MINUTE_MS),  # ahead of now, in now's 15-minute bucket or next
        (SESSION, now_ms + 3 * DAY_MS),  # days ahead
        (OTHER, now_ms - 61 * MINUTE_MS),  # just before the last hour
        (OTHER, now_ms - 2 * MINUTE_MS),  # last hour
        (OTHER, now_ms + 10 * DAY_MS),  # days ahead
        (OTHER, now_ms + 10 * DAY_MS + HOUR_MS),  # days ahead, same day
    ]
    sessions = {name: ClaudeSession(name) for name in (SESSION, OTHER)}
    written = []
    for i, (name, ts) in enumerate(plan):
        cost = 2**i / 100
        line, usage = sessions[name].assistant(
            (ts - BASE_TS.timestamp() * 1000) / 1000, input=1000 + i, output=100 + i
        )
        assert usage.ts == ts
        obj = json.loads(line)
        obj["costUSD"] = cost
        append_lines(h.claude_file(session=name), json.dumps(obj, separators=(",", ":")).encode())
        written.append(Written(name, ts, cost, usage))
    return written


@dataclass(frozen=True)
class Expected:
    session: float
    today: float
    hour: float


def expected_at(written: list[Written], now_ms: int) -> Expected:
    """The status line's figures at ``now_ms`` (TZ=UTC), from the requests written."""
    day_start = now_ms - now_ms % DAY_MS
    return Expected(
        session=sum(w.cost for w in written if w.session == SESSION and w.ts_ms <= now_ms),
        today=sum(w.cost for w in written if day_start <= w.ts_ms < day_start + DAY_MS),
        hour=sum(w.cost for w in written if now_ms - HOUR_MS <= w.ts_ms <= now_ms),
    )


def around_now(written: list[Written], call: Callable[[], _T]) -> tuple[Expected, _T]:
    """``call()`` and the figures expected of it, from the wall clock read just before and
    just after it: the dates written keep them apart by minutes, so only a day change can
    make the two readings differ (and then the test cannot tell which is right)."""
    before = expected_at(written, int(time.time() * 1000))
    result = call()
    if expected_at(written, int(time.time() * 1000)) != before:
        pytest.skip("the UTC day changed while the test ran")
    return before, result


def statusline_argv() -> list[str]:
    script = Path(sys.executable).parent / "sufd-statusline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sufd.cli.statusline"]


def run_statusline(h: Harness) -> dict[str, float]:
    """The real ``sufd-statusline`` with Claude Code's status JSON on stdin; its three
    amounts, parsed from the one line it prints."""
    proc = subprocess.run(
        statusline_argv(), env=h.user_env(), input=STATUS_JSON, capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.decode().strip()
    parts = line.split(" · ")
    assert parts[:2] == ["sufd", "Sonnet 4"], line
    assert parts[2].startswith("session $") and parts[3].startswith("today $"), line
    assert parts[4].startswith("$") and parts[4].endswith("/h"), line
    return {
        "session": float(parts[2].removeprefix("session $").replace(",", "")),
        "today": float(parts[3].removeprefix("today $").replace(",", "")),
        "hour": float(parts[4][1:-2].replace(",", "")),
    }


def check_printed(h: Harness, written: list[Written]) -> None:
    want, got = around_now(written, lambda: run_statusline(h))
    assert got == {
        "session": round(want.session, 2),
        "today": round(want.today, 2),
        "hour": round(want.hour, 2),
    }


def test_statusline_windows_end_at_now(harness: Harness) -> None:
    """issue 12 item 8: events dated days ahead of now (and minutes ahead) count neither in
    "today" beyond its day, nor in the last hour, nor in the session's cost so far; the
    daemon's answer and ``sufd-statusline`` (through the daemon, then reading the ledger
    file with the daemon stopped) agree with the sums of what was written."""
    h = harness
    now = int(time.time()) * 1000
    written = write_history(h, now)
    d = h.start()
    wait_until(
        lambda: h.has_events([w.usage for w in written]),
        10,
        what=lambda: f"the history in the ledger\n{h.diagnostics(d)}",
    )
    assert sum(h.events_in_store().values()) == len(written)  # the later ones included

    # The daemon's own numbers, unrounded: with its own day (the client gives none), the
    # day the client gives, and a day start alone (a client from before the day's end).
    def daemon_numbers(args: dict[str, int]) -> dict[str, Any]:
        t = int(time.time() * 1000)
        start = t - t % DAY_MS  # what sufd-statusline sends, TZ=UTC
        day = {k: start + v for k, v in args.items()}
        return h.call("statusline", {"session_id": SESSION, **day})

    for args in ({}, {"day_start_ms": 0, "day_end_ms": DAY_MS}, {"day_start_ms": 0}):
        want, numbers = around_now(written, functools.partial(daemon_numbers, args))
        assert numbers["session_cost"] == pytest.approx(want.session, abs=1e-9), args
        assert numbers["today_cost"] == pytest.approx(want.today, abs=1e-9), args
        assert numbers["last_hour_cost"] == pytest.approx(want.hour, abs=1e-9), args
    # Sanity of the plan: each window leaves something out that an open end would count.
    everything_since_midnight = sum(w.cost for w in written if w.ts_ms >= now - now % DAY_MS)
    assert want.today < everything_since_midnight
    assert want.session < sum(w.cost for w in written if w.session == SESSION)

    check_printed(h, written)  # asks the daemon
    rc, _ = h.stop(d)
    assert rc == 0, h.diagnostics(d)
    assert not h.socket.exists()
    check_printed(h, written)  # reads the ledger file


def test_report_until_excludes_later_days(harness: Harness) -> None:
    """issue 12 item 8: ``sufctl report daily --until TODAY`` holds every day up to today and
    none after, from the per-day sums (the default zone) and from the 15-minute buckets
    (another zone); without ``--until`` the events dated ahead of now show on their days."""
    h = harness
    now = int(time.time()) * 1000
    written = write_history(h, now)
    h.start()
    wait_until(lambda: h.has_events([w.usage for w in written]), 10, what="the history")

    def by_day(report: dict[str, Any]) -> dict[str, tuple[int, float]]:
        return {r["period"]: (r["events"], round(r["totalCost"], 6)) for r in report["daily"]}

    for zone in ("UTC", "Asia/Kathmandu"):  # UTC+5:45: other days, and no per-day sums
        tz = ZoneInfo(zone)

        def day(ms: int, tz: ZoneInfo = tz) -> str:
            return datetime.fromtimestamp(ms / 1000, tz).date().isoformat()

        def sums(ws: list[Written], day: Callable[[int], str] = day) -> dict[str, Any]:
            out: dict[str, tuple[int, float]] = {}
            for w in ws:
                n, c = out.get(day(w.ts_ms), (0, 0.0))
                out[day(w.ts_ms)] = (n + 1, c + w.cost)
            return {k: (n, round(c, 6)) for k, (n, c) in out.items()}

        today = day(now)
        upto = [w for w in written if day(w.ts_ms) <= today]
        assert len(upto) < len(written)
        for until in (today, today.replace("-", "")):
            report = h.report("daily", "--until", until, "--timezone", zone)
            assert by_day(report) == sums(upto), (zone, until)
            assert report["totals"]["events"] == len(upto)
            assert report["totals"]["totalCost"] == pytest.approx(sum(w.cost for w in upto))
        # Without --until: every day, the later ones included, on their own dates.
        assert by_day(h.report("daily", "--timezone", zone)) == sums(written)
        last = day(max(w.ts_ms for w in written))
        report = h.report("daily", "--since", last, "--until", last, "--timezone", zone)
        assert by_day(report) == sums([w for w in written if day(w.ts_ms) == last])


def test_day_bounds_follow_the_local_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 12 item 8: "today" ends at the next local midnight, 23 or 25 hours after the
    last one on the days the clocks change."""
    cases = [
        ("UTC", "2026-03-08T12:00:00+00:00", "2026-03-08T00:00:00+00:00", 24),
        ("America/New_York", "2026-03-08T12:00:00-04:00", "2026-03-08T00:00:00-05:00", 23),
        ("America/New_York", "2026-11-01T12:00:00-05:00", "2026-11-01T00:00:00-04:00", 25),
        ("Asia/Kathmandu", "2026-03-08T00:10:00+05:45", "2026-03-08T00:00:00+05:45", 24),
    ]
    try:
        for zone, at, midnight, hours in cases:
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            now = datetime.fromisoformat(at).timestamp()
            start, end = statusline.day_bounds_ms(now)
            assert start == int(datetime.fromisoformat(midnight).timestamp() * 1000), zone
            assert end - start == hours * HOUR_MS, (zone, at)
    finally:
        monkeypatch.undo()
        time.tzset()
