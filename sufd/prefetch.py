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

import collections
import contextlib
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
    """Worker processes parsing whole line files ahead of the writer.

    Each worker has its own pipe and answers its tasks in order; the writer reads an
    answer only when it reaches that file. No thread runs in the writer's process: with
    a pool's result-handling thread, the writer waited for the GIL after every SQLite call.
    """

    def __init__(self, settings: Settings, prices: PriceTable, workers: int) -> None:
        # fork is cheap and inherits the loaded code, but forking a threaded process is
        # unsafe; forkserver starts clean.
        method = "fork" if threading.active_count() == 1 else "forkserver"
        ctx = multiprocessing.get_context(method)
        self._workers = [_Worker(ctx, settings, prices) for _ in range(workers)]
        self._tasks: dict[str, tuple[_Key, _Worker, int]] = {}
        self._done: dict[int, _Wire | None] = {}
        self._seq = 0
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
        alive = [w for w in self._workers if w.alive]
        if not alive:
            return
        worker = min(alive, key=lambda w: len(w.outstanding))
        self._seq += 1
        task = (source.name, root, path, start, state, st.st_dev, st.st_ino)
        if worker.send(self._seq, task):
            self._tasks[str(path)] = ((start, st.st_dev, st.st_ino, state), worker, self._seq)

    def take(
        self, path: Path, start: int, st: os.stat_result, state: dict[str, Any]
    ) -> list[Chunk] | None:
        """The chunks parsed for exactly this start and file, or ``None`` (parse it yourself).

        ``st`` is the writer's ``fstat`` of its open file: a file written since the worker
        read it is parsed again, so no byte written in between can hide behind a cursor.
        """
        task = self._tasks.pop(str(path), None)
        if task is None:
            return None
        key, worker, seq = task
        wire = self._receive(worker, seq)
        if key != (start, st.st_dev, st.st_ino, state):
            return None
        if wire is None or wire[:2] != (st.st_size, st.st_mtime_ns):
            return None
        self.hits += 1
        return _from_wire(wire[2])

    def _receive(self, worker: _Worker, seq: int) -> _Wire | None:
        wanted = {s for _, _, s in self._tasks.values()}
        while seq not in self._done and worker.outstanding:
            got = worker.receive()
            if got is None:
                return None  # the worker died: the writer parses the rest itself
            if got[0] in wanted or got[0] == seq:
                self._done[got[0]] = got[1]
        return self._done.pop(seq, None)

    @property
    def queued(self) -> int:
        """Tasks sent to the workers and not answered yet."""
        return sum(len(w.outstanding) for w in self._workers)

    def close(self) -> None:
        """Stop the workers; results not taken are dropped."""
        for w in self._workers:
            w.close()
        self._tasks.clear()
        self._done.clear()


class _Worker:
    """One parsing process and the writer's end of its pipe."""

    def __init__(self, ctx: Any, settings: Settings, prices: PriceTable) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_serve, args=(child, settings, prices), name="sufd-parse", daemon=True
        )
        self.proc.start()
        child.close()
        self.outstanding: collections.deque[int] = collections.deque()
        self.alive = True

    def send(self, seq: int, task: tuple[Any, ...]) -> bool:
        try:
            self.conn.send((seq, task))
        except (OSError, ValueError):
            self.alive = False
            return False
        self.outstanding.append(seq)
        return True

    def receive(self) -> tuple[int, _Wire | None] | None:
        try:
            seq, wire = self.conn.recv()
        except (EOFError, OSError):
            self.alive = False
            self.outstanding.clear()
            return None
        self.outstanding.popleft()
        return int(seq), wire

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        # Closing our end also unblocks a worker stuck sending a result nobody will read.
        self.conn.close()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _serve(conn: Any, settings: Settings, prices: PriceTable) -> None:
    """A worker's loop: parse each task, answer in order, stop at ``None`` or a closed pipe."""
    from sufd.sources import enabled_sources

    _worker["settings"] = settings
    _worker["prices"] = prices
    _worker["sources"] = {s.name: s for s in enabled_sources(settings)}
    try:
        while (item := conn.recv()) is not None:
            seq, task = item
            conn.send((seq, _parse_file(*task)))
    except (EOFError, OSError, KeyboardInterrupt):
        pass


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

    chunks = [
        Chunk(
            records=[PricedRecord(Record(*fields), cost, kind) for fields, cost, kind in records],
            malformed=malformed,
            end=end,
            state=state,
        )
        for end, state, records, malformed in wire
    ]
    if chunks:
        chunks[-1].final = True  # the whole file was parsed (see parse_lines)
    return chunks


def _record_fields() -> tuple[str, ...]:
    from sufd.sources import Record

    return tuple(f.name for f in dataclasses.fields(Record))


_RECORD_FIELDS = _record_fields()
