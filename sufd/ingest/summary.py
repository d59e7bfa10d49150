"""The sentence that ends ``sufd ingest``, from its JSON summary.

Standard library only: ``sufd ingest`` prints it for a catch-up the daemon ran as well as
for its own (see :mod:`sufd.cli.catchup`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["summary_line"]


def summary_line(summary: Mapping[str, Any]) -> str:
    """One sentence for the end of ``sufd ingest``, from its JSON summary."""
    secs = int(summary.get("duration_ms", 0)) / 1000
    files, files_read = int(summary.get("files", 0)), int(summary.get("files_read", 0))
    mb = int(summary.get("bytes_read", 0)) / 1e6
    new, replaced = int(summary.get("events_new", 0)), int(summary.get("events_replaced", 0))
    malformed, gone = int(summary.get("malformed_lines", 0)), int(summary.get("files_gone", 0))
    errors = summary.get("errors") or []
    if not mb and not new and not replaced and not errors:
        return f"Nothing new: {files:,} files unchanged ({secs:.2f} s)."
    parts = [
        f"Ingested {mb:,.1f} MB from {files_read:,} of {files:,} files in {secs:.2f} s:"
        f" {new:,} new events, {replaced:,} updated"
    ]
    if malformed:
        parts.append(f"{malformed:,} malformed lines skipped")
    if errors:
        parts.append(f"{len(errors)} files could not be read")
    if gone:
        parts.append(f"{gone} files no longer on disk (their events are kept)")
    return ", ".join(parts) + "."
