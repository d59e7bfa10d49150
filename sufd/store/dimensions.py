"""The ledger's dimension rows (host, price versions, projects, sessions, models) and the ids
the writer has already looked up.
"""

from __future__ import annotations

import socket
import sqlite3
import time
import uuid

from sufd.records import Record

__all__ = ["Dimensions"]


class Dimensions:
    """Ids of dimension rows on the writer's connection ``conn``, inserted when missing and
    cached. Call :meth:`forget` after a rollback: the rows it inserted are gone with it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._models: dict[str, int] = {}
        self._projects: dict[str, int] = {}
        self._sessions: dict[tuple[str, str], int] = {}

    def host(self) -> int:
        """This ledger's host row (creating the ledger's identity on first use)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'host_uuid'").fetchone()
        if row is None:
            host_uuid = str(uuid.uuid4())
            self.conn.execute("INSERT INTO meta (key, value) VALUES ('host_uuid', ?)", (host_uuid,))
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('created_ms', ?)",
                (str(int(time.time() * 1000)),),
            )
        else:
            host_uuid = row[0]
        self.conn.execute(
            "INSERT OR IGNORE INTO hosts (host_uuid, name) VALUES (?, ?)",
            (host_uuid, socket.gethostname()),
        )
        return int(
            self.conn.execute("SELECT id FROM hosts WHERE host_uuid = ?", (host_uuid,)).fetchone()[
                0
            ]
        )

    def price_version(self, version: str) -> int:
        """The row of price table ``version``."""
        return self._dim_id("price_versions", "version", version, {})

    def _dim_id(self, table: str, column: str, value: str, cache: dict[str, int]) -> int:
        found = cache.get(value)
        if found is not None:
            return found
        row = self.conn.execute(f"SELECT id FROM {table} WHERE {column} = ?", (value,)).fetchone()
        if row is None:
            row = self.conn.execute(
                f"INSERT INTO {table} ({column}) VALUES (?) RETURNING id", (value,)
            ).fetchone()
        cache[value] = int(row[0])
        return cache[value]

    def _session_id(self, source: str, session: str, project_id: int) -> int:
        key = (source, session)
        found = self._sessions.get(key)
        if found is not None:
            return found
        row = self.conn.execute(
            "SELECT id FROM sessions WHERE source = ? AND session = ?", key
        ).fetchone()
        if row is None:
            row = self.conn.execute(
                "INSERT INTO sessions (source, session, project_id) VALUES (?, ?, ?) RETURNING id",
                (source, session, project_id),
            ).fetchone()
        self._sessions[key] = int(row[0])
        return self._sessions[key]

    def of(self, source: str, rec: Record) -> tuple[int, int, int]:
        """``(session_id, project_id, model_id)`` of a record of ``source``."""
        project_id = self._dim_id("projects", "path", rec.project, self._projects)
        session_id = self._session_id(source, rec.session, project_id)
        model_id = self._dim_id("models", "name", rec.model or "", self._models)
        return session_id, project_id, model_id

    def forget(self) -> None:
        """Drop cached ids: rows a rolled-back batch inserted are gone with it."""
        self._models.clear()
        self._projects.clear()
        self._sessions.clear()
