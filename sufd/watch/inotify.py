"""Linux inotify, read on the asyncio loop: a recursive directory watch that costs nothing idle.

watchfiles (the portable backend, used on macOS and for polling) runs a Rust thread that
wakes every ``step`` milliseconds to check for a stop request; at the 25 ms step the latency
target needs, that alone measured about 0.15 CPU-seconds a minute per watched root, most of
the idle budget. Here the kernel's inotify descriptor is registered with the event loop, so
an idle daemon is never woken by its watches.

Only what sufd needs is implemented: watch a tree, follow directories as they are created,
moved in or removed, report the paths that changed, and say when the root itself went away,
the kernel queue overflowed or a watch was dropped (then the caller rescans).

Symlinked directories below the root are neither watched nor entered, as the sources' scan
does not enter them: the kernel would hand back the watch of the directory they point to,
and that directory's events would then be reported under the link's path (and lost once
the link goes). The root itself may be a symlink; it is followed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Batch", "InotifyTree", "WatchLimitError", "available"]

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

# IN_ATTRIB: a file replaced by hard link or with only its mtime touched still deserves a look.
_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")
_READ_SIZE = 256 * 1024


class WatchLimitError(OSError):
    """The per-user inotify watch or instance limit was reached."""


def available() -> bool:
    """Whether this platform has inotify (Linux with a C library exposing it)."""
    return sys.platform.startswith("linux") and _libc() is not None


_LIBC: ctypes.CDLL | None | bool = False


def _libc() -> ctypes.CDLL | None:
    global _LIBC
    if _LIBC is False:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
            _LIBC = lib
        except (OSError, AttributeError):
            _LIBC = None
    return _LIBC if isinstance(_LIBC, ctypes.CDLL) else None


@dataclass
class Batch:
    """What one read of the descriptor says."""

    changed: set[Path] = field(default_factory=set)
    deleted: set[Path] = field(default_factory=set)
    new_dirs: list[Path] = field(default_factory=list)
    root_gone: bool = False
    overflow: bool = False
    # A directory moved out of the tree: its files left without an event of their own.
    dirs_gone: bool = False
    # The kernel dropped the watch of a directory still there (e.g. a filesystem unmounted
    # from it): watched again and listed, but its events in between are lost.
    lost: bool = False


class InotifyTree:
    """A recursive inotify watch of one directory tree.

    Call :meth:`read` when :attr:`fd` is readable. New subdirectories are watched as they
    appear; files already inside them are listed in ``Batch.changed`` (they may have been
    written before the watch was armed).
    """

    def __init__(self, root: Path) -> None:
        lib = _libc()
        if lib is None:
            raise OSError(errno.ENOSYS, "inotify is not available")
        self._lib = lib
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            if err == errno.EMFILE:
                raise WatchLimitError(err, "inotify instance limit reached (max_user_instances)")
            raise OSError(err, os.strerror(err))
        self.fd: int = fd
        self.root = root
        self._dirs: dict[int, Path] = {}
        # Directories that could not be watched for want of permission: not listed either.
        self.unreadable: set[Path] = set()
        self._root_wd = -1
        self.root_gone = False
        try:
            self._root_wd = self._add(root)
            for sub in _subdirs(root):
                self._add_quiet(sub)
        except BaseException:
            self.close()
            raise

    @property
    def watches(self) -> int:
        """Directories watched now."""
        return len(self._dirs)

    def close(self) -> None:
        """Release the descriptor (and with it every watch); idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._dirs.clear()

    def read(self) -> Batch:
        """Drain the descriptor; never blocks."""
        batch = Batch()
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            self._parse(data, batch)
        for d in batch.new_dirs:
            # Arm the new directory first, then list it: a file written in between is seen
            # twice at worst, never missed. One that could not be armed (gone, replaced by a
            # symlink, unreadable) is not listed: its files are not in the tree.
            if self._add_quiet(d):
                for sub in _subdirs(d):
                    self._add_quiet(sub)
                batch.changed.update(_files(d))
        if self.unreadable:  # rare: forget those deleted since
            self.unreadable = {d for d in self.unreadable if os.path.lexists(d)}
        return batch

    def _parse(self, data: bytes, batch: Batch) -> None:
        pos, size = 0, len(data)
        while pos + _HEADER.size <= size:
            wd, mask, _cookie, length = _HEADER.unpack_from(data, pos)
            name = data[pos + _HEADER.size : pos + _HEADER.size + length].rstrip(b"\0")
            pos += _HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                batch.overflow = True
                continue
            base = self._dirs.get(wd)
            if mask & IN_IGNORED:
                self._ignored(wd, batch)
                continue
            if base is None:
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if wd == self._root_wd:
                    batch.root_gone = True
                continue
            if not name:
                if mask & IN_ATTRIB:  # e.g. a chmod that makes it readable again
                    batch.new_dirs.append(base)
                continue
            path = base / os.fsdecode(name)
            if mask & IN_ISDIR:
                # IN_ATTRIB: a mode change may make a directory readable (and watchable):
                # armed and listed like a new one, so what was written meanwhile is read.
                if mask & (IN_CREATE | IN_MOVED_TO | IN_ATTRIB):
                    batch.new_dirs.append(path)
                elif mask & IN_MOVED_FROM:
                    # Its watches would go on reporting it under the old, now wrong, path.
                    self._forget(path)
                    batch.dirs_gone = True
            elif mask & (IN_DELETE | IN_MOVED_FROM):
                batch.deleted.add(path)
                batch.changed.discard(path)
            else:
                batch.changed.add(path)
                batch.deleted.discard(path)

    def _ignored(self, wd: int, batch: Batch) -> None:
        """The kernel removed a watch: the directory was deleted, or is no longer on the same
        filesystem (unmounted); watches removed by :meth:`_forget` are already forgotten."""
        path = self._dirs.pop(wd, None)
        if wd == self._root_wd:
            batch.root_gone = True
        elif path is not None and _is_real_dir(path):
            batch.new_dirs.append(path)
            batch.lost = True

    def _forget(self, top: Path) -> None:
        for wd, path in list(self._dirs.items()):
            if path == top or path.is_relative_to(top):
                self._lib.inotify_rm_watch(self.fd, wd)
                del self._dirs[wd]

    def _add(self, path: Path) -> int:
        """Watch a directory; the root is followed if it is a symlink, nothing below it is
        (ENOTDIR then). Returns the watch descriptor, or -1 for a second path to a directory
        already watched under another one."""
        mask = _MASK if path == self.root else _MASK | IN_DONT_FOLLOW
        wd = int(self._lib.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                raise WatchLimitError(err, "inotify watch limit reached (max_user_watches)")
            raise OSError(err, os.strerror(err), str(path))
        known = self._dirs.get(wd)
        if known is not None and known != path and _same_dir(known, path):
            # One directory, one watch: reached again by another path (a bind mount), it
            # keeps reporting under the first. (Had it moved, the old path would be gone.)
            return -1
        self._dirs[wd] = path
        self.unreadable.discard(path)
        return wd

    def _add_quiet(self, path: Path) -> bool:
        """Watch a subdirectory; one that vanished, is unreadable or is not a directory (a
        symlink) is passed over. Returns whether ``path`` is watched now."""
        try:
            return self._add(path) >= 0
        except WatchLimitError:
            raise
        except PermissionError:
            self.unreadable.add(path)
        except OSError:
            pass
        return False


def _subdirs(top: Path) -> Iterator[Path]:
    """Every directory below ``top``, each before what is inside it; symlinked ones are
    neither listed nor entered (os.walk lists them, without entering)."""
    pending = [top]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                found = [Path(e.path) for e in entries if _entry_is_dir(e)]
        except OSError:
            continue  # vanished or unreadable meanwhile
        yield from found
        pending += found


def _entry_is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_real_dir(path: Path) -> bool:
    """A directory, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _same_dir(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _files(root: Path) -> Iterator[Path]:
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            yield Path(dirpath, f)
