"""The control socket server: owner-only, peer-checked, bounded, and never wedged by a client.

Each connection may send any number of requests, one JSON line each (see
:mod:`sufd.control.protocol`). The limits protect the daemon without letting any number of idle or
streaming clients lock out the rest:

- A connection waiting for its next request holds nothing but its descriptor. One silent for
  the idle timeout is answered ``idle_timeout`` and disconnected; with
  :data:`MAX_CONNECTIONS` open, the one waiting the longest is disconnected the same way to
  make room for a newcomer.
- At most :data:`MAX_REQUESTS` requests are served at once and :data:`MAX_STREAMS` ``tail``
  streams are open; a request beyond that is answered ``busy`` (with its id) on a connection
  that stays usable. The :data:`PRIORITY` verbs count against neither, so ``status``,
  ``ping`` and ``shutdown`` are always answered at once.
- A newcomer finding every connection busy and none waiting is answered ``busy`` and
  disconnected, but only after its request was read: it sees that line and an end of file,
  never a reset or a broken pipe.

A line longer than :data:`~sufd.control.protocol.MAX_LINE` or a connection from another uid gets an
error reply and is disconnected; everyone else is unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sufd.control.protocol import MAX_LINE, ProtocolError, decode_request, encode, error, ok
from sufd.logger import get_logger

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_REQUESTS",
    "MAX_STREAMS",
    "PRIORITY",
    "ControlServer",
    "Handler",
    "peer_uid",
]

log = get_logger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
StreamHandler = Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]]

IDLE_TIMEOUT_S = 30.0
MAX_REQUESTS = 16
MAX_STREAMS = 64
# Well under the usual 1024 descriptors a process may open, next to the store and watchers.
MAX_CONNECTIONS = 256
PRIORITY = frozenset({"hello", "ping", "status", "shutdown"})
# Connections the kernel queues before the daemon accepts them: a burst of clients waits
# there instead of being refused (EAGAIN) while the event loop is busy for a moment.
BACKLOG = 512
# How long a refused connection is kept to read its request, so that closing does not reset
# it; and how many may linger at once (beyond that they are closed at once).
LINGER_S = 1.0
MAX_LINGERING = 64


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    waiting_since: float | None = None  # loop time it began waiting for a request, if it is
    dropped: bool = False


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, if the OS tells."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    getpeereid = getattr(os, "getpeereid", None)  # not in CPython; macOS needs ctypes
    if getpeereid is not None:
        return int(getpeereid(sock.fileno())[0])
    return _getpeereid_ctypes(sock)


def _getpeereid_ctypes(sock: socket.socket) -> int | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if libc.getpeereid(sock.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        return None
    return int(uid.value)


class _Slots:
    """At most ``limit`` things at once; one more is answered ``busy``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def held(self, what: str) -> Iterator[None]:
        """Hold one slot for the ``with`` block; ``what`` says what the slots are in use for."""
        if self.used >= self.limit:
            raise ProtocolError(
                "busy", f"{self.used} {what} (limit {self.limit}); try again shortly"
            )
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1


