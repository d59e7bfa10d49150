"""Faults of the store itself, injected into the real daemon (issue 6, item 2, store part).

Each test runs ``sufd run --foreground`` (:mod:`tests.daemon_harness`) on a temp HOME, breaks
the real SQLite file under it, and asserts the documented outcome: the daemon stays up, says
what is wrong in ``sufctl status`` (JSON and text) and in a stable ``store.*`` log event, and
once the fault is gone the ledger is, event by event, what a one-shot ``sufd ingest`` of the
final source files makes (:mod:`tests.chaos.ledger_compare`).

=========================  ==================================================================
Fault                      Outcome
=========================  ==================================================================
Disk full (a size-limited  ``store.write_failed`` (reason ``disk full``, or ``file size limit``
tmpfs filled up; or        under ``RLIMIT_FSIZE``) on every attempt, retried with back-off
``RLIMIT_FSIZE`` set on    (1 s doubling to 60 s; ``sufctl rescan`` retries now). Status:
the running daemon)        ``degraded``, ``store.state`` ``failing`` with the reason, and a
                           warning. The failed transaction is rolled back, so no cursor moves
                           past an uncommitted event. Space freed / limit lifted: the next
                           retry catches up, ``store.recovered``.
Store file deleted         The heartbeat sees the path gone; the daemon copies the file it
while running              still has open to a fresh file at the path (``store.rebuilt``,
                           reason ``deleted``), so even events whose source files are gone
                           survive; then it catches up from the sources. Status: ``rebuilt``.
Store corrupted while      The heartbeat sees the SQLite header overwritten; the file (and its
running                    ``-wal``/``-shm``) is moved to ``ledger.sqlite3.corrupt-<UTC>`` with
                           a ``.json`` note, a fresh ledger is built from the sources
                           (``store.rebuilt``, reason ``corrupt``, ``moved_to``). Status and
                           ``sufd doctor`` name the kept copy.
Store corrupted, found at  Before the start ``sufd doctor`` fails the store check and says
start                      what the daemon will do. Table pages garbled: opening it fails with
                           ``SQLITE_CORRUPT`` (found ``at start``); only an index garbled: the
                           ``PRAGMA quick_check`` run after the start-up catch-up finds it
                           (found ``by the integrity check``). Either way it is moved aside and
                           rebuilt; afterwards doctor passes and warns where the copy is.
WAL growth under a long    While another process holds a read transaction the WAL grows past
reader                     ``WAL_LIMIT_BYTES`` (4 MiB) and the heartbeat's non-blocking
                           ``wal_checkpoint(TRUNCATE)`` is refused (``store.checkpoint_blocked``,
                           a status warning). Once the reader ends, the next heartbeat
                           truncates it: the WAL is back under the bound within seconds, with
                           no further writes (``store.wal_checkpointed``).
=========================  ==================================================================
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sufd.ingest.ingestor import Ingestor
from sufd.prices.table import PriceTable
from sufd.settings import load as load_settings
from sufd.store import WAL_LIMIT_BYTES, open_store
from sufd.store.faults import Fault, StoreFault, diagnose
from sufd.store.ledger import Ledger
from tests.chaos.ledger_compare import compare_ledgers
from tests.conftest import SufdEnv, fresh_ledger_env
from tests.daemon_harness import (
    ClaudeSession,
    CodexSession,
    DaemonProcess,
    Harness,
    Usage,
    append_lines,
    wait_until,
)

pytestmark = pytest.mark.integration

PAGE = 4096


# ------------------------------------------------------------------------------------------
# helpers


def _write_sources(h: Harness, claude_turns: int = 40) -> list[Usage]:
    """Two Claude sessions and one Codex rollout; returns the events they must become."""
    events: list[Usage] = []
    for name in ("s1", "s2"):
        session = ClaudeSession(name)
        lines = [session.user(0)]
        for i in range(claude_turns):
            line, ev = session.assistant(60 * i + 1, input=100 + i, output=10 + i, cache_read=7)
            lines.append(line)
            events.append(ev)
        append_lines(h.claude_file(session=name), *lines)
    codex = CodexSession()
    lines = [codex.meta(0), codex.turn_context(0)]
    for i in range(10):
        line, ev = codex.token_count(60 * i + 5, input=500, cached=100, output=50, reasoning=20)
        lines.append(line)
        events.append(ev)
    append_lines(h.codex_file(), *lines)
    return events


def _append_turns(h: Harness, session: str, first: int, count: int) -> list[Usage]:
    """``count`` more requests in Claude session ``session`` (times after ``first`` minutes)."""
    s = ClaudeSession(session)
    s.n = 10_000 + first  # new message ids, never seen before
    lines, events = [], []
    for i in range(count):
        line, ev = s.assistant(60 * (first + i) + 30, input=1000 + i, output=200, cache_write=50)
        lines.append(line)
        events.append(ev)
    append_lines(h.claude_file(session=session), *lines)
    return events


def _status_text(h: Harness) -> str:
    proc = h.ctl("status")
    assert proc.returncode == 0, f"sufctl status exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def _status_json(h: Harness) -> dict[str, Any]:
    proc = h.ctl("status", "--json")
    assert proc.returncode == 0, f"sufctl status --json exited {proc.returncode}: {proc.stderr}"
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _reference(h: Harness) -> SufdEnv:
    """A fresh ledger of the same HOME made by one ``sufd ingest`` (new XDG dirs)."""
    ref = fresh_ledger_env(h.env, h.tmp / "reference")
    ref.run("ingest", "--quiet", timeout=120)
    return ref


def _stop_and_compare(h: Harness, daemon: DaemonProcess) -> int:
    """Stop the daemon cleanly, then compare its ledger with a one-shot ingest; returns the
    number of events compared."""
    rc, _ = h.stop(daemon)
    assert rc == 0, f"daemon exited {rc}\n{h.diagnostics(daemon)}"
    comparison = compare_ledgers(h.env, _reference(h))
    assert comparison.mismatches == 0, json.dumps(comparison.as_dict(), indent=1)[:4000]
    assert comparison.events > 0
    return comparison.events


def _file_row(db: Path, path: Path) -> tuple[int, int]:
    """(cursor offset, events) of one source file, read the way reports read the ledger."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT f.offset, (SELECT COUNT(*) FROM events e WHERE e.file_id = f.id)"
            " FROM files f WHERE f.path = ?",
            (str(path),),
        ).fetchone()
    finally:
        conn.close()
    assert row is not None, f"{path} is not in the ledger"
    return int(row[0]), int(row[1])


