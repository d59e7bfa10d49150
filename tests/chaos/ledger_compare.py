"""Compare a ledger with a reference ledger of the same files, counting every difference.

The reading side is :func:`tests.test_incremental.snapshot` (events per ``(source, key)`` with
every column, dimension tables joined by name, file paths relative to HOME, provenance kept
apart); the rules are those of :func:`tests.test_incremental.assert_same_ledger`. What differs:
nothing is asserted here. Every mismatch is counted by kind and the first few are described, so
a crash campaign can report "0 mismatches" or exactly what went wrong.

Rules:

* events: the same ``(source, key)`` set, every other column equal (costs bit for bit: each
  event's cost is computed once from its own tokens);
* provenance (file, offset): may differ only where the same line is present verbatim at both
  places (a resumed Claude session, a Codex archived copy: the first copy read wins the tie and
  read order differs); for ``database`` sources (no lines) it must be equal;
* ``agg_time``, ``agg_session`` and ``agg_day`` sums: integers exact, costs within 1e-12
  relative (sums accumulated in another order); ``agg_session`` first/last activity exact;
* malformed lines: the same ``(file, offset)`` with the same reason;
* per-file cursors (source, size, offset, carried state, malformed count, error, gone). A
  ``database`` source's carried state also holds wall-clock bookkeeping (when the last full
  check ran, reads since) that no two runs share: only its identity and watermark
  (:data:`DATABASE_STATE_KEYS`) are compared.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sufd.sources import SOURCES
from tests.conftest import SufdEnv
from tests.test_incremental import Snapshot, _close, _line_at, snapshot

__all__ = [
    "DATABASE_STATE_KEYS",
    "Comparison",
    "compare_ledgers",
    "compare_snapshots",
    "database_sources",
]

DATABASE_STATE_KEYS = ("ident", "hwm", "hwm_key")


def database_sources() -> frozenset[str]:
    """The registered sources that read an SQLite database (no lines, no byte offsets)."""
    return frozenset(name for name, s in SOURCES.items() if s.kind == "database")


@dataclass
class Comparison:
    """What differs between a ledger (``got``) and its reference (``want``)."""

    events: int = 0  # events in the reference
    got_events: int = 0
    by_source: dict[str, int] = field(default_factory=dict)  # reference events per source
    files: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)
    limit: int = 40

    @property
    def mismatches(self) -> int:
        return sum(self.by_kind.values())

    def add(self, kind: str, key: Any, detail: Any) -> None:
        self.by_kind[kind] += 1
        if len(self.details) < self.limit:
            self.details.append(f"{kind}: {key!r}: {detail!r}"[:600])

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "got_events": self.got_events,
            "by_source": dict(sorted(self.by_source.items())),
            "files": self.files,
            "mismatches": self.mismatches,
            "by_kind": dict(sorted(self.by_kind.items())),
            "details": list(self.details),
        }


Rows = Mapping[Any, Any]


def _diff(
    out: Comparison, kind: str, got: Rows, want: Rows, same: Callable[[Any, Any], bool]
) -> None:
    for k in sorted(want.keys() - got.keys(), key=repr):
        out.add(f"{kind}.missing", k, want[k])
    for k in sorted(got.keys() - want.keys(), key=repr):
        out.add(f"{kind}.extra", k, got[k])
    for k in sorted(want.keys() & got.keys(), key=repr):
        if not same(got[k], want[k]):
            out.add(f"{kind}.differs", k, {"got": got[k], "want": want[k]})


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


def _normalised_files(snap: Snapshot, db_sources: Collection[str]) -> dict[str, tuple[Any, ...]]:
    out = {}
    for rel, row in snap.files.items():
        source, state = row[0], row[3]
        if source in db_sources and state:
            kept = {k: v for k, v in json.loads(state).items() if k in DATABASE_STATE_KEYS}
            row = (*row[:3], json.dumps(kept, sort_keys=True), *row[4:])
        out[rel] = row
    return out


def _same_line(got_home: Path, got_at: tuple[str, int], want_home: Path, want_at: Any) -> bool:
    try:
        return _line_at(got_home, *got_at) == _line_at(want_home, *want_at)
    except OSError:
        return False


def compare_snapshots(
    got: Snapshot,
    got_home: Path,
    want: Snapshot,
    want_home: Path,
    *,
    db_sources: Collection[str] | None = None,
    limit: int = 40,
) -> Comparison:
    """Every difference between two snapshots (see the module docstring for the rules)."""
    db_sources = database_sources() if db_sources is None else db_sources
    out = Comparison(events=len(want.events), got_events=len(got.events), limit=limit)
    out.by_source = dict(Counter(source for source, _ in want.events))
    out.files = len(want.files)
    _diff(out, "event", got.events, want.events, _eq)
    for k in sorted(want.where.keys() & got.where.keys()):
        got_at, want_at = got.where[k], want.where[k]
        if got_at == want_at:
            continue
        if k[0] in db_sources or not _same_line(got_home, got_at, want_home, want_at):
            out.add("event.provenance", k, {"got": got_at, "want": want_at})
    _diff(out, "agg_time", got.agg_time, want.agg_time, _close)
    _diff(out, "agg_session", got.agg_session, want.agg_session, _close)
    _diff(out, "agg_day", got.agg_day, want.agg_day, _close)
    _diff(out, "agg_session.span", got.spans, want.spans, _eq)
    _diff(out, "malformed", got.malformed, want.malformed, _eq)
    _diff(
        out,
        "file",
        _normalised_files(got, db_sources),
        _normalised_files(want, db_sources),
        _eq,
    )
    return out


def compare_ledgers(got: SufdEnv, want: SufdEnv, *, limit: int = 40) -> Comparison:
    """Compare the ledger of ``got`` with the reference ledger of ``want`` (same files)."""
    return compare_snapshots(snapshot(got), got.home, snapshot(want), want.home, limit=limit)
