"""Bad input never stops ``sufd ingest`` and loses nothing (acceptance item of issue 2).

Each case runs ``sufd ingest`` twice on the same small corpus plus hand-written good files:
once without the bad input (the reference) and once with it. The run with bad input must exit
0, log and count the bad thing, and hold exactly the reference's events. Expected counts and
offsets are arithmetic on the bytes written here, never sufd's own output.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SufdEnv, make_env
from tests.corpus import SENTINEL, CorpusSpec, generate
from tests.keys import portable_key

pytestmark = pytest.mark.integration

SPEC = CorpusSpec(seed=77, claude_sessions=4, codex_sessions=3, turns_per_session=(3, 8))
CLAUDE_DIR = Path(".claude/projects/-home-dev-src-bad")
CLAUDE_GOOD = CLAUDE_DIR / "good-claude.jsonl"
CODEX_GOOD = Path(".codex/sessions/2026/03/07/rollout-2026-03-07T08-00-00-good.jsonl")
T0 = 1_772_870_400_000  # 2026-03-07T08:00:00Z
MIB = 1024 * 1024


# ------------------------------------------------------------------------------------------
# good lines (tokens chosen here, so totals are arithmetic)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def claude_obj(i: int, inp: int, out: int, *, cache_read: int = 0) -> dict[str, Any]:
    return {
        "parentUuid": None,
        "isSidechain": False,
        "cwd": "/home/dev/src/bad",
        "sessionId": "s-bad-1",
        "version": "2.0.30",
        "type": "assistant",
        "message": {
            "id": f"msg_bad{i}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "content": [{"type": "text", "text": f"réponse {SENTINEL} 東京"}],
            "usage": {
                "input_tokens": inp,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": cache_read,
                "output_tokens": out,
            },
        },
        "requestId": f"req_bad{i}",
        "timestamp": _iso(T0 + 1_000 * i),
    }


def claude_prompt(i: int) -> bytes:
    return _dumps(
        {
            "type": "user",
            "sessionId": "s-bad-1",
            "cwd": "/home/dev/src/bad",
            "message": {"role": "user", "content": f"prompt {i} {SENTINEL} naïve"},
            "timestamp": _iso(T0 + 1_000 * i - 500),
        }
    )


CLAUDE_REPLIES = [(i, 10 + i, 100 + i, 1_000 * i) for i in range(1, 7)]  # i, in, out, cache_read


def claude_good_lines() -> list[bytes]:
    """A prompt and a reply per turn; replies ``msg_bad1``..``msg_bad6``."""
    out = []
    for i, inp, outp, cr in CLAUDE_REPLIES:
        out += [claude_prompt(i), _dumps(claude_obj(i, inp, outp, cache_read=cr))]
    return out


def codex_obj(ts: int, total: tuple[int, int, int, int]) -> dict[str, Any]:
    inp, cached, out, reasoning = total
    usage = {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + out,
    }
    return {
        "timestamp": _iso(ts),
        "type": "event_msg",
        "payload": {"type": "token_count", "info": {"total_token_usage": usage}},
    }


CODEX_TOTALS = [(1_000, 200, 50, 5), (2_500, 1_200, 90, 5), (4_000, 3_000, 200, 40)]


def codex_good_lines() -> list[bytes]:
    meta = {"id": "cx-bad", "cwd": "/home/dev/src/bad", "originator": "codex_cli_rs"}
    turn = {"cwd": "/home/dev/src/bad", "model": "gpt-5-codex", "summary": f"{SENTINEL}"}
    msg = {"type": "user_message", "message": f"{SENTINEL} データ"}
    return [
        _dumps({"timestamp": _iso(T0), "type": "session_meta", "payload": meta}),
        _dumps({"timestamp": _iso(T0 + 1), "type": "turn_context", "payload": turn}),
        _dumps({"timestamp": _iso(T0 + 2), "type": "event_msg", "payload": msg}),
        *(_dumps(codex_obj(T0 + 1_000 * (k + 1), t)) for k, t in enumerate(CODEX_TOTALS)),
    ]


# Arithmetic: what the good files hold (Codex totals are cumulative: the last one is the sum).
GOOD_EVENTS = len(CLAUDE_REPLIES) + len(CODEX_TOTALS)
GOOD_INPUT = sum(inp + cr for _, inp, _, cr in CLAUDE_REPLIES) + CODEX_TOTALS[-1][0]
GOOD_OUTPUT = sum(out for _, _, out, _ in CLAUDE_REPLIES) + CODEX_TOTALS[-1][2]


def write(env: SufdEnv, rel: Path, data: bytes) -> Path:
    path = env.home / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def with_bad_lines(lines: list[bytes], bad: Mapping[int, bytes]) -> tuple[bytes, dict[int, int]]:
    """``lines`` with ``bad[i]`` inserted before line ``i``; returns the bytes and the offset
    of each inserted line (keyed by ``i``)."""
    out, offsets, pos = [], {}, 0
    for i, line in enumerate([*lines, b""]):
        if i in bad:
            offsets[i] = pos
            out.append(bad[i])
            pos += len(bad[i])
        out.append(line)
        pos += len(line)
    return b"".join(out), offsets


# ------------------------------------------------------------------------------------------
# running sufd and reading what it did


@dataclass
class Run:
    returncode: int
    summary: dict[str, Any]
    logs: list[dict[str, Any]]
    stderr: str
    maxrss_kib: int

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]


# Runs ``sufd ingest`` as its only child and writes "<exit code> <peak RSS KiB>" to argv[1].
# Why a go-between: a child's ru_maxrss starts from the RSS of the process it was forked
# from (Linux carries the pre-exec image's high-water mark over exec), and this pytest
# process is large (it builds 50 MB lines); a small Python forks a clean sufd instead, and
# with one child its RUSAGE_CHILDREN is exactly that child's peak.
_MEASURE = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(f"{code} {peak}")
"""


