"""The runtime directory (socket, lock) and the single-instance lock.

The directory must be owned by us, not a symlink, and closed to group and others; anything
else could let another user talk to or impersonate the daemon, so it is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from sufd.errors import SufdError

__all__ = [
    "AlreadyRunning",
    "InstanceLock",
    "UnsafeRuntimeDir",
    "prepare_runtime_dir",
    "read_lock_pid",
]


class UnsafeRuntimeDir(SufdError):
    """The runtime directory exists but is not private to this user."""


class AlreadyRunning(SufdError):
    """Another daemon of this user holds the lock."""

    def __init__(self, pid: int | None, lock: Path) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"sufd is already running ({who}, lock {lock})")
        self.pid = pid


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
    """An ``flock`` on ``sufd.lock``: released by the kernel when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`AlreadyRunning` naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(pid, self.path) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

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