def _gone(db: Path, path: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT gone FROM files WHERE path = ?", (str(path),)).fetchone()
    finally:
        conn.close()
    return bool(row[0])


def _garble(path: Path, offset: int, length: int, seed: int) -> None:
    """Overwrite ``length`` bytes of ``path`` at ``offset`` with random bytes, in place."""
    noise = random.Random(seed).randbytes(length)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, noise, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------
# 1. the store on a full disk


def _full_disk(
    h: Harness,
    *,
    fill: Callable[[int], None],
    lift: Callable[[int], None],
    reason: str,
) -> None:
    """Shared by both ways of filling the disk: the daemon must fail writes, keep its cursors,
    say so, back off, and catch up exactly once ``lift`` frees the space."""
    before = _write_sources(h)
    d = h.start()
    h.wait_events(before, 10, "the initial sources")
    path = h.claude_file(session="s1")
    size_before = path.stat().st_size
    assert _file_row(h.db, path) == (size_before, 40)

    fill(d.pid)
    during = _append_turns(h, "s1", 100, 1500)
    failed = h.wait_log("store.write_failed", 10, reason=reason)
    assert d.alive(), h.diagnostics(d)

    # It says what is wrong: JSON and text status, and the log.
    st = _status_json(h)
    assert st["state"] == "degraded", st
    store = st["store"]
    assert store["state"] == "failing", store
    assert store["problem"]["reason"] == reason, store
    assert store["problem"]["attempts"] >= 1
    assert any("cannot write the ledger" in w and reason in w for w in st["warnings"]), st
    text = _status_text(h)
    assert "degraded" in text.splitlines()[0], text
    assert f"cannot write the ledger ({reason}" in text, text
    assert failed[0]["level"] == "error" and failed[0]["retry_in_s"] == 1.0, failed[0]

    # Nothing of the failed batch is committed: the cursor stays where the events end.
    assert _file_row(h.db, path) == (size_before, 40)
    assert not any(h.events_in_store()[e] for e in during)

    # Retried with back-off: the second attempt fails too, and waits twice as long.
    failures = wait_until(
        lambda: (f := h.log_events("store.write_failed", reason=reason))[1:] and f,
        6,
        what=lambda: f"a second store.write_failed\n{h.diagnostics(d)}",
    )
    assert [f["attempt"] for f in failures[:2]] == [1, 2], failures
    assert [f["retry_in_s"] for f in failures[:2]] == [1.0, 2.0], failures
    assert _file_row(h.db, path) == (size_before, 40)

    lift(d.pid)
    h.wait_log("store.recovered", timeout=15, reason=reason)
    h.wait_events(during, 10, "the events written while the disk was full")
    st = _status_json(h)
    assert st["state"] != "degraded" and st["store"]["state"] == "ok", st
    assert st["store"]["problem"] is None
    assert not any(w.startswith("store:") for w in st["warnings"]), st["warnings"]
    assert d.alive()
    _stop_and_compare(h, d)


def _mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}; needs root):"
            " test_store_over_file_size_limit covers the failing-writes path"
        )