def ingest(
    env: SufdEnv,
    extra: Mapping[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> Run:
    """``sufd ingest --json`` at debug level (so info events such as
    ``ingest.malformed_lines`` reach stderr; the CLI shows only warnings otherwise)."""
    out_path, err_path = env.home.parent / "ingest.out", env.home.parent / "ingest.err"
    measure = env.home.parent / "ingest.rusage"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(
            [sys.executable, "-c", _MEASURE, str(measure), sys.executable, "-m", "sufd"]
            + ["ingest", "--json"],
            env={**env.env, "SUFD_LOG_LEVEL": "debug", **(extra or {})},
            stdout=out,
            stderr=err,
            preexec_fn=preexec,
            check=True,
            timeout=120,
        )
    returncode, maxrss = (int(v) for v in measure.read_text().split())
    stderr = err_path.read_text(errors="replace")
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert len(logs) == len(stderr.splitlines()), f"non-JSON stderr:\n{stderr[:2000]}"
    summary = json.loads(out_path.read_text()) if returncode == 0 else {}
    return Run(returncode, summary, logs, stderr, maxrss)


@dataclass
class Ledger:
    events: dict[tuple[str, str], tuple[Any, ...]]  # provenance (file, offset) left out
    files: dict[str, tuple[int, str | None, int]]  # relative path: (malformed, error, offset)
    malformed: dict[tuple[str, int], str]
    totals: tuple[int, int, int]  # events, input + cache_read, output (from agg_time)


def _portable_key(key: str, path: str, home: Path) -> str:
    """The reference ledger lives under another HOME: compare keys by relative path."""
    return portable_key(key, path, str(Path(path).relative_to(home)))


def ledger(env: SufdEnv) -> Ledger:
    conn = env.connect()
    try:
        events = {
            (r[0], _portable_key(r[1], r[-1], env.home)): r[2:-1]
            for r in conn.execute(
                "SELECT e.source, e.key, e.ts, s.session, p.path, m.name, e.input, e.output,"
                " e.cache_write_5m, e.cache_write_1h, e.cache_read, e.reasoning, e.total, e.cost,"
                " e.cost_kind, e.fallback_model, f.path FROM events e"
                " JOIN sessions s ON s.id = e.session_id JOIN projects p ON p.id = e.project_id"
                " JOIN models m ON m.id = e.model_id JOIN files f ON f.id = e.file_id"
            )
        }
        files = {
            str(Path(r[0]).relative_to(env.home)): tuple(r[1:])
            for r in conn.execute("SELECT path, malformed, error, offset FROM files")
        }
        malformed = {
            (str(Path(r[0]).relative_to(env.home)), r[1]): r[2]
            for r in conn.execute(
                "SELECT f.path, m.offset, m.reason"
                " FROM malformed m JOIN files f ON f.id = m.file_id"
            )
        }
        row = conn.execute(
            "SELECT SUM(events), SUM(input + cache_read), SUM(output) FROM agg_time"
        ).fetchone()
    finally:
        conn.close()
    return Ledger(events, files, malformed, tuple(v or 0 for v in row))  # type: ignore[arg-type]


def prepare(base: Path) -> SufdEnv:
    """An env holding the small corpus and the two good files."""
    env = make_env(base)
    generate(env.home, SPEC)
    write(env, CLAUDE_GOOD, b"".join(claude_good_lines()))
    write(env, CODEX_GOOD, b"".join(codex_good_lines()))
    return env


def reference(tmp_path: Path, extra: Mapping[str, str] | None = None) -> tuple[Run, Ledger]:
    """The same corpus and good files without the bad input, ingested once."""
    env = prepare(tmp_path / "good")
    run = ingest(env, extra)
    assert run.returncode == 0 and run.summary["errors"] == []
    good = ledger(env)
    # The reference holds the good files' own events (arithmetic on what was written).
    mine = [v for v in good.events.values() if v[1] in ("s-bad-1", "cx-bad")]
    assert len(mine) == GOOD_EVENTS
    assert (sum(v[4] + v[8] for v in mine), sum(v[5] for v in mine)) == (GOOD_INPUT, GOOD_OUTPUT)
    return run, good


def assert_nothing_lost(bad: Ledger, good: Ledger) -> None:
    """Every event of the reference, column by column, and nothing else; same sums."""
    assert sorted(bad.events) == sorted(good.events)
    diff = {k: (bad.events[k], v) for k, v in good.events.items() if bad.events[k] != v}
    assert not diff, list(diff.items())[:5]
    assert bad.totals == good.totals
    assert good.totals[0] > GOOD_EVENTS  # the corpus is in there too


def assert_no_leak(env: SufdEnv, *runs: Run) -> None:
    """No prompt or response text in the ledger (and its WAL), the logs or the reasons."""
    needle = SENTINEL.encode()
    for suffix in ("", "-wal"):
        path = Path(f"{env.db}{suffix}")
        if path.exists():
            assert needle not in path.read_bytes(), path
    for run in runs:
        assert SENTINEL not in run.stderr
        assert SENTINEL not in json.dumps(run.summary)
    conn = env.connect()
    try:
        texts = [r[0] for r in conn.execute("SELECT reason FROM malformed")]
        texts += [r[0] for r in conn.execute("SELECT error FROM files WHERE error IS NOT NULL")]
    finally:
        conn.close()
    assert not [t for t in texts if SENTINEL in t]


def assert_malformed_logged(run: Run, rel: Path, env: SufdEnv, count: int, first: int) -> None:
    logged = [e for e in run.events("ingest.malformed_lines") if e["path"] == str(env.home / rel)]
    assert sum(e["count"] for e in logged) == count
    assert min(e["first_offset"] for e in logged) == first
    assert all(e["level"] == "info" and e["reason"] for e in logged)


# ------------------------------------------------------------------------------------------
# unreadable file

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def _drop_file_read_override() -> None:
    """Runs in the child before exec: remove the capabilities that let root ignore modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file_is_recorded_and_read_once_readable(tmp_path: Path) -> None:
    # Tests run as root here, and root reads a chmod 000 file anyway (CAP_DAC_OVERRIDE), so
    # that ingest must run without that privilege. The usual way, a child with
    # user=65534, cannot work on this machine: the interpreter lives under /root (0700), so
    # uid 65534 cannot even exec it. Instead the child drops CAP_DAC_OVERRIDE and
    # CAP_DAC_READ_SEARCH from its bounding set before exec: it stays uid 0 (the whole tree
    # stays accessible, it owns it) but now honours file modes like any unprivileged user.
    # Not root: mode 000 is enough on its own.
    preexec = _drop_file_read_override if os.geteuid() == 0 else None
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    locked_rel = CLAUDE_DIR / "locked.jsonl"
    locked = write(env, locked_rel, _dumps(claude_obj(90, 7, 70)))
    locked.chmod(0o000)
    run = ingest(env, preexec=preexec)
    assert run.returncode == 0
    assert [e["path"] for e in run.summary["errors"]] == [str(locked)]
    assert "PermissionError" in run.summary["errors"][0]["error"]
    failed = run.events("ingest.file_failed")
    assert [(e["path"], e["level"]) for e in failed] == [(str(locked), "warning")]
    bad = ledger(env)
    assert "PermissionError" in str(bad.files[str(locked_rel)][1])
    assert bad.files[str(locked_rel)][2] == 0  # cursor did not move
    assert_nothing_lost(bad, good)
    # Readable again: its event arrives and the error is cleared; nothing else changes.
    locked.chmod(0o644)
    again = ingest(env, preexec=preexec)
    assert (again.returncode, again.summary["errors"], again.summary["events_new"]) == (0, [], 1)
    after = ledger(env)
    assert after.files[str(locked_rel)][1] is None
    assert after.totals == (good.totals[0] + 1, good.totals[1] + 7 + 0, good.totals[2] + 70)
    assert_no_leak(env, run, again)


# ------------------------------------------------------------------------------------------
# binary garbage


def _garbage(rng: random.Random, lines: int) -> bytes:
    """Random bytes (NUL and invalid UTF-8 included), ``lines`` non-empty lines, no ``{``."""
    out = []
    for _ in range(lines):
        raw = bytes(b for b in rng.randbytes(rng.randint(20, 400)) if b not in b"\n{")
        out.append(b"\x00\xff\xfe" + raw + b"\xc3\x28\n")
    return b"".join(out)


def test_binary_garbage_file_and_lines(tmp_path: Path) -> None:
    rng = random.Random(5)
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    garbage_rel = CLAUDE_DIR / "garbage.jsonl"
    write(env, garbage_rel, _garbage(rng, 25) + b"\x00partial garbage, no newline \xff")
    codex_garbage_rel = CODEX_GOOD.with_name("rollout-2026-03-07T09-00-00-garbage.jsonl")
    write(env, codex_garbage_rel, _garbage(rng, 4))
    inserted = {3: _garbage(rng, 1), 4: _garbage(rng, 1), 9: _garbage(rng, 1)}
    claude_data, claude_offsets = with_bad_lines(claude_good_lines(), inserted)
    write(env, CLAUDE_GOOD, claude_data)
    codex_data, codex_offsets = with_bad_lines(codex_good_lines(), {4: _garbage(rng, 1)})
    write(env, CODEX_GOOD, codex_data)

    run = ingest(env)
    assert run.returncode == 0 and run.summary["errors"] == []
    assert run.summary["malformed_lines"] - sum(f[0] for f in good.files.values()) == 25 + 4 + 4
    bad = ledger(env)
    assert_nothing_lost(bad, good)
    expect = {
        garbage_rel: 25,
        codex_garbage_rel: 4,
        CLAUDE_GOOD: len(inserted),
        CODEX_GOOD: 1,
    }
    for rel, n in expect.items():
        assert bad.files[str(rel)][:2] == (n, None)
    new_rows = {k: v for k, v in bad.malformed.items() if k not in good.malformed}
    assert {k for k in new_rows if k[0] == str(CLAUDE_GOOD)} == {
        (str(CLAUDE_GOOD), off) for off in claude_offsets.values()
    }
    assert {k for k in new_rows if k[0] == str(CODEX_GOOD)} == {
        (str(CODEX_GOOD), off) for off in codex_offsets.values()
    }
    assert len(new_rows) == 25 + 4 + 4
    assert_malformed_logged(run, CLAUDE_GOOD, env, len(inserted), min(claude_offsets.values()))
    assert_malformed_logged(run, garbage_rel, env, 25, 0)
    # A second run reads nothing and counts nothing twice.
    again = ingest(env)
    assert (again.summary["bytes_read"], again.summary["malformed_lines"]) == (0, 0)
    assert ledger(env).files == bad.files
    assert_no_leak(env, run, again)


# ------------------------------------------------------------------------------------------
# huge lines


def _huge_user_line(size: int) -> bytes:
    """A valid JSON user line (a tool result) of ``size`` bytes with no usage marker."""
    head = {
        "type": "user",
        "sessionId": "s-bad-1",
        "cwd": "/home/dev/src/bad",
        "timestamp": _iso(T0 + 3_500),
        "message": {"role": "user", "content": [{"type": "tool_result", "content": "§"}]},
    }
    line = _dumps(head)
    filler = (f"{SENTINEL} lorem ipsum " * (size // 30 + 1)).encode()
    a, b = line.split("§".encode())
    line = a + filler[: size - len(line) + 2] + b
    assert len(line) == size and b'"usage":{' not in line
    return line


def test_50mb_line_without_usage_is_passed_over(tmp_path: Path) -> None:
    """Under the default line limit (64 MiB) a 50 MB line is an ordinary non-usage line: it is
    read, not counted as malformed, and the lines around it are ingested."""
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    huge = _huge_user_line(50 * 1000 * 1000)
    data, _ = with_bad_lines(claude_good_lines(), {5: huge})
    write(env, CLAUDE_GOOD, data)
    run = ingest(env)
    assert run.returncode == 0 and run.summary["errors"] == []
    bad = ledger(env)
    assert_nothing_lost(bad, good)
    assert bad.files[str(CLAUDE_GOOD)] == (0, None, len(data))
    assert bad.malformed == good.malformed
    assert_no_leak(env, run)


def test_50mb_line_over_max_line_bytes_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    cap = {"SUFD_MAX_LINE_BYTES": str(MIB)}
    ref, good = reference(tmp_path, cap)  # same limit: the corpus' 3.5 MB line is skipped too
    env = prepare(tmp_path / "bad")
    huge = _huge_user_line(50 * 1000 * 1000)
    data, offsets = with_bad_lines(claude_good_lines(), {5: huge})
    write(env, CLAUDE_GOOD, data)
    run = ingest(env, cap)
    assert run.returncode == 0 and run.summary["errors"] == []
    bad = ledger(env)
    assert_nothing_lost(bad, good)
    new_rows = {k: v for k, v in bad.malformed.items() if k not in good.malformed}
    assert new_rows == {(str(CLAUDE_GOOD), offsets[5]): f"line longer than {MIB} bytes"}
    assert bad.files[str(CLAUDE_GOOD)] == (1, None, len(data))
    assert_malformed_logged(run, CLAUDE_GOOD, env, 1, offsets[5])
    # Bounded memory, not speed: the line is skipped in chunks, never held whole. Reading it
    # whole costs a few times its 50 MB (over 200 MiB here without the limit), so besides the
    # absolute bound the peak must stay close to the same run without the line.
    assert run.maxrss_kib < 250 * 1024, f"peak RSS {run.maxrss_kib / 1024:.0f} MiB"
    assert run.maxrss_kib < ref.maxrss_kib + 32 * 1024, (run.maxrss_kib, ref.maxrss_kib)
    assert_no_leak(env, run)


# ------------------------------------------------------------------------------------------
# things that are not regular files


def test_directory_named_like_a_session_and_dangling_symlink(tmp_path: Path) -> None:
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    directory = env.home / ".claude/projects/p/x.jsonl"
    directory.mkdir(parents=True)
    dangling = env.home / ".claude/projects/p/y.jsonl"
    dangling.symlink_to(env.home / "nowhere.jsonl")
    run = ingest(env)
    assert run.returncode == 0
    assert sorted(e["path"] for e in run.summary["errors"]) == [str(directory), str(dangling)]
    failed = run.events("ingest.file_failed")
    assert sorted(e["path"] for e in failed) == [str(directory), str(dangling)]
    bad = ledger(env)
    assert "directory" in str(bad.files[".claude/projects/p/x.jsonl"][1])
    assert "FileNotFoundError" in str(bad.files[".claude/projects/p/y.jsonl"][1])
    assert_nothing_lost(bad, good)
    again = ingest(env)  # still reported, still harmless
    assert again.returncode == 0 and len(again.summary["errors"]) == 2
    assert_no_leak(env, run, again)


# ------------------------------------------------------------------------------------------
# valid JSON that is not an object, wrong types, empty and blank files, CRLF


def test_json_values_that_are_not_objects(tmp_path: Path) -> None:
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    values = [b"[1,2]\n", b'"str"\n', b"42\n", b"null\n", b"true\n"]
    with_marker = [  # the sources' quick filters match these; the parsed value is not a dict
        b'[{"message":{"usage":{"input_tokens":1,"output_tokens":1}}}]\n',
        b'["token_count",{"type":"event_msg"}]\n',
    ]
    claude_bad = dict(enumerate([*values, with_marker[0]], start=1))
    codex_bad = dict(enumerate([*values, with_marker[1]], start=1))
    claude_data, claude_offsets = with_bad_lines(claude_good_lines(), claude_bad)
    codex_data, codex_offsets = with_bad_lines(codex_good_lines(), codex_bad)
    write(env, CLAUDE_GOOD, claude_data)
    write(env, CODEX_GOOD, codex_data)
    run = ingest(env)
    assert run.returncode == 0 and run.summary["errors"] == []
    bad = ledger(env)
    assert_nothing_lost(bad, good)
    for rel, offsets in ((CLAUDE_GOOD, claude_offsets), (CODEX_GOOD, codex_offsets)):
        rows = {off: r for (p, off), r in bad.malformed.items() if p == str(rel)}
        assert sorted(rows) == sorted(offsets.values())
        assert all("object" in r for r in rows.values()), rows
        assert bad.files[str(rel)][:2] == (len(offsets), None)
        assert_malformed_logged(run, rel, env, len(offsets), min(offsets.values()))
    assert_no_leak(env, run)


def _claude_wrong(i: int, change: Callable[[dict[str, Any]], None]) -> bytes:
    obj = claude_obj(i, 1, 1)
    change(obj)
    return _dumps(obj)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            obj = obj[p]
        obj[last] = value

    return change


def test_usage_lines_with_wrong_types(tmp_path: Path) -> None:
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    claude_cases = {  # field that must be named in the reason: the change
        "input_tokens": _set("message.usage.input_tokens", "abc"),
        "output_tokens": _set("message.usage.output_tokens", -5),
        "cache_read_input_tokens": _set("message.usage.cache_read_input_tokens", 1.5),
        "cache_creation_input_tokens": _set("message.usage.cache_creation_input_tokens", True),
        "cache_creation": _set("message.usage.cache_creation", [1]),
        "model": _set("message.model", 42),
        "timestamp": _set("timestamp", 1772870400),
        "costUSD": _set("costUSD", "0.5"),
    }
    claude_bad = {
        k + 1: _claude_wrong(50 + k, change) for k, change in enumerate(claude_cases.values())
    }
    codex_cases: dict[str, dict[str, Any]] = {
        "input_tokens": codex_obj(T0 + 500, (1, 0, 1, 0)),
        "info": codex_obj(T0 + 600, (1, 0, 1, 0)),
        "total_token_usage": codex_obj(T0 + 700, (1, 0, 1, 0)),
    }
    codex_cases["input_tokens"]["payload"]["info"]["total_token_usage"]["input_tokens"] = "9"
    codex_cases["info"]["payload"]["info"] = "soon"
    codex_cases["total_token_usage"]["payload"]["info"]["total_token_usage"] = [1, 2]
    codex_bad = {4 + k: _dumps(obj) for k, obj in enumerate(codex_cases.values())}
    claude_data, claude_offsets = with_bad_lines(claude_good_lines(), claude_bad)
    codex_data, codex_offsets = with_bad_lines(codex_good_lines(), codex_bad)
    write(env, CLAUDE_GOOD, claude_data)
    write(env, CODEX_GOOD, codex_data)
    run = ingest(env)
    assert run.returncode == 0 and run.summary["errors"] == []
    bad = ledger(env)
    # The good lines' totals are unchanged: a bad Codex count does not disturb the deltas of
    # the counts after it.
    assert_nothing_lost(bad, good)
    for rel, cases, offsets in (
        (CLAUDE_GOOD, claude_cases, claude_offsets),
        (CODEX_GOOD, codex_cases, codex_offsets),
    ):
        rows = {off: r for (p, off), r in bad.malformed.items() if p == str(rel)}
        assert sorted(rows) == sorted(offsets.values())
        for field_name, off in zip(cases, sorted(offsets.values()), strict=True):
            assert field_name in rows[off], (field_name, rows[off])
        assert_malformed_logged(run, rel, env, len(offsets), min(offsets.values()))
    assert_no_leak(env, run)


def test_empty_file_and_file_of_newlines(tmp_path: Path) -> None:
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    empty = CLAUDE_DIR / "empty.jsonl"
    blank = CLAUDE_DIR / "blank.jsonl"
    codex_blank = CODEX_GOOD.with_name("rollout-2026-03-07T09-00-00-blank.jsonl")
    write(env, empty, b"")
    write(env, blank, b"\n" * 5)
    write(env, codex_blank, b"\n" * 3)
    run = ingest(env)
    assert run.returncode == 0 and run.summary["errors"] == []
    bad = ledger(env)
    assert_nothing_lost(bad, good)
    assert bad.files[str(empty)] == (0, None, 0)
    # Blank lines carry nothing: read past (the cursor moves) and not counted as malformed.
    assert bad.files[str(blank)] == (0, None, 5)
    assert bad.files[str(codex_blank)] == (0, None, 3)
    assert not [off for p, off in bad.malformed if p in (str(blank), str(codex_blank))]
    again = ingest(env)
    assert (again.summary["malformed_lines"], again.summary["bytes_read"]) == (0, 0)
    assert_no_leak(env, run, again)


def test_crlf_file_ingests_like_lf(tmp_path: Path) -> None:
    _, good = reference(tmp_path)
    env = prepare(tmp_path / "bad")
    for rel in (CLAUDE_GOOD, CODEX_GOOD):
        path = env.home / rel
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    run = ingest(env)
    assert run.returncode == 0 and run.summary["errors"] == []
    bad = ledger(env)
    assert_nothing_lost(bad, good)
    assert bad.malformed == good.malformed
    size = (env.home / CLAUDE_GOOD).stat().st_size
    assert bad.files[str(CLAUDE_GOOD)] == (0, None, size)
    assert_no_leak(env, run)
