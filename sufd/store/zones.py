"""Local time over the 15-minute UTC buckets the aggregates are kept in.

Every real UTC offset is a whole number of quarter hours, so each bucket falls in exactly one
local day of any IANA zone: a bucket's local day is exact, whatever the zone or its DST rules.
Shared by the reports (SQL over a range of buckets) and the ledger (the per-day sums it keeps
for the zones reports use).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sufd.store.measures import BUCKET_S

__all__ = ["BUCKET_S", "DAY_S", "DayOf", "local_day_sql", "local_seconds_sql", "offset_s"]

DAY_S = 86400
_DAY_BUCKETS = DAY_S // BUCKET_S
# SQLite's integer division truncates toward zero: local seconds are shifted this many days
# up first, so that a local time before 1970-01-01 still floors to the right day.
_SHIFT_DAYS = 1000


def offset_s(zone: ZoneInfo, bucket: int) -> int:
    """The zone's UTC offset, in seconds, at the start of ``bucket``."""
    delta = datetime.fromtimestamp(bucket * BUCKET_S, UTC).astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _segments(zone: ZoneInfo, lo: int, hi: int) -> list[tuple[int, int]]:
    """``(first bucket, UTC offset in seconds)`` for each stretch of constant offset."""
    segments = [(lo, offset_s(zone, lo))]
    start = lo
    while start < hi:
        nxt = min(start + _DAY_BUCKETS, hi)
        if offset_s(zone, nxt) != segments[-1][1]:
            a, b = start, nxt  # offset at a is the current one, at b the new one
            while b - a > 1:
                mid = (a + b) // 2
                if offset_s(zone, mid) == segments[-1][1]:
                    a = mid
                else:
                    b = mid
            segments.append((b, offset_s(zone, b)))
            start = b
        else:
            start = nxt
    return segments


def local_seconds_sql(zone: ZoneInfo, lo: int, hi: int) -> str:
    """An SQL expression over ``bucket`` (in ``[lo, hi)``): local epoch seconds in ``zone``."""
    segments = _segments(zone, lo, max(lo, hi - 1))
    if len(segments) == 1:
        return f"(bucket * {BUCKET_S} + {segments[0][1]})"
    cases = " ".join(
        f"WHEN bucket < {b} THEN {o}"
        for (b, _), (_, o) in zip(segments[1:], segments, strict=False)
    )
    return f"(bucket * {BUCKET_S} + CASE {cases} ELSE {segments[-1][1]} END)"


def local_day_sql(zone: ZoneInfo, lo: int, hi: int) -> str:
    """An SQL expression over ``bucket``: the local day (days since 1970-01-01) in ``zone``."""
    shift = _SHIFT_DAYS * DAY_S
    return f"(({local_seconds_sql(zone, lo, hi)} + {shift}) / {DAY_S} - {_SHIFT_DAYS})"


class DayOf:
    """``bucket → local day`` in one zone, remembered per bucket (a batch touches few)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._days: dict[int, int] = {}

    def __call__(self, bucket: int) -> int:
        day = self._days.get(bucket)
        if day is None:
            if len(self._days) > 100_000:  # a long catch-up: keep memory bounded
                self._days.clear()
            day = (bucket * BUCKET_S + offset_s(self.zone, bucket)) // DAY_S
            self._days[bucket] = day
        return day
