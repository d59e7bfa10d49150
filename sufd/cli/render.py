"""Plain-text tables for reports: aligned columns, thousands separators, cost in USD."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "report_table"]

_NUMERIC = (
    ("Input", "inputTokens"),
    ("Output", "outputTokens"),
    ("Cache write", "cacheCreationTokens"),
    ("Cache read", "cacheReadTokens"),
    ("Total tokens", "totalTokens"),
)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Align cells in columns; indexes in ``right`` are right-aligned."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _cost(value: float, unpriced: int) -> str:
    return f"${value:,.2f}" + ("*" if unpriced else "")


def report_table(report: dict[str, Any], kind: str, *, breakdown: bool) -> str:
    """The human-readable form of :func:`sufd.cli.report.build_report`'s result."""
    key = next(k for k in report if k not in ("totals", "timezone", "freshness"))
    rows: list[dict[str, Any]] = report[key]
    label = {"session": "Session", "project": "Project", "model": "Model"}.get(kind, "Period")
    label_key = {"session": "sessionId", "project": "project", "model": "model"}.get(kind, "period")
    header = [label, "Models", *(h for h, _ in _NUMERIC), "Cost (USD)"]
    body: list[list[str]] = []
    for row in rows:
        models = ", ".join(row["modelsUsed"]) if kind != "model" else ""
        body.append(
            [
                str(row[label_key]),
                models,
                *(f"{row[k]:,}" for _, k in _NUMERIC),
                _cost(row["totalCost"], row["unpricedEvents"]),
            ]
        )
        if breakdown:
            for b in row["modelBreakdowns"]:
                body.append(
                    [
                        "",
                        f"  {b['modelName']}",
                        *(f"{b[k]:,}" for _, k in _NUMERIC),
                        _cost(b["cost"], b["unpricedEvents"]),
                    ]
                )
    totals = report["totals"]
    body.append(
        [
            "Total",
            "",
            *(f"{totals[k]:,}" for _, k in _NUMERIC),
            _cost(totals["totalCost"], totals["unpricedEvents"]),
        ]
    )
    text = format_table(header, body, right=set(range(2, len(header))))
    notes = [f"Time zone: {report['timezone']}"]
    if totals["unpricedEvents"]:
        notes.append(
            f"* {totals['unpricedEvents']:,} events have no known price and count as $0 here"
            " (add [prices.overrides] in the config file)."
        )
    if totals["estimatedEvents"]:
        notes.append(
            f"{totals['estimatedEvents']:,} events are estimates (the agent stores no exact usage)."
        )
    if not rows:
        return "No usage recorded for this selection.\n" + "\n".join(notes)
    return text + "\n\n" + "\n".join(notes)
