"""One-shot commands log lazily: structlog is imported only for an event that is shown.

The import cost a third of a ``sufd ingest`` with nothing to read. These tests pin both
sides: a quiet run never imports it, and a warning still reaches stderr in the CLI's
format, configured before the first event shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sufd import logger
from tests.conftest import make_env

# `sufd ingest` in-process, then report whether structlog (or asyncio) was ever imported.
_PROBE = (
    "import sys\n"
    "from sufd.cli.sufd import main\n"
    "code = main(['ingest', '--json'])\n"
    "print(sorted(m for m in ('structlog', 'asyncio') if m in sys.modules), file=sys.stderr)\n"
    "raise SystemExit(code)\n"
)


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
    )


def test_quiet_ingest_never_imports_structlog(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    transcript = env.home / ".claude" / "projects" / "p" / "s.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text('{"type":"user","message":{"role":"user","content":"hi"}}\n')
    proc = _probe(env.env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files_read"] == 1
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr


def test_a_warning_configures_logging_and_reaches_stderr(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    transcript = env.home / ".claude" / "projects" / "p" / "s.jsonl"
    transcript.parent.mkdir(parents=True)
    os.mkfifo(transcript)  # a named pipe where a transcript should be: a warning, even as root
    proc = _probe(env.env)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in events if e.get("event") == "ingest.file_failed"]
    assert failed and failed[0]["level"] == "warning", proc.stderr
    assert failed[0]["path"] == str(transcript)
    assert "structlog" in proc.stderr.strip().splitlines()[-1]
    # Info events stay unseen, as with logging configured up front.
    assert not [e for e in events if e.get("level") == "info"], events


def test_levels_below_what_is_shown_are_dropped_unbound(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(logger, "_configure", None)
    monkeypatch.setattr(logger, "_shown_from", 0)
    logger.defer("info", lambda: calls.append("configured"))
    log = logger.get_logger("tests.logger")
    assert log.info("x") is None and log.debug("y") is None
    assert calls == [] and log._bound is None
    assert logger.cli_level("info") == logger.cli_level("warning") == 30
    assert logger.cli_level("debug") == 10 and logger.cli_level("error") == 40
