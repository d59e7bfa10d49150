"""The runtime directory (socket, lock) and the daemon's two locks.

The directory must be owned by us, not a symlink, and closed to group and others; anything
else could let another user talk to or impersonate the daemon, so it is refused.

A daemon holds two locks, each an ``flock`` (:class:`DaemonLocks`): one beside its ledger,
so there is one daemon per ledger file whatever runtime directory each was given, and one
beside its socket, so a daemon never takes over the socket another one serves. Neither is
taken on the ledger file itself: SQLite's own POSIX locks on it are dropped when the
process closes *any* descriptor of that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from sufd.errors import SufdError

if TYPE_CHECKING:
    from sufd.settings import Paths

__all__ = [
    "AlreadyRunning",
    "DaemonLocks",
    "InstanceLock",
    "SocketInUse",
    "UnsafeRuntimeDir",
    "prepare_runtime_dir",
    "read_lock_pid",
]


class UnsafeRuntimeDir(SufdError):
    """The runtime directory exists but is not private to this user."""


class AlreadyRunning(SufdError):
    """Another daemon holds a lock this one needs (``pid`` when known)."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class SocketInUse(AlreadyRunning):
    """The control socket is served by the daemon of another ledger."""


def prepare_runtime_dir(path: Path) -> None:
    """Create ``path`` 0700 if missing, then verify it is safe to put the socket in.

    Raises:
        UnsafeRuntimeDir: a symlink, not a directory, owned by someone else, or group- or
            world-accessible.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UnsafeRuntimeDir(f"cannot create runtime directory {path}: {exc.strerror}") from exc
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeRuntimeDir(f"runtime directory {path} is a symlink; refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(f"runtime directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise UnsafeRuntimeDir(
            f"runtime directory {path} is owned by uid {st.st_uid}, not by you ({os.geteuid()})"
        )
    if st.st_mode & 0o077:
        raise UnsafeRuntimeDir(
            f"runtime directory {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700"
            f" (fix: chmod 700 {path})"
        )


class InstanceLock:
    """An ``flock`` on a lock file holding our pid: released by the kernel when the process
    dies, so it never goes stale."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (writing our pid into it); when already held by this object, just
        write our pid again (the daemon after detaching is another process).

        Raises:
            AlreadyRunning: another process holds it (its pid, when written yet).
        """
        if self._fd is not None:
            self._write_pid(self._fd)
            return
        # A holder that stops unlinks the file while still holding it; a lock won on that
        # unlinked file would lock nothing, so take it again on the file now at the path.
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                who = f"pid {pid}" if pid else "another process"
                raise AlreadyRunning(f"{self.path} is locked by {who}", pid) from None
            self._fd = fd
            if self.intact():
                break
            self._fd = None
            os.close(fd)
        else:
            raise SufdError(f"{self.path} keeps being replaced while it is locked")
        self._write_pid(fd)

    @staticmethod
    def _write_pid(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    @property
    def fd(self) -> int | None:
        """The locked descriptor (to keep open across a fork)."""
        return self._fd

    def intact(self) -> bool:
        """Whether ``path`` is still the file we hold locked (a tmp cleaner may remove it,
        and then nothing stops a second daemon from starting)."""
        if self._fd is None:
            return True
        try:
            st, fst = os.stat(self.path), os.fstat(self._fd)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)

    def restore(self) -> None:
        """Lock a new file at ``path`` (with our pid) after the old one was removed.

        Raises:
            AlreadyRunning: another daemon started meanwhile and holds the new file.
        """
        old, self._fd = self._fd, None
        try:
            self.acquire()
        except BaseException:
            self._fd = old
            raise
        if old is not None:
            os.close(old)

    def release(self) -> None:
        """Drop the lock and remove the file (safe: we still hold it while unlinking), unless
        the file at the path is no longer ours."""
        if self._fd is None:
            return
        if self.intact():
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


class DaemonLocks:
    """The two locks of one daemon: its ledger's (``<ledger>.lock``: one daemon per ledger)
    and its socket's (``sufd.lock`` beside ``sufd.sock``: one daemon per socket).

    Taken before detaching by ``sufd run --daemon`` (so a refusal reaches the terminal) and
    kept across the fork; :meth:`acquire` in the detached process then only writes its pid.
    """

    def __init__(self, db: Path, ledger_lock: Path, socket: Path, socket_lock: Path) -> None:
        self.db = db
        self.socket = socket
        self.ledger = InstanceLock(ledger_lock)
        self.control = InstanceLock(socket_lock)

    @classmethod
    def of(cls, paths: Paths) -> DaemonLocks:
        """The locks of the daemon these paths describe."""
        return cls(paths.db, paths.lock, paths.socket, paths.socket_lock)

    @property
    def fds(self) -> list[int]:
        """The locked descriptors (to keep open across a fork)."""
        return [fd for fd in (self.ledger.fd, self.control.fd) if fd is not None]

    def acquire(self) -> None:
        """Take the ledger's lock, then the socket's (the runtime directory must exist).

        Raises:
            AlreadyRunning: a daemon already serves this ledger (its pid and the ledger named).
            SocketInUse: the daemon of another ledger serves this socket (both named).
        """
        ledger_lock = self.ledger.path
        ledger_lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.ledger.acquire()
        except AlreadyRunning as held:
            who = f"pid {held.pid}" if held.pid else "another process"
            raise AlreadyRunning(
                f"sufd is already running for the ledger {self.db} ({who}, lock {ledger_lock})",
                held.pid,
            ) from None
        try:
            self._acquire_control()
        except BaseException:
            self.ledger.release()
            raise

    def _acquire_control(self) -> None:
        try:
            self.control.acquire()
        except AlreadyRunning as held:
            raise self._socket_in_use(held.pid) from None

    def _socket_in_use(self, pid: int | None, *, ask: bool = True) -> SocketInUse:
        who = f"pid {pid}" if pid else "another process"
        # Not asked from the running daemon's loop (restore), which must not wait on another.
        other = _served_ledger(self.socket) if ask else None
        serving = f"serving the ledger {other}" if other else "serving another ledger"
        return SocketInUse(
            f"the control socket {self.socket} is in use by another sufd ({who}, {serving});"
            f" the daemon of the ledger {self.db} needs a runtime directory of its own"
            " (set paths.runtime_dir or SUFD_RUNTIME_DIR)",
            pid,
        )

    def intact(self) -> bool:
        """Whether both lock files are still the ones we hold (see :meth:`InstanceLock.intact`)."""
        return self.ledger.intact() and self.control.intact()

    def restore(self) -> list[str]:
        """Lock a new file in place of each one removed; return their paths.

        Raises:
            AlreadyRunning: another daemon started meanwhile and holds a new file.
        """
        restored = []
        if not self.ledger.intact():
            try:
                self.ledger.restore()
            except AlreadyRunning as held:
                raise AlreadyRunning(
                    f"sufd is already running for the ledger {self.db} (pid {held.pid})", held.pid
                ) from None
            restored.append(str(self.ledger.path))
        if not self.control.intact():
            try:
                self.control.restore()
            except AlreadyRunning as held:
                raise self._socket_in_use(held.pid, ask=False) from None
            restored.append(str(self.control.path))
        return restored

    def release(self) -> None:
        """Drop both locks (the socket's first: the ledger's guards the socket's)."""
        self.control.release()
        self.ledger.release()


def _served_ledger(socket: Path) -> str | None:
    """The ledger the daemon answering at ``socket`` serves, if it says (it may be starting)."""
    from sufd.control import client

    try:
        db = client.call(socket, "hello", timeout=1.0).get("db")
    except SufdError:
        return None
    return db if isinstance(db, str) else None


def _read_pid(fd: int) -> int | None:
    try:
        data = os.pread(fd, 32, 0).decode().strip()
        return int(data) if data.isdigit() else None
    except (OSError, ValueError):
        return None


def read_lock_pid(path: Path) -> int | None:
    """The pid written in a lock file, if any (for ``sufd stop`` without a service manager)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)
