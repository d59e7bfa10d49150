"""The text of ``sufctl status``: supervisorctl-like lines, stable for grep."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["clock", "render_status"]


def clock(epoch: float) -> str:
    """A local date and time to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _uptime(seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def render_status(st: dict[str, object]) -> str:
    """supervisorctl-like text: one line for the daemon, one per root, stable for grep."""
    sources = st.get("sources") or []
    assert isinstance(sources, list)
    roots = [r for s in sources for r in s.get("roots", [])]
    watching = sum(1 for r in roots if r.get("state") in ("watching", "polling"))
    missing = sum(1 for r in roots if r.get("state") == "missing")
    state = str(st.get("state", "unknown"))
    uptime = _uptime(int(str(st.get("uptime_s", 0))))
    store = st.get("store") or {}
    assert isinstance(store, dict)
    lines = [
        f"{'sufd':<11} {'RUNNING':<9} pid {st.get('pid')}, uptime {uptime}, {state},"
        f" watching {watching}/{len(roots)} roots ({missing} missing)",
        f"{'ledger':<11} {st.get('db') or store.get('path') or '-'}",
    ]
    for src in sources:
        lines.append(
            f"{src['name']:<11} {str(src['state']).upper():<9} {src['files_tracked']} files,"
            f" {src['events']:,} events, last event {src['last_event_at'] or '-'},"
            f" {src['malformed_lines']} malformed lines"
        )
        for root in src.get("roots", []):
            lines.append(
                f"  {str(root['state']).upper():<9} {root['path']}  ({root.get('backend') or '-'})"
            )
    pause = st.get("pause") or {}
    assert isinstance(pause, dict)
    for name, p in pause.items():
        until = f" until {clock(p['until'])}" if p.get("until") else ""
        reason = f" ({p['reason']})" if p.get("reason") else ""
        lines.append(f"paused      {name} since {clock(p['since'])}{until}{reason}")
    lines += _history_lines(sources, st.get("history"))
    cycle = st.get("last_cycle") or {}
    assert isinstance(cycle, dict)
    lag = cycle.get("lag_ms")
    lines.append(
        f"last cycle  {cycle.get('kind') or '-'}: {cycle.get('files', 0)} files,"
        f" {cycle.get('events', 0)} new events in {cycle.get('duration_ms', 0)} ms"
        f" (lag {'-' if lag is None else lag} ms); store {int(store.get('bytes', 0)) / 1e6:,.1f} MB"
    )
    for warning in st.get("warnings") or []:  # type: ignore[attr-defined]
        lines.append(f"warning     {warning}")
    return "\n".join(lines)


def _percent(part: float, whole: float) -> str:
    """``38 %``; a share that rounds to 0 or 100 without being so says ``<1 %`` / ``>99 %``."""
    if not whole or not part:
        return "0 %"
    pct = 100 * part / whole
    if pct < 1:
        return "<1 %"
    if pct > 99 and part < whole:
        return ">99 %"
    return f"{pct:.0f} %"


def _history_lines(sources: list[dict[str, Any]], overall: object) -> list[str]:
    """How much of the ledger comes from files the agents have since deleted."""
    lines = []
    for src in sources:
        h = src.get("history") or {}
        if h.get("gone_files"):
            lines.append(
                f"history     {src['name']}: {h['gone_events']:,} events"
                f" ({_percent(h['gone_events'], h['events'])}, ${h['gone_cost_usd']:,.2f})"
                f" from {h['gone_files']:,} file{'' if h['gone_files'] == 1 else 's'}"
                " no longer on disk"
            )
    if not isinstance(overall, dict) or not overall.get("events"):
        return lines
    events, cost = overall["events"], overall["cost_usd"]
    if overall.get("gone_files"):
        gone = overall["gone_events"]
        lines.append(
            f"history     all sources: {gone:,} of {events:,} events ({_percent(gone, events)},"
            f" ${overall['gone_cost_usd']:,.2f} of ${cost:,.2f}) from files no longer on disk;"
            " the ledger keeps them"
        )
    else:
        lines.append(
            f"history     all sources: {events:,} events (${cost:,.2f}), every source file on disk"
        )
    return lines
