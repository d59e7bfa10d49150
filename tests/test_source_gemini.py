"""Gemini CLI source: real fixtures, ccusage's rules, a generated corpus, parity, a live daemon.

Expected numbers come from ``fixtures/real/SOURCES.md`` (#10, #11), from values computed here
by hand, from the generator's own recount (``tests/gen_gemini_opencode.py``), or from ccusage
20.0.24 itself (parity) — never from sufd's output.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sufd.prices.lookup import gemini_candidates
from sufd.prices.models_dev import MODELS_DEV
from sufd.prices.table import PriceTable
from sufd.settings import load
from sufd.sources import SOURCES
from sufd.sources.base import FileContext, Record
from sufd.sources.gemini import GeminiCli
from tests.ccusage import REPO, run_ccusage
from tests.conftest import SufdEnv, make_env, shared_fixture
from tests.daemon_harness import (
    Harness,
    wait_until,
)
from tests.gen_gemini_opencode import (
    Expected,
    Spec,
    generate_gemini,
)

ZONES = ("UTC", "America/Los_Angeles", "Asia/Kathmandu")
TOKENS = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")
SRC = GeminiCli()
PRICES = PriceTable.bundled()


def parse(path: Path, root: Path | None = None) -> list[Record]:
    return SRC.parse_document(path.read_bytes(), FileContext(path, root or path.parent))


def line(**fields: Any) -> str:
    return json.dumps(fields) + "\n"


def report(env: SufdEnv, zone: str = "UTC") -> dict[str, Any]:
    out = env.run("ctl", "report", "daily", "--json", "--source", "gemini", "--timezone", zone)
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def chats(home: Path, project: str = "proj") -> Path:
    folder = home / ".gemini" / "tmp" / project / "chats"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------------------------------------
# registry, roots


def test_registered_as_one_document_source_owning_json_and_jsonl() -> None:
    src = SOURCES["gemini"]
    assert isinstance(src, GeminiCli) and src.kind == "document"
    assert src.owns(Path("/x/session-a.jsonl")) and src.owns(Path("/x/session-a.json"))
    assert not src.owns(Path("/x/notes.txt"))


def test_roots_gemini_data_dir_else_cli_home_and_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GEMINI_DATA_DIR", raising=False)
    monkeypatch.delenv("GEMINI_CLI_HOME", raising=False)
    assert SRC.default_roots(load()) == [tmp_path / ".gemini" / "tmp"]
    monkeypatch.setenv("GEMINI_CLI_HOME", str(tmp_path / "alt"))
    assert SRC.default_roots(load()) == [
        tmp_path / "alt" / ".gemini" / "tmp",
        tmp_path / ".gemini" / "tmp",
    ]
    monkeypatch.setenv("GEMINI_DATA_DIR", f"{tmp_path}/a, ,{tmp_path}/b")
    assert SRC.default_roots(load()) == [tmp_path / "a", tmp_path / "b"]


# ------------------------------------------------------------------------------------------
# real fixtures (#10, #11)


def test_real_jsonl_fixture_in_process() -> None:
    recs = parse(shared_fixture("gemini", "agentsessions-gemini-jsonl_v040.jsonl"))
    got = [(r.model, r.input, r.output, r.cache_read, r.total) for r in recs]
    # SOURCES.md #10: the 2nd message normalises to input 567 + cache read 11 502.
    assert got == [
        ("gemini-3-flash-preview", 11_855, 81, 0, 11_936),
        ("gemini-3-flash-preview", 567, 147, 11_502, 12_216),
    ]
    assert {r.session for r in recs} == {"gemini_stage0_jsonl"}


def test_real_json_fixture_in_process() -> None:
    recs = parse(shared_fixture("gemini", "agentsessions-gemini-large.json"))
    # SOURCES.md #11: one message with tokens (m2b has none, "model" rows are not "gemini").
    assert [(r.model, r.input, r.output, r.total) for r in recs] == [
        ("gemini-3-flash-preview", 100, 10, 110)
    ]
    assert recs[0].session == "session-2025-12-16T23-47-b4f17607"


@pytest.mark.integration
def test_real_fixtures_ingest_and_report(sufd_env: SufdEnv) -> None:
    folder = chats(sufd_env.home)
    for name in ("agentsessions-gemini-jsonl_v040.jsonl", "agentsessions-gemini-large.json"):
        shutil.copyfile(shared_fixture("gemini", name), folder / name)  # into the temp home
    sufd_env.run("ingest")
    days = {r["period"]: r for r in report(sufd_env)["daily"]}
    assert sorted(days) == ["2025-12-16", "2026-04-29"]
    d = days["2026-04-29"]
    assert [d[k] for k in (*TOKENS, "totalTokens")] == [12_422, 228, 0, 11_502, 24_152]
    # gemini-3-flash-preview at models.dev's $0.50 / $3.00 / $0.05 per Mtok
    assert d["totalCost"] == pytest.approx(0.0074701, abs=1e-12)
    d = days["2025-12-16"]
    assert [d[k] for k in (*TOKENS, "totalTokens")] == [100, 10, 0, 0, 110]
    assert d["totalCost"] == pytest.approx(0.00008, abs=1e-12)


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def shift_iso(text: str, delta_ms: int) -> str:
    """Every ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in ``text`` moved by ``delta_ms``."""

    def move(m: re.Match[str]) -> str:
        t = datetime.strptime(m[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        t += timedelta(milliseconds=delta_ms)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    return _ISO.sub(move, text)


@pytest.mark.integration
def test_many_chats_from_the_real_fixtures_reconcile_and_equal_ccusage(sufd_env: SufdEnv) -> None:
    """#10 and #11 copied into 240 chats (new session ids, times shifted 7 h per copy),
    against SOURCES.md's numbers per copy and against ccusage."""
    jsonl = shared_fixture("gemini", "agentsessions-gemini-jsonl_v040.jsonl").read_text()
    legacy = shared_fixture("gemini", "agentsessions-gemini-large.json").read_text()
    # SOURCES.md #10 (the 2nd normalised to input 567 + cache read 11 502) and #11:
    # (file, message timestamp, input, output, cache read, total)
    per_copy = (
        (0, "2026-04-29T21:39:35.125Z", 11_855, 81, 0, 11_936),
        (0, "2026-04-29T21:39:45.996Z", 567, 147, 11_502, 12_216),
        (1, "2025-12-16T23:47:02.000Z", 100, 10, 0, 110),
    )
    want: dict[str, list[float]] = {}
    for k in range(120):
        shift = k * 7 * 3_600_000
        folder = chats(sufd_env.home, f"p{k % 9}")
        for n, (name, text) in enumerate((("a.jsonl", jsonl), ("b.json", legacy))):
            text = text.replace("gemini_stage0_jsonl", f"s-{k}").replace("b4f17607", f"{k:08d}")
            (folder / f"session-{k:03d}-{name}").write_text(shift_iso(text, shift))
            for which, stamp, inp, out, cr, total in per_copy:
                if which != n:
                    continue
                day = shift_iso(stamp, shift)[:10]
                row = want.setdefault(day, [0, 0, 0, 0, 0, 0.0])
                for i, v in enumerate((1, inp, out, cr, total)):
                    row[i] += v
                # gemini-3-flash-preview: models.dev $0.50 / $3.00 / $0.05 per Mtok
                row[5] += (inp * 0.5 + out * 3 + cr * 0.05) / 1e6
    sufd_env.run("ingest", timeout=120)
    data = report(sufd_env)
    got = {
        d["period"]: [
            d["events"], d["inputTokens"], d["outputTokens"], d["cacheReadTokens"],
            d["totalTokens"], d["totalCost"],
        ]
        for d in data["daily"]
    }  # fmt: skip
    assert {k: v[:5] for k, v in got.items()} == {k: v[:5] for k, v in want.items()}
    assert all(math.isclose(got[k][5], want[k][5], rel_tol=1e-9) for k in want)
    assert data["totals"]["events"] == 120 * 3
    problems = compare(run_ccusage(sufd_env.home, "gemini", "daily", "--timezone", "UTC"), data)
    assert not problems, "\n".join(problems[:40])


