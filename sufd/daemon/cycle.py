"""The ingest cycle: what is waiting to be read, and reading it on the one writer thread.

Watchers and timers queue changed files and full scans (:meth:`IngestCycles.request_paths`,
:meth:`IngestCycles.request_full`); the main loop lets a burst of changes settle, then runs
one cycle on the writer thread. A full scan reports its progress to the ``sufd ingest``
clients waiting for it, and every commit is published to the ``tail`` clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sufd.daemon.keeper import StoreKeeper
from sufd.ingest.ingestor import IngestStats
from sufd.logger import get_logger
from sufd.settings import KNOWN_SOURCES
from sufd.store.batch import PricedRecord

__all__ = ["IngestCycles", "iso"]

log = get_logger(__name__)

SETTLE_S = 0.03
TAIL_QUEUE = 2000
# A tail client that keeps reading may fall this far behind during a burst, no further.
TAIL_QUEUE_MAX = 20_000
# A source database found locked is read again after this long, doubling up to the maximum:
# the lock may end without a write, and then no change notice comes.
BUSY_RETRY_S = 0.1
BUSY_RETRY_MAX_S = 5.0
BUSY_RETRIES = 10  # about 30 s of retries in all
# How often a full scan sends its progress to the ``sufd ingest`` clients it serves.
PROGRESS_EVERY_S = 0.1

Client = asyncio.Queue[dict[str, Any] | None]


@dataclass
class _Cycle:
    """The last ingest cycle, for ``status``."""

    kind: str = ""
    files: int = 0
    events: int = 0
    replaced: int = 0
    bytes: int = 0
    duration_ms: int = 0
    lag_ms: int | None = None
    at: float | None = None
    errors: int = 0


@dataclass
class _Pending:
    paths: set[Path] = field(default_factory=set)
    full: set[str] = field(default_factory=set)
    since: float | None = None

    def __bool__(self) -> bool:
        return bool(self.paths or self.full)


class IngestCycles:
    """The pending work, the cycles that do it, and what they tell ``status`` and clients.

    ``keeper`` holds the ingestor and runs the writer thread; ``paused`` names the sources
    paused now; ``wake`` wakes the main loop; ``stop`` is set when the daemon stops, and
    ``interrupt`` asks the writer to end a cycle after its current batch commit.
    """

    def __init__(
        self,
        keeper: StoreKeeper,
        *,
        paused: Callable[[], set[str]],
        wake: Callable[[], None],
        stop: asyncio.Event,
        interrupt: threading.Event,
    ) -> None:
        self._keeper = keeper
        self._paused = paused
        self._wake = wake
        self._stop = stop
        self.interrupt = interrupt
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the daemon serves
        self.pending = _Pending()
        self.last = _Cycle()
        self.count = 0
        self.totals = {"events": 0, "replaced": 0, "malformed": 0, "errors": 0}
        self.last_event_ms: dict[str, int] = {}
        self.tails: set[Client] = set()
        # Each tail client's queue length right after the last publish (see _publish).
        self._tail_marks: dict[Client, int] = {}
        # ``sufd ingest`` clients waiting for the next full scan, and those it is serving.
        self.catchup_waiting: list[Client] = []
        self._catchup_serving: list[Client] = []
        # Files done / total of the full scan in progress (None between scans), and whether a
        # full scan has completed since start or since the ledger was rebuilt.
        self.scan_progress: tuple[int, int] | None = None
        self.caught_up = False
        self._busy_retries: dict[Path, int] = {}
        self._publishing = threading.Lock()
        self._to_publish: list[tuple[str, list[PricedRecord], list[PricedRecord]]] = []

    # -- requests ---------------------------------------------------------------------

    def request_paths(self, source: str, paths: set[Path]) -> None:
        """Called by the watchers with changed files."""
        if not self.pending:
            self.pending.since = time.monotonic()
        self.pending.paths |= paths
        self._wake()

    def request_full(self, sources: Collection[str], *, reason: str) -> None:
        """Queue a scan of every file of these sources (catch-up, reconcile, rescan)."""
        if not self.pending:
            self.pending.since = time.monotonic()
        self.pending.full |= set(sources)
        log.debug("ingest.scan_requested", sources=sorted(sources), reason=reason)
        self._wake()

    def rescan_all(self, reason: str) -> None:
        """Queue a scan of every source."""
        self.request_full(KNOWN_SOURCES, reason=reason)

    def ledger_replaced(self) -> None:
        """A new ledger file took the old one's place: it is partial until a full scan ran."""
        self.caught_up = False

    def mount_answered(self, source: str, root: str) -> None:
        """(the guard's helper thread) A root held up by a stalled call is readable again:
        read all of its source from the committed cursors (what was skipped meanwhile)."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
                self.loop.call_soon_threadsafe(
                    lambda: self.request_full([source], reason="mount_answered")
                )

    def scan_state(self) -> dict[str, Any]:
        """Whether the ledger is complete: a full scan has run since start (or since the
        ledger was rebuilt); while the first one runs, its files done / total."""
        progress = self.scan_progress
        return {
            "caught_up": self.caught_up,
            "files_done": progress[0] if progress and not self.caught_up else None,
            "files_total": progress[1] if progress and not self.caught_up else None,
        }

    def close_clients(self) -> None:
        """(shutdown) End every ``tail`` and ``sufd ingest`` stream."""
        for q in [*self.tails, *self.catchup_waiting, *self._catchup_serving]:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    # -- one cycle --------------------------------------------------------------------

    async def settle(self, stop: asyncio.Task[Any], debounce_ms: int) -> None:
        """Debounce a change batch: wait while the changed files keep changing.

        watchfiles ends a batch after one quiet step, and further writes to a file already in
        the batch do not count as new changes, so a streamed reply would arrive in several
        batches. Waiting until the files stop changing for one ``SETTLE_S`` check, and never
        beyond ``debounce_ms`` after the first change, folds a burst into one cycle while a
        lone append is ingested after one check.
        """
        since = self.pending.since or time.monotonic()
        deadline = since + debounce_ms / 1000
        before = _signature(self.pending.paths)
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.wait({stop}, timeout=min(SETTLE_S, left))
            if self._stop.is_set():
                return
            now = _signature(self.pending.paths)
            if now == before:
                return
            before = now

    async def run(self) -> None:
        """Read what is pending, on the writer thread."""
        pending, self.pending = self.pending, _Pending()
        paused = self._paused()
        full = pending.full - paused
        paths = pending.paths
        ingestor = self._keeper.ingestor
        assert ingestor is not None
        waiters: list[Client] = []
        if pending.full:
            waiters, self.catchup_waiting = self.catchup_waiting, []
            self._catchup_serving = waiters
        progress = self._scan_progress_hook(waiters)

        def job() -> IngestStats:
            stats = IngestStats()
            if full:
                try:
                    part = ingestor.ingest_all(progress, only=full)
                finally:
                    self.scan_progress = None
                _merge(stats, part)
            owners = ingestor.sources
            rest = {p for p in paths if not any(s.name in full and s.owns(p) for s in owners)}
            if rest:
                _merge(stats, ingestor.ingest_paths(rest, skip=paused))
            return stats

        started = time.monotonic()
        try:
            stats: IngestStats = await self._keeper.in_writer(job)
        except Exception as exc:  # e.g. the disk is full: keep serving, retry on the next change
            self._catchup_done(
                waiters, {"error": f"the ledger could not be written: {type(exc).__name__}: {exc}"}
            )
            self.totals["errors"] += 1
            # What was not committed is read again by the next full scan.
            self.pending.full |= full | {
                s.name for s in ingestor.sources if any(s.owns(p) for p in paths)
            }
            if await self._keeper.write_failed(exc):
                return
            log.error("ingest.cycle_failed", error=f"{type(exc).__name__}: {exc}")
            return
        done = time.monotonic()
        self.count += 1
        self._keeper.writes_ok()
        if pending.full >= set(KNOWN_SOURCES) and not self.interrupt.is_set():
            self.caught_up = True
        if self.interrupt.is_set():
            self._catchup_done(waiters, None)  # stopping: the catch-up did not finish
        else:
            skipped = sorted(pending.full & paused)
            self._catchup_done(waiters, {"done": stats.as_dict(), "paused": skipped})
        if stats.more:  # files read for their time slice: on with them after the others
            self.request_paths("", set(stats.more))
        self._retry_busy(stats.busy, paths)
        self.last = _Cycle(
            kind="scan" if full else "changes",
            files=stats.files_read,
            events=stats.inserted,
            replaced=stats.replaced,
            bytes=stats.bytes_read,
            duration_ms=int((done - started) * 1000),
            lag_ms=int((done - pending.since) * 1000) if pending.since else None,
            at=time.time(),
            errors=len(stats.errors),
        )
        self.totals["malformed"] += stats.malformed
        self.totals["errors"] += len(stats.errors)
        if stats.files_read or stats.errors or stats.stalled:
            log.info(
                "ingest.cycle",
                kind=self.last.kind,
                files=stats.files_read,
                **stats.log_fields(),
                stalled=stats.stalled,
                duration_ms=self.last.duration_ms,
                lag_ms=self.last.lag_ms,
            )

    def _scan_progress_hook(self, waiters: list[Client]) -> Callable[[IngestStats, int], None]:
        """The progress callback of a full scan (writer thread): files done / total for
        status and reports, and progress lines for the ``sufd ingest`` clients it serves."""
        loop = asyncio.get_running_loop()
        sent = [0.0]

        def progress(stats: IngestStats, total: int) -> None:
            self.scan_progress = (stats.files, total)
            now = time.monotonic()
            if not waiters or (now - sent[0] < PROGRESS_EVERY_S and stats.files < total):
                return
            sent[0] = now
            item = {
                "progress": {
                    "files": stats.files,
                    "total": total,
                    "bytes_read": stats.bytes_read,
                    "events_new": stats.inserted,
                }
            }
            with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
                loop.call_soon_threadsafe(_put_all, waiters, item)

        return progress

    def _catchup_done(self, waiters: list[Client], item: dict[str, Any] | None) -> None:
        _put_all(waiters, item)
        if self._catchup_serving is waiters:
            self._catchup_serving = []

    def _retry_busy(self, busy: list[Path], asked: set[Path]) -> None:
        loop = asyncio.get_running_loop()
        for path in busy:
            n = self._busy_retries.get(path, 0)
            if n >= BUSY_RETRIES:
                # Still locked: left to the next change or reconcile, which start over.
                del self._busy_retries[path]
                continue
            self._busy_retries[path] = n + 1
            delay = min(BUSY_RETRY_S * 2**n, BUSY_RETRY_MAX_S)
            loop.call_later(delay, self.request_paths, "", {path})
        for path in asked.difference(busy):
            self._busy_retries.pop(path, None)

    # -- publishing -------------------------------------------------------------------

    def committed(
        self, source: str, inserted: list[PricedRecord], replaced: list[PricedRecord]
    ) -> None:
        """The ingestor's ``on_commit`` (writer thread): hand the events to the loop."""
        # One commit of a catch-up calls this once per file; they reach the loop as one
        # batch, so that a tail client is judged by how far behind it was before, not by the
        # size of this batch.
        with self._publishing:
            self._to_publish.append((source, inserted, replaced))
            if len(self._to_publish) > 1:
                return  # already scheduled
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._publish)

    def _publish(self) -> None:
        with self._publishing:
            batch, self._to_publish = self._to_publish, []
        items: list[dict[str, Any]] = []
        now = time.time()
        for source, inserted, replaced in batch:
            # Counted as they are announced, so that status never trails what tail said.
            self.totals["events"] += len(inserted)
            self.totals["replaced"] += len(replaced)
            for pr in inserted + replaced:
                ts = pr.record.ts_ms
                if ts > self.last_event_ms.get(source, 0):
                    self.last_event_ms[source] = ts
            if self.tails:
                items += [_event_json(source, pr, False, now) for pr in inserted]
                items += [_event_json(source, pr, True, now) for pr in replaced]
        for q in list(self.tails):
            # Still that far behind from earlier commits, and either it read nothing since the
            # last publish (stalled) or it is so far behind that holding more costs too much
            # memory. A reader that keeps reading is not dropped for a burst bigger than
            # TAIL_QUEUE (a catch-up commits every quarter second on a busy machine).
            size = q.qsize()
            stalled = size >= self._tail_marks.get(q, 0)
            if size >= TAIL_QUEUE and (stalled or size >= TAIL_QUEUE_MAX):
                self.tails.discard(q)
                self._tail_marks.pop(q, None)
                q.put_nowait(None)
                log.warning("tail.client_too_slow")
                continue
            for item in items:
                q.put_nowait(item)
            self._tail_marks[q] = q.qsize()
        for gone in set(self._tail_marks) - self.tails:
            del self._tail_marks[gone]


