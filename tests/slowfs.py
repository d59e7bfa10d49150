"""A read-only FUSE passthrough whose file reads can be made to hang: a slow mount on demand.

Run as ``python -m tests.slowfs SOURCE MOUNTPOINT CONTROL``. It mirrors SOURCE at MOUNTPOINT.
While the file CONTROL holds ``slow``, every ``read`` of a file's data waits (up to
:data:`LONGEST_WAIT_S`) until it says something else, the way a network or cloud FUSE mount
hangs while it fetches contents: names and attributes still answer, data does not. The
tests write to SOURCE; writes through the mount are refused.

A real kernel mount (``/dev/fuse``, libfuse 2 through fusepy), because what is under test
is a system call that blocks in the kernel, which nothing in-process can imitate.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LONGEST_WAIT_S = 120.0
_ATTRS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size")
_TIMES = ("st_atime", "st_mtime", "st_ctime")


def serve(source: str, mountpoint: str, control: str) -> None:
    """Mount and serve until unmounted (foreground)."""
    from fuse import FUSE, FuseOSError, Operations

    class SlowFS(Operations):  # type: ignore[misc]
        def _real(self, path: str) -> str:
            return os.path.join(source, path.lstrip("/"))

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            try:
                st = os.lstat(self._real(path))
            except OSError as exc:
                raise FuseOSError(exc.errno or errno.EIO) from exc
            out: dict[str, Any] = {k: getattr(st, k) for k in _ATTRS}
            out.update({k: getattr(st, k) for k in _TIMES})
            return out

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._real(path))]

        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise FuseOSError(errno.EROFS)
            return os.open(self._real(path), os.O_RDONLY)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            deadline = time.monotonic() + LONGEST_WAIT_S
            while _slow(control) and time.monotonic() < deadline:
                time.sleep(0.02)
            return os.pread(fh, size, offset)

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

    # direct_io: every read reaches read() above, none is answered from the page cache.
    FUSE(
        SlowFS(),
        mountpoint,
        foreground=True,
        ro=True,
        direct_io=True,
        nothreads=False,
        attr_timeout=0,  # sizes are asked afresh on every stat, as the tests append
        entry_timeout=0,
    )


def _slow(control: str) -> bool:
    try:
        with open(control) as f:
            return f.read().strip() == "slow"
    except OSError:
        return False


class SlowMount:
    """A mounted :func:`serve`; ``slow()`` and ``fast()`` switch its reads."""

    def __init__(self, source: Path, mountpoint: Path, control: Path) -> None:
        self.source, self.mountpoint, self.control = source, mountpoint, control

    def slow(self) -> None:
        self.control.write_text("slow")

    def fast(self) -> None:
        self.control.write_text("fast")


@contextlib.contextmanager
def slow_mount(base: Path) -> Iterator[SlowMount]:
    """``base/source`` mounted at ``base/mnt``; unmounted (lazily) on exit."""
    mount = SlowMount(base / "source", base / "mnt", base / "control")
    mount.source.mkdir(parents=True)
    mount.mountpoint.mkdir()
    mount.fast()
    log = (base / "slowfs.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.slowfs", str(mount.source), str(mount.mountpoint)]
        + [str(mount.control)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.ismount(mount.mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the FUSE mount did not come up (exit {proc.poll()}): "
                    + (base / "slowfs.log").read_text(errors="replace")
                )
            time.sleep(0.05)
        yield mount
    finally:
        mount.fast()
        subprocess.run(["umount", "-l", str(mount.mountpoint)], check=False)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


if __name__ == "__main__":
    serve(*sys.argv[1:4])