# ------------------------------------------------------------------------------------------
# ccusage's rules, by hand


def test_jsonl_rules(tmp_path: Path) -> None:
    path = chats(tmp_path) / "session-x.jsonl"
    t = "2026-03-02T10:00:00.000Z"
    path.write_text(
        line(sessionId="s1", projectHash="h", startTime=t)
        # re-emitted id: the last emission with tokens wins, an all-zero one changes nothing
        + line(id="a", timestamp=t, type="gemini", model="gemini-2.5-flash", tokens={"input": 5})
        + line(id="a", timestamp=t, type="gemini", tokens={"input": 100, "output": 10})
        + line(id="a", timestamp=t, type="gemini", tokens={"input": 0, "output": 0, "total": 0})
        + line(**{"$set": {"model": "not-a-top-level-model"}})
        + line(**{"$rewindTo": "a"})
        # cached inside input (total == input+output+thoughts+tool), thoughts, tool tokens
        + line(
            id="b",
            timestamp=t,
            type="gemini",
            tokens={
                "input": 15_327,
                "output": 23,
                "cached": 11_526,
                "thoughts": 919,
                "tool": 7,
                "total": 16_276,
            },
        )
        # total that does not add up: cached kept beside the whole input; floats truncated
        + line(
            id="c",
            timestamp=t,
            type="gemini",
            model="gemini-3-flash",
            tokens={"prompt": 1000.9, "output": 100, "cached": 400, "total": 5000},
        )
        + line(timestamp=t, type="gemini", tokens={"input": 1, "output": 0, "total": 3})
        + "{not json\n"
    )
    recs = {
        r.key.rsplit("#", 1)[-1].rsplit("@", 1)[-1]: r
        for r in parse(path, tmp_path / ".gemini" / "tmp")
    }
    assert set(recs) == {"a", "b", "c", str(path.read_bytes().index(b'{"timestamp"'))}
    a, b, c = recs["a"], recs["b"], recs["c"]
    assert (a.model, a.input, a.output, a.total, a.session) == (
        "gemini-2.5-flash",
        100,
        10,
        110,
        "s1",
    )
    # formats.md §6.3's example: input 3 808, cache read 11 526, output 23, extra 919
    assert (b.model, b.input, b.cache_read, b.output, b.extra_output, b.total) == (
        "gemini-2.5-flash",
        3_808,
        11_526,
        23,
        919,
        16_276,
    )
    # missing = 5000 - (1000 + 100 + 400 + 0) → extra output (output is not 0)
    assert (c.input, c.cache_read, c.output, c.extra_output, c.total) == (
        1000,
        400,
        100,
        3500,
        5000,
    )
    last = next(r for k, r in recs.items() if k not in "abc")
    assert (last.output, last.total) == (2, 3)  # output 0: the missing 2 become output
    assert all(r.project == "proj" for r in recs.values())
    assert a.ts_ms == 1_772_445_600_000


