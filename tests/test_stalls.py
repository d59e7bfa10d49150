"""``sufd.watch.stalls``: the deadline on file-system calls, with calls that block on an event.

The real thing (a FUSE mount whose reads hang, under the real daemon) is
``tests/test_faults_env.py::test_slow_mount_holds_up_only_its_root``; these pin the guard's
own rules cheaply.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sufd.watch.stalls import GUARDED_READ_BYTES, GuardedFile, IoGuard, Stalled

KEY = ("claude", "/mnt/root")


def test_a_call_past_its_deadline_holds_up_its_root_only() -> None:
    cleared: list[tuple[str, str]] = []
    done = threading.Event()

    def on_clear(source: str, root: str) -> None:
        cleared.append((source, root))
        done.set()

    guard = IoGuard(0.05, on_clear=on_clear)
    release = threading.Event()

    with pytest.raises(Stalled) as first:
        guard.call(KEY, "/mnt/root/a.jsonl", release.wait)
    assert first.value.own and "reading /mnt/root/a.jsonl has not returned" in str(first.value)
    assert guard.stalled(KEY) and [s.path for s in guard.stalls()] == ["/mnt/root/a.jsonl"]

    ran: list[int] = []
    with pytest.raises(Stalled) as again:  # fails at once, without running the call
        guard.call(KEY, "/mnt/root/b.jsonl", ran.append, 1)
    assert not again.value.own and not ran
    assert guard.call(("claude", "/home/x"), "/home/x/c", lambda: 7) == 7  # another root

    release.set()
    assert done.wait(5)
    assert cleared == [KEY] and not guard.stalls()
    assert guard.call(KEY, "/mnt/root/b.jsonl", lambda: "fine") == "fine"


def test_a_root_that_was_slow_gets_a_longer_deadline() -> None:
    guard = IoGuard(0.05)
    release = threading.Event()
    with pytest.raises(Stalled):
        guard.call(KEY, "p", release.wait)
    threading.Timer(0.3, release.set).start()
    while guard.stalled(KEY):
        threading.Event().wait(0.01)
    # took ~0.3 s: the next call on that root may take ~0.6 s before it counts as stalled
    slow_but_working = threading.Event()
    threading.Timer(0.2, slow_but_working.set).start()
    assert guard.call(KEY, "p", slow_but_working.wait) is True


def test_guarded_file_reads_like_a_file_and_closes_late(tmp_path: Path) -> None:
    data = os.urandom(GUARDED_READ_BYTES + 1000)
    path = tmp_path / "f"
    path.write_bytes(data)
    guard = IoGuard(5.0)
    with GuardedFile(guard, KEY, str(path)) as f:
        assert f.fstat().st_size == len(data)
        f.seek(10)
        first = f.read(len(data))  # at most GUARDED_READ_BYTES per call
        assert first == data[10 : 10 + GUARDED_READ_BYTES]
        assert f.read(len(data)) == data[10 + GUARDED_READ_BYTES :]
        assert f.read(10) == b""
        fd = f.fileno()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed

    # A call on the descriptor stalls: close() leaves it open until that call returns.
    release = threading.Event()
    g = GuardedFile(IoGuard(0.05), KEY, str(path))
    fd = g.fileno()
    with pytest.raises(Stalled):
        g._call(lambda: release.wait())
    g.close()
    os.fstat(fd)  # still open: the stuck call may still be using it
    release.set()
    for _ in range(500):
        try:
            os.fstat(fd)
        except OSError:
            break
        threading.Event().wait(0.01)
    else:
        pytest.fail("the descriptor was not closed after the stalled call returned")
