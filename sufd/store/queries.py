"""Read-side SQL: every query reports and status run against the ledger lives here."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sufd.store.measures import BUCKET_MS, MEASURES

__all__ = [
    "AGG_COLUMNS",
    "AggRow",
    "History",
    "bucket_range",
    "grouped_days",
    "grouped_time",
    "history",
    "ledger_summary",
    "sessions",
    "source_totals",
    "statusline",
    "tracks_zone",
]

AGG_COLUMNS = MEASURES  # what every AggRow's values hold, in this order
_SUMS = ", ".join(f"SUM({c})" for c in MEASURES)
_HOUR_MS = 3_600_000


class AggRow(NamedTuple):
    """Summed aggregate values for one group."""

    group: str
    source: str
    model: str
    values: tuple[float, ...]
    first_ts: int | None = None
    last_ts: int | None = None
    project: str | None = None


def bucket_range(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """The first and last 15-minute bucket that holds any usage."""
    row = conn.execute("SELECT MIN(bucket), MAX(bucket) FROM agg_time").fetchone()
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1])


def _source_filter(sources: Sequence[str], column: str) -> tuple[str, list[str]]:
    if not sources:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(sources))})", list(sources)


def grouped_time(
    conn: sqlite3.Connection,
    group_expr: str,
    *,
    lo: int,
    hi: int,
    sources: Sequence[str] = (),
    by_project: bool = False,
) -> list[AggRow]:
    """Sum ``agg_time`` over buckets ``[lo, hi)`` grouped by ``group_expr``, source and model.

    ``group_expr`` is an SQL expression over ``bucket`` built by the report module (it maps
    a bucket to a local date, week or month); it never contains user input.
    """
    where = "a.bucket >= ? AND a.bucket < ?"
    return _grouped(conn, "agg_time", where, [lo, hi], group_expr, sources, by_project)


def tracks_zone(conn: sqlite3.Connection, zone: str) -> bool:
    """Whether the ledger keeps sums per local day in ``zone`` (``agg_day``)."""
    try:
        row = conn.execute("SELECT 1 FROM day_zones WHERE zone = ?", (zone,)).fetchone()
    except sqlite3.OperationalError:
        return False  # a ledger from before schema 3, read before a writer migrated it
    return row is not None


def grouped_days(
    conn: sqlite3.Connection,
    zone: str,
    group_expr: str,
    *,
    lo: int | None,
    hi: int | None,
    sources: Sequence[str] = (),
    by_project: bool = False,
) -> list[AggRow]:
    """Sum ``agg_day`` of ``zone`` over local days ``[lo, hi)`` (days since 1970-01-01;
    ``None``: unbounded) grouped by ``group_expr`` (SQL over ``day``), source and model."""
    where = "a.zone = ?"
    params: list[object] = [zone]
    if lo is not None:
        where += " AND a.day >= ?"
        params.append(lo)
    if hi is not None:
        where += " AND a.day < ?"
        params.append(hi)
    return _grouped(conn, "agg_day", where, params, group_expr, sources, by_project)


def _grouped(
    conn: sqlite3.Connection,
    table: str,
    where: str,
    params: Sequence[object],
    group_expr: str,
    sources: Sequence[str],
    by_project: bool,
) -> list[AggRow]:
    by_source, source_params = _source_filter(sources, "a.source")
    project_col = "p.path" if by_project else "NULL"
    sql = (
        f"SELECT {group_expr} AS g, a.source, m.name, {project_col}, {_SUMS}"
        f" FROM {table} a JOIN models m ON m.id = a.model_id"
        + (" JOIN projects p ON p.id = a.project_id" if by_project else "")
        + f" WHERE {where}{by_source}"
        f" GROUP BY g, a.source, a.model_id{', a.project_id' if by_project else ''}"
    )
    return [
        AggRow(r[0], r[1], r[2], tuple(r[4:]), project=r[3])
        for r in conn.execute(sql, [*params, *source_params])
    ]


def sessions(conn: sqlite3.Connection, *, sources: Sequence[str] = ()) -> list[AggRow]:
    """Per-session, per-model sums with first and last activity."""
    where, params = _source_filter(sources, "s.source")
    sql = (
        f"SELECT s.session, s.source, m.name, p.path, {_SUMS}, MIN(a.first_ts), MAX(a.last_ts)"
        " FROM agg_session a JOIN sessions s ON s.id = a.session_id"
        " JOIN models m ON m.id = a.model_id JOIN projects p ON p.id = s.project_id"
        f" WHERE 1 = 1{where} GROUP BY a.session_id, a.model_id"
    )
    end = 4 + len(MEASURES)
    return [
        AggRow(r[0], r[1], r[2], tuple(r[4:end]), first_ts=r[end], last_ts=r[end + 1], project=r[3])
        for r in conn.execute(sql, params)
    ]


def ledger_summary(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Per source: files tracked, files gone, malformed lines, files in error, events."""
    out: dict[str, dict[str, int]] = {}
    for source, files, gone, malformed, errors, events in conn.execute(
        "SELECT source, COUNT(*), SUM(gone), SUM(malformed), SUM(error IS NOT NULL), SUM(events)"
        " FROM files GROUP BY source"
    ):
        out[source] = {
            "files": files,
            "files_gone": gone or 0,
            "malformed_lines": malformed or 0,
            "files_in_error": errors or 0,
            "events_read": events or 0,
        }
    return out


