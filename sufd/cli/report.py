"""Usage reports (daily, weekly, monthly, session, project, model) from the aggregates.

Reports read only the aggregate tables, never the events. Local dates in any IANA zone are
exact: aggregates are kept per 15-minute UTC bucket, and every real UTC offset is a whole
number of quarter hours, so each bucket falls in exactly one local day. In the zone reports
use by default the ledger also keeps sums per local day (``agg_day``), so those reports
cost the same whatever the length of the history; other zones sum the buckets. The JSON
shape follows ``ccusage --json`` so scripts can switch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from sufd.store import queries
from sufd.store.queries import AggRow
from sufd.store.zones import BUCKET_S, DAY_S, local_seconds_sql

__all__ = ["KINDS", "ReportQuery", "build_report", "parse_day"]

Kind = Literal["daily", "weekly", "monthly", "session", "project", "model"]
KINDS: tuple[Kind, ...] = ("daily", "weekly", "monthly", "session", "project", "model")
_EPOCH = date(1970, 1, 1)


class ReportQuery(NamedTuple):
    """What to report: kind, zone, inclusive local date range, sources."""

    kind: Kind
    zone: ZoneInfo
    since: date | None = None
    until: date | None = None
    sources: tuple[str, ...] = ()


def parse_day(value: str) -> date:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` (ccusage accepts both).

    Raises:
        ValueError: with a message fit for the user.
    """
    text = value.strip()
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (use YYYY-MM-DD or YYYYMMDD)") from None


_PERIOD_SQL = {
    "daily": "date({t}, 'unixepoch')",
    "weekly": "date({t}, 'unixepoch', '-6 days', 'weekday 1')",
    "monthly": "strftime('%Y-%m', {t}, 'unixepoch')",
    "project": "'all'",
    "model": "'all'",
}