def _put_all(queues: list[Client], item: dict[str, Any] | None) -> None:
    for q in queues:
        q.put_nowait(item)


def _signature(paths: set[Path]) -> dict[Path, tuple[int, int, int] | None]:
    """Identity, size and mtime of each path: what changes when a file is written."""
    out: dict[Path, tuple[int, int, int] | None] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out[path] = None
        else:
            out[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def _merge(into: IngestStats, part: IngestStats) -> None:
    into.files += part.files
    into.files_read += part.files_read
    into.bytes_read += part.bytes_read
    into.inserted += part.inserted
    into.replaced += part.replaced
    into.malformed += part.malformed
    into.errors += part.errors
    into.gone += part.gone
    into.more += part.more
    into.stalled += part.stalled
    into.busy += part.busy


def iso(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC with milliseconds (``...Z``)."""
    from datetime import UTC, datetime

    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _event_json(source: str, pr: PricedRecord, replaced: bool, now: float) -> dict[str, Any]:
    r = pr.record
    return {
        "source": source,
        "key": r.key,
        "ts": iso(r.ts_ms),
        "session": r.session,
        "project": r.project,
        "model": r.model,
        "input": r.input,
        "output": r.output,
        "cache_write": r.cache_write_5m + r.cache_write_1h,
        "cache_read": r.cache_read,
        "reasoning": r.reasoning,
        "total": r.total,
        "cost": pr.cost,
        "cost_kind": pr.cost_kind,
        "replaced": replaced,
        "committed_at": now,
    }