def test_json_message_without_timestamp_uses_start_time(tmp_path: Path) -> None:
    path = chats(tmp_path) / "session-y.json"
    path.write_text(
        json.dumps(
            {
                "sessionId": "s2",
                "startTime": "2026-03-03T00:00:00Z",
                "messages": [
                    {
                        "id": "m",
                        "type": "gemini",
                        "model": "gemini-2.5-pro",
                        "tokens": {"input": 9},
                    },
                    {
                        "id": "m",
                        "type": "gemini",
                        "model": "gemini-2.5-pro",
                        "tokens": {"input": 1},
                    },
                    {"id": "n", "type": "gemini", "tokens": {"input": 9}},  # no model: skipped
                ],
            }
        )
    )
    recs = parse(path, tmp_path / ".gemini" / "tmp")
    assert [(r.input, r.ts_ms) for r in recs] == [(9, 1_772_496_000_000), (1, 1_772_496_000_000)]
    assert len({r.key for r in recs}) == 2  # ccusage counts a repeated id in .json twice


def test_pricing_candidates_tiers_and_unknown_models() -> None:
    def rec(model: str, inp: int, out: int = 0, cr: int = 0, extra: int = 0) -> Record:
        return Record(
            key="k",
            ts_ms=0,
            session="s",
            project="p",
            model=model,
            price_model=model,
            pricing="anthropic",
            input=inp,
            output=out,
            cache_read=cr,
            extra_output=extra,
        )

    assert gemini_candidates("m")[:2] == ["google/m", "gemini/m"]
    # google/gemini-3-flash is $0.40/$2.40, bare gemini-3-flash $0.50/$3.00: prefix first
    assert SRC.cost(rec("gemini-3-flash", 1_000_000, 1_000_000), PRICES) == pytest.approx(2.8)
    # gemini-2.5-pro: input + cache reads above 200k → the whole request at the tier rates
    assert SRC.cost(rec("gemini-2.5-pro", 150_000, 1000, 100_000), PRICES) == pytest.approx(0.415)
    assert SRC.cost(rec("gemini-2.5-pro", 150_000, 1000), PRICES) == pytest.approx(0.1975)
    # output and thoughts never move the tier; thoughts cost output
    assert SRC.cost(rec("gemini-2.5-pro", 1000, 10, extra=300_000), PRICES) == pytest.approx(
        3.00135
    )
    assert SRC.cost(rec("gemini-foo-9", 10, 10), PRICES) is None


