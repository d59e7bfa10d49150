"""Security properties of a real daemon run; each check has a control showing it can fail.

* Every file sufd writes (ledger and its WAL, config and its backup, logs, state, socket,
  lock) is 0600 and every directory of its own is 0700, even under a permissive umask; also
  the log file that replaces ``sufd.log`` at a size rollover.
* The daemon never opens a TCP or UDP socket: the socket inodes among its descriptors are all
  Unix sockets (``/proc/<pid>/fd`` against ``/proc/<pid>/net/{tcp,tcp6,udp,udp6,unix}``).
* A runtime directory that is a symlink or belongs to someone else is refused.
* No prompt or response text reaches anything sufd writes or prints: the corpus plants
  :data:`tests.corpus.SENTINEL` in every prompt and assistant text (and this module plants it
  in Cline requests and Cursor bubbles too), and it must be absent from the ledger, its WAL,
  the config, ``state.json``, every log file (at debug level) and the output of ``sufctl tail``,
  ``status``, ``report``, ``sufd-statusline`` and the daemon itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from sufd.sources import SOURCES
from tests.chaos.harness import wait_caught_up
from tests.corpus import SENTINEL, CorpusSpec, generate
from tests.daemon_harness import (
    DaemonProcess,
    Harness,
    wait_until,
)
from tests.fakebin import FakeBin

pytestmark = pytest.mark.integration

SPEC = CorpusSpec(
    seed=31337, claude_sessions=5, codex_sessions=3, turns_per_session=(3, 8), content_scale=0.2
)
NEEDLE = SENTINEL.encode()
PERMISSIVE_UMASK = 0o002  # a file created without an explicit mode would be 0664


# ------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Children started inside inherit ``mask``."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def sufd(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m sufd ARGS``; ``ctl …`` runs sufctl, ``statusline`` the installed
    ``sufd-statusline`` script (the module when it is not installed)."""
    command = [sys.executable, "-m", "sufd", *args]
    if args[0] == "ctl":
        command = [sys.executable, "-m", "sufd.cli.sufctl", *args[1:]]
    elif args[0] == "statusline":
        script = Path(sys.executable).parent / "sufd-statusline"
        command = (
            [str(script)] if script.exists() else [sys.executable, "-m", "sufd.cli.statusline"]
        )
    return subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def configure(h: Harness, tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    """``sufd config set`` twice, then ``sufd install --no-start`` with a ``systemctl`` that
    cannot reach a user bus: the config file and its backup, written as a user would."""
    fake = FakeBin(tmp_path / "bin", "systemctl", "loginctl")
    fake.systemd_unreachable()
    env = fake.env(h.user_env())
    done = [
        sufd(env, "config", "set", "watch.debounce_ms", "50"),
        sufd(env, "config", "set", "report.timezone", '"UTC"'),
        sufd(env, "install", "--no-start"),
    ]
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    assert "Failed to connect to bus" in done[-1].stdout + done[-1].stderr
    assert fake.calls("systemctl"), "the fake systemctl was not used"
    return done


def sufd_dirs(h: Harness) -> dict[str, Path]:
    """sufd's own directories, as ``sufd paths --json`` resolves them for this user."""
    proc = sufd(h.user_env(), "paths", "--json")
    assert proc.returncode == 0, proc.stderr
    paths = {k: Path(v) for k, v in json.loads(proc.stdout).items()}
    dirs = {k: paths[k] for k in ("data_dir", "state_dir", "log_dir", "runtime_dir")}
    dirs["config_dir"] = paths["config"].parent
    dirs["db_dir"] = paths["db"].parent
    return dirs


def private_problems(dirs: Iterable[Path]) -> tuple[list[str], set[str]]:
    """(every directory below ``dirs`` not 0700 and every file not 0600, names of the files)."""
    problems, names = [], set()
    for top in dirs:
        for path in [top, *sorted(top.rglob("*"))]:
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                want = 0o700
            else:
                want = 0o600
                names.add(path.name)
            if mode != want or st.st_uid != os.geteuid():
                problems.append(f"{path}: mode {mode:04o} (want {want:04o}), uid {st.st_uid}")
    return problems, names


def stop(h: Harness, d: DaemonProcess) -> None:
    rc, _ = h.stop(d)
    assert rc == 0, f"daemon exit code {rc}\n{h.diagnostics(d)}"


# ------------------------------------------------------------------------------------------
# 1. private files


def test_store_config_logs_state_are_private_after_a_daemon_run(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    with umask(PERMISSIVE_UMASK):
        configure(h, tmp_path)
        generate(h.home, SPEC)
        d = h.start(env={"SUFD_LOG_LEVEL": "debug"})
    wait_caught_up(h, d)
    h.call("pause-watcher", {"sources": ["codex"], "for_s": 600, "reason": "test"})
    h.call("resume-watcher", {"sources": ["codex"]})
    dirs = sufd_dirs(h).values()
    problems, names = private_problems(dirs)
    expected = {
        "config.toml",
        "config.toml.bak",
        "ledger.sqlite3",
        "ledger.sqlite3-wal",
        "ledger.sqlite3-shm",
        "sufd.log",
        "state.json",
        "sufd.sock",
        "sufd.lock",
    }
    assert expected <= names, f"not all files were written: {sorted(expected - names)}"
    assert not problems, "\n".join(problems)
    stop(h, d)
    problems, names = private_problems(p for p in dirs if p.exists())
    assert {"ledger.sqlite3", "sufd.log", "state.json", "config.toml"} <= names
    assert not problems, "\n".join(problems)


def test_private_problems_sees_a_loose_file(tmp_path: Path) -> None:
    """Control: the check above does fail on a 0644 file or a 0755 directory."""
    top = tmp_path / "d"
    top.mkdir(mode=0o700)
    (top / "ok").touch(mode=0o600)
    assert private_problems([top])[0] == []
    (top / "loose").touch()
    (top / "loose").chmod(0o644)
    (top / "sub").mkdir()
    (top / "sub").chmod(0o755)
    assert len(private_problems([top])[0]) == 2


def test_log_file_stays_private_after_rotation(harness: Harness) -> None:
    h = harness
    log_dir = h.log_file.parent
    log_dir.mkdir(parents=True, mode=0o700)
    # A log just under the 10 MB rollover size, as a long-running daemon leaves it.
    fd = os.open(h.log_file, os.O_CREAT | os.O_WRONLY, 0o600)
    line = json.dumps({"event": "filler", "level": "info", "pad": "x" * 200}).encode() + b"\n"
    os.write(fd, line * (10 * 1024 * 1024 // len(line)))
    os.close(fd)
    with umask(0o022):  # systemd's default for user services
        d = h.start(env={"SUFD_LOG_LEVEL": "debug"})
    wait_until(lambda: (log_dir / "sufd.log.1").exists(), 10, what="a log rollover")
    h.call("status")
    stop(h, d)
    problems, names = private_problems([log_dir])
    assert {"sufd.log", "sufd.log.1"} <= names
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------
# 2. no network listener


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets among the process's open descriptors."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(int(target[len("socket:[") : -1]))
    return found


def net_inodes(pid: int, table: str) -> set[int]:
    """Socket inodes listed in ``/proc/<pid>/net/<table>`` (the process's network namespace)."""
    lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    column = 6 if table == "unix" else 9
    return {int(fields[column]) for fields in (line.split() for line in lines) if fields}


INET = ("tcp", "tcp6", "udp", "udp6")


def inet_sockets_of(pid: int) -> dict[str, set[int]]:
    mine = socket_inodes(pid)
    return {t: mine & net_inodes(pid, t) for t in INET if mine & net_inodes(pid, t)}


def test_inet_socket_detection_works() -> None:
    """Control: a TCP listener and a UDP socket of this very process are seen."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        found = inet_sockets_of(os.getpid())
        assert found.get("tcp") and found.get("udp"), found
        _, tables = sample_sockets(os.getpid())
        assert tables["tcp"] and tables["udp"], tables


def sample_sockets(pid: int, attempts: int = 20) -> tuple[set[int], dict[str, set[int]]]:
    """The process's socket inodes and, read right after, the tables listing them. A socket
    in no table (a control connection closed between the two reads) makes it sample again."""
    for _ in range(attempts):
        sockets = socket_inodes(pid)
        tables = {t: sockets & net_inodes(pid, t) for t in (*INET, "unix")}
        if set().union(*tables.values()) == sockets:
            return sockets, tables
        time.sleep(0.05)
    raise AssertionError(f"sockets of {pid} in no table: {sockets}, {tables}")


def test_daemon_owns_only_unix_sockets(harness: Harness) -> None:
    h = harness
    generate(h.home, SPEC)
    d = h.start()
    samples = [("started", sample_sockets(d.pid))]
    tail = subprocess.Popen(
        [sys.executable, "-m", "sufd.cli.sufctl", "tail", "--json"],
        env=h.user_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_caught_up(h, d)
        samples.append(("caught up", sample_sockets(d.pid)))
        wait_until(lambda: socket_inodes(tail.pid), 10, what="sufctl tail connected")
        more = h.home / ".claude" / "projects" / "-x" / "more.jsonl"
        more.parent.mkdir(parents=True, exist_ok=True)
        more.write_bytes(b'{"type":"user"}\n')
        h.call("pause-watcher", {"sources": ["claude"], "for_s": 30})
        h.call("resume-watcher", {"sources": ["claude"]})
        h.call("reload")
        samples.append(("tail, pause, resume, reload", sample_sockets(d.pid)))
    finally:
        tail.terminate()
        tail.wait(10)
    for what, (sockets, tables) in samples:
        assert tables["unix"], f"{what}: no Unix socket? the control socket must be there"
        inet = {t: tables[t] for t in INET if tables[t]}
        assert not inet, f"{what}: the daemon has TCP/UDP sockets {inet}"
        assert sockets == tables["unix"], what
    assert len(samples[-1][1][1]["unix"]) > len(samples[0][1][1]["unix"]), "tail not seen"
    stop(h, d)


# ------------------------------------------------------------------------------------------
# 3. the runtime directory


def _refused(h: Harness, runtime: Path) -> subprocess.CompletedProcess[str]:
    proc = h.run_sufd("run", "--foreground", env={"SUFD_RUNTIME_DIR": str(runtime)})
    assert proc.returncode not in (0, None), proc
    return proc


def test_runtime_dir_symlink_or_foreign_owner_is_refused(harness: Harness, tmp_path: Path) -> None:
    h = harness
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = h.short / "link"
    link.symlink_to(target)
    proc = _refused(h, link)
    assert "symlink" in proc.stderr, proc.stderr
    assert list(target.iterdir()) == [], "socket or lock created through the symlink"

    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
    else:
        foreign = Path("/")
    proc = _refused(h, foreign)
    assert "owned by uid" in proc.stderr, proc.stderr
    assert not (foreign / "sufd.sock").exists() and not (foreign / "sufd.lock").exists()

    # Control: the same daemon starts with a private directory of its own.
    d = h.start(settle=False)
    stop(h, d)


# ------------------------------------------------------------------------------------------
# 4. no prompt text anywhere


def _plant_cline_and_cursor(home: Path) -> int:
    """A Cline task and a Cursor conversation whose texts carry the sentinel; returns how many
    times it was written."""
    planted = 0
    if "cline" in SOURCES:
        task = home / ".config/Code/User/globalStorage/saoudrizwan.claude-dev/tasks/1772800000000"
        task.mkdir(parents=True)
        request = f"<task>{SENTINEL} fix it</task>\n# Current Working Directory (/home/dev/c) Files"
        usage = {"tokensIn": 10, "tokensOut": 20, "cacheWrites": 0, "cacheReads": 5, "cost": 0.01}
        rows = [
            {"ts": 1772800001000, "type": "say", "say": "text", "text": f"{SENTINEL} hi"},
            {
                "ts": 1772800002000,
                "type": "say",
                "say": "api_req_started",
                "text": json.dumps({"request": request, **usage}),
            },
        ]
        (task / "ui_messages.json").write_text(json.dumps(rows))
        planted += 2
    if "cursor" in SOURCES:
        from tests.cursor_gen import Conversation, create_db, insert_rows

        conn = create_db(home / ".config/Cursor/User/globalStorage/state.vscdb")
        conv = Conversation("c0ffee00-0000-4000-8000-000000000001", 1772800000000)
        user = conv.user("b1", f"{SENTINEL} please")
        answer, _ = conv.assistant("b2", f"{SENTINEL} done", 1772800003000)
        insert_rows(conn, [user, answer, conv.composer_row()])
        conn.close()
        planted += 2
    return planted


def _grep(paths: Iterable[Path]) -> tuple[list[str], int]:
    """(files containing the sentinel, number of files read)."""
    hits, n = [], 0
    for path in paths:
        if path.is_file():
            n += 1
            if NEEDLE in path.read_bytes():
                hits.append(str(path))
    return hits, n


def test_no_prompt_text_in_anything_sufd_writes_or_prints(harness: Harness, tmp_path: Path) -> None:
    h = harness
    h.daemon_env["SUFD_LOG_LEVEL"] = "debug"
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    for i, proc in enumerate(configure(h, tmp_path)):
        outputs[f"configure-{i}"] = proc
    d = h.start()
    env = h.user_env()
    tail_out, tail_err = tmp_path / "tail.out", tmp_path / "tail.err"
    with tail_out.open("wb") as fo, tail_err.open("wb") as fe:
        tail = subprocess.Popen(
            [sys.executable, "-m", "sufd.cli.sufctl", "tail", "--json"],
            env=env,
            stdout=fo,
            stderr=fe,
        )
    try:
        wait_until(lambda: socket_inodes(tail.pid), 10, what="sufctl tail connected")
        time.sleep(0.3)
        generate(h.home, SPEC)
        planted = _plant_cline_and_cursor(h.home)
        corpus_hits, _ = _grep(h.home.rglob("*"))
        assert len(corpus_hits) >= 8 + planted // 2, "the sentinel is not in the corpus?"
        status = wait_caught_up(h, d)
        assert status["since_start"]["events"] > 100
        h.call("pause-watcher", {"sources": ["codex"], "for_s": 600, "reason": "test"})
        h.call("resume-watcher", {"sources": ["codex"]})
        # The daemon has committed everything, but sufctl tail may still be writing.
        wait_until(
            lambda: tail_out.read_bytes().count(b"\n") > 100, 15, what="events on sufctl tail"
        )
    finally:
        tail.send_signal(signal.SIGINT)
        tail.wait(10)
    tail_events = [json.loads(line) for line in tail_out.read_text().splitlines() if line]
    assert len(tail_events) > 100 and all("key" in e for e in tail_events)

    conn = sqlite3.connect(f"file:{h.db}?mode=ro", uri=True)
    try:
        session = conn.execute(
            "SELECT session FROM sessions WHERE source = 'claude' ORDER BY session LIMIT 1"
        ).fetchone()[0]
        sources = {r[0] for r in conn.execute("SELECT DISTINCT source FROM events")}
    finally:
        conn.close()
    assert {"claude", "codex"} <= sources
    line_input = json.dumps(
        {"session_id": session, "model": {"display_name": "Sonnet"}, "workspace": {}}
    )
    commands: dict[str, tuple[str, ...]] = {
        "status": ("ctl", "status", "--json"),
        "report-session": ("ctl", "report", "session", "--json"),
        "report-daily": ("ctl", "report", "daily", "--json"),
        "ctl-statusline": ("ctl", "statusline"),
        "sufd-statusline": ("statusline",),
    }
    for name, args in commands.items():
        proc = sufd(env, *args, stdin=line_input if "statusline" in name else None)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        outputs[name] = proc
    assert json.loads(outputs["report-session"].stdout)["sessions"]
    assert json.loads(outputs["status"].stdout)["sources"]
    assert "session $" in outputs["sufd-statusline"].stdout, outputs["sufd-statusline"]

    dirs = sufd_dirs(h)
    running_hits, running_files = _grep(
        [h.db, Path(f"{h.db}-wal"), Path(f"{h.db}-shm"), *dirs["state_dir"].rglob("*")]
    )
    stop(h, d)
    own_files = [p for top in dirs.values() if top.exists() for p in top.rglob("*")]
    daemon_output = [p for dp in h.daemons for p in (dp.stdout, dp.stderr)]
    stopped_hits, stopped_files = _grep([*own_files, *daemon_output, tail_out, tail_err])
    names = {p.name for p in own_files}
    assert {"ledger.sqlite3", "config.toml", "config.toml.bak", "state.json", "sufd.log"} <= names
    log_text = h.log_file.read_text()
    assert '"level": "debug"' in log_text, "the daemon did not log at debug level"
    printed = [n for n, proc in outputs.items() if SENTINEL in proc.stdout + proc.stderr]
    assert not running_hits and not stopped_hits and not printed, (
        running_hits,
        stopped_hits,
        printed,
    )
    assert running_files >= 3 and stopped_files >= 8
