"""Parsing: the bytes of a line file to priced records, in chunks that carry their cursor.

Imported by both the ingestor (:mod:`sufd.ingest.ingestor`) and the parse workers
(:mod:`sufd.ingest.prefetch`), so that a worker's result is exactly what the writer would
have parsed itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sufd.ingest.runs import ByteFile, read_runs
from sufd.prices.table import PriceTable
from sufd.sources import Malformed, Record, Source
from sufd.sources.base import FileContext
from sufd.store.batch import (
    COST_COMPUTED,
    COST_ESTIMATED,
    COST_STORED,
    COST_UNPRICED,
    PricedRecord,
)

__all__ = [
    "BATCH_BYTES",
    "BATCH_RECORDS",
    "TAIL_BYTES",
    "Chunk",
    "fingerprint",
    "parse_lines",
    "price_record",
]

# A line file is committed every this many bytes or records. Small enough that what one
# batch holds in memory stays a few MB whatever the file's size (a 200 MB transcript peaked
# 10 MB higher with 16 MiB / 20,000), large enough that the per-batch cost does not show.
BATCH_BYTES = 2 * 1024 * 1024
BATCH_RECORDS = 2_000
# A line file's cursor keeps a fingerprint of this many bytes before it (fewer only near the
# start of the file), read again before reading on: a file rewritten in place (not shorter)
# no longer has them. Only a new line ending at the same offset with the same last bytes
# could hide a rewrite, so the span takes in most of a line.
TAIL_BYTES = 256


def price_record(rec: Record, source: Source, table: PriceTable, mode: str) -> PricedRecord:
    """Attach a cost to a record following ccusage's cost modes (formats.md §1.1).

    ``auto`` uses a cost the agent stored, else computes from tokens; ``calculate`` always
    computes; ``display`` uses only stored costs. A model without a price is *unpriced*
    (cost 0, flagged), never silently free. Records a source marks ``estimated`` keep that
    mark whatever the cost's origin.
    """
    if rec.stored_cost is not None and mode in ("auto", "display"):
        cost, kind = rec.stored_cost, COST_STORED
    elif mode == "display":
        cost, kind = 0.0, COST_UNPRICED
    else:
        computed = source.cost(rec, table)
        if computed is None:
            # A model-less record with no tokens (e.g. a local <synthetic> message) costs 0.
            unpriced = rec.price_model is not None or rec.dedup_total + rec.extra_output > 0
            cost, kind = 0.0, COST_UNPRICED if unpriced else COST_COMPUTED
        else:
            cost, kind = computed, COST_COMPUTED
    if rec.estimated and kind != COST_UNPRICED:
        kind = COST_ESTIMATED
    return PricedRecord(rec, cost, kind)


@dataclass(slots=True)
class Chunk:
    """Records and malformed lines up to ``end``, and the carried state at that point."""

    records: list[PricedRecord] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    end: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    final: bool = False  # the last chunk: nothing after ``end`` but a partial line
    tail: int | None = None  # the fingerprint of the bytes before ``end`` (None: not known)


def fingerprint(window: bytes | None) -> int | None:
    """The fingerprint a line file's cursor keeps of ``window``, the :data:`TAIL_BYTES` bytes
    before it (all of them from byte 0 when fewer). A hash: the bytes may be a prompt's."""
    if window is None:
        return None
    return int.from_bytes(hashlib.blake2b(window, digest_size=8).digest(), "big", signed=True)


def _window(tail: bytes | None, data: bytes, upto: int) -> bytes | None:
    """The :data:`TAIL_BYTES` bytes before ``data[upto]``, ``tail`` being those before
    ``data`` (``None``: not known)."""
    if upto >= TAIL_BYTES:
        return data[upto - TAIL_BYTES : upto]
    if tail is None:
        return None
    return (tail + data[:upto])[-TAIL_BYTES:]


