"""The daemon's care of its own ledger file (see :mod:`sufd.store.health` for the checks).

Faults of the ledger file itself (full disk, corrupt, deleted or replaced file, a WAL that a
long reader keeps from shrinking): the daemon stays up, says what is wrong in status and
the log, and recovers by itself once it can. :class:`StoreKeeper` is the part of
:class:`sufd.daemon.lifecycle.Daemon` that does this; it runs on the daemon's loop and writer thread
and shares the daemon's state, so it is a base class rather than an object of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sufd.errors import StoreError
from sufd.logger import get_logger
from sufd.settings import KNOWN_SOURCES, Settings
from sufd.store import health, open_readonly

if TYPE_CHECKING:
    from sufd.ingest.ingestor import Ingestor

__all__ = ["READ_CACHE_KIB", "STORE_CHECK_INTERVAL_S", "StoreKeeper"]

log = get_logger(__name__)

# Status and statusline read a few aggregate rows: a small page cache bounds what the
# long-lived read connection keeps (SQLite's default would grow it to 2 MB).
READ_CACHE_KIB = 256
# The store's integrity check (PRAGMA quick_check, O(store size), off the loop): once the
# start-up catch-up is done, then this often.
STORE_CHECK_INTERVAL_S = 24 * 3600.0


class StoreKeeper:
    """Opens, watches, checkpoints, checks and if need be replaces the daemon's ledger."""

    settings: Settings
    store: health.StoreHealth
    phase: str
    cycles: int
    caught_up: bool
    _writer: concurrent.futures.ThreadPoolExecutor
    _wake: asyncio.Event
    _write_conn: sqlite3.Connection | None
    _read_conn: sqlite3.Connection | None
    _ingestor: Ingestor | None
    _store_fault: tuple[health.Fault, str] | None  # found by heartbeat/status
    _store_retry_at: float | None  # monotonic
    _read_broken: bool
    _empty_ledger: sqlite3.Connection | None
    _checkpointing: bool
    _checking: bool
    _replacing: bool
    _next_check: float
    _pins: dict[tuple[int, int], health.Pin]
    _pin: health.Pin | None

    if TYPE_CHECKING:  # provided by the Daemon

        def _open_writer(self) -> None: ...

        async def _in_writer(self, fn: Callable[[], Any]) -> Any: ...

        def request_full(self, sources: Collection[str], *, reason: str) -> None: ...

        async def _status(self, args: dict[str, Any]) -> dict[str, Any]: ...

    def _init_store_keeping(self) -> None:
        self.store = health.StoreHealth(self.settings.paths.db)
        self._store_fault = None
        self._store_retry_at = None
        self._read_broken = False
        self._empty_ledger = None
        self._checkpointing = False
        self._checking = False
        self._replacing = False
        self._next_check = time.monotonic()
        self._pins = {}
        self._pin = None

    def _drop_writer(self) -> None:
        """(writer thread) Close the write connection and forget everything cached on it."""
        conn, self._write_conn, self._ingestor = self._write_conn, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _pin_ledger(self) -> None:
        """(writer thread, right after the write connection opened) Hold a descriptor on the
        ledger file for the heartbeat's checks: see :class:`sufd.store.health.Pin`."""
        db = self.settings.paths.db
        try:
            current = health.identity(db)
        except OSError:
            current = None
        pin = self._pins.get(current) if current is not None else None
        if pin is None:
            # Opening is safe; only closing a descriptor of the file drops SQLite's locks.
            pin = health.Pin(db)
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

    def _open_ledger(self, found: str) -> tuple[health.Fault, Path] | None:
        """(writer thread) Open the ledger; a corrupt one is moved aside and a fresh one made.

        Returns the fault and where the corrupt file went, when that happened.
        """
        db = self.settings.paths.db
        try:
            self._open_writer()
            return None
        except (StoreError, sqlite3.Error) as exc:
            self._drop_writer()
            fault = health.diagnose(exc, db)
            if fault is None or fault.reason != health.CORRUPT:
                raise
        moved = health.quarantine(db, fault, found=found)
        self._open_writer()
        return fault, moved

    def _after_open(self, rebuilt: tuple[health.Fault, Path] | None, found: str) -> None:
        if self._read_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._read_conn.close()
        self._read_conn = open_readonly(self.settings.paths.db)
        self._read_conn.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
        self._read_broken = False
        if rebuilt is not None:
            self._rebuilt(rebuilt[0], "rebuilt from the source files", rebuilt[1], found)

    def _rebuilt(self, fault: health.Fault, action: str, moved: Path | None, found: str) -> None:
        self.store.recovered(fault, action, moved, found)
        log.error(
            "store.rebuilt",
            reason=fault.reason,
            error=fault.detail,
            found=found,
            action=action,
            moved_to=str(moved) if moved else None,
        )

    async def _open_store_at_start(self) -> None:
        """Open the ledger for the first time; a store fault does not stop the start."""
        try:
            rebuilt = await self._in_writer(lambda: self._open_ledger("at start"))
            self._after_open(rebuilt, "at start")
        except (StoreError, sqlite3.Error) as exc:
            fault = health.diagnose(exc, self.settings.paths.db)
            if fault is None or fault.reason == health.OTHER:
                raise  # e.g. a schema newer than this sufd: retrying cannot help
            await self._in_writer(self._drop_writer)
            self._back_off(fault)

    async def _store_failed(self, fault: health.Fault, found: str) -> None:
        """A store fault: a new file when that is what it takes, else back off and retry."""
        if fault.rebuilds:
            await self._replace_store(fault, found)
            return
        await self._in_writer(self._drop_writer)
        self._back_off(fault)

    def _back_off(self, fault: health.Fault) -> None:
        delay = self.store.failed(fault, time.time())
        log.error(
            "store.write_failed",
            reason=fault.reason,
            error=fault.detail,
            attempt=self.store.attempts,
            retry_in_s=delay,
        )
        self._store_retry_at = time.monotonic() + delay
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _store_step(self) -> None:
        """(main loop) Act on a fault found outside a cycle; reopen the store when due."""
        if self._store_fault is not None:
            (fault, found), self._store_fault = self._store_fault, None
            await self._store_failed(fault, found)
        if self._store_retry_at is None or time.monotonic() < self._store_retry_at:
            return
        self._store_retry_at = None
        log.info("store.retrying", attempt=self.store.attempts + 1)
        try:
            rebuilt = await self._in_writer(lambda: self._open_ledger("on retry"))
            self._after_open(rebuilt, "on retry")
        except (StoreError, sqlite3.Error) as exc:
            await self._in_writer(self._drop_writer)
            problem = health.diagnose(exc, self.settings.paths.db)
            self._back_off(problem or health.Fault(health.OTHER, str(exc)))
            return
        # Writes are proven to work by the next cycle, which catches up from the cursors.
        self.request_full(KNOWN_SOURCES, reason="store retry")

    def _store_ok(self) -> None:
        was = self.store.cleared()
        if was is not None:
            log.info("store.recovered", **was)

    async def _replace_store(self, fault: health.Fault, found: str) -> None:
        """The file is corrupt, deleted or replaced: put a sound ledger at the path, rescan."""
        self._replacing = True  # the heartbeat must not report the old file again meanwhile
        try:
            await self._replace_store_file(fault, found)
        finally:
            self._replacing = False

    async def _replace_store_file(self, fault: health.Fault, found: str) -> None:
        if self._read_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._read_conn.close()
            self._read_conn = None
        try:
            action, moved = await self._in_writer(lambda: self._swap_store_file(fault, found))
            self._after_open(None, found)
        except (StoreError, sqlite3.Error, OSError) as exc:
            # E.g. no space for the new file: retry like any failed write.
            await self._in_writer(self._drop_writer)
            again = health.diagnose(exc, self.settings.paths.db)
            if again is None or again.rebuilds:
                again = health.Fault(health.OTHER, f"{type(exc).__name__}: {exc}")
            self._back_off(again)
            return
        self._store_fault = None  # whatever else was found concerned the old file
        self.caught_up = False  # reports are partial until the rescan below has run
        self._unpin_stale()  # the old file's connections are all closed now
        self._rebuilt(fault, action, moved, found)
        self.request_full(KNOWN_SOURCES, reason="store rebuilt")

    def _swap_store_file(self, fault: health.Fault, found: str) -> tuple[str, Path | None]:
        """(writer thread) Close the old file and open a sound one at the ledger's path."""
        db = self.settings.paths.db
        old, self._write_conn, self._ingestor = self._write_conn, None, None
        action, moved, copy = "rebuilt from the source files", None, None
        try:
            if fault.reason == health.CORRUPT:
                # Before the old connection closes: SQLite does not checkpoint into a file
                # that has moved, so the copy is kept as it was found.
                moved = health.quarantine(db, fault, found=found)
            elif old is not None:
                # Empties the WAL the old file left at the path: nothing of it may be
                # replayed into whatever file is at the path now.
                with contextlib.suppress(sqlite3.Error):
                    health.checkpoint(old, wait=True)
                if fault.reason == health.DELETED and not db.exists():
                    try:
                        copy = health.salvage(old, db)
                    except (sqlite3.Error, OSError) as exc:
                        log.warning("store.salvage_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            if old is not None:
                with contextlib.suppress(sqlite3.Error):
                    old.close()
        if fault.reason == health.REPLACED:
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
        rebuilt = self._open_ledger(found)
        if rebuilt is not None:  # what was put at the path is corrupt too
            return "rebuilt from the source files", rebuilt[1]
        return action, moved

    def _ledger_reader(self) -> sqlite3.Connection:
        """The connection status reads; an empty ledger while the file is being replaced."""
        if self._read_conn is not None and not self._read_broken:
            return self._read_conn
        if self._empty_ledger is None:
            from sufd.store.migrations import apply_migrations

            self._empty_ledger = sqlite3.connect(":memory:", isolation_level=None)
            apply_migrations(self._empty_ledger)
        return self._empty_ledger

    async def _status_with_store(self, args: dict[str, Any]) -> dict[str, Any]:
        """``status``, with the store's health; answers even when the ledger cannot be read."""
        try:
            st = await self._status(args)
        except sqlite3.Error as exc:
            fault = health.diagnose(exc, self.settings.paths.db)
            if fault is None or fault.reason != health.CORRUPT:
                raise
            self._read_broken = True
            if self._store_fault is None:
                self._store_fault = (fault, "reading status")
                self._wake.set()
            st = await self._status(args)
        st["store"] = {**st.get("store", {}), **self.store.status()}
        st["warnings"] = [*st.get("warnings", []), *self.store.warnings()]
        if self.store.problem is not None and self.phase == "running":
            st["state"] = "degraded"
        return st

    def _store_watch(self) -> None:
        """(heartbeat) Is the ledger file still the one opened; is the WAL within its bound;
        is the integrity check due? Cheap: one stat and a 16-byte read per tick."""
        if self._write_conn is None or self._store_fault is not None or self._replacing:
            return
        db = self.settings.paths.db
        fault = health.file_problem(db, self._pin)
        if fault is not None:
            self._store_fault = (fault, "by the heartbeat")
            self._wake.set()
            return
        loop = asyncio.get_running_loop()
        if not self._checkpointing and health.wal_bytes(db) > health.WAL_LIMIT_BYTES:
            self._checkpointing = True
            loop.run_in_executor(self._writer, self._checkpoint).add_done_callback(
                self._checkpointed
            )
        # After the start-up catch-up, not competing with it.
        if not self._checking and self.cycles and time.monotonic() >= self._next_check:
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
        db = self.settings.paths.db
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
        db = self.settings.paths.db
        try:
            problem = health.quick_check(db)
            fault = None if problem is None else health.Fault(health.CORRUPT, problem)
        except sqlite3.Error as exc:
            fault = health.diagnose(exc, db)
            if fault is not None and fault.reason != health.CORRUPT:
                log.warning("store.check_failed", error=f"{type(exc).__name__}: {exc}")
                fault = None
        with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
            loop.call_soon_threadsafe(self._checked, fault, opened)

    def _checked(self, fault: health.Fault | None, opened: tuple[int, int] | None) -> None:
        self._checking = False
        if not self._replacing:
            self._unpin_stale()
        if fault is None:
            log.info("store.check_ok", db=str(self.settings.paths.db))
            return
        # Only if it is still the file that was checked.
        if self.store.opened == opened and self._store_fault is None:
            self._store_fault = (
                health.Fault(health.CORRUPT, f"integrity check failed: {fault.detail}"),
                "by the integrity check",
            )
            self._wake.set()