class ControlServer:
    """Serves the control protocol on a Unix socket path."""

    def __init__(
        self,
        path: Path,
        handlers: dict[str, Handler],
        streams: dict[str, StreamHandler] | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT_S,
        max_requests: int = MAX_REQUESTS,
        max_streams: int = MAX_STREAMS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.path = path
        self._handlers = handlers
        self._streams = streams or {}
        self._idle = idle_timeout
        self._max_connections = max_connections
        self._conns: set[_Conn] = set()
        self._requests = _Slots(max_requests)
        self._streaming = _Slots(max_streams)
        self._lingering = 0
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self.rejected = 0
        self.refused = 0  # answered busy at connection time
        self.made_room = 0  # waiting connections closed for a newcomer

    async def start(self) -> None:
        """Bind the socket 0600 (the caller holds the instance lock, so a leftover is stale)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE + 1, backlog=BACKLOG
            )
        finally:
            os.umask(old)
        self._inode = os.stat(self.path).st_ino

    def socket_ok(self) -> bool:
        """Whether our socket file is still in place (a tmp cleaner may remove it)."""
        try:
            return os.stat(self.path).st_ino == self._inode
        except OSError:
            return False

    async def rebind(self) -> None:
        """Re-create the socket after it vanished (connected clients stay)."""
        await self._stop_listening()
        await self.start()
        log.warning("control.socket_rebound", path=str(self.path))

    async def close(self, *, unlink: bool = True) -> None:
        """Stop accepting, disconnect the clients waiting for a request (those being answered
        finish), and remove the socket file if it is still ours."""
        await self._stop_listening(drop_waiting=True)
        if unlink and self.socket_ok():
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _stop_listening(self, *, drop_waiting: bool = False) -> None:
        if self._server is None:
            return
        self._server.close()
        if drop_waiting:
            for conn in [c for c in self._conns if c.waiting_since is not None]:
                self._drop(conn, error(None, "stopping", "sufd is stopping"))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
        self._server = None

    def _drop(self, conn: _Conn, response: dict[str, Any]) -> None:
        """Answer a connection waiting for a request and close it; its session then ends."""
        conn.dropped = True
        self._conns.discard(conn)
        with contextlib.suppress(Exception):
            conn.writer.write(encode(response))
        conn.writer.close()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request, if any is waiting."""
        waiting = [c for c in self._conns if c.waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        assert oldest.waiting_since is not None
        idle_for = asyncio.get_running_loop().time() - oldest.waiting_since
        self._drop(
            oldest,
            error(
                None,
                "idle_timeout",
                f"closed after {idle_for:.1f} s without a request, to make room for another"
                f" client (limit {self._max_connections})",
            ),
        )
        self.made_room += 1
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.geteuid():
                self.rejected += 1
                log.warning("control.peer_rejected", peer_uid=uid)
                await self._reply(
                    writer, error(None, "permission_denied", "connection from another user refused")
                )
                return
            if len(self._conns) >= self._max_connections and not self._make_room():
                self.refused += 1
                await self._refuse(
                    reader,
                    writer,
                    error(
                        None,
                        "busy",
                        f"{len(self._conns)} clients are being served (limit"
                        f" {self._max_connections}); try again shortly",
                    ),
                )
                return
            self._conns.add(conn)
            try:
                await self._session(conn, reader, writer)
            finally:
                self._conns.discard(conn)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: dict[str, Any]
    ) -> None:
        """Answer at once, then read the request before closing: closing a socket with unread
        data resets it, and closing before the client sent makes its send a broken pipe."""
        writer.write(encode(response))
        if self._lingering >= MAX_LINGERING:
            return
        self._lingering += 1
        try:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.readline(), timeout=LINGER_S)
        finally:
            self._lingering -= 1

    async def _session(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            line = await self._next_line(conn, reader, writer)
            if line is None:
                return
            if not line.strip():
                continue
            response = await self._dispatch(line, reader, writer)
            if response is None:
                return
            await self._reply(writer, response)

    async def _next_line(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        """The next request line; ``None`` once the connection is to end (answered as due)."""
        conn.waiting_since = asyncio.get_running_loop().time()
        problem: dict[str, Any] | None = None
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout=self._idle)
        except TimeoutError:
            problem = error(None, "idle_timeout", f"no request within {self._idle:g} s")
        except asyncio.LimitOverrunError:
            problem = error(None, "request_too_large", f"request exceeds {MAX_LINE} bytes")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                problem = error(None, "bad_request", "request not terminated by a newline")
            else:
                return None
        finally:
            conn.waiting_since = None
        if conn.dropped:
            return None  # already answered (to make room, or because sufd is stopping)
        if problem is not None:
            await self._reply(writer, problem)
            return None
        return line

    async def _dispatch(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any] | None:
        """The response to one request line; ``None`` after a stream or if the client left."""
        req_id: Any = None
        try:
            req_id, cmd, args = decode_request(line)
            if cmd in self._streams:
                with self._streaming.held(f"{cmd} streams are open"):
                    await self._stream(reader, writer, req_id, self._streams[cmd], args)
                return None
            if cmd in PRIORITY:
                return ok(req_id, await self._handlers[cmd](args))
            with self._requests.held("requests are in progress"):
                return ok(req_id, await self._handlers[cmd](args))
        except ProtocolError as exc:
            return error(req_id if req_id is not None else exc.req_id, exc.code, exc.message)
        except ConnectionError:
            return None  # the client went away mid-reply: nothing to answer
        except Exception as exc:  # a handler bug must not take the daemon down
            log.error("control.handler_failed", error=f"{type(exc).__name__}: {exc}")
            return error(req_id, "internal_error", f"{type(exc).__name__}: {exc}")

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        req_id: Any,
        handler: StreamHandler,
        args: dict[str, Any],
    ) -> None:
        await self._reply(writer, ok(req_id, {"streaming": True}))
        gone = asyncio.ensure_future(reader.read(1))  # EOF (or any byte) ends the stream
        items = handler(args).__aiter__()
        try:
            while True:
                nxt = asyncio.ensure_future(items.__anext__())
                done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt
                    return
                try:
                    item = nxt.result()
                except StopAsyncIteration:
                    return
                writer.write(encode({"v": 1, "event": item}))
                try:
                    await asyncio.wait_for(writer.drain(), timeout=self._idle)
                except TimeoutError:
                    log.warning("control.stream_client_stalled")
                    writer.transport.abort()
                    return
        finally:
            gone.cancel()
            with contextlib.suppress(BaseException):
                await gone

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
        writer.write(encode(response))
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.drain(), timeout=5.0)
