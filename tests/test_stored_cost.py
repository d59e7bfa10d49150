"""A negative stored cost is damage, as a negative token count is (issue 12 item 9).

The line (or database row) is skipped, counted as malformed with a reason that names the
field, and changes no total. Expected totals are the sums of the costs written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SufdEnv
from tests.daemon_harness import ClaudeSession, append_lines
from tests.gen_gemini_opencode import assistant, create_opencode_db, insert_message

pytestmark = pytest.mark.integration

T = 1_772_445_600_000  # 2026-03-02T10:00:00Z
TOKENS = {"input": 1000, "output": 500, "reasoning": 0, "cache": {"read": 200, "write": 100}}


def ingest(env: SufdEnv) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``sufd ingest --json``: its summary, and its log records (on stderr)."""
    proc = env.run("ingest", "--json")
    logs = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary, logs


def malformed_rows(env: SufdEnv) -> list[tuple[str, int, str]]:
    conn = env.connect()
    try:
        rows = conn.execute(
            "SELECT f.path, m.offset, m.reason FROM malformed m JOIN files f ON f.id = m.file_id"
        ).fetchall()
    finally:
        conn.close()
    return [(str(p), int(o), str(r)) for p, o, r in rows]


def report(env: SufdEnv, source: str) -> dict[str, Any]:
    out = env.run("ctl", "report", "daily", "--json", "--source", source, "--timezone", "UTC")
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_claude_negative_cost_usd_is_malformed(sufd_env: SufdEnv) -> None:
    """issue 12 item 9: ``"costUSD": -50`` makes its line malformed (reason names costUSD);
    the total is the other lines' costs, a zero cost among them."""
    env = sufd_env
    env.env["SUFD_LOG_LEVEL"] = "debug"  # the CLI shows info events only then
    path = env.home / ".claude" / "projects" / "-home-dev-proj" / "s1.jsonl"
    session = ClaudeSession("s1")
    offsets, offset = [], 0
    for i, cost in enumerate((1.25, -50, 0, 2.5)):
        line, _ = session.assistant(60.0 * i, input=1000 + i, output=100)
        obj = json.loads(line)
        obj["costUSD"] = cost
        offsets.append(offset)
        offset += append_lines(path, json.dumps(obj, separators=(",", ":")).encode())
    summary, logs = ingest(env)
    assert (summary["events_new"], summary["malformed_lines"], summary["errors"]) == (3, 1, [])
    rows = malformed_rows(env)
    assert [(p, o) for p, o, _ in rows] == [(str(path), offsets[1])]
    assert "costUSD" in rows[0][2] and "negative" in rows[0][2], rows
    logged = [r for r in logs if r.get("event") == "ingest.malformed_lines"]
    assert [(r["path"], r["count"], r["first_offset"]) for r in logged] == [
        (str(path), 1, offsets[1])
    ]
    assert "costUSD" in logged[0]["reason"]
    totals = report(env, "claude")["totals"]
    assert totals["events"] == 3
    assert totals["totalCost"] == pytest.approx(1.25 + 0 + 2.5)
    assert totals["inputTokens"] == 1000 + 1002 + 1003


def test_kilo_negative_cost_is_malformed(sufd_env: SufdEnv) -> None:
    """issue 12 item 9: a Kilo CLI message whose stored ``cost`` is negative (Kilo's stored
    costs are used as they are) is skipped and counted as malformed, by its row, with a
    reason; the other messages keep their stored costs, 0 included."""
    env = sufd_env
    db = env.home / ".local" / "share" / "kilo" / "kilo.db"
    conn = create_opencode_db(db)
    costs = (0.25, -50, 0, 1.5)
    for i, cost in enumerate(costs):
        msg = assistant(f"k{i}", "s", T + i * 60_000, "anthropic", "claude-sonnet-4-5", TOKENS)
        insert_message(conn, msg | {"cost": cost}, T)
    (bad_rowid,) = conn.execute("SELECT rowid FROM message WHERE id = 'k1'").fetchone()
    conn.close()
    summary, _ = ingest(env)
    assert (summary["events_new"], summary["malformed_lines"], summary["errors"]) == (3, 1, [])
    rows = malformed_rows(env)
    assert [(Path(p).name, o) for p, o, _ in rows] == [("kilo.db", bad_rowid)]
    assert "cost" in rows[0][2] and "negative" in rows[0][2], rows
    totals = report(env, "kilo-cli")["totals"]
    assert totals["events"] == 3
    assert totals["totalCost"] == pytest.approx(0.25 + 0 + 1.5)
    # Read again (nothing changed): not counted twice.
    again, _ = ingest(env)
    assert (again["events_new"], again["malformed_lines"]) == (0, 0)
    assert len(malformed_rows(env)) == 1