@contextlib.contextmanager
def _tmpfs_data_dir(h: Harness, size: int) -> Iterator[Path]:
    """XDG_DATA_HOME (where the ledger lives) on a tmpfs of ``size`` bytes."""
    mount = Path(h.env.env["XDG_DATA_HOME"])
    _mount_tmpfs(mount, size)
    try:
        yield mount
    finally:
        for daemon in h.daemons:
            h.kill(daemon)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for chunk in (1 << 20, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    st = os.statvfs(directory)
    assert st.f_bavail * st.f_frsize < 64 * 1024, "the tmpfs is not full"
    return filler


def test_store_on_a_full_disk(harness: Harness) -> None:
    """ENOSPC for real: the ledger's directory is a 24 MB tmpfs, filled to the last byte."""
    h = harness
    with _tmpfs_data_dir(h, 24 * 1024 * 1024) as mount:
        assert h.db.is_relative_to(mount)
        filler: list[Path] = []
        _full_disk(
            h,
            fill=lambda _pid: filler.append(_fill(mount)),
            lift=lambda _pid: filler[0].unlink(),
            reason="disk full",
        )


def test_store_over_file_size_limit(harness: Harness) -> None:
    """EFBIG: RLIMIT_FSIZE set on the running daemon just above its ledger files' sizes
    (CPython ignores SIGXFSZ, so writes fail instead of killing it), lifted with prlimit."""
    h = harness
    wal = Path(f"{h.db}-wal")

    def fill(pid: int) -> None:
        limit = max(h.db.stat().st_size, wal.stat().st_size) + 64 * 1024
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    def lift(pid: int) -> None:
        resource.prlimit(
            pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )

    _full_disk(h, fill=fill, lift=lift, reason="file size limit")


def test_a_full_ledger_leaves_no_dangling_dimension_ids(isolated: SufdEnv) -> None:
    """In process, with SQLite's own limit as the fault (``PRAGMA max_page_count``: writes
    past it fail with SQLITE_FULL): the batch that failed had inserted a new session, project
    and model, rolled back with it. Once there is room again, the same writer must not reuse
    their ids: every event's session, project and model rows exist."""
    settings = load_settings(None)
    session = ClaudeSession("sa", cwd="/home/dev/full")
    lines = [
        session.assistant(i, input=10 + i, output=5, model="claude-x-1")[0] for i in range(400)
    ]
    append_lines(isolated.home / ".claude" / "projects" / "-home-dev-full" / "sa.jsonl", *lines)
    conn = open_store(settings.paths.db)
    try:
        prices = PriceTable.bundled()
        ingestor = Ingestor(settings, Ledger(conn, price_version=prices.version), prices)
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreFault) as failed:
            ingestor.ingest_all()
        assert diagnose(failed.value, settings.paths.db) == Fault(
            "disk full", "database or disk is full"
        )
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)

        conn.execute("PRAGMA max_page_count = 1073741823")
        assert ingestor.ingest_all().inserted == 400
        for table, column in (
            ("sessions", "session_id"),
            ("projects", "project_id"),
            ("models", "model_id"),
        ):
            dangling = conn.execute(
                f"SELECT COUNT(*) FROM events e LEFT JOIN {table} d ON d.id = e.{column}"
                " WHERE d.id IS NULL"
            ).fetchone()[0]
            assert dangling == 0, f"{dangling} events point at a {table} row that does not exist"
        assert conn.execute(
            "SELECT SUM(a.events) FROM agg_session a JOIN sessions s ON s.id = a.session_id"
        ).fetchone() == (400,)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------
