"""The daemon's care of its own ledger file (see :mod:`sufd.store.health` for the checks).

Faults of the ledger file itself (full disk, corrupt, deleted or replaced file, a WAL that a
long reader keeps from shrinking): the daemon stays up, says what is wrong in status and
the log, and recovers by itself once it can. :class:`StoreKeeper` does this: it owns the
ledger's connections (the write connection and the ingestor on it live on the daemon's one
writer thread; the read connection serves status on the loop) and is told by its
collaborators how to build an ingestor, ask for a full scan and wake the main loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sufd.errors import StoreError
from sufd.ingest.ingestor import Ingestor
from sufd.logger import get_logger
from sufd.store import faults, health, open_readonly, open_store

__all__ = ["READ_CACHE_KIB", "STORE_CHECK_INTERVAL_S", "StoreKeeper"]

log = get_logger(__name__)

# Status and statusline read a few aggregate rows: a small page cache bounds what the
# long-lived read connection keeps (SQLite's default would grow it to 2 MB).
READ_CACHE_KIB = 256
# The store's integrity check (PRAGMA quick_check, O(store size), off the loop): once the
# start-up catch-up is done, then this often.
STORE_CHECK_INTERVAL_S = 24 * 3600.0


class StoreKeeper:
    """Opens, watches, checkpoints, checks and if need be replaces the daemon's ledger.

    ``writer`` is the daemon's one writer thread: every write, and every use of the write
    connection, runs there. ``make_ingestor`` builds the ingestor for the current settings on
    a write connection (on the writer thread); ``rescan`` queues a full scan of every source
    (its argument is the reason); ``wake`` wakes the main loop, which then calls
    :meth:`step`; ``replaced`` is called when a new ledger file took the place of the old
    one (its contents are partial until the rescan has run).
    """

    def __init__(
        self,
        db: Path,
        writer: concurrent.futures.ThreadPoolExecutor,
        *,
        make_ingestor: Callable[[sqlite3.Connection], Ingestor],
        rescan: Callable[[str], None],
        wake: Callable[[], None],
        replaced: Callable[[], None],
    ) -> None:
        self.db = db
        self._writer = writer
        self._make_ingestor = make_ingestor
        self._rescan = rescan
        self._wake = wake
        self._replaced = replaced
        self.store = health.StoreHealth(db)
        self.ingestor: Ingestor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._store_fault: tuple[faults.Fault, str] | None = None  # found by heartbeat/status
        self._store_retry_at: float | None = None  # monotonic
        self._read_broken = False
        self._empty_ledger: sqlite3.Connection | None = None
        self._checkpointing = False
        self._checking = False
        self._replacing = False
        self._next_check = time.monotonic()
        self._pins: dict[tuple[int, int], health.Pin] = {}
        self._pin: health.Pin | None = None

    async def in_writer(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    def _open_writer(self) -> None:
        self._write_conn = open_store(self.db)
        self._pin_ledger()
        self.ingestor = self._make_ingestor(self._write_conn)

    def renew_ingestor(self) -> None:
        """(writer thread) A new ingestor for the current settings, when the store is open;
        else it is made with them when the store is reopened."""
        if self._write_conn is None:
            return
        self.ingestor = self._make_ingestor(self._write_conn)

    def close_writer(self) -> None:
        """(writer thread, shutdown) Close the write connection."""
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    def close(self) -> None:
        """(shutdown, after :meth:`close_writer` or its time-out) Close the read connection,
        and every ledger descriptor once no connection can need them."""
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None
        if self._write_conn is None and not self._checking:
            self._unpin_all()

    def _drop_writer(self) -> None:
        """(writer thread) Close the write connection and forget everything cached on it."""
        conn, self._write_conn, self.ingestor = self._write_conn, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _pin_ledger(self) -> None:
        """(writer thread, right after the write connection opened) Hold a descriptor on the
        ledger file for the heartbeat's checks: see :class:`sufd.store.health.Pin`."""
        db = self.db
        try:
            current = health.identity(db)
        except OSError:
            current = None
        pin = self._pins.get(current) if current is not None else None
        if pin is None:
            # Opening is safe; only closing a descriptor of the file drops SQLite's locks.
            try:
                pin = health.Pin(db)
            except OSError as exc:
                # Gone again right after SQLite opened it: the heartbeat's check, which then
                # only asks whether the path exists, finds it deleted and recovers.
                log.warning("store.pin_failed", error=f"{type(exc).__name__}: {exc}")
                self.store.opened, self._pin = None, None
                return
            self._pins.setdefault(pin.identity, pin)
        self.store.opened = pin.identity
        self._pin = pin

    def _unpin_stale(self) -> None:
        """Close the descriptors of ledger files no connection of this process has open any
        more: not the current file, and none while the integrity check may still read one."""
        if self._checking:
            return  # _checked calls this again
        for identity in [i for i in self._pins if i != self.store.opened]:
            self._pins.pop(identity).close()

    def _unpin_all(self) -> None:
        """(shutdown, after every connection closed) Close every ledger descriptor."""
        for pin in self._pins.values():
            pin.close()
        self._pins.clear()
        self._pin = None

    def _open_ledger(self, found: str) -> tuple[faults.Fault, Path] | None:
        """(writer thread) Open the ledger; a corrupt one is moved aside and a fresh one made.

        Returns the fault and where the corrupt file went, when that happened.
        """
        db = self.db
        try:
            self._open_writer()
            return None
        except (StoreError, sqlite3.Error) as exc:
            self._drop_writer()
            fault = faults.diagnose(exc, db)
            if fault is None or fault.reason != faults.CORRUPT:
                raise
        moved = health.quarantine(db, fault, found=found)
        self._open_writer()
        return fault, moved

    def _after_open(self, rebuilt: tuple[faults.Fault, Path] | None, found: str) -> None:
        if self._read_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._read_conn.close()
        self._read_conn = open_readonly(self.db)
        self._read_conn.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
        self._read_broken = False
        if rebuilt is not None:
            self._rebuilt(rebuilt[0], "rebuilt from the source files", rebuilt[1], found)

    def _rebuilt(self, fault: faults.Fault, action: str, moved: Path | None, found: str) -> None:
        self.store.recovered(fault, action, moved, found)
        log.error(
            "store.rebuilt",
            reason=fault.reason,
            error=fault.detail,
            found=found,
            action=action,
            moved_to=str(moved) if moved else None,
        )

    async def open_at_start(self) -> None:
        """Open the ledger for the first time; a store fault does not stop the start."""
        try:
            rebuilt = await self.in_writer(lambda: self._open_ledger("at start"))
            self._after_open(rebuilt, "at start")
        except (StoreError, sqlite3.Error) as exc:
            fault = faults.diagnose(exc, self.db)
            if fault is None or fault.reason == faults.OTHER:
                raise  # e.g. a schema newer than this sufd: retrying cannot help
            await self.in_writer(self._drop_writer)
            self._back_off(fault)

    async def _failed(self, fault: faults.Fault, found: str) -> None:
        """A store fault: a new file when that is what it takes, else back off and retry."""
        if fault.rebuilds:
            await self._replace_store(fault, found)
            return
        await self.in_writer(self._drop_writer)
        self._back_off(fault)

    def _back_off(self, fault: faults.Fault) -> None:
        delay = self.store.failed(fault, time.time())
        log.error(
            "store.write_failed",
            reason=fault.reason,
            error=fault.detail,
            attempt=self.store.attempts,
            retry_in_s=delay,
        )
        self._store_retry_at = time.monotonic() + delay
        asyncio.get_running_loop().call_later(delay, self._wake)

    async def step(self) -> None:
        """(main loop) Act on a fault found outside a cycle; reopen the store when due."""
        if self._store_fault is not None:
            (fault, found), self._store_fault = self._store_fault, None
            await self._failed(fault, found)
        if self._store_retry_at is None or time.monotonic() < self._store_retry_at:
            return
        self._store_retry_at = None
        log.info("store.retrying", attempt=self.store.attempts + 1)
        try:
            rebuilt = await self.in_writer(lambda: self._open_ledger("on retry"))
            self._after_open(rebuilt, "on retry")
        except (StoreError, sqlite3.Error) as exc:
            await self.in_writer(self._drop_writer)
            problem = faults.diagnose(exc, self.db)
            self._back_off(problem or faults.Fault(faults.OTHER, str(exc)))
            return
        # Writes are proven to work by the next cycle, which catches up from the cursors.
        self._rescan("store retry")

    async def write_failed(self, exc: Exception) -> bool:
        """A cycle could not write: a fault of the ledger file is dealt with here (True);
        anything else is the caller's to report (False)."""
        fault = faults.diagnose(exc, self.db)
        if fault is None:
            return False
        await self._failed(fault, "while writing")
        return True

    def retry_now(self) -> None:
        """Reopen the ledger at the next step if it is waiting to (the user says the fault
        is fixed)."""
        if self._store_retry_at is not None:
            self._store_retry_at = time.monotonic()

    def writes_ok(self) -> None:
        """A cycle committed: whatever fault there was is over."""
        was = self.store.cleared()
        if was is not None:
            log.info("store.recovered", **was)

    async def _replace_store(self, fault: faults.Fault, found: str) -> None:
        """The file is corrupt, deleted or replaced: put a sound ledger at the path, rescan."""
        self._replacing = True  # the heartbeat must not report the old file again meanwhile
        try:
            await self._replace_store_file(fault, found)
        finally:
            self._replacing = False

    async def _replace_store_file(self, fault: faults.Fault, found: str) -> None:
        if self._read_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._read_conn.close()
            self._read_conn = None
        try:
            action, moved = await self.in_writer(lambda: self._swap_store_file(fault, found))
            self._after_open(None, found)
        except (StoreError, sqlite3.Error, OSError) as exc:
            # E.g. no space for the new file: retry like any failed write.
            await self.in_writer(self._drop_writer)
            again = faults.diagnose(exc, self.db)
            if again is None or again.rebuilds:
                again = faults.Fault(faults.OTHER, f"{type(exc).__name__}: {exc}")
            self._back_off(again)
            return
        self._store_fault = None  # whatever else was found concerned the old file
        self._replaced()  # reports are partial until the rescan below has run
        self._unpin_stale()  # the old file's connections are all closed now
        self._rebuilt(fault, action, moved, found)
        self._rescan("store rebuilt")

    def _swap_store_file(self, fault: faults.Fault, found: str) -> tuple[str, Path | None]:
        """(writer thread) Close the old file and open a sound one at the ledger's path."""
        old, self._write_conn, self.ingestor = self._write_conn, None, None
        action, moved = _clear_the_path(old, self.db, fault, found)
        rebuilt = self._open_ledger(found)
        if rebuilt is not None:  # what was put at the path is corrupt too
            return "rebuilt from the source files", rebuilt[1]
        return action, moved

    def ledger_reader(self) -> sqlite3.Connection:
        """The connection status reads; an empty ledger while the file is being replaced."""
        if self._read_conn is not None and not self._read_broken:
            return self._read_conn
        if self._empty_ledger is None:
            from sufd.store.migrations import apply_migrations

            self._empty_ledger = sqlite3.connect(":memory:", isolation_level=None)
            apply_migrations(self._empty_ledger)
        return self._empty_ledger

    def reader(self) -> sqlite3.Connection | None:
        """The read connection, unless the ledger is down or being replaced."""
        return None if self._read_broken else self._read_conn

    def read_failed(self, exc: sqlite3.Error) -> bool:
        """Reading status failed: if the ledger is corrupt, status reads an empty one from
        now on and the file is replaced (True); else the error is the caller's (False)."""
        fault = faults.diagnose(exc, self.db)
        if fault is None or fault.reason != faults.CORRUPT:
            return False
        self._read_broken = True
        if self._store_fault is None:
            self._store_fault = (fault, "reading status")
            self._wake()
        return True

    def add_health(self, st: dict[str, Any], *, running: bool) -> dict[str, Any]:
        """``status`` with the store's health added."""
        st["store"] = {**st.get("store", {}), **self.store.status()}
        st["warnings"] = [*st.get("warnings", []), *self.store.warnings()]
        if self.store.problem is not None and running:
            st["state"] = "degraded"
        return st

    def watch(self, *, cycles_ran: bool) -> None:
        """(heartbeat) Is the ledger file still the one opened; is the WAL within its bound;
        is the integrity check due? Cheap: one stat and a 16-byte read per tick."""
        if self._write_conn is None or self._store_fault is not None or self._replacing:
            return
        db = self.db
        fault = health.file_problem(db, self._pin)
        if fault is not None:
            self._store_fault = (fault, "by the heartbeat")
            self._wake()
            return
        loop = asyncio.get_running_loop()
        if not self._checkpointing and health.wal_bytes(db) > health.WAL_LIMIT_BYTES:
            self._checkpointing = True
            loop.run_in_executor(self._writer, self._checkpoint).add_done_callback(
                self._checkpointed
            )
        # After the start-up catch-up, not competing with it.
        if not self._checking and cycles_ran and time.monotonic() >= self._next_check:
            self._checking = True
            self._next_check = time.monotonic() + STORE_CHECK_INTERVAL_S
            threading.Thread(
                target=self._integrity_check,
                args=(loop, self.store.opened),
                name="sufd-store-check",
                daemon=True,
            ).start()

    def _checkpoint(self) -> None:
        """(writer thread) Fold the WAL into the ledger and truncate it, if no reader stops it."""
        conn = self._write_conn
        if conn is None or conn.in_transaction:
            return
        db = self.db
        before = health.wal_bytes(db)
        done, frames, copied = health.checkpoint(conn)
        if done:
            if self.store.wal_blocked_since is not None:
                log.info(
                    "store.wal_checkpointed",
                    wal_bytes_before=before,
                    blocked_s=round(time.time() - self.store.wal_blocked_since, 1),
                )
            self.store.wal_blocked_since = None
        elif self.store.wal_blocked_since is None:
            self.store.wal_blocked_since = time.time()
            log.warning("store.checkpoint_blocked", wal_bytes=before, frames=frames, copied=copied)

    def _checkpointed(self, fut: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not fut.cancelled() and (exc := fut.exception()) is not None:
            log.warning("store.checkpoint_failed", error=f"{type(exc).__name__}: {exc}")

    def _integrity_check(
        self, loop: asyncio.AbstractEventLoop, opened: tuple[int, int] | None
    ) -> None:
        """(own thread) ``PRAGMA quick_check`` of the file; a failure leads to a rebuild."""
        health.background_priority()
        db = self.db
        try:
            problem = health.quick_check(db)
            fault = None if problem is None else faults.Fault(faults.CORRUPT, problem)
        except sqlite3.Error as exc:
            fault = faults.diagnose(exc, db)
            if fault is not None and fault.reason != faults.CORRUPT:
                log.warning("store.check_failed", error=f"{type(exc).__name__}: {exc}")
                fault = None
        with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
            loop.call_soon_threadsafe(self._checked, fault, opened)

    def _checked(self, fault: faults.Fault | None, opened: tuple[int, int] | None) -> None:
        self._checking = False
        if not self._replacing:
            self._unpin_stale()
        if fault is None:
            log.info("store.check_ok", db=str(self.db))
            return
        # Only if it is still the file that was checked.
        if self.store.opened == opened and self._store_fault is None:
            self._store_fault = (
                faults.Fault(faults.CORRUPT, f"integrity check failed: {fault.detail}"),
                "by the integrity check",
            )
            self._wake()


def _clear_the_path(
    old: sqlite3.Connection | None, db: Path, fault: faults.Fault, found: str
) -> tuple[str, Path | None]:
    """(writer thread) Close the old file's connection and leave at the ledger's path what
    the new ledger is opened from: nothing, a file put there meanwhile, or the salvaged copy
    of a deleted one. Returns what was done, and where a corrupt file was moved."""
    action, moved, copy = "rebuilt from the source files", None, None
    try:
        if fault.reason == faults.CORRUPT:
            # Before the old connection closes: SQLite does not checkpoint into a file
            # that has moved, so the copy is kept as it was found.
            moved = health.quarantine(db, fault, found=found)
        elif old is not None:
            # Empties the WAL the old file left at the path: nothing of it may be
            # replayed into whatever file is at the path now.
            with contextlib.suppress(sqlite3.Error):
                health.checkpoint(old, wait=True)
            if fault.reason == faults.DELETED and not db.exists():
                try:
                    copy = health.salvage(old, db)
                except (sqlite3.Error, OSError) as exc:
                    log.warning("store.salvage_failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                old.close()
    if fault.reason == faults.REPLACED:
        action = "switched to the new file, then caught up from the source files"
    elif copy is not None and not db.exists():
        health.install(copy, db)
        action = (
            "restored from the deleted file, which sufd still had open, then caught up"
            " from the source files"
        )
    else:
        if copy is not None:  # another file appeared at the path meanwhile: use that
            copy.unlink(missing_ok=True)
        if not db.exists():
            health.remove_journals(db)
    return action, moved
