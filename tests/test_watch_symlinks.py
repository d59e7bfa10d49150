"""Symlinked directories inside a watched root (issue 12 item 6).

inotify hands back the existing watch when a directory is reached a second time through a
symlink; the watcher used to record the link's path for it, so the real directory's events
were reported under the link, and once the link went its new files were not seen until the
60 s reconcile, while status said ``watching``. A symlinked directory below a root is now
neither watched nor scanned (the root itself may be a symlink and is followed), and a watch
the kernel drops is armed again, with a rescan.

The first tests drive :class:`sufd.watch.inotify.InotifyTree` against the real kernel; the last ones
run the real daemon (:mod:`tests.daemon_harness`) with the reconcile sweep an hour away, so
only the live watch can pass them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import select
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from sufd.sources import cline, opencode
from sufd.watch import inotify
from sufd.watch.watcher import RootWatcher
from tests.daemon_harness import (
    ClaudeSession,
    Harness,
    append_lines,
    wait_until,
)
from tests.test_inotify import drain

pytestmark = pytest.mark.skipif(not inotify.available(), reason="inotify is Linux-only")

PROJECT = "-home-dev-proj"
# Not timing: how long to wait for an event that must come well before the reconcile.
ARRIVES_WITHIN_S = 5.0
NO_RECONCILE = {"SUFD_RECONCILE_INTERVAL_S": "3600"}


# ------------------------------------------------------------------------------------------
# the inotify tree


def test_real_directory_keeps_its_path_when_a_symlink_to_it_comes_and_goes(
    tmp_path: Path,
) -> None:
    """The alias case, with the root itself reached through a symlink (followed)."""
    real_root = tmp_path / "real-root"
    proj = real_root / "proj"
    proj.mkdir(parents=True)
    # Deeper than the project, so the walk reaches the link after the project directory
    # (whatever order the filesystem lists entries in) and the kernel hands back its watch.
    (real_root / "other").mkdir()
    link = real_root / "other" / "alias"
    link.symlink_to(proj)
    root = tmp_path / "root-link"
    root.symlink_to(real_root)

    tree = inotify.InotifyTree(root)
    try:
        assert tree.watches == 3  # the root, proj and other; not the link
        (proj / "s1.jsonl").write_bytes(b"{}\n")
        assert drain(tree).changed == {root / "proj" / "s1.jsonl"}

        link.unlink()
        drain(tree, timeout=0.5)
        (proj / "s2.jsonl").write_bytes(b"{}\n")
        assert drain(tree).changed == {root / "proj" / "s2.jsonl"}
    finally:
        tree.close()


def test_symlink_to_a_directory_outside_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    tree = inotify.InotifyTree(root)
    try:
        (outside / "x.jsonl").write_bytes(b"{}\n")
        # Queued after the outside write: once it is read, the other would have been too.
        (root / "in.jsonl").write_bytes(b"{}\n")
        assert drain(tree).changed == {root / "in.jsonl"}
    finally:
        tree.close()


def test_directory_moved_in_with_a_symlink_inside_leaves_the_real_one_alone(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    proj = root / "proj"
    proj.mkdir(parents=True)
    tree = inotify.InotifyTree(root)
    try:
        staging = tmp_path / "staging"
        staging.mkdir()
        (staging / "s.jsonl").write_bytes(b"{}\n")
        (staging / "alias").symlink_to(proj)
        os.rename(staging, root / "moved")
        assert drain(tree).changed == {root / "moved" / "s.jsonl"}

        (proj / "t.jsonl").write_bytes(b"{}\n")
        assert drain(tree).changed == {proj / "t.jsonl"}
    finally:
        tree.close()


def test_watch_dropped_by_the_kernel_is_armed_again(tmp_path: Path) -> None:
    """What an unmount does to the watches on it: IN_IGNORED for a directory still there.

    The watch is removed the way the kernel would drop it, on the tree's own descriptor.
    """
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "before.jsonl").write_bytes(b"{}\n")
    tree = inotify.InotifyTree(tmp_path)
    try:
        _drop_watch(tree.fd, proj)
        select.select([tree.fd], [], [], 2.0)
        batch = tree.read()
        # Listed when armed again: whatever was written while it was not watched.
        assert batch.changed == {proj / "before.jsonl"}
        assert batch.lost, "a dropped watch must be reported: its events were lost"

        (proj / "after.jsonl").write_bytes(b"{}\n")
        assert drain(tree).changed == {proj / "after.jsonl"}
    finally:
        tree.close()


def test_root_watcher_asks_for_a_rescan_when_a_watch_is_dropped(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    rescans: list[Path] = []
    changed: set[Path] = set()

    async def scenario() -> str:
        watcher = RootWatcher(
            "claude",
            tmp_path,
            lambda _source, paths: changed.update(paths),
            owns=lambda p: p.suffix == ".jsonl",
            on_appeared=lambda _source, root: rescans.append(root),
        )
        stop = asyncio.Event()
        others = set(_inotify_fds())
        task = asyncio.create_task(watcher.run(stop))
        try:
            await _until(lambda: watcher.state == "watching", "the watch")
            (fd,) = set(_inotify_fds()) - others
            _drop_watch(fd, proj)
            await _until(lambda: bool(rescans), "a rescan request")
            (proj / "after.jsonl").write_bytes(b"{}\n")
            await _until(lambda: bool(changed), "the new file reported")
            return watcher.state
        finally:
            stop.set()
            await task

    assert asyncio.run(scenario()) == "watching"
    assert rescans == [tmp_path]
    assert changed == {proj / "after.jsonl"}, "the directory is watched again"


def _drop_watch(fd: int, directory: Path) -> None:
    """Remove the watch of ``directory`` from the inotify instance ``fd``, as an unmount
    would: the kernel queues IN_IGNORED for it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    # IN_MASK_ADD: the existing watch, unchanged, and its descriptor.
    wd = libc.inotify_add_watch(fd, os.fsencode(directory), 0x20000000 | inotify.IN_MODIFY)
    assert wd > 0, os.strerror(ctypes.get_errno())
    assert libc.inotify_rm_watch(fd, wd) == 0, os.strerror(ctypes.get_errno())


