"""Parse line files in worker processes ahead of the single writer (one-shot catch-ups only).

A cold ``sufd ingest`` spends most of its time in Python parsing lines into records, work
that is independent per file; the writer (cursors, dedup, aggregates, SQLite) must stay one.
So while the writer commits file *n*, workers parse the next files from the offsets and
carried state the writer will start them at. The writer uses a prefetched result only if
it was computed from exactly that start (offset, state, file identity); otherwise it parses
the file itself, so the outcome is identical with or without workers. Results come back as
plain tuples: pickling dataclasses per record cost more than the parse saved.

The daemon does not use this: it keeps to one core, and its catch-ups are usually small.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sufd.ingest import Chunk
    from sufd.prices import PriceTable
    from sufd.settings import Settings
    from sufd.sources import Source

__all__ = ["MAX_PREFETCH_BYTES", "MIN_PREFETCH_BYTES", "Prefetcher"]

# Smaller reads are not worth a round trip to a worker; larger ones are parsed by the
# writer itself, streaming, so memory stays bounded whatever the file size.
MIN_PREFETCH_BYTES = 32 * 1024
MAX_PREFETCH_BYTES = 48 * 1024 * 1024

_Key = tuple[int, int, int, Any]  # start offset, device, inode, carried state
_Chunks = list[tuple[int, dict[str, Any], list[tuple[tuple[Any, ...], float, int]], list[Any]]]
_Wire = tuple[int, int, _Chunks]  # size and mtime the worker saw, then the chunks

_worker: dict[str, Any] = {}


class Prefetcher:
    """A process pool parsing whole line files ahead of the writer."""

    def __init__(self, settings: Settings, prices: PriceTable, workers: int) -> None:
        # fork is cheap and inherits the loaded code, but forking a threaded process is
        # unsafe; forkserver starts clean.
        method = "fork" if threading.active_count() == 1 else "forkserver"
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(settings, prices),
        )
        self._pending: dict[str, tuple[_Key, concurrent.futures.Future[_Wire | None]]] = {}
        self.hits = 0

    def submit(
        self, source: Source, root: Path | None, path: Path, start: int, state: dict[str, Any]
    ) -> None:
        """Parse ``path`` from ``start`` with ``state``, if its size makes that worthwhile."""
        try:
            st = os.stat(path)
        except OSError:
            return
        if not MIN_PREFETCH_BYTES <= st.st_size - start <= MAX_PREFETCH_BYTES:
            return
        key: _Key = (start, st.st_dev, st.st_ino, state)
        future = self._pool.submit(
            _parse_file, source.name, root, path, start, state, st.st_dev, st.st_ino
        )
        self._pending[str(path)] = (key, future)

    def take(
        self, path: Path, start: int, st: os.stat_result, state: dict[str, Any]
    ) -> list[Chunk] | None:
        """The chunks parsed for exactly this start and file, or ``None`` (parse it yourself).

        ``st`` is the writer's ``fstat`` of its open file: a file written since the worker
        read it is parsed again, so no byte written in between can hide behind a cursor.
        """
        pending = self._pending.pop(str(path), None)
        if pending is None or pending[0] != (start, st.st_dev, st.st_ino, state):
            return None
        try:
            wire = pending[1].result()
        except Exception:  # a worker died or failed: the writer's own parse says why
            return None
        if wire is None or wire[:2] != (st.st_size, st.st_mtime_ns):
            return None
        self.hits += 1
        return _from_wire(wire[2])

    @property
    def queued(self) -> int:
        """Files submitted and not taken yet."""
        return len(self._pending)

    def close(self) -> None:
        """Stop the workers; results not taken are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()


def _init_worker(settings: Settings, prices: PriceTable) -> None:
    from sufd.sources import enabled_sources

    _worker["settings"] = settings
    _worker["prices"] = prices
    _worker["sources"] = {s.name: s for s in enabled_sources(settings)}


def _parse_file(
    source_name: str,
    root: Path | None,
    path: Path,
    start: int,
    state: dict[str, Any],
    dev: int,
    ino: int,
) -> _Wire | None:
    from sufd.ingest import BATCH_BYTES, BATCH_RECORDS, parse_lines
    from sufd.sources.base import FileContext

    settings: Settings = _worker["settings"]
    source: Source = _worker["sources"][source_name]
    try:
        with open(path, "rb") as f:
            fst = os.fstat(f.fileno())
            if (fst.st_dev, fst.st_ino) != (dev, ino):
                return None
            ctx = FileContext(path, root, dict(state) or source.new_state())
            chunks = parse_lines(
                source,
                f,
                start,
                ctx,
                max_line=settings.max_line_bytes,
                table=_worker["prices"],
                mode=settings.cost_mode,
                chunk_bytes=BATCH_BYTES,
                chunk_records=BATCH_RECORDS,
            )
            wire: _Chunks = [
                (
                    c.end,
                    c.state,
                    [(_fields(pr.record), pr.cost, pr.cost_kind) for pr in c.records],
                    c.malformed,
                )
                for c in chunks
            ]
            after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (fst.st_size, fst.st_mtime_ns):
                return None  # written while parsing: the writer reads it itself
            return fst.st_size, fst.st_mtime_ns, wire
    except Exception:  # the writer parses the file itself and records what is wrong
        return None


def _fields(rec: Any) -> tuple[Any, ...]:
    return tuple(getattr(rec, name) for name in _RECORD_FIELDS)


def _from_wire(wire: _Chunks) -> list[Chunk]:
    from sufd.ingest import Chunk
    from sufd.sources import Record
    from sufd.store.ledger import PricedRecord

    return [
        Chunk(
            records=[PricedRecord(Record(*fields), cost, kind) for fields, cost, kind in records],
            malformed=malformed,
            end=end,
            state=state,
        )
        for end, state, records, malformed in wire
    ]


def _record_fields() -> tuple[str, ...]:
    from sufd.sources import Record

    return tuple(f.name for f in dataclasses.fields(Record))


_RECORD_FIELDS = _record_fields()