def _build_models_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_models_dev", REPO / "packaging" / "build_models_dev.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_embedded_models_dev_table_equals_ccusage_binary(tmp_path: Path) -> None:
    """``sufd/data/models_dev.json`` is what ``packaging/build_models_dev.py`` makes of the
    pinned ccusage binary today (``.ci/run`` installs it), byte for byte, and what sufd loads."""
    build = _build_models_dev()
    binary = build.DEFAULT_BINARY
    if not binary.is_file():
        pytest.skip(f"{binary} not installed (the linux-x64 build of the pinned ccusage)")
    out = tmp_path / "models_dev.json"
    assert build.main(["--binary", str(binary), "--output", str(out)]) == 0
    assert out.read_text() == (REPO / "sufd" / "data" / "models_dev.json").read_text()
    assert build.models_dev_gemini(build.ccusage_snapshots(binary)) == MODELS_DEV


# ------------------------------------------------------------------------------------------
# incremental: rewrites and truncation end on the file's last values


@pytest.mark.integration
def test_rewrite_truncate_and_append_end_on_last_values(sufd_env: SufdEnv) -> None:
    path = chats(sufd_env.home) / "session-z.jsonl"
    t = "2026-03-05T10:00:00.000Z"
    head = line(sessionId="z", startTime=t)

    def msg(i: str, inp: int) -> str:
        return line(
            id=i, timestamp=t, type="gemini", model="gemini-2.5-flash", tokens={"input": inp}
        )

    def day() -> list[int]:
        d = report(sufd_env)["daily"]
        return [d[0]["inputTokens"], d[0]["totalTokens"]] if d else []

    path.write_text(head + msg("a", 100) + msg("b", 10))
    sufd_env.run("ingest")
    assert day() == [110, 110]
    path.write_text(head + msg("a", 100) + msg("b", 10) + msg("a", 300))
    sufd_env.run("ingest")
    assert day() == [310, 310]
    path.write_text(head + msg("a", 50))  # truncated and rewritten: re-read from 0
    sufd_env.run("ingest")
    assert day() == [60, 60]  # "b" is kept (never retracted), "a" ends on the last line
    with path.open("a") as f:
        f.write(msg("a", 70))
    sufd_env.run("ingest")
    assert day() == [80, 80]


# ------------------------------------------------------------------------------------------
# generated corpus: recount and parity with ccusage


SPEC = Spec(seed=20260301, sessions=60, turns=(4, 16), days=14)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[SufdEnv, Expected]:
    env = make_env(tmp_path_factory.mktemp("gemini-corpus"))
    expected = generate_gemini(env.home, SPEC)
    env.run("ingest")
    return env, expected


@pytest.mark.integration
def test_corpus_has_every_trap_and_reconciles(corpus: tuple[SufdEnv, Expected]) -> None:
    env, expected = corpus
    traps = (
        "re_emitted_id",
        "zero_re_emission",
        "rewind",
        "cached_inside_input",
        "cached_total_mismatch",
        "thoughts",
        "tool",
        "total_excess",
        "model_carried",
        "no_id",
        "long_context",
        "legacy_json",
        "json_no_timestamp",
    )
    assert [t for t in traps if expected.traps[t] < 1] == []
    got: dict[tuple[str, str], list[int]] = {}
    cost: dict[tuple[str, str], float] = {}
    for row in report(env)["daily"]:
        for b in row["modelBreakdowns"]:
            key = (row["period"], b["modelName"])
            got[key] = [b[k] for k in TOKENS]
            cost[key] = b["cost"]
    assert got == {k: v[:4] for k, v in expected.tokens.items()}
    bad = [k for k in got if not math.isclose(cost[k], expected.cost[k], rel_tol=1e-6)]
    assert bad == []
    totals = report(env)["totals"]
    assert totals["totalTokens"] == expected.totals()[4]


