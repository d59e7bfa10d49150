"""The control socket server: owner-only, peer-checked, bounded, and never wedged by a client.

Each connection may send any number of requests, one JSON line each (see
:mod:`sufd.protocol`). A line longer than :data:`~sufd.protocol.MAX_LINE`, a connection from
another uid, a client idle past the timeout or beyond the client limit gets an error reply
(where possible) and is disconnected; everyone else is unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from sufd.logger import get_logger
from sufd.protocol import MAX_LINE, ProtocolError, decode_request, encode, error, ok

__all__ = ["ControlServer", "Handler", "peer_uid"]

log = get_logger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
StreamHandler = Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]]

IDLE_TIMEOUT_S = 30.0
MAX_CLIENTS = 16


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


class ControlServer:
    """Serves the control protocol on a Unix socket path."""

    def __init__(
        self,
        path: Path,
        handlers: dict[str, Handler],
        streams: dict[str, StreamHandler] | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.path = path
        self._handlers = handlers
        self._streams = streams or {}
        self._idle = idle_timeout
        self._max_clients = max_clients
        self._clients = 0
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self.rejected = 0

    async def start(self) -> None:
        """Bind the socket 0600 (the caller holds the instance lock, so a leftover is stale)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE + 1
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
        """Re-create the socket after it vanished."""
        await self.close(unlink=False)
        await self.start()
        log.warning("control.socket_rebound", path=str(self.path))

    async def close(self, *, unlink: bool = True) -> None:
        """Stop accepting; remove the socket file if it is still ours."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
            self._server = None
        if unlink and self.socket_ok():
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
            if self._clients >= self._max_clients:
                await self._reply(
                    writer, error(None, "busy", f"too many clients (limit {self._max_clients})")
                )
                return
            self._clients += 1
            try:
                await self._session(reader, writer)
            finally:
                self._clients -= 1
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout=self._idle)
            except TimeoutError:
                await self._reply(
                    writer, error(None, "idle_timeout", f"no request within {self._idle:g} s")
                )
                return
            except asyncio.LimitOverrunError:
                await self._reply(
                    writer, error(None, "request_too_large", f"request exceeds {MAX_LINE} bytes")
                )
                return
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    await self._reply(
                        writer, error(None, "bad_request", "request not terminated by a newline")
                    )
                return
            if not line.strip():
                continue
            req_id: Any = None
            try:
                req_id, cmd, args = decode_request(line)
                if cmd in self._streams:
                    await self._stream(reader, writer, req_id, self._streams[cmd], args)
                    return
                result = await self._handlers[cmd](args)
                response = ok(req_id, result)
            except ProtocolError as exc:
                response = error(
                    req_id if req_id is not None else exc.req_id, exc.code, exc.message
                )
            except ConnectionError:
                return  # the client went away mid-reply: nothing to answer
            except Exception as exc:  # a handler bug must not take the daemon down
                log.error("control.handler_failed", error=f"{type(exc).__name__}: {exc}")
                response = error(req_id, "internal_error", f"{type(exc).__name__}: {exc}")
            await self._reply(writer, response)

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
