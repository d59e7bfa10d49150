"""File-system calls that may not return: a source root on a hung network or FUSE mount.

A ``read`` on a hung NFS or FUSE mount blocks its thread until the server answers, which may
be never, and no timeout can be put on the system call itself. The daemon has one writer
thread, so such a call would stop ingest for every source. :class:`IoGuard` runs these calls
on a helper thread instead and waits at most a deadline: past it, the caller gets
:class:`Stalled` and goes on with other files, the helper thread is left with its call, and
every later call for the same root fails fast until that call returns. Then the root is
handed back (``on_clear``) to be read again from its cursors, so nothing is lost.

Only the daemon uses a guard; ``sufd ingest`` reads directly.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sufd.logger import get_logger

__all__ = ["GuardedFile", "IoGuard", "Stall", "Stalled"]

log = get_logger(__name__)

T = TypeVar("T")
Key = tuple[str, str]  # (source name, root)
ClearHook = Callable[[str, str], None]

# A guarded read asks for at most this much at once, so that a slow but working mount still
# returns each call well within the deadline.
GUARDED_READ_BYTES = 1024 * 1024
# A root whose call stalled gets twice that stall as its deadline from then on (until the
# daemon restarts), up to this: a mount that is merely slow then makes progress instead of
# stalling on every read (a stalled read's bytes are not used).
MAX_DEADLINE_S = 30.0

_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]] | None


@dataclass(frozen=True, slots=True)
class Stall:
    """A call that has not returned: which source and root it holds up, on what file."""

    source: str
    root: str
    path: str
    since: float  # time.monotonic() when the call was made


class Stalled(OSError):
    """A call on this root passed its deadline (now, or an earlier one that is still out)."""

    def __init__(
        self, stall: Stall, future: concurrent.futures.Future[Any], *, own: bool = False
    ) -> None:
        waited = time.monotonic() - stall.since
        super().__init__(f"reading {stall.path} has not returned for {waited:.0f} s")
        self.stall = stall
        self.future = future  # the call that is out
        self.own = own  # that call is this one (else an earlier one, and this one never ran)


class IoGuard:
    """Runs blocking file-system calls with a deadline; see the module docstring."""

    def __init__(self, deadline_s: float, on_clear: ClearHook | None = None) -> None:
        self.deadline_s = deadline_s
        self.on_clear = on_clear
        self._lock = threading.Lock()
        self._stalls: dict[Key, tuple[Stall, concurrent.futures.Future[Any]]] = {}
        self._deadlines: dict[Key, float] = {}
        self._jobs: queue.SimpleQueue[_Job] | None = None

    def call(self, key: Key, path: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the helper thread; raises :class:`Stalled` past the deadline."""
        with self._lock:
            stalled = self._stalls.get(key)
            if stalled is not None:
                raise Stalled(*stalled)
            jobs = self._jobs
            if jobs is None:
                jobs = self._jobs = _start_helper()
            deadline = self._deadlines.get(key, self.deadline_s)
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            stall = Stall(key[0], key[1], path, time.monotonic())
            jobs.put((future, fn, args))  # before any stop sentinel another caller may add
        try:
            return future.result(timeout=deadline)
        except concurrent.futures.TimeoutError:
            pass
        with self._lock:
            self._stalls[key] = (stall, future)
            if self._jobs is jobs:
                # That helper is busy for as long as the call lasts: the next call gets a new
                # one, and this one ends once its call returns.
                self._jobs = None
                jobs.put(None)
        log.warning("ingest.read_stalled", source=key[0], root=key[1], path=path, after_s=deadline)
        future.add_done_callback(lambda _f: self._returned(key, stall))
        raise Stalled(stall, future, own=True)

    def stalls(self) -> list[Stall]:
        """The calls still out, oldest first."""
        with self._lock:
            return sorted((s for s, _f in self._stalls.values()), key=lambda s: s.since)

    def stalled(self, key: Key) -> bool:
        """Whether a call on this root is still out."""
        with self._lock:
            return key in self._stalls

    def _returned(self, key: Key, stall: Stall) -> None:
        took = time.monotonic() - stall.since
        with self._lock:
            self._stalls.pop(key, None)
            self._deadlines[key] = min(MAX_DEADLINE_S, max(self.deadline_s, 2 * took))
        log.info("ingest.read_resumed", source=key[0], root=key[1], path=stall.path, stalled_s=took)
        if self.on_clear is not None:
            self.on_clear(*key)


class GuardedFile:
    """A read-only file whose every system call goes through an :class:`IoGuard`.

    Enough of ``BinaryIO`` for :func:`sufd.ingest.runs.read_runs`: ``seek``, ``read`` (which may
    return fewer bytes than asked, as a raw file may) and ``fileno``. Plain ``pread`` on a
    descriptor, not a buffered file: a buffered file's lock would make ``close`` wait for a
    read stuck on another thread. A descriptor whose call stalled is closed once it returns.
    """

    def __init__(self, guard: IoGuard, key: Key, path: str) -> None:
        self._guard, self._key, self._path = guard, key, path
        self._pos = 0
        self._late: concurrent.futures.Future[Any] | None = None
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            self._fd: int = guard.call(key, path, os.open, path, flags)
        except Stalled as exc:
            if exc.own:
                exc.future.add_done_callback(_close_late_open)
            raise

    def fileno(self) -> int:
        """The descriptor."""
        return self._fd

    def fstat(self) -> os.stat_result:
        """``os.fstat`` of the descriptor, guarded."""
        return self._call(os.fstat, self._fd)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Set the position of the next read (only from the start is supported)."""
        if whence != os.SEEK_SET:
            raise ValueError("GuardedFile seeks from the start only")
        self._pos = offset
        return offset

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (at most :data:`GUARDED_READ_BYTES`) from the position."""
        want = GUARDED_READ_BYTES if size < 0 else min(size, GUARDED_READ_BYTES)
        data: bytes = self._call(os.pread, self._fd, want, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        """Close (guarded too: on FUSE, ``close`` waits for the server's answer to a flush),
        or leave it to be closed once the call that stalled has returned."""
        fd = self._fd
        if self._late is not None and not self._late.done():
            self._late.add_done_callback(lambda _f: os.close(fd))
            return
        try:
            self._guard.call(self._key, self._path, os.close, fd)
        except Stalled as exc:
            if not exc.own:  # never ran: the root is held up by another call
                exc.future.add_done_callback(lambda _f: os.close(fd))

    def __enter__(self) -> GuardedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return self._guard.call(self._key, self._path, fn, *args)
        except Stalled as exc:
            if exc.own:
                self._late = exc.future
            raise


def _close_late_open(future: concurrent.futures.Future[Any]) -> None:
    if future.exception() is None:
        os.close(future.result())


def _start_helper() -> queue.SimpleQueue[_Job]:
    jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
    # A daemon thread: one stuck in a hung mount must not keep the process from exiting.
    threading.Thread(target=_helper, args=(jobs,), name="sufd-io", daemon=True).start()
    return jobs


def _helper(jobs: queue.SimpleQueue[_Job]) -> None:
    while (job := jobs.get()) is not None:
        future, fn, args = job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the waiting caller, who decides
            future.set_exception(exc)
