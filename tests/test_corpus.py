"""The session-log generator itself: deterministic, realistic, and really full of traps."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.corpus import (
    BOUNDARY_ZONES,
    CLAUDE_MODELS,
    CODEX_MODELS,
    SENTINEL,
    TRAP_NAMES,
    CorpusSpec,
    CorpusStats,
    append_chunks,
    boundaries,
    generate,
    generate_to_size,
)

SMALL = CorpusSpec(seed=11, claude_sessions=8, codex_sessions=5, turns_per_session=(3, 8))
TIMESTAMP = re.compile(rb'"timestamp":"([^"]*)"')
ACCEPTED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CorpusStats]:
    home = tmp_path_factory.mktemp("small")
    return home, generate(home, SMALL)


def _files(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file())


def _digest(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(home)
    }


def _jsonl(home: Path) -> list[Path]:
    return [p for p in _files(home) if p.suffix == ".jsonl"]


def test_same_seed_same_bytes(small: tuple[Path, CorpusStats], tmp_path: Path) -> None:
    home, stats = small
    again = generate(tmp_path / "again", SMALL)
    assert again == stats
    assert _digest(tmp_path / "again") == _digest(home)


def test_other_seed_other_bytes(small: tuple[Path, CorpusStats], tmp_path: Path) -> None:
    home, _ = small
    generate(tmp_path / "other", replace(SMALL, seed=12))
    assert set(_digest(tmp_path / "other").values()).isdisjoint(_digest(home).values())


def test_stats_describe_what_is_on_disk(small: tuple[Path, CorpusStats]) -> None:
    home, stats = small
    files = _files(home)
    assert stats.files == len(files)
    assert stats.bytes == sum(p.stat().st_size for p in files)
    assert stats.claude_usage_lines > 100
    assert stats.codex_token_count_lines > 50


def test_layout(small: tuple[Path, CorpusStats]) -> None:
    home, _ = small
    rel = [str(p.relative_to(home)) for p in _jsonl(home)]
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    main = re.compile(rf"\.claude/projects/-home-dev-src-[a-z-]+/{uuid}\.jsonl")
    sub = re.compile(
        rf"\.claude/projects/-home-dev-src-[a-z-]+/{uuid}/subagents/agent-a[0-9a-f]{{7}}\.jsonl"
    )
    legacy = re.compile(r"\.claude/projects/-home-dev-src-[a-z-]+/agent-[0-9a-f]{8}\.jsonl")
    stamp = r"(\d{4})-(\d\d)-(\d\d)T\d\d-\d\d-\d\d"
    live = re.compile(rf"\.codex/sessions/(\d{{4}})/(\d\d)/(\d\d)/rollout-{stamp}-{uuid}\.jsonl")
    archived = re.compile(rf"\.codex/archived_sessions/rollout-{stamp}-{uuid}\.jsonl")
    for path in rel:
        m = live.fullmatch(path)
        if m:
            assert m.groups()[:3] == m.groups()[3:], path
            continue
        assert any(p.fullmatch(path) for p in (main, sub, legacy, archived)), path
    assert any(sub.fullmatch(p) for p in rel) and any(archived.fullmatch(p) for p in rel)


def test_every_trap_is_planted(small: tuple[Path, CorpusStats]) -> None:
    _, stats = small
    missing = [name for name in TRAP_NAMES if stats.traps[name] < 1]
    assert not missing
    assert set(stats.traps) <= set(TRAP_NAMES)


def test_no_traps_means_clean_files(tmp_path: Path) -> None:
    stats = generate(tmp_path, CorpusSpec(seed=3, claude_sessions=4, codex_sessions=3, traps=False))
    planted = {
        "claude_huge_line", "claude_malformed_truncated", "claude_malformed_binary",
        "claude_malformed_type", "claude_request_id_null", "claude_partial_last_line",
        "claude_synthetic", "claude_cost_usd", "claude_fast", "codex_partial_last_line",
        "codex_malformed", "codex_archived_copy", "codex_archived_only", "codex_long_context",
    }  # fmt: skip
    assert planted.isdisjoint(stats.traps)
    for path in _jsonl(tmp_path):
        data = path.read_bytes()
        assert data.endswith(b"\n"), path
        for line in data.splitlines():
            assert isinstance(json.loads(line), dict)


def test_partial_last_lines_have_no_newline(small: tuple[Path, CorpusStats]) -> None:
    home, stats = small
    unterminated = [p for p in _jsonl(home) if not p.read_bytes().endswith(b"\n")]
    assert len(unterminated) >= 2  # at least one Claude and one Codex file
    assert {".claude", ".codex"} <= {p.relative_to(home).parts[0] for p in unterminated}
    for path in unterminated:
        last = path.read_bytes().rsplit(b"\n", 1)[-1]
        assert last.startswith(b"{")
        with pytest.raises(json.JSONDecodeError):
            json.loads(last)
    expected = stats.traps["claude_partial_last_line"] + stats.traps["codex_partial_last_line"]
    archived_partial = [p for p in unterminated if "archived_sessions" in p.parts]
    assert len(unterminated) == expected + len(archived_partial)


def test_malformed_lines_are_there(small: tuple[Path, CorpusStats]) -> None:
    home, _ = small
    bad = 0
    binary = False
    for path in _jsonl(home):
        lines = path.read_bytes().split(b"\n")
        for line in lines[:-1]:
            try:
                json.loads(line)
            except ValueError:
                bad += 1
                binary = binary or not line.startswith(b"{")
    assert bad >= 4  # truncated + binary + "abc" (Claude), truncated (Codex)
    assert binary


def test_timestamps_have_exactly_three_fractional_digits(small: tuple[Path, CorpusStats]) -> None:
    home, _ = small
    seen = 0
    for path in _jsonl(home):
        for stamp in TIMESTAMP.findall(path.read_bytes()):
            assert ACCEPTED.fullmatch(stamp.decode()), (path, stamp)
            seen += 1
    assert seen > 1000


def _usage_times(home: Path) -> set[str]:
    times: set[str] = set()
    for path in _jsonl(home):
        for line in path.read_bytes().splitlines():
            if b'"usage":{' in line or b'"type":"token_count","info":{' in line:
                times.update(m.decode() for m in TIMESTAMP.findall(line))
    return times


def test_usage_sits_on_both_sides_of_midnights(small: tuple[Path, CorpusStats]) -> None:
    home, _ = small
    times = _usage_times(home)
    zones_hit: set[str] = set()
    pinned = 0
    for b in boundaries(SMALL):
        before = datetime.fromtimestamp((b - 1) / 1000, UTC)
        at = datetime.fromtimestamp(b / 1000, UTC)
        if f"{before:%Y-%m-%dT%H:%M:%S}.999Z" in times and f"{at:%Y-%m-%dT%H:%M:%S}.000Z" in times:
            pinned += 1
            for name in BOUNDARY_ZONES:
                zone = ZoneInfo(name)
                if before.astimezone(zone).date() != at.astimezone(zone).date():
                    zones_hit.add(name)
    assert pinned >= 4
    assert zones_hit == set(BOUNDARY_ZONES)
    # the LA DST switch itself (2026-03-08 10:00Z) and the first LA midnight after it (07:00Z)
    assert {"2026-03-08T09:59:59.999Z", "2026-03-08T10:00:00.000Z"} <= times
    assert "2026-03-09T07:00:00.000Z" in times


def test_boundaries_cover_the_span() -> None:
    spec = CorpusSpec(start=datetime(2026, 3, 6, tzinfo=UTC), days=3)
    got = {datetime.fromtimestamp(b / 1000, UTC) for b in boundaries(spec)}
    day = timedelta(days=1)
    assert datetime(2026, 3, 7, tzinfo=UTC) in got  # UTC midnight
    assert datetime(2026, 3, 6, 18, 15, tzinfo=UTC) in got  # Kathmandu midnight (+05:45)
    assert datetime(2026, 3, 7, 8, tzinfo=UTC) in got  # LA midnight, PST
    assert datetime(2026, 3, 8, 10, tzinfo=UTC) in got  # LA DST switch
    assert datetime(2026, 3, 8, 7, tzinfo=UTC) not in got  # LA midnight is 08:00Z before it
    assert all(spec.start < t < spec.start + 3 * day for t in got)


def test_models_and_sentinel(small: tuple[Path, CorpusStats]) -> None:
    home, _ = small
    claude: set[str] = set()
    codex: set[str] = set()
    texts = 0
    for path in _jsonl(home):
        for raw in path.read_bytes().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            payload = line.get("payload") or {}
            if line.get("type") == "turn_context":
                codex.add(payload["model"])
            elif payload.get("type") in ("user_message", "agent_message"):
                assert SENTINEL in payload["message"]
                texts += 1
            message = line.get("message") or {}
            if isinstance(message.get("model"), str):
                claude.add(message["model"])
            content = message.get("content")
            if line.get("type") == "user" and isinstance(content, str):
                assert SENTINEL in content
                texts += 1
            if line.get("type") == "assistant" and message.get("model") != "<synthetic>":
                for block in content or ():
                    if block["type"] == "text":
                        assert SENTINEL in block["text"]
                        texts += 1
    assert texts > 100
    assert claude - {"<synthetic>", "claude-opus-4-6"} <= set(CLAUDE_MODELS)
    assert "claude-opus-4-6" in claude
    assert codex <= set(CODEX_MODELS) and len(codex) >= 3


def test_append_chunks_reproduces_the_source(
    small: tuple[Path, CorpusStats], tmp_path: Path
) -> None:
    home, _ = small
    sources = sorted(_jsonl(home), key=lambda p: p.stat().st_size)
    picked = [sources[-1], sources[len(sources) // 2], sources[0]]  # the huge line, typical, tiny
    picked += [p for p in sources if not p.read_bytes().endswith(b"\n")][:1]
    rng = random.Random(5)
    for n, src in enumerate(picked):
        dst = tmp_path / f"copy-{n}.jsonl"
        cut_mid_line = 0
        steps = 0
        for _ in append_chunks(src, dst, rng):
            steps += 1
            data = dst.read_bytes()
            assert src.read_bytes().startswith(data)
            cut_mid_line += not data.endswith(b"\n")
        assert dst.read_bytes() == src.read_bytes()
        assert steps >= src.stat().st_size // 262_144
        if steps > 2:
            assert cut_mid_line >= 1
    assert picked[0].stat().st_size > 3_000_000  # the huge line went through in many pieces


def test_generate_to_size_lands_within_ten_percent(tmp_path: Path) -> None:
    target = 20_000_000
    stats = generate_to_size(tmp_path, target, seed=4)
    assert 0.9 * target <= stats.bytes <= 1.1 * target
    assert stats.bytes == sum(p.stat().st_size for p in _files(tmp_path))
    assert all(stats.traps[name] >= 1 for name in TRAP_NAMES)
    assert 40 <= stats.files <= 160  # ~250 kB per file
