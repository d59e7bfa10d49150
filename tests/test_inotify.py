"""The Linux inotify tree watch, against the real kernel on a temp dir.

The daemon tests cover it end to end (tests/test_daemon_watch.py); these pin the edge cases
that are hard to provoke through the daemon: directories created with files already inside,
a directory moved out of the tree, the root's own removal, and a queue overflow.
"""

from __future__ import annotations

import os
import select
import shutil
from pathlib import Path

import pytest

from sufd.watch import inotify

pytestmark = pytest.mark.skipif(not inotify.available(), reason="inotify is Linux-only")


def drain(tree: inotify.InotifyTree, timeout: float = 2.0) -> inotify.Batch:
    """Everything the kernel has queued, waiting at most ``timeout`` for the first event."""
    total = inotify.Batch()
    ready, _, _ = select.select([tree.fd], [], [], timeout)
    while ready:
        b = tree.read()
        total.changed |= b.changed
        total.deleted |= b.deleted
        total.new_dirs += b.new_dirs
        total.root_gone |= b.root_gone
        total.overflow |= b.overflow
        total.dirs_gone |= b.dirs_gone
        ready, _, _ = select.select([tree.fd], [], [], 0.05)
    return total


def test_appends_in_nested_dirs_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    f = tmp_path / "a" / "b" / "s.jsonl"
    f.write_bytes(b"")
    tree = inotify.InotifyTree(tmp_path)
    try:
        assert tree.watches == 3
        with f.open("ab") as fh:
            fh.write(b"{}\n")
        assert drain(tree).changed == {f}
    finally:
        tree.close()


def test_new_directory_with_files_written_before_the_watch(tmp_path: Path) -> None:
    tree = inotify.InotifyTree(tmp_path)
    try:
        # Built elsewhere and moved in whole: the files inside raise no event of their own.
        staging = tmp_path.parent / f"{tmp_path.name}-staging"
        (staging / "deep").mkdir(parents=True)
        (staging / "deep" / "x.jsonl").write_bytes(b"{}\n")
        (staging / "y.jsonl").write_bytes(b"{}\n")
        os.rename(staging, tmp_path / "proj")
        batch = drain(tree)
        assert batch.changed == {
            tmp_path / "proj" / "deep" / "x.jsonl",
            tmp_path / "proj" / "y.jsonl",
        }
        # ...and the new directories are watched from now on.
        (tmp_path / "proj" / "deep" / "z.jsonl").write_bytes(b"{}\n")
        assert drain(tree).changed == {tmp_path / "proj" / "deep" / "z.jsonl"}
    finally:
        tree.close()


def test_directory_moved_out_is_forgotten(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "p").mkdir(parents=True)
    outside.mkdir()
    tree = inotify.InotifyTree(root)
    try:
        os.rename(root / "p", outside / "p")
        assert drain(tree).dirs_gone
        (outside / "p" / "s.jsonl").write_bytes(b"{}\n")
        # Had the watch stayed, this would be reported as root/p/s.jsonl, a path that is not there.
        assert drain(tree, timeout=0.3).changed == set()
        assert tree.watches == 1
    finally:
        tree.close()


def test_deleted_file_is_reported_as_deleted(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_bytes(b"{}\n")
    tree = inotify.InotifyTree(tmp_path)
    try:
        f.unlink()
        batch = drain(tree)
        assert batch.deleted == {f} and batch.changed == set()
    finally:
        tree.close()


def test_root_removal_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "p").mkdir(parents=True)
    tree = inotify.InotifyTree(root)
    try:
        shutil.rmtree(root)
        assert drain(tree).root_gone
    finally:
        tree.close()


def test_queue_overflow_is_reported(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    tree = inotify.InotifyTree(tmp_path)
    try:
        for i in range(limit + 100):
            (tmp_path / f"f{i}").write_bytes(b"")
        assert drain(tree).overflow
    finally:
        tree.close()