# 2. the store file deleted while running


def test_store_deleted_while_running(harness: Harness) -> None:
    """``rm ledger.sqlite3`` under the running daemon (its -wal and -shm left behind). The
    daemon still has the file open: it restores it at the path, keeping even the events of a
    transcript the agent had deleted before, and catches up with what was written since."""
    h = harness
    before = _write_sources(h)
    s2 = h.claude_file(session="s2")
    saved = h.tmp / "s2.jsonl"
    shutil.copy2(s2, saved)
    d = h.start()
    h.wait_events(before, 10, "the initial sources")
    old_inode = h.db.stat().st_ino

    s2.unlink()  # the agent's own clean-up: the ledger keeps those events
    h.db.unlink()
    after = _append_turns(h, "s1", 100, 5)

    rebuilt = h.wait_log("store.rebuilt", 10, reason="deleted")
    assert rebuilt[0]["found"] == "by the heartbeat", rebuilt
    assert "restored from the deleted file" in rebuilt[0]["action"], rebuilt
    h.wait_events(before + after, 10, "old (incl. the deleted transcript's) and new events")
    assert h.db.stat().st_ino != old_inode
    assert d.alive()

    st = _status_json(h)
    assert st["store"]["state"] == "rebuilt", st["store"]
    assert [r["reason"] for r in st["store"]["recoveries"]] == ["deleted"]
    assert any("the ledger was deleted" in w for w in st["warnings"]), st["warnings"]
    assert "the ledger was deleted" in _status_text(h)

    # The transcript comes back (restored from a backup): same events, nothing doubled.
    shutil.copy2(saved, s2)
    h.wait_events(before + after, 10, "everything once more")
    wait_until(lambda: not _gone(h.db, s2), 10, what=lambda: f"s2 back\n{h.diagnostics(d)}")
    _stop_and_compare(h, d)


# ------------------------------------------------------------------------------------------
# 3. the store corrupted


def test_store_corrupted_while_running(harness: Harness) -> None:
    """The first pages of the ledger overwritten with garbage while the daemon runs."""
    h = harness
    before = _write_sources(h)
    d = h.start()
    h.wait_events(before, 10, "the initial sources")

    _garble(h.db, 0, 3 * PAGE, seed=1)
    rebuilt = h.wait_log("store.rebuilt", 10, reason="corrupt")[0]
    moved = Path(rebuilt["moved_to"])
    assert moved.parent == h.db.parent and moved.name.startswith("ledger.sqlite3.corrupt-")
    assert moved.read_bytes()[:16] != b"SQLite format 3\x00", "the corrupt copy is kept as is"
    note = json.loads(Path(f"{moved}.json").read_text())
    assert note["reason"] == "corrupt" and note["found"] == "by the heartbeat", note
    assert "header" in note["error"], note
    assert rebuilt["action"] == "rebuilt from the source files"
    h.wait_events(before, 10, "the ledger rebuilt from the sources")
    assert d.alive()

    st = _status_json(h)
    assert st["store"]["state"] == "rebuilt", st["store"]
    assert st["store"]["recoveries"][0]["moved_to"] == str(moved)
    assert any(str(moved) in w for w in st["warnings"]), st["warnings"]
    assert str(moved) in _status_text(h)

    # Still ingesting into the new file.
    more = _append_turns(h, "s2", 200, 3)
    h.wait_events(more, 5, "an append after the rebuild")

    doctor = json.loads(h.run_sufd("doctor", "--json").stdout)
    history = [c for c in doctor if c["name"] == "store history"]
    assert len(history) == 1 and history[0]["status"] == "warn", doctor
    assert str(moved) in history[0]["detail"] and "rebuilt" in history[0]["detail"]
    assert [c["status"] for c in doctor if c["name"] == "store"] == ["ok"], doctor
    _stop_and_compare(h, d)