def _inotify_fds() -> list[int]:
    """The inotify instances this process has open."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                found.append(int(name))
    return found


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------------
# the sources' scans agree with the watcher


def test_cline_scan_does_not_enter_a_symlinked_task_directory(tmp_path: Path) -> None:
    tasks, elsewhere = tmp_path / "tasks", tmp_path / "elsewhere"
    (tasks / "t1").mkdir(parents=True)
    (tasks / "t1" / cline.UI_MESSAGES).write_text("[]")
    (elsewhere / "t2").mkdir(parents=True)
    (elsewhere / "t2" / cline.UI_MESSAGES).write_text("[]")
    (tasks / "t2").symlink_to(elsewhere / "t2")
    assert list(cline.Cline().scan(tasks)) == [tasks / "t1" / cline.UI_MESSAGES]


def test_opencode_scan_does_not_read_the_message_store_through_a_symlink(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "opencode", tmp_path / "elsewhere"
    root.mkdir()
    (elsewhere / "message" / "ses_1").mkdir(parents=True)
    (elsewhere / "message" / "ses_1" / "msg_1.json").write_text("{}")
    (root / "storage").symlink_to(elsewhere)
    assert list(opencode.OpenCode().scan(root)) == []


# ------------------------------------------------------------------------------------------
# the daemon


def _with_alias(h: Harness) -> tuple[Path, Path]:
    """A Claude root with a project and, deeper down, a symlink to it; returns both."""
    project = h.claude_file(PROJECT).parent
    project.mkdir(parents=True)
    other = project.parent / "-home-dev-other"
    other.mkdir()
    link = other / "alias"
    link.symlink_to(project)
    return project, link


def _tracked(h: Harness) -> list[str]:
    conn = sqlite3.connect(f"file:{h.db}?mode=ro", uri=True, timeout=5)
    try:
        return sorted(r[0] for r in conn.execute("SELECT path FROM files WHERE source = 'claude'"))
    finally:
        conn.close()


def _claude_status(h: Harness) -> tuple[dict[str, object], dict[str, object]]:
    st = h.status()
    (claude,) = [s for s in st["sources"] if s["name"] == "claude"]
    (root,) = [r for r in claude["roots"] if Path(r["path"]) == h.home / ".claude" / "projects"]
    return claude, root


def _wait_armed(h: Harness, path: Path) -> None:
    """Append prompt lines to ``path`` until the watcher reports one: the polling backend
    takes its first snapshot a little after status says ``polling``."""
    warmup = ClaudeSession("warmup")

    def seen() -> object:
        append_lines(path, warmup.user(0))
        return _claude_status(h)[1]["changes_seen"]

    wait_until(seen, ARRIVES_WITHIN_S, interval=0.2, what="the watcher to report a change")


@pytest.mark.integration
@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "poll"])
def test_daemon_tracks_a_file_once_while_a_symlink_to_its_directory_exists(
    harness: Harness, polling: bool
) -> None:
    """A polling watcher follows the link and reports both paths: only one is in the root."""
    h = harness
    project, link = _with_alias(h)
    claude = ClaudeSession()
    session = project / "s1.jsonl"
    append_lines(session, claude.user(0))
    h.start(env={**NO_RECONCILE, "SUFD_FORCE_POLLING": "1" if polling else "0"})
    assert _tracked(h) == [str(session)]
    warmup = project / "warmup.jsonl"
    _wait_armed(h, warmup)

    line, ev = claude.assistant(1, input=100, output=10)
    append_lines(session, line)
    wait_until(
        lambda: h.has_events([ev]),
        ARRIVES_WITHIN_S,
        what=lambda: f"the append in the store\n{h.diagnostics()}",
    )
    assert h.events_in_store() == Counter([ev])
    assert _tracked(h) == sorted([str(session), str(warmup)]), f"tracked under {link} too"
    source, _root = _claude_status(h)
    assert source["files_tracked"] == 2, source


@pytest.mark.integration
def test_daemon_sees_a_new_session_once_the_symlink_is_gone(harness: Harness) -> None:
    h = harness
    project, link = _with_alias(h)
    old = ClaudeSession("s1")
    line, ev_old = old.assistant(1, input=100, output=10)
    append_lines(project / "s1.jsonl", line)
    h.start(env=NO_RECONCILE)
    assert h.events_in_store() == Counter([ev_old])

    link.unlink()
    new = ClaudeSession("s2")
    path = project / "s2.jsonl"
    append_lines(path, new.user(2))
    line, ev_new = new.assistant(3, input=200, output=20)
    append_lines(path, line)
    wait_until(
        lambda: h.has_events([ev_new]),
        ARRIVES_WITHIN_S,
        what=lambda: f"the new session's usage in the store\n{h.diagnostics()}",
    )
    assert h.events_in_store() == Counter([ev_old, ev_new])
    assert _tracked(h) == sorted([str(project / "s1.jsonl"), str(path)])

    # Watching, and it is true: the next append lands through the live watch as well.
    source, root = _claude_status(h)
    assert source["state"] == "watching", source
    assert (root["state"], root["backend"], root["error"]) == ("watching", "inotify", None), root
    assert h.status()["state"] == "watching"
    line, ev_next = new.assistant(4, input=300, output=30)
    append_lines(path, line)
    wait_until(
        lambda: h.has_events([ev_next]),
        ARRIVES_WITHIN_S,
        what=lambda: f"the next append in the store\n{h.diagnostics()}",
    )