def files_in_error(conn: sqlite3.Connection, limit: int = 5) -> tuple[list[tuple[str, str]], int]:
    """Files on disk that could not be read last time (path, error), at most ``limit`` of
    them, and how many there are in all."""
    rows = conn.execute(
        "SELECT path, error FROM files WHERE error IS NOT NULL AND gone = 0 ORDER BY path"
    ).fetchall()
    return [(str(p), str(e)) for p, e in rows[:limit]], len(rows)


class History(NamedTuple):
    """How much of the ledger is still backed by a source file on disk."""

    events: int = 0
    cost: float = 0.0
    gone_files: int = 0
    gone_events: int = 0
    gone_cost: float = 0.0

    @classmethod
    def total(cls, parts: Iterable[History]) -> History:
        """Field-wise sum: the whole ledger from the per-source figures."""
        items = list(parts)
        return cls(
            sum(p.events for p in items),
            sum(p.cost for p in items),
            sum(p.gone_files for p in items),
            sum(p.gone_events for p in items),
            sum(p.gone_cost for p in items),
        )

    def as_dict(self) -> dict[str, float]:
        """The ``history`` block of ``sufctl status --json``; shares are fractions (0..1)."""
        return {
            "events": self.events,
            "cost_usd": self.cost,
            "gone_files": self.gone_files,
            "gone_events": self.gone_events,
            "gone_cost_usd": self.gone_cost,
            "gone_events_share": self.gone_events / self.events if self.events else 0.0,
            "gone_cost_share": self.gone_cost / self.cost if self.cost else 0.0,
        }


def history(conn: sqlite3.Connection) -> dict[str, History]:
    """Per source: events and cost in the ledger, and how many of them (and which cost) come
    from files no longer on disk.

    An event counts as gone when the file the ledger attributes it to (the one whose line it
    holds) is gone, even if another file still holds a copy of that line. Reads the per-file
    tallies that every commit keeps current: the cost grows with files, not events.
    """
    out: dict[str, History] = {}
    for source, events, cost, gone, gone_events, gone_cost in conn.execute(
        "SELECT source, SUM(held_events), SUM(held_cost), SUM(gone),"
        " SUM(CASE WHEN gone THEN held_events END), SUM(CASE WHEN gone THEN held_cost END)"
        " FROM files GROUP BY source"
    ):
        out[source] = History(
            int(events or 0),
            float(cost or 0),
            int(gone or 0),
            int(gone_events or 0),
            float(gone_cost or 0),
        )
    return out


def source_totals(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Per source: events in the ledger and the newest event time (epoch ms)."""
    out: dict[str, dict[str, int]] = {}
    for source, events in conn.execute("SELECT source, SUM(events) FROM agg_time GROUP BY source"):
        out.setdefault(source, {})["events"] = int(events or 0)
    for source, last in conn.execute(
        "SELECT s.source, MAX(a.last_ts) FROM agg_session a JOIN sessions s ON s.id = a.session_id"
        " GROUP BY s.source"
    ):
        out.setdefault(source, {})["last_ms"] = int(last or 0)
    return out


def statusline(
    conn: sqlite3.Connection, session: str | None, *, day_ms: tuple[int, int], now_ms: int
) -> dict[str, float | None]:
    """The numbers of the status line: this session's cost, today's, and the last hour's.

    Every window has an end, so events dated after ``now_ms`` (a clock set wrong, another
    machine's clock) stay out of the figures relative to now: "today" is the local day
    ``day_ms`` = [midnight, next midnight) in epoch ms, the last hour is
    [``now_ms`` - 1 h, ``now_ms``], and the session counts what it did up to ``now_ms``.
    """
    session_cost: float | None = None
    if session:
        # A session's sums hold its whole span; one that reaches past now (rare) is summed
        # from its events up to now, through the (session, model, ts) index.
        (session_cost,) = conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN a.last_ts <= :now THEN a.cost ELSE"
            " (SELECT COALESCE(SUM(e.cost), 0) FROM events e WHERE e.session_id = a.session_id"
            " AND e.model_id = a.model_id AND e.ts <= :now) END), 0)"
            " FROM agg_session a JOIN sessions s ON s.id = a.session_id WHERE s.session = :session",
            {"now": now_ms, "session": session},
        ).fetchone()
    start, end = day_ms
    (today,) = conn.execute(
        "SELECT COALESCE(SUM(cost), 0) FROM agg_time WHERE bucket >= ? AND bucket < ?",
        (start // BUCKET_MS, -(-end // BUCKET_MS)),
    ).fetchone()
    # The hour's edges fall inside 15-minute buckets: sum the events themselves, found
    # through the sessions active in the hour and the (session, model, ts) index.
    (hour,) = conn.execute(
        "SELECT COALESCE(SUM(e.cost), 0) FROM agg_session a CROSS JOIN events e"
        " ON e.session_id = a.session_id AND e.model_id = a.model_id"
        " AND e.ts BETWEEN :lo AND :now WHERE a.last_ts >= :lo AND a.first_ts <= :now",
        {"lo": now_ms - _HOUR_MS, "now": now_ms},
    ).fetchone()
    return {
        "session_cost": None if session_cost is None else float(session_cost),
        "today_cost": float(today),
        "last_hour_cost": float(hour),
    }