def _index_page(db: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)
        ).fetchone()
    finally:
        conn.close()
    return int(root)


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        # Every page after the first: opening the ledger already fails (SQLITE_CORRUPT).
        ("tables", "at start"),
        # Only an index the start-up catch-up does not touch: PRAGMA quick_check finds it.
        ("index", "by the integrity check"),
    ],
)
def test_store_found_corrupted_at_start(harness: Harness, damage: str, found: str) -> None:
    """A ledger corrupted while the daemon was stopped (the header still looks right):
    ``sufd doctor`` says so before the start; the daemon moves it aside and rebuilds."""
    h = harness
    before = _write_sources(h)
    h.env.run("ingest", "--quiet")
    pages = h.db.stat().st_size // PAGE
    assert pages > 3 and not Path(f"{h.db}-wal").exists()
    if damage == "tables":
        _garble(h.db, PAGE, (pages - 1) * PAGE, seed=2)
    else:
        root = _index_page(h.db, "events_session")
        assert root > 1
        _garble(h.db, (root - 1) * PAGE, PAGE, seed=3)

    proc = h.run_sufd("doctor", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    store = [c for c in json.loads(proc.stdout) if c["name"] == "store"]
    assert store[0]["status"] == "fail" and "is corrupt" in store[0]["detail"], store
    assert "moves it aside and rebuilds" in store[0]["detail"], store

    d = h.start()
    rebuilt = h.wait_log("store.rebuilt", 10, reason="corrupt")[0]
    assert rebuilt["found"] == found, rebuilt
    moved = Path(rebuilt["moved_to"])
    assert moved.exists() and moved.stat().st_size == pages * PAGE
    h.wait_events(before, 10, "the ledger rebuilt from the sources")
    st = _status_json(h)
    assert st["store"]["state"] == "rebuilt" and st["state"] != "degraded", st
    assert str(moved) in _status_text(h)

    doctor = json.loads(h.run_sufd("doctor", "--json").stdout)
    by_name = {c["name"]: c for c in doctor}
    assert by_name["store"]["status"] == "ok", by_name["store"]
    assert str(moved) in by_name["store history"]["detail"]
    _stop_and_compare(h, d)


# ------------------------------------------------------------------------------------------
# 4. WAL growth under a long reader


def test_wal_bounded_after_a_long_reader(harness: Harness) -> None:
    """Another process holds a read transaction while the daemon ingests a lot: the WAL grows
    past the bound; once the reader is gone it is truncated back under it, with no writes."""
    h = harness
    before = _write_sources(h, claude_turns=5)
    d = h.start()
    h.wait_events(before, 10, "the initial sources")
    wal = Path(f"{h.db}-wal")

    reader = sqlite3.connect(f"file:{h.db}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        held = reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        written: list[Usage] = []
        rounds = 0
        deadline = time.monotonic() + 30
        while wal.stat().st_size <= 2 * WAL_LIMIT_BYTES:
            assert time.monotonic() < deadline, f"WAL still {wal.stat().st_size} B"
            for k in range(8):  # many files, many small commits: many WAL frames
                written += _append_turns(h, f"w{k}", 100 * rounds, 25)
            rounds += 1
            time.sleep(0.15)
        h.wait_events(written, 15, "what was written under the reader")
        h.wait_log("store.checkpoint_blocked", 10)
        st = _status_json(h)
        assert st["store"]["wal_bytes"] > 2 * WAL_LIMIT_BYTES, st["store"]
        assert any("cannot be checkpointed" in w for w in st["warnings"]), st["warnings"]
        # The reader still sees its snapshot: the WAL is what keeps it.
        assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == held
    finally:
        reader.close()

    grown = wal.stat().st_size
    t0 = time.monotonic()
    wait_until(
        lambda: wal.stat().st_size <= WAL_LIMIT_BYTES,
        5,
        interval=0.1,
        what=lambda: f"the WAL ({wal.stat().st_size} B) back under {WAL_LIMIT_BYTES}",
    )
    print(f"WAL {grown / 1e6:.1f} MB -> {wal.stat().st_size} B in {time.monotonic() - t0:.1f} s")
    h.wait_log("store.wal_checkpointed", 10)
    st = _status_json(h)
    assert st["store"]["wal_bytes"] <= WAL_LIMIT_BYTES
    assert not any("checkpointed" in w for w in st["warnings"]), st["warnings"]
    _stop_and_compare(h, d)
