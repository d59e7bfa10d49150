"""What an ingest pass did: per file (:class:`FileResult`), in total (:class:`IngestStats`), and
the sentence that ends ``sufd ingest`` (:func:`summary_line`).

Standard library only: ``sufd ingest`` prints the sentence for a catch-up the daemon ran as
well as for its own (see :mod:`sufd.cli.catchup`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FileResult", "IngestStats", "summary_line"]


@dataclass(slots=True)
class FileResult:
    """What one pass over one file did."""

    path: Path
    source: str
    bytes_read: int = 0
    inserted: int = 0
    replaced: int = 0
    malformed: int = 0
    unchanged: bool = False
    reset: str | None = None
    error: str | None = None
    more: bool = False  # stopped at the end of its time slice: the rest is read later
    stalled: bool = False  # its mount did not answer in time: read again once it does
    busy: bool = False  # a database locked or changing under the read: try again shortly


@dataclass(slots=True)
class IngestStats:
    """Totals of one ingest run, for the summary line and the logs."""

    files: int = 0
    files_read: int = 0
    bytes_read: int = 0
    inserted: int = 0
    replaced: int = 0
    malformed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    gone: int = 0
    prefetched: int = 0
    started: float = field(default_factory=time.monotonic)
    more: list[Path] = field(default_factory=list)  # files to read on from their cursor
    stalled: int = 0  # files (or roots) left for a mount that does not answer
    busy: list[Path] = field(default_factory=list)  # databases to try again shortly

    def add(self, result: FileResult) -> None:
        """Fold one file's result into the totals."""
        self.files += 1
        if not result.unchanged:
            self.files_read += 1
        self.bytes_read += result.bytes_read
        self.inserted += result.inserted
        self.replaced += result.replaced
        self.malformed += result.malformed
        if result.error:
            self.errors.append((str(result.path), result.error))
        if result.more:
            self.more.append(result.path)
        if result.stalled:
            self.stalled += 1
        if result.busy:
            self.busy.append(result.path)

    @property
    def duration_ms(self) -> int:
        """Wall time since the run started."""
        return int((time.monotonic() - self.started) * 1000)

    def log_fields(self) -> dict[str, int]:
        """What the ``ingest.done`` and ``ingest.cycle`` log records say of this run."""
        return {
            "bytes": self.bytes_read,
            "events": self.inserted,
            "replaced": self.replaced,
            "malformed": self.malformed,
            "errors": len(self.errors),
        }

    def as_dict(self) -> dict[str, object]:
        """The summary as JSON-ready data (``sufd ingest --json``)."""
        return {
            "files": self.files,
            "files_read": self.files_read,
            "bytes_read": self.bytes_read,
            "events_new": self.inserted,
            "events_replaced": self.replaced,
            "malformed_lines": self.malformed,
            "files_gone": self.gone,
            "files_prefetched": self.prefetched,
            "errors": [{"path": p, "error": e} for p, e in self.errors],
            "duration_ms": self.duration_ms,
        }


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
