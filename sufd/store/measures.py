"""What every aggregate table holds: the measure columns, and the width of a time bucket.

A leaf module (no imports) so that the read side (:mod:`sufd.store.queries`, which the
status line loads when the daemon is down) gets the list without the write side.
"""

from __future__ import annotations

__all__ = ["BUCKET_MS", "BUCKET_S", "MEASURES"]

# The measure columns of agg_time, agg_day and agg_session, in the schema's order (the
# released migrations spell them out; tests/test_store_schema.py holds them to this list).
MEASURES = (
    "events",
    "input",
    "output",
    "cache_write_5m",
    "cache_write_1h",
    "cache_read",
    "reasoning",
    "total",
    "cost",
    "unpriced",
    "estimated",
)

# agg_time sums per 15-minute UTC bucket: every real UTC offset is a multiple of 15 minutes.
BUCKET_S = 900
BUCKET_MS = BUCKET_S * 1000
