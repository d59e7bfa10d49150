"""What the status line shows: the day it sums and its one-line text.

Shared by the daemon, which answers the ``statusline`` verb from its open ledger, and by
``sufd-statusline``, which reads the ledger itself when the daemon is down, so both print
the same line. Standard library only: the status line must start fast.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["day_bounds_ms", "format_line"]


def format_line(numbers: dict[str, Any], model: str | None = None) -> str:
    """``sufd · Sonnet 4 · session $0.42 · today $12.34 · $3.10/h``."""
    parts = ["sufd"]
    if model:
        parts.append(model)
    session = numbers.get("session_cost")
    if session is not None:
        parts.append(f"session ${session:,.2f}")
    parts.append(f"today ${numbers.get('today_cost', 0.0):,.2f}")
    parts.append(f"${numbers.get('last_hour_cost', 0.0):,.2f}/h")
    return " · ".join(parts)


def day_bounds_ms(now: float) -> tuple[int, int]:
    """Epoch ms of local midnight today and of the next local midnight (the zone of this
    process: ``TZ`` or the system's); a day is 23 or 25 hours long when the clocks change."""
    lt = time.localtime(now)
    start = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
    end = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    return int(start * 1000), int(end * 1000)