def _bounds(query: ReportQuery, data: tuple[int, int]) -> tuple[int, int]:
    lo, hi = data[0], data[1] + 1
    if query.since is not None:
        start = datetime.combine(query.since, datetime.min.time(), query.zone)
        lo = max(lo, int(start.timestamp()) // BUCKET_S)
    if query.until is not None:
        end = datetime.combine(query.until + timedelta(days=1), datetime.min.time(), query.zone)
        hi = min(hi, -(-int(end.timestamp()) // BUCKET_S))
    return lo, hi


def build_report(conn: sqlite3.Connection, query: ReportQuery) -> dict[str, Any]:
    """The report as a JSON-ready dict: ``{kind: [rows], "totals": {...}}``."""
    rows = _session_rows(conn, query) if query.kind == "session" else _time_rows(conn, query)
    key = {"project": "projects", "model": "models", "session": "sessions"}.get(
        query.kind, query.kind
    )
    return {key: rows, "totals": _totals(rows), "timezone": query.zone.key}


def _time_rows(conn: sqlite3.Connection, query: ReportQuery) -> list[dict[str, Any]]:
    by_project = query.kind == "project"
    agg = _day_sums(conn, query, by_project)
    if agg is None:
        agg = _bucket_sums(conn, query, by_project)
    groups: dict[str, list[AggRow]] = {}
    for row in agg:
        label = row.project if by_project and row.project is not None else row.group
        if query.kind == "model":
            label = row.model or "<unknown>"
        groups.setdefault(label, []).append(row)
    label_key = {"project": "project", "model": "model"}.get(query.kind, "period")
    out = []
    for label in sorted(groups):
        summed = _row(groups[label])
        if summed is not None:
            out.append({label_key: label, **summed})
    return out


def _day_sums(
    conn: sqlite3.Connection, query: ReportQuery, by_project: bool
) -> list[AggRow] | None:
    """From the sums per local day, if the ledger keeps them in the report's zone (the zone
    reports use by default): a few rows per day, whatever the length of the history."""
    if not queries.tracks_zone(conn, query.zone.key):
        return None
    lo = None if query.since is None else (query.since - _EPOCH).days
    hi = None if query.until is None else (query.until - _EPOCH).days + 1
    if lo is not None and hi is not None and lo >= hi:
        return []
    expr = _PERIOD_SQL[query.kind].format(t=f"(day * {DAY_S})")
    return queries.grouped_days(
        conn, query.zone.key, expr, lo=lo, hi=hi, sources=query.sources, by_project=by_project
    )


def _bucket_sums(conn: sqlite3.Connection, query: ReportQuery, by_project: bool) -> list[AggRow]:
    """From the 15-minute buckets: any zone, at the cost of a pass over the history."""
    data = queries.bucket_range(conn)
    if data is None:
        return []
    lo, hi = _bounds(query, data)
    if lo >= hi:
        return []
    expr = _PERIOD_SQL[query.kind].format(t=local_seconds_sql(query.zone, lo, hi))
    return queries.grouped_time(
        conn, expr, lo=lo, hi=hi, sources=query.sources, by_project=by_project
    )


def _session_rows(conn: sqlite3.Connection, query: ReportQuery) -> list[dict[str, Any]]:
    per: dict[tuple[str, str], list[AggRow]] = {}
    for row in queries.sessions(conn, sources=query.sources):
        per.setdefault((row.source, row.group), []).append(row)
    out = []
    for (source, session), rows in per.items():
        last = max(r.last_ts or 0 for r in rows)
        first = min(r.first_ts or 0 for r in rows)
        last_day = datetime.fromtimestamp(last / 1000, query.zone).date()
        if (query.since and last_day < query.since) or (query.until and last_day > query.until):
            continue
        summed = _row(rows)
        if summed is None:
            continue
        out.append(
            {
                "sessionId": session,
                "source": source,
                "project": rows[0].project,
                "firstActivity": _iso(first),
                "lastActivity": _iso(last),
                **summed,
            }
        )
    out.sort(key=lambda r: str(r["lastActivity"]))
    return out


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


_FIELDS = (
    ("events", 0),
    ("inputTokens", 1),
    ("outputTokens", 2),
    ("cacheCreation5mTokens", 3),
    ("cacheCreation1hTokens", 4),
    ("cacheReadTokens", 5),
    ("reasoningTokens", 6),
    ("totalTokens", 7),
)


def _numbers(values: Sequence[float]) -> dict[str, Any]:
    out: dict[str, Any] = {name: int(values[i]) for name, i in _FIELDS}
    out["cacheCreationTokens"] = out["cacheCreation5mTokens"] + out["cacheCreation1hTokens"]
    out["unpricedEvents"] = int(values[9])
    out["estimatedEvents"] = int(values[10])
    return out


def _sum(rows: Sequence[AggRow]) -> list[float]:
    acc = [0.0] * len(queries.AGG_COLUMNS)
    for row in rows:
        for i, v in enumerate(row.values):
            acc[i] += v
    return acc


def _row(rows: Sequence[AggRow]) -> dict[str, Any] | None:
    total = _sum(rows)
    if total[0] <= 0:
        return None
    by_model: dict[str, list[AggRow]] = {}
    for r in rows:
        by_model.setdefault(r.model, []).append(r)
    breakdowns = []
    for model, mrows in by_model.items():
        values = _sum(mrows)
        if values[0] <= 0 or not model:
            continue
        breakdowns.append({"modelName": model, **_numbers(values), "cost": values[8]})
    breakdowns.sort(key=lambda b: (-b["cost"], b["modelName"]))
    return {
        **_numbers(total),
        "totalCost": total[8],
        "modelsUsed": sorted(b["modelName"] for b in breakdowns),
        "sources": sorted({r.source for r in rows}),
        "modelBreakdowns": breakdowns,
    }


def _totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    keys = [name for name, _ in _FIELDS] + [
        "cacheCreationTokens",
        "unpricedEvents",
        "estimatedEvents",
    ]
    totals: dict[str, Any] = {k: sum(int(r[k]) for r in rows) for k in keys}
    totals["totalCost"] = sum(float(r["totalCost"]) for r in rows)
    return totals
