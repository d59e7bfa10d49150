"""Parse line files in worker processes ahead of the single writer (one-shot catch-ups only).

A cold ``sufd ingest`` spends most of its time in Python parsing lines into records, work
that is independent per file; the writer (cursors, dedup, aggregates, SQLite) must stay one.
So workers parse the files the writer will read, from the offsets and carried state it will
start them at. The writer uses a prefetched result only if it was computed from exactly that
start (offset, state, file identity) of the file as it is now; otherwise it parses the file
itself, so the outcome is identical with or without workers. Results come back as plain
tuples: pickling dataclasses per record cost more than the parse saved.

Each worker is given its whole share of the files at the start and streams the results back
in that order, so no message goes to a worker per file. (Handing out a few files at a time
left the workers idle half the time on two cores: every hand-off waited for the writer, and
the writer for them.) While the writer waits for one worker's next result it reads what the
others have sent, up to ``AHEAD_BYTES`` each: a worker whose pipe is full stops, and with
the writer waiting too, a core would stand idle. The bound keeps the writer's memory small.

The daemon does not use this: it keeps to one core, and its catch-ups are usually small.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import marshal
import multiprocessing
import multiprocessing.connection
import operator
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from sufd.ingest.parse import Chunk
    from sufd.prices.table import PriceTable
    from sufd.settings import Settings
    from sufd.sources import Source

__all__ = [
    "AHEAD_BYTES",
    "MAX_PREFETCH_BYTES",
    "MIN_PREFETCH_BYTES",
    "Planned",
    "Prefetcher",
    "WorkersUnavailable",
]

# Smaller reads are not worth a round trip to a worker; larger ones are parsed by the
# writer itself, streaming, so memory stays bounded whatever the file size.
MIN_PREFETCH_BYTES = 32 * 1024
MAX_PREFETCH_BYTES = 48 * 1024 * 1024
# Results the writer holds per worker, read but not yet asked for (encoded: about 1/50 of
# the bytes parsed).
AHEAD_BYTES = 1024 * 1024

_Record = tuple[tuple[Any, ...], float, int]
# Per chunk: its end, carried state, records, malformed lines and tail fingerprint.
_Chunks = list[tuple[int, dict[str, Any], list[_Record], list[Any], int | None]]
_Wire = tuple[int, int, _Chunks]  # size and mtime the worker saw, then the chunks

_worker: dict[str, Any] = {}


class WorkersUnavailable(RuntimeError):
    """No parse workers could be started; the writer parses every file itself."""


class Planned(NamedTuple):
    """A file the writer will read: from ``start`` with ``state``, as it was surveyed."""

    source: str
    root: Path | None
    path: Path
    start: int
    state: dict[str, Any]
    dev: int
    ino: int
    size: int


class Prefetcher:
    """Worker processes parsing line files ahead of the writer.

    ``plan`` lists the files in the order the writer will ask for them; those whose unread
    part is worth it are shared out so that each worker has about the same bytes ahead of
    any point of that order. No thread runs in the writer's process: with a pool's
    result-handling thread, the writer waited for the GIL after every SQLite call.
    """

    def __init__(
        self, settings: Settings, prices: PriceTable, workers: int, plan: Sequence[Planned]
    ) -> None:
        shares: list[list[tuple[int, Planned]]] = [[] for _ in range(workers)]
        load = [0] * workers
        self._owner: dict[str, tuple[int, int, Planned]] = {}
        for index, task in enumerate(plan):
            if not MIN_PREFETCH_BYTES <= task.size - task.start <= MAX_PREFETCH_BYTES:
                continue
            k = load.index(min(load))
            load[k] += task.size - task.start
            shares[k].append((index, task))
            self._owner[str(task.path)] = (k, index, task)
        # fork is cheap and inherits the loaded code, but forking a process with other
        # threads is unsafe (a lock one of them holds stays held in the child), and a clean
        # start would have to pickle the settings and the price table for each worker.
        if threading.active_count() != 1:
            raise WorkersUnavailable("other threads are running in this process")
        ctx = multiprocessing.get_context("fork")
        self._workers: dict[int, _Worker] = {}
        try:
            for k, share in enumerate(shares):
                if share:
                    self._workers[k] = _Worker(ctx, settings, prices, share)
        except OSError as exc:  # e.g. the process limit: no workers, not a failed ingest
            self.close()
            raise WorkersUnavailable(str(exc) or type(exc).__name__) from exc
        self._results = [w.results for w in self._workers.values()]
        self.hits = 0

    def take(
        self, path: Path, start: int, st: os.stat_result, state: dict[str, Any]
    ) -> list[Chunk] | None:
        """The chunks parsed for exactly this start and file, or ``None`` (parse it yourself).

        ``st`` is the writer's ``fstat`` of its open file: a file written since the worker
        read it is parsed again, so no byte written in between can hide behind a cursor.
        """
        owner = self._owner.pop(str(path), None)
        if owner is None:
            return None
        k, index, task = owner
        wire = _wait_for(self._workers[k].results, index, self._results)
        if (task.start, task.state, task.dev, task.ino) != (start, state, st.st_dev, st.st_ino):
            return None
        if wire is None or wire[:2] != (st.st_size, st.st_mtime_ns):
            return None
        self.hits += 1
        return _from_wire(wire[2])

    def close(self) -> None:
        """Stop the workers; results not taken are dropped."""
        for w in self._workers.values():
            w.close()
        self._owner.clear()


class _Worker:
    """One parsing process, its share of the plan, and the writer's end of its pipe."""

    def __init__(
        self, ctx: Any, settings: Settings, prices: PriceTable, share: list[tuple[int, Planned]]
    ) -> None:
        # Only the worker writes, but a socket pair buffers about 200 KiB here against a
        # pipe's 64 KiB: the worker runs that much further ahead before it waits.
        conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_serve, args=(child, settings, prices, share), name="sufd-parse", daemon=True
        )
        self.proc.start()
        child.close()
        self.results = _Results(conn)

    def close(self) -> None:
        # Closing our end also unblocks a worker stuck sending a result nobody will read.
        self.results.conn.close()
        self.proc.join(timeout=1)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