def parse_lines(
    source: Source,
    f: ByteFile,
    start: int,
    ctx: FileContext,
    *,
    max_line: int,
    table: PriceTable,
    mode: str,
    chunk_bytes: int,
    chunk_records: int,
    before: bytes | None = None,
) -> Iterable[Chunk]:
    """Parse complete lines from ``start``, yielding a chunk every ``chunk_bytes``/records.

    ``before`` holds the bytes just before ``start`` (:data:`TAIL_BYTES` of them, or all from
    byte 0): each chunk then carries the fingerprint of the bytes before its end, computed
    from what was parsed (a rewrite during the read cannot slip in between). Without it, a
    chunk ending within :data:`TAIL_BYTES` of ``start`` has none.

    Lines without any of the source's :attr:`~Source.markers` that look like a JSON object
    are passed over here (see there); everything else goes to ``parse_line``.

    Consecutive records with the same key (the lines of one streamed reply) are folded
    into the one the source prefers. The ledger would put the second where the first went
    and keep the preferred one; handing it only the winner ends in the same slot with the
    same event, since within a line file a key determines its group (Claude: the key is the
    message and request id, the group the message id) and ``prefer`` is an order. A third
    of a transcript's records go no further than this.
    """
    chunk = Chunk(end=start)
    chunk_start = last_end = start
    # The bytes before ``last_end`` (TAIL_BYTES of them, or all from byte 0), None if unknown.
    tail = b"" if start == 0 else None if before is None else before[-TAIL_BYTES:]
    parse, prefer, markers = source.parse_line, source.prefer, source.markers
    for run in read_runs(f, start, max_line=max_line):
        data = run.data
        if data is None:
            chunk.malformed.append((run.offset, f"line longer than {max_line} bytes"))
            tail = None
        else:
            for at in _to_parse(data, markers):
                end = data.index(b"\n", at)
                line = data[at:end]
                if not line or line.isspace():
                    continue
                offset = run.offset + at
                try:
                    rec = parse(line, offset, ctx)
                except Malformed as bad:
                    chunk.malformed.append((offset, bad.reason))
                    continue
                if rec is None:
                    continue
                _fold_in(chunk.records, price_record(rec, source, table, mode), prefer)
                if len(chunk.records) >= chunk_records:
                    last_end = run.offset + end + 1
                    chunk.end, chunk.state = last_end, dict(ctx.state)
                    chunk.tail = fingerprint(_window(tail, data, end + 1))
                    yield chunk
                    chunk, chunk_start = Chunk(end=last_end), last_end
            tail = _window(tail, data, len(data))
        last_end = run.end
        if last_end - chunk_start >= chunk_bytes:
            chunk.end, chunk.state, chunk.tail = last_end, dict(ctx.state), fingerprint(tail)
            yield chunk
            chunk, chunk_start = Chunk(end=last_end), last_end
    chunk.end = last_end
    chunk.state = dict(ctx.state)
    chunk.tail = fingerprint(tail)
    chunk.final = True
    yield chunk


def _to_parse(data: bytes, markers: tuple[bytes, ...]) -> list[int]:
    """Where the lines to hand to ``parse_line`` start in ``data`` (complete lines, each with
    its newline): those with a marker, and those that are not a plain ``{…}`` line (blank,
    or to be reported as malformed)."""
    starts: list[int] = []
    pos, size, index = 0, len(data), data.index
    # Each line costs a find and two byte compares; the markers are searched for in the
    # whole block at once. Splitting the block into lines cost twice as much.
    if not markers:
        while pos < size:
            starts.append(pos)
            pos = index(b"\n", pos) + 1
        return starts
    while pos < size:
        end = index(b"\n", pos)
        if data[pos] != _OPEN or data[end - 1] != _CLOSE:
            starts.append(pos)
        pos = end + 1
    for marker in markers:
        at = data.find(marker)
        while at >= 0:
            starts.append(data.rfind(b"\n", 0, at) + 1)
            at = data.find(marker, data.index(b"\n", at))
    return sorted(set(starts))


_OPEN, _CLOSE = ord("{"), ord("}")


def _fold_in(
    records: list[PricedRecord],
    new: PricedRecord,
    prefer: Callable[[Record, float, Record, float], bool],
) -> None:
    """Append ``new``, or let it take the last record's place if both have one key."""
    if records and records[-1].record.key == new.record.key:
        last = records[-1]
        if prefer(new.record, new.cost, last.record, last.cost):
            records[-1] = new
    else:
        records.append(new)
