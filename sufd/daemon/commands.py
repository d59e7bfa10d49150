"""The control verbs: what each request on the socket asks of the daemon's parts.

:class:`Commands` answers ``hello``, ``ping``, ``status``, ``pause-watcher``,
``resume-watcher``, ``rescan``, ``reload``, ``shutdown`` and ``statusline``, and streams
``tail`` and ``ingest``. It reads the ledger through the :class:`StoreKeeper`, the work and
its counters through the :class:`IngestCycles`, and asks the rest of the daemon (its
settings, watchers, pauses, reload and stop) through :class:`Host`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from sufd import __version__
from sufd.control.protocol import CAPABILITIES, PROTOCOL, ProtocolError
from sufd.control.statusline import format_line
from sufd.daemon.cycle import IngestCycles, iso
from sufd.daemon.keeper import StoreKeeper
from sufd.daemon.state import Pauses
from sufd.settings import KNOWN_SOURCES, Settings
from sufd.sources import enabled_sources
from sufd.store import queries
from sufd.watch.stalls import IoGuard, Stall
from sufd.watch.watcher import RootWatcher

__all__ = ["Commands", "Host"]


class Host(Protocol):
    """What the commands read of the daemon that serves them, and ask of it."""

    settings: Settings
    phase: str
    watchers: list[RootWatcher]
    log_problem: str | None
    started_at: float

    @property
    def uptime_s(self) -> int:
        """Seconds since the daemon started."""
        ...

    def pause(self, sources: list[str], until: float | None, reason: str, pid: int | None) -> None:
        """Pause these sources' watchers and cycles."""
        ...

    def resume(self, sources: list[str]) -> None:
        """Resume these sources, and read what changed meanwhile."""
        ...

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration."""
        ...

    def request_stop(self) -> None:
        """Shut down."""
        ...


@dataclass(eq=False)
class Commands:
    """The handlers of the control socket's requests (see the module docstring), given
    the daemon (``host``) and the parts they read and act on."""

    _host: Host
    _keeper: StoreKeeper
    _cycles: IngestCycles
    _pauses: Pauses
    _guard: IoGuard

    def handlers(self) -> dict[str, Any]:
        """The request handlers by command name."""
        return {
            "hello": self._hello,
            "ping": self._ping,
            "status": self._status_with_store,
            "pause-watcher": self._cmd_pause,
            "resume-watcher": self._cmd_resume,
            "rescan": self._cmd_rescan,
            "reload": self._cmd_reload,
            "shutdown": self._cmd_shutdown,
            "statusline": self._cmd_statusline,
        }

    def streams(self) -> dict[str, Any]:
        """The streaming request handlers by command name."""
        return {"tail": self._tail, "ingest": self._cmd_ingest}

    async def _hello(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self._host.started_at,
            "capabilities": list(CAPABILITIES),
            "db": str(self._host.settings.paths.db),
            "scan": self._cycles.scan_state(),
        }

    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "pid": os.getpid()}

    async def _status_with_store(self, args: dict[str, Any]) -> dict[str, Any]:
        """``status``, with the store's health; answers even when the ledger cannot be read."""
        try:
            st = self._status()
        except sqlite3.Error as exc:
            if not self._keeper.read_failed(exc):
                raise
            st = self._status()
        return self._keeper.add_health(st, running=self._host.phase == "running")

    def _status(self) -> dict[str, Any]:
        host, cycles = self._host, self._cycles
        settings = host.settings
        conn = self._keeper.ledger_reader()
        summary = queries.ledger_summary(conn)
        per_source = queries.source_totals(conn)
        history = queries.history(conn)
        paused = self._pauses.active()
        sources = []
        for source in enabled_sources(settings):
            name = source.name
            roots = [w.describe() for w in host.watchers if w.source == name]
            if not settings.watch_enabled:
                roots = [
                    {"name": name, "path": str(r), "state": "not-watching", "backend": None}
                    for r in source.roots(settings)
                ]
            totals = per_source.get(name, {})
            last_ms = max(cycles.last_event_ms.get(name, 0), int(totals.get("last_ms", 0)))
            sources.append(
                {
                    "name": name,
                    "state": "paused" if name in paused else _source_state(roots),
                    "roots": roots,
                    "files_tracked": summary.get(name, {}).get("files", 0),
                    "files_gone": summary.get(name, {}).get("files_gone", 0),
                    "files_in_error": summary.get(name, {}).get("files_in_error", 0),
                    "malformed_lines": summary.get(name, {}).get("malformed_lines", 0),
                    "events": int(totals.get("events", 0)),
                    "last_event_at": iso(last_ms) if last_ms else None,
                    "history": history.get(name, queries.History()).as_dict(),
                }
            )
        db = settings.paths.db
        store_bytes = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
        stalls = self._guard.stalls()
        degraded = [w.source for w in host.watchers if w.state == "polling" or w.error]
        degraded += [s.source for s in stalls]
        state = "paused" if paused and paused >= {s["name"] for s in sources} else "watching"
        if not settings.watch_enabled:
            state = "running-unwatched"
        if degraded:
            state = "degraded"
        return {
            "state": state if host.phase == "running" else host.phase,
            "pid": os.getpid(),
            "db": str(db),
            "uptime_s": host.uptime_s,
            "version": __version__,
            "protocol": PROTOCOL,
            "watcher": settings.watch_enabled,
            "sources": sources,
            "pause": self._pauses.as_status(),
            "last_cycle": cycles.last.__dict__,
            "cycles": cycles.count,
            "since_start": dict(cycles.totals),
            "store": {"path": str(db), "bytes": store_bytes},
            "scan": cycles.scan_state(),
            "history": queries.History.total(history.values()).as_dict(),
            "malformed_lines": sum(summary.get(s, {}).get("malformed_lines", 0) for s in summary),
            "paths": settings.paths.as_dict(),
            "warnings": [w.error for w in host.watchers if w.error]
            + _unreadable(conn)
            + [_stall_warning(s) for s in stalls]
            + ([host.log_problem] if host.log_problem else []),
        }

    async def _cmd_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        sources = _sources_arg(args)
        duration = args.get("for_s")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0
        ):
            raise ProtocolError("bad_request", "'for_s' must be a positive number of seconds")
        reason = args.get("reason") or ""
        if not isinstance(reason, str):
            raise ProtocolError("bad_request", "'reason' must be a string")
        pid = args.get("pid") if isinstance(args.get("pid"), int) else None
        until = time.time() + float(duration) if duration is not None else None
        self._host.pause(sources, until, reason[:200], pid)
        return {"paused": sources, "until": until}

    async def _cmd_resume(self, args: dict[str, Any]) -> dict[str, Any]:
        sources = _sources_arg(args)
        self._host.resume(sources)
        return {"resumed": sources}

    async def _cmd_rescan(self, args: dict[str, Any]) -> dict[str, Any]:
        sources = _sources_arg(args)
        self._cycles.request_full(sources, reason="rescan")
        self._keeper.retry_now()  # the user says the fault is fixed
        return {"scheduled": sources}

    async def _cmd_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._host.reload()

    async def _cmd_shutdown(self, args: dict[str, Any]) -> dict[str, Any]:
        asyncio.get_running_loop().call_later(0.05, self._host.request_stop)
        return {"stopping": True, "pid": os.getpid()}

    async def _cmd_statusline(self, args: dict[str, Any]) -> dict[str, Any]:
        conn = self._keeper.reader()
        if conn is None:
            raise ProtocolError("store_unavailable", "the ledger is being rebuilt; try again")
        session = args.get("session_id")
        now = time.time()
        # The client's local day (its TZ may differ from the daemon's); the daemon's own
        # when the client gives none. A client from before day_end_ms: a 24-hour day.
        start, end = args.get("day_start_ms"), args.get("day_end_ms")
        if not _is_int(start):
            from sufd.control.statusline import day_bounds_ms

            start, end = day_bounds_ms(now)
        elif not _is_int(end) or end <= start:
            end = start + 86_400_000
        numbers = queries.statusline(
            conn,
            session if isinstance(session, str) else None,
            day_ms=(start, end),
            now_ms=int(now * 1000),
        )
        return {**numbers, "text": format_line(numbers), "db": str(self._host.settings.paths.db)}

    async def _cmd_ingest(self, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``sufd ingest`` with the daemon running: the daemon, the one writer, runs a full
        scan of every source that is not paused, and streams its progress and summary."""
        store = self._keeper.store
        if self._keeper.ingestor is None or store.problem is not None:
            problem = store.problem
            why = f"{problem.reason}: {problem.detail}" if problem else "the ledger is not open"
            yield {"error": f"the daemon cannot write the ledger now ({why}); it retries by itself"}
            return
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._cycles.catchup_waiting.append(q)
        self._cycles.request_full(KNOWN_SOURCES, reason="sufd ingest")
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item
                if "done" in item or "error" in item:
                    return
        finally:
            with contextlib.suppress(ValueError):
                self._cycles.catchup_waiting.remove(q)

    async def _tail(self, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        tails = self._cycles.tails
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # the cycles bound it
        tails.add(q)
        try:
            while True:
                item = await q.get()
                if item is None or q not in tails:
                    return
                yield item
        finally:
            tails.discard(q)


def _sources_arg(args: dict[str, Any]) -> list[str]:
    raw = args.get("sources") or []
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise ProtocolError("bad_request", "'sources' must be a list of source names")
    unknown = [s for s in raw if s not in KNOWN_SOURCES]
    if unknown:
        raise ProtocolError(
            "bad_request", f"unknown source {unknown[0]!r} (known: {', '.join(KNOWN_SOURCES)})"
        )
    return list(raw) or list(KNOWN_SOURCES)


def _unreadable(conn: sqlite3.Connection) -> list[str]:
    """Status warnings naming the files that could not be read (permissions, not a file)."""
    shown, count = queries.files_in_error(conn)
    out = [f"cannot read {path}: {error}" for path, error in shown]
    if count > len(shown):
        out.append(f"... and {count - len(shown)} more files that cannot be read")
    return out


def _stall_warning(stall: Stall) -> str:
    waited = time.monotonic() - stall.since
    return (
        f"reading {stall.path} has not returned for {waited:.0f} s (a slow or hung mount?); "
        f"the files under {stall.root} wait until it does"
    )


def _source_state(roots: list[dict[str, Any]]) -> str:
    states = {r["state"] for r in roots}
    for candidate in ("watching", "polling", "not-watching", "starting", "failed"):
        if candidate in states:
            return candidate
    return "missing"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