class _Results:
    """The writer's end of one worker's pipe: results in plan order, some read ahead."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._last = -1  # index of the last result decoded
        self._ahead: tuple[int, _Wire | None] | None = None  # decoded, but for a later file
        self._queue: collections.deque[bytes] = collections.deque()  # received, not decoded
        self._queued = 0  # bytes in the queue
        self._gone = False  # the worker's end is closed: nothing more will come

    def result(self, index: int) -> tuple[bool, _Wire | None]:
        """``(True, result)`` for the file at ``index`` of the plan if it is here, or will
        never come (``None``); ``(False, None)``: not received yet. Results come in plan
        order; those of files the writer did not ask for are dropped on the way."""
        if self._ahead is not None:
            if self._ahead[0] == index:
                wire, self._ahead = self._ahead[1], None
                return True, wire
            if self._ahead[0] > index:
                return True, None
            self._ahead = None
        while self._last < index:
            if not self._queue:
                return self._gone, None
            data = self._queue.popleft()
            self._queued -= len(data)
            try:
                got, wire = marshal.loads(data)
            except (EOFError, ValueError, TypeError):  # garbled: trust nothing after it
                self._gone, self._last = True, 1 << 62
                self._queue.clear()
                return True, None
            self._last = got
            if got == index:
                return True, wire
            if got > index:
                self._ahead = (got, wire)
                return True, None
        return True, None

    def wants_more(self) -> bool:
        """Whether to read ahead from this worker while waiting for another."""
        return not self._gone and self._queued < AHEAD_BYTES

    def receive(self) -> None:
        """Read one result (the pipe is ready, and a worker sends whole results)."""
        try:
            data = self.conn.recv_bytes()
        except (EOFError, OSError):
            self._gone = True  # the worker is gone: the writer parses the rest itself
            return
        self._queue.append(data)
        self._queued += len(data)


def _wait_for(results: _Results, index: int, every: Sequence[_Results]) -> _Wire | None:
    """The result for the file at ``index`` of the plan, from ``results`` (``None``: the
    worker could not parse it, or has gone; the writer parses it itself). While it waits,
    it reads ahead from the others of ``every``."""
    while True:
        found, wire = results.result(index)
        if found:
            return wire
        waiting = [results, *(r for r in every if r is not results and r.wants_more())]
        ready = multiprocessing.connection.wait([r.conn for r in waiting])
        for r in waiting:
            if r.conn in ready:
                r.receive()


def _serve(
    conn: Any, settings: Settings, prices: PriceTable, share: list[tuple[int, Planned]]
) -> None:
    """A worker: parse each file of its share in order and send each result as it is done."""
    from sufd.sources import enabled_sources

    # Parsing allocates millions of short-lived acyclic objects: the cyclic collector
    # found nothing to free and cost 5 % of the run. A worker lives for one catch-up.
    gc.disable()
    # The writer is the critical path and the workers' results wait in the pipe: on a
    # machine with fewer cores than processes, the writer should get the CPU first.
    with contextlib.suppress(OSError):
        os.nice(5)
    _worker["settings"] = settings
    _worker["prices"] = prices
    _worker["sources"] = {s.name: s for s in enabled_sources(settings)}
    with contextlib.suppress(OSError, KeyboardInterrupt):  # the writer closed its end
        for index, t in share:
            wire = _parse_file(t.source, t.root, t.path, t.start, t.state, t.dev, t.ino)
            # marshal: the results are plain tuples, lists and dicts of str, int, float,
            # bool and None, which it writes and reads faster than pickle.
            try:
                data = marshal.dumps((index, wire))
            except ValueError:  # something else after all: the writer parses it itself
                data = marshal.dumps((index, None))
            conn.send_bytes(data)
    conn.close()


def _parse_file(
    source_name: str,
    root: Path | None,
    path: Path,
    start: int,
    state: dict[str, Any],
    dev: int,
    ino: int,
) -> _Wire | None:
    from sufd.ingest.parse import BATCH_BYTES, BATCH_RECORDS, TAIL_BYTES, parse_lines
    from sufd.sources.base import FileContext

    settings: Settings = _worker["settings"]
    source: Source = _worker["sources"][source_name]
    try:
        with open(path, "rb") as f:
            fst = os.fstat(f.fileno())
            if (fst.st_dev, fst.st_ino) != (dev, ino):
                return None
            # The writer checks these bytes against its cursor before it takes the result;
            # here they fingerprint the chunks' ends, as the writer's own parse would.
            want = min(start, TAIL_BYTES)
            f.seek(start - want)
            before = f.read(want)
            if len(before) < want:
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
                before=before,
            )
            wire: _Chunks = [
                (
                    c.end,
                    c.state,
                    [(_GET_FIELDS(pr.record), pr.cost, pr.cost_kind) for pr in c.records],
                    c.malformed,
                    c.tail,
                )
                for c in chunks
            ]
            after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (fst.st_size, fst.st_mtime_ns):
                return None  # written while parsing: the writer reads it itself
            return fst.st_size, fst.st_mtime_ns, wire
    except Exception:  # the writer parses the file itself and records what is wrong
        return None


def _from_wire(wire: _Chunks) -> list[Chunk]:
    from sufd.ingest.parse import Chunk
    from sufd.sources import Record
    from sufd.store.batch import PricedRecord

    chunks = [
        Chunk(
            records=[PricedRecord(Record(*fields), cost, kind) for fields, cost, kind in records],
            malformed=malformed,
            end=end,
            state=state,
            tail=tail,
        )
        for end, state, records, malformed, tail in wire
    ]
    if chunks:
        chunks[-1].final = True  # the whole file was parsed (see parse_lines)
    return chunks


def _record_fields() -> tuple[str, ...]:
    from sufd.sources import Record

    return tuple(f.name for f in dataclasses.fields(Record))


_GET_FIELDS = operator.attrgetter(*_record_fields())