def compare(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Differences between ``ccusage <agent> daily --json`` (``date``) and sufd (``period``)."""
    problems = []
    want_days = {r["date"]: r for r in want["daily"]}
    got_days = {r["period"]: r for r in got["daily"]}
    if set(want_days) != set(got_days):
        problems.append(f"days: ccusage {sorted(want_days)}, sufd {sorted(got_days)}")
    for day in sorted(set(want_days) & set(got_days)):
        w, g = want_days[day], got_days[day]
        problems += [
            f"{day} {k}: {w[k]} vs {g[k]}" for k in (*TOKENS, "totalTokens") if w[k] != g[k]
        ]
        if not math.isclose(w["totalCost"], g["totalCost"], rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"{day} cost {w['totalCost']!r} vs {g['totalCost']!r}")
        wm = {m["modelName"]: m for m in w["modelBreakdowns"]}
        gm = {m["modelName"]: m for m in g["modelBreakdowns"]}
        if set(wm) != set(gm):
            problems.append(f"{day} models {sorted(wm)} vs {sorted(gm)}")
        for name in set(wm) & set(gm):
            problems += [
                f"{day} {name} {k}: {wm[name][k]} vs {gm[name][k]}"
                for k in TOKENS
                if wm[name][k] != gm[name][k]
            ]
            if not math.isclose(wm[name]["cost"], gm[name]["cost"], rel_tol=1e-9, abs_tol=1e-12):
                problems.append(f"{day} {name} cost {wm[name]['cost']!r} vs {gm[name]['cost']!r}")
    for k in (*TOKENS, "totalTokens"):
        if want["totals"][k] != got["totals"][k]:
            problems.append(f"totals {k}: {want['totals'][k]} vs {got['totals'][k]}")
    return problems


@pytest.mark.integration
@pytest.mark.parametrize("zone", ZONES)
def test_daily_equals_ccusage_gemini_daily(corpus: tuple[SufdEnv, Expected], zone: str) -> None:
    env, _ = corpus
    want = run_ccusage(env.home, "gemini", "daily", "--timezone", zone)
    problems = compare(want, report(env, zone))
    assert not problems, f"{len(problems)} differences in {zone}:\n" + "\n".join(problems[:40])


# ------------------------------------------------------------------------------------------
# live daemon


def events(env: SufdEnv, source: str) -> dict[str, int]:
    if not env.db.exists():
        return {}
    try:
        with contextlib.closing(env.connect()) as conn:
            rows = conn.execute(
                "SELECT key, input FROM events WHERE source = ?", (source,)
            ).fetchall()
    except Exception:
        return {}
    return {str(k): int(v) for k, v in rows}


@pytest.mark.integration
def test_live_appended_jsonl_line_ingested_within_2s(harness: Harness) -> None:
    h = harness
    path = chats(h.home) / "session-live.jsonl"
    t = "2026-03-06T10:00:00.000Z"
    first = line(id="a", timestamp=t, type="gemini", model="gemini-2.5-flash", tokens={"input": 5})
    path.write_text(line(sessionId="live", startTime=t) + first)
    h.start()
    first_event = {f"{path}#a": 5}
    wait_until(
        lambda: events(h.env, "gemini") == first_event,
        20,
        interval=0.02,
        what=h.with_diagnostics(f"{first_event} in the ledger"),
    )
    with path.open("a") as f:
        f.write(line(id="b", timestamp=t, type="gemini", tokens={"input": 7}))
        f.write(line(id="a", timestamp=t, type="gemini", tokens={"input": 9}))
        f.flush()
        os.fsync(f.fileno())
    appended = {f"{path}#a": 9, f"{path}#b": 7}
    t0 = time.monotonic()
    wait_until(
        lambda: events(h.env, "gemini") == appended,
        2,
        interval=0.02,
        what=lambda: f"{appended} in the ledger; have {events(h.env, 'gemini')}\n{h.diagnostics()}",
    )
    assert time.monotonic() - t0 < 2
