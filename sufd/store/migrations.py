"""Ordered schema migrations; each is applied and recorded in its own transaction.

The schema version is SQLite's ``user_version``. Never edit a released migration: append a
new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sufd.store.transaction import atomic

__all__ = ["MIGRATIONS", "apply_migrations", "schema_version"]

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE hosts (id INTEGER PRIMARY KEY, host_uuid TEXT NOT NULL UNIQUE, name TEXT NOT NULL);
CREATE TABLE price_versions (id INTEGER PRIMARY KEY, version TEXT NOT NULL UNIQUE);
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE projects (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    session TEXT NOT NULL,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    UNIQUE (source, session)
);

-- One row per source file: its identity and the cursor up to which it has been ingested.
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    dev INTEGER NOT NULL DEFAULT 0,
    ino INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    offset INTEGER NOT NULL DEFAULT 0,
    state TEXT,
    events INTEGER NOT NULL DEFAULT 0,
    malformed INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    gone INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL DEFAULT 0
);

-- Complete lines that could not be understood: counted once per (file, offset).
CREATE TABLE malformed (
    file_id INTEGER NOT NULL REFERENCES files(id),
    offset INTEGER NOT NULL,
    reason TEXT NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (file_id, offset)
) WITHOUT ROWID;

-- One row per billable request. No prompt or response text is ever stored.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    grp INTEGER,
    sidechain INTEGER NOT NULL DEFAULT 0,
    has_speed INTEGER NOT NULL DEFAULT 0,
    fast INTEGER NOT NULL DEFAULT 0,
    ts INTEGER NOT NULL,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    project_id INTEGER NOT NULL REFERENCES projects(id),
    model_id INTEGER NOT NULL REFERENCES models(id),
    input INTEGER NOT NULL,
    output INTEGER NOT NULL,
    cache_write_5m INTEGER NOT NULL,
    cache_write_1h INTEGER NOT NULL,
    cache_read INTEGER NOT NULL,
    reasoning INTEGER NOT NULL,
    total INTEGER NOT NULL,
    cost REAL NOT NULL,
    cost_kind INTEGER NOT NULL,
    price_version_id INTEGER REFERENCES price_versions(id),
    fallback_model INTEGER NOT NULL DEFAULT 0,
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    file_id INTEGER REFERENCES files(id),
    offset INTEGER,
    UNIQUE (source, key)
);
CREATE INDEX events_grp ON events(grp) WHERE grp IS NOT NULL;
-- Recomputing a session's first/last activity after an event is replaced.
CREATE INDEX events_session ON events(session_id, model_id, ts);

-- Sums per 15-minute UTC bucket: every real UTC offset is a multiple of 15 minutes, so
-- daily/weekly/monthly reports are exact in any time zone.
CREATE TABLE agg_time (
    bucket INTEGER NOT NULL,
    source TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    events INTEGER NOT NULL,
    input INTEGER NOT NULL,
    output INTEGER NOT NULL,
    cache_write_5m INTEGER NOT NULL,
    cache_write_1h INTEGER NOT NULL,
    cache_read INTEGER NOT NULL,
    reasoning INTEGER NOT NULL,
    total INTEGER NOT NULL,
    cost REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    PRIMARY KEY (bucket, source, project_id, model_id)
) WITHOUT ROWID;

CREATE TABLE agg_session (
    session_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    events INTEGER NOT NULL,
    input INTEGER NOT NULL,
    output INTEGER NOT NULL,
    cache_write_5m INTEGER NOT NULL,
    cache_write_1h INTEGER NOT NULL,
    cache_read INTEGER NOT NULL,
    reasoning INTEGER NOT NULL,
    total INTEGER NOT NULL,
    cost REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    PRIMARY KEY (session_id, model_id)
) WITHOUT ROWID;
"""


def _v1(conn: sqlite3.Connection) -> None:
    for statement in _V1.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _v2(conn: sqlite3.Connection) -> None:
    """Per file, the events (and their cost) the ledger attributes to it, kept current by
    every commit, so ``status`` can say how much of the ledger has no source file left
    without scanning the events."""
    conn.execute("ALTER TABLE files ADD COLUMN held_events INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE files ADD COLUMN held_cost REAL NOT NULL DEFAULT 0")
    # One grouped pass over the events (no index on file_id), then a keyed update.
    conn.execute(
        "CREATE TEMP TABLE held (file_id INTEGER PRIMARY KEY, n INTEGER NOT NULL, c REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO held SELECT file_id, COUNT(*), SUM(cost) FROM events"
        " WHERE file_id IS NOT NULL GROUP BY file_id"
    )
    conn.execute(
        "UPDATE files SET held_events = (SELECT n FROM held WHERE file_id = files.id),"
        " held_cost = (SELECT c FROM held WHERE file_id = files.id)"
        " WHERE id IN (SELECT file_id FROM held)"
    )
    conn.execute("DROP TABLE temp.held")


def _v3(conn: sqlite3.Connection) -> None:
    """Sums per local day for the zones reports use (``day_zones``), so that a report costs
    the same whatever the length of the history; filled by the ledger when it first tracks
    a zone, from ``agg_time``."""
    conn.execute("CREATE TABLE day_zones (zone TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.execute(
        """CREATE TABLE agg_day (
    zone TEXT NOT NULL,
    day INTEGER NOT NULL,
    source TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    events INTEGER NOT NULL,
    input INTEGER NOT NULL,
    output INTEGER NOT NULL,
    cache_write_5m INTEGER NOT NULL,
    cache_write_1h INTEGER NOT NULL,
    cache_read INTEGER NOT NULL,
    reasoning INTEGER NOT NULL,
    total INTEGER NOT NULL,
    cost REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    PRIMARY KEY (zone, day, source, project_id, model_id)
) WITHOUT ROWID"""
    )


def _v4(conn: sqlite3.Connection) -> None:
    """Per line file, a fingerprint of the bytes just before its cursor, so that a file
    rewritten in place (same inode, not shorter) is noticed and read again. ``NULL`` (every
    file until its next read) means nothing to compare."""
    conn.execute("ALTER TABLE files ADD COLUMN tail INTEGER")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("initial ledger: files, events, aggregates", _v1),
    ("per-file events and cost held in the ledger", _v2),
    ("sums per local day for the zones reports use", _v3),
    ("a fingerprint of what each line file was read up to", _v4),
]


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to this database."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def apply_migrations(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet applied, in order; return the names applied.

    The connection must be in autocommit mode (``isolation_level=None``); each migration is
    one :func:`~sufd.store.transaction.atomic` transaction.
    """
    applied = []
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        from sufd.errors import StoreError

        raise StoreError(
            f"the ledger has schema version {current}, newer than this sufd knows"
            f" ({len(MIGRATIONS)}); upgrade sufd"
        )
    for number, (name, fn) in enumerate(MIGRATIONS[current:], start=current + 1):
        with atomic(conn):
            if schema_version(conn) >= number:
                continue  # another process applied it meanwhile
            fn(conn)
            conn.execute(f"PRAGMA user_version = {number}")
        applied.append(name)
    return applied
