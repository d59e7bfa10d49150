"""Every transaction the store runs: the write path, the bulk catch-up and the migrations.

:func:`atomic` is the unit of all-or-nothing: a ``BEGIN IMMEDIATE`` … ``COMMIT`` of its own,
or, inside an open :class:`Bulk` transaction, a savepoint that the bulk's next commit makes
durable. Every ``BEGIN``, ``COMMIT``, ``ROLLBACK`` and ``SAVEPOINT`` of the store is here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["Bulk", "atomic"]


_UNDO_SAVEPOINT: tuple[str, ...] = ("ROLLBACK TO sufd_atomic", "RELEASE sufd_atomic")


@contextlib.contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), rolled back on any exception.

    Inside an open transaction (see :meth:`sufd.store.ledger.Ledger.bulk`) it is a savepoint
    instead: its changes are undone on an exception and become durable with the outer commit.
    """
    if conn.in_transaction:
        begin, undo, end = "SAVEPOINT sufd_atomic", _UNDO_SAVEPOINT, "RELEASE sufd_atomic"
    else:
        begin, undo, end = "BEGIN IMMEDIATE", ("ROLLBACK",), "COMMIT"
    conn.execute(begin)
    try:
        yield conn
    except BaseException:
        # SQLite may have rolled the whole transaction back already (disk full, I/O error):
        # undoing again would raise "no transaction is active" and hide the error that says
        # what went wrong.
        if conn.in_transaction:
            for sql in undo:
                conn.execute(sql)
        raise
    conn.execute(end)


@dataclass(eq=False)
class Bulk:
    """An open write transaction spanning many file batches (see
    :meth:`sufd.store.ledger.Ledger.bulk`); each :func:`atomic` inside it is a savepoint.

    ``begun`` runs after each ``BEGIN``, ``committing`` just before each ``COMMIT``.
    """

    _conn: sqlite3.Connection
    _begun: Callable[[], None]
    _committing: Callable[[], None]
    _after: list[Callable[[], None]] = field(default_factory=list, init=False)

    def begin(self) -> Bulk:
        """Open the transaction (``BEGIN IMMEDIATE``, then ``begun``); returns ``self``.

        Raises:
            sqlite3.Error: it cannot be opened (another writer holds the lock, …).
        """
        self._conn.execute("BEGIN IMMEDIATE")
        self._begun()
        return self

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when what was written so far is committed (dropped if it never is)."""
        self._after.append(fn)

    def flush(self) -> None:
        """Make everything so far durable and visible to readers, and go on."""
        self.commit()
        self.begin()

    def commit(self) -> None:
        """Make everything so far durable, then run what waited for it; the transaction is
        closed until :meth:`flush` opens the next one."""
        after, self._after = self._after, []
        if not self._conn.in_transaction:
            return  # SQLite rolled it back (disk full, I/O error): none of it is durable
        self._committing()
        self._conn.execute("COMMIT")
        for fn in after:
            fn()

    def rollback(self) -> None:
        """Drop everything not yet committed (if SQLite has not already)."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
