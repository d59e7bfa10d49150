"""Issue 2 benchmark: sufd's ledger ingest and reports against ccusage 20.0.24, in one command.

``python -m benchmarks.ingest_bench`` generates a ~500 MB corpus (~2,000 files) with
``tests/corpus.py`` into a fresh temporary directory, then measures, in this order:

1. cold ``sufd ingest`` (fresh XDG dirs): wall time, MB/s, peak RSS;
2. ``ccusage daily --json --offline`` on the same home: the first run and the median of 3 more;
   then 4 more cold ingests (each into a fresh store) alternating with 4 more ccusage runs: the
   target compares the median of sufd's 5 cold ingests with the median of the 5 ccusage runs
   paired with them (one run of each swings by 20 % on a shared VM, either way);
3. warm ``sufctl report daily --json`` (interpreter start included): median and p95 of 10 runs
   after 2 warm-ups, and how much faster than ccusage's warm median it is;
4. a no-change re-ingest (``sufd ingest`` again): the median of 5 runs;
5. peak RSS of cold ingest on a corpus of 1/5 the size and on one with a single very large file;
6. that sufd's daily totals equal ccusage's (tokens exact, cost within 1e-9 relative).

Every command runs as a subprocess whose whole environment is built here: HOME is the corpus
home, the XDG dirs are under the work dir, ``TZ=UTC``, and nothing else of the caller's
environment (no ``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``SUFD_*``, ``CCUSAGE_*``) except PATH.
Wall time is ``time.perf_counter()`` around spawn and reap; peak RSS is ``ru_maxrss`` of the
rusage that ``os.wait4()`` returns for that one child (KiB on Linux; it covers the child and the
descendants it reaped, so ccusage's Node wrapper and its native binary are counted together).

Python bytecode: the caller's ``PYTHONDONTWRITEBYTECODE`` is not passed on; instead
``PYTHONPYCACHEPREFIX`` points into the work dir and a warm-up run fills it before anything is
timed, so sufd is measured as an installed package (with compiled bytecode) would run.

The results table goes to stdout (progress to stderr); ``--json-out`` writes every figure, the
targets, the machine and the corpus as JSON. The exit status is 0 when the run completed and the
correctness cross-check passed, 1 when the cross-check failed (timing targets never change it),
2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_CCUSAGE,
    BenchError,
    Run,
    ccusage_version,
    command_output,
    cpu_model,
    git_describe,
    isolated_env,
    loadavg,
    log,
    new_parser,
    nproc,
    percentile,
    run_measured,
    utc_now,
    work_dir,
    write_json,
)
from benchmarks.common import Check as _Check
from tests.corpus import CorpusSpec, CorpusStats, generate, generate_to_size

__all__ = ["FIGURES", "main"]

DEFAULT_SIZE_MB = 500.0
QUICK_SIZE_MB = 50.0
SMALL_FRACTION = 0.2  # the "1/5 of the size" corpus
BIG_FILE_FRACTION = 0.4  # one file of 200 MB next to a 500 MB corpus
REPORT_WARMUPS = 2
REPORT_RUNS = 10
CCUSAGE_WARM_RUNS = 3
REINGEST_RUNS = 5
# More cold ingests (each into a fresh store) alternating with ccusage runs: on a shared
# machine one run of each varies by 20 % from one minute to the next, both ways.
COLD_PAIRS = 4

# targets (issue 2)
COLD_RATIO_MAX = 3.0  # cold sufd ingest <= 3x ccusage (cold vs cold is the baseline)
RSS_MAX_MB = 300.0  # peak RSS of any cold ingest, in MB (10^6 bytes)
RSS_GROWTH_MAX = 1.25  # "not growing": 5x the data may cost at most 25 % more peak RSS
REPORT_MAX_MS = 150.0  # warm `sufctl report daily --json`, interpreter start included
REPORT_SPEEDUP_MIN = 5.0  # ... and at least 5x faster than ccusage's warm median
REINGEST_MAX_S = 0.5  # no-change re-ingest
STORE_BYTES_PER_EVENT_MAX = 400.0  # issue 6: the store after the cold ingest, all included
COST_REL_TOL = 1e-9

TOKEN_KEYS = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")

FIGURES = (
    "corpus_bytes",
    "corpus_files",
    "corpus_jsonl_files",
    "corpus_usage_lines",
    "sufd_events",
    "cold_ingest_s",
    "cold_ingest_cpu_s",
    "cold_ingest_mb_per_s",
    "cold_ingest_peak_rss_mb",
    "ccusage_cold_s",
    "ccusage_cold_cpu_s",
    "ccusage_warm_median_s",
    "ccusage_peak_rss_mb",
    "ccusage_native_warm_median_s",
    "cold_ratio_vs_ccusage_cold",
    "cold_ratio_vs_ccusage_warm",
    "paired_cold_ingest_s",
    "paired_ccusage_s",
    "cold_ratio_paired_median",
    "report_median_ms",
    "report_p95_ms",
    "report_speedup_vs_ccusage_warm",
    "report_speedup_vs_ccusage_native_warm",
    "reingest_s",
    "small_corpus_bytes",
    "small_cold_ingest_s",
    "small_peak_rss_mb",
    "big_file_bytes",
    "big_cold_ingest_s",
    "big_peak_rss_mb",
    "rss_growth_main_vs_small",
    "rss_growth_big_vs_small",
    "correctness_days",
    "correctness_passed",
    "store_bytes",
    "store_bytes_per_event",
)
"""Keys of ``figures`` in the JSON output (``ccusage_native_*`` may be null when the native
ccusage binary cannot be found next to the wrapper)."""


# ------------------------------------------------------------------------------------------------
# running and measuring commands


@dataclass(frozen=True)
class User:
    """An isolated user: HOME (the corpus home) and XDG dirs, all under ``root``."""

    root: Path
    pycache: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    def env(self) -> dict[str, str]:
        return isolated_env(self.root, self.pycache)

    def run(self, argv: Sequence[str], step: str, check: bool = True) -> Run:
        return run_measured(argv, self.env(), self.home, self.root / "out" / step, check)

    def files(self) -> set[str]:
        """Every file below ``root`` except the benchmark's own captured output."""
        return {
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and p.relative_to(self.root).parts[0] != "out"
        }


@dataclass(frozen=True)
class Tools:
    """The commands under test."""

    sufd: tuple[str, ...]
    sufctl: tuple[str, ...]
    ccusage: Path
    ccusage_native: Path | None
    ccusage_version: str


def find_tools(ccusage: Path) -> Tools:
    """sufd/sufctl of this interpreter's environment, and the pinned ccusage."""
    bindir = Path(sys.executable).parent
    sufd: tuple[str, ...] = (str(bindir / "sufd"),)
    sufctl: tuple[str, ...] = (str(bindir / "sufctl"),)
    if not (bindir / "sufd").is_file() or not (bindir / "sufctl").is_file():
        sufd, sufctl = (sys.executable, "-m", "sufd"), (sys.executable, "-m", "sufd.cli.sufctl")
    version = ccusage_version(ccusage, warn=lambda message: print(message, file=sys.stderr))
    return Tools(sufd, sufctl, ccusage, _native_ccusage(ccusage), version)


def _native_ccusage(wrapper: Path) -> Path | None:
    """The platform binary the npm wrapper (``node_modules/ccusage/src/cli.js``) spawns."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    modules = wrapper.resolve().parent.parent.parent  # node_modules
    candidate = modules / "@ccusage" / f"ccusage-{sys.platform}-{arch}" / "bin" / "ccusage"
    return candidate if arch and candidate.is_file() else None


def drop_page_cache() -> bool:
    """Flush and drop the OS page cache (Linux, root only); False when not possible."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# corpora


def describe_corpus(home: Path, stats: CorpusStats, seconds: float) -> dict[str, Any]:
    files = [p for p in home.rglob("*") if p.is_file()]
    sizes = sorted(p.stat().st_size for p in files if p.suffix == ".jsonl")
    return {
        "bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "jsonl_files": len(sizes),
        "largest_file_bytes": sizes[-1] if sizes else 0,
        "median_jsonl_bytes": int(statistics.median(sizes)) if sizes else 0,
        "claude_usage_lines": stats.claude_usage_lines,
        "codex_token_count_lines": stats.codex_token_count_lines,
        "usage_lines": stats.claude_usage_lines + stats.codex_token_count_lines,
        "generate_s": round(seconds, 2),
    }


def make_corpus(home: Path, target_bytes: int, seed: int) -> dict[str, Any]:
    log(f"generating a {target_bytes / 1e6:,.0f} MB corpus in {home}")
    start = time.perf_counter()
    stats = generate_to_size(home, target_bytes, seed)
    info = describe_corpus(home, stats, time.perf_counter() - start)
    info["generator"] = f"generate_to_size(home, {target_bytes}, seed={seed})"
    return info


def make_big_file_corpus(home: Path, scratch: Path, target_bytes: int, seed: int) -> dict[str, Any]:
    """One Claude session (no traps) with enough turns for one file of ~``target_bytes``.

    The bytes per turn are measured on a 100-turn probe of the same spec first.
    """
    probe_turns = 100
    spec = CorpusSpec(
        seed=seed,
        claude_sessions=1,
        codex_sessions=0,
        turns_per_session=(probe_turns, probe_turns),
        days=30,
        traps=False,
    )
    probe = generate(scratch, spec)
    shutil.rmtree(scratch)
    turns = max(1, round(target_bytes / (probe.bytes / probe_turns)))
    spec = replace(spec, turns_per_session=(turns, turns))
    log(
        f"generating one Claude session of {turns:,} turns"
        f" (~{target_bytes / 1e6:,.0f} MB) in {home}"
    )
    start = time.perf_counter()
    stats = generate(home, spec)
    info = describe_corpus(home, stats, time.perf_counter() - start)
    info["generator"] = (
        f"generate(home, CorpusSpec(seed={seed}, claude_sessions=1, codex_sessions=0,"
        f" turns_per_session=({turns}, {turns}), days=30, traps=False))"
    )
    return info


# ------------------------------------------------------------------------------------------------
# measurements


def cold_ingest(
    user: User, tools: Tools, corpus_bytes: int, step: str, drop: bool
) -> dict[str, Any]:
    dropped = drop_page_cache() if drop else False
    log(f"{step}: cold sufd ingest")
    run = user.run([*tools.sufd, "ingest", "--json"], step)
    summary = run.json()
    log(f"{step}: {run.wall_s:.2f} s, peak RSS {run.rss_mb:.1f} MB")
    return {
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "mb_per_s": corpus_bytes / 1e6 / run.wall_s,
        "peak_rss_mb": run.rss_mb,
        "page_cache_dropped": dropped,
        "summary": summary,
    }


def store_footprint(user: User) -> dict[str, Any]:
    """The ledger's size after a WAL checkpoint (main file + WAL), per event and per object.

    Per table and index from the ``dbstat`` virtual table when SQLite has it; else only the
    page counts of the whole file.
    """
    db = Path(user.env()["XDG_DATA_HOME"]) / "sufd" / "ledger.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        busy, wal_pages, moved = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        files = {"db": db, "wal": Path(f"{db}-wal")}
        sizes = {k: p.stat().st_size if p.exists() else 0 for k, p in files.items()}
        events = int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        pages = {
            name: int(conn.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_size", "page_count", "freelist_count")
        }
        try:
            rows = conn.execute(
                "SELECT name, SUM(pgsize), COUNT(*) FROM dbstat GROUP BY name"
                " ORDER BY SUM(pgsize) DESC"
            ).fetchall()
            method = "dbstat"
        except sqlite3.OperationalError:
            rows, method = [], "page counts (this SQLite has no dbstat)"
    finally:
        conn.close()
    total = sizes["db"] + sizes["wal"]
    per_event = total / max(events, 1)
    log(f"store: {total / 1e6:,.1f} MB for {events:,} events, {per_event:.0f} B/event")
    return {
        "db_bytes": sizes["db"],
        "wal_bytes": sizes["wal"],
        "bytes": total,
        "events": events,
        "bytes_per_event": per_event,
        "checkpoint": {"busy": busy, "wal_pages": wal_pages, "checkpointed": moved},
        **pages,
        "measured_with": method,
        "objects": {
            name: {"bytes": size, "pages": n, "bytes_per_event": size / max(events, 1)}
            for name, size, n in rows
        },
    }


def ccusage_runs(user: User, tools: Tools, drop: bool) -> tuple[dict[str, Any], Any]:
    """First run (with a list of files it created under the user's dirs) and warm runs."""
    argv = [str(tools.ccusage), "daily", "--json", "--offline"]
    dropped = drop_page_cache() if drop else False
    before = user.files()
    log("ccusage daily --json --offline: first (cold) run")
    cold = user.run(argv, "ccusage-cold")
    created = sorted(user.files() - before)
    report = cold.json()
    warm = [user.run(argv, f"ccusage-warm-{i}") for i in range(CCUSAGE_WARM_RUNS)]
    stable = all(run.json() == report for run in warm)
    native: list[Run] = []
    if tools.ccusage_native is not None:
        native_argv = [str(tools.ccusage_native), "daily", "--json", "--offline"]
        native = [user.run(native_argv, f"ccusage-native-{i}") for i in range(CCUSAGE_WARM_RUNS)]
    result = {
        "argv": argv,
        "cold_s": cold.wall_s,
        "cold_cpu_s": cold.cpu_s,
        "warm_s": [r.wall_s for r in warm],
        "warm_cpu_s": [r.cpu_s for r in warm],
        "warm_median_s": statistics.median(r.wall_s for r in warm),
        "peak_rss_mb": max(r.rss_mb for r in [cold, *warm]),
        "files_created_by_first_run": created[:50],
        "files_created_count": len(created),
        "warm_output_equals_first": stable,
        "page_cache_dropped": dropped,
        "native_binary": str(tools.ccusage_native) if tools.ccusage_native else None,
        "native_warm_s": [r.wall_s for r in native],
        "native_warm_median_s": statistics.median(r.wall_s for r in native) if native else None,
    }
    log(f"ccusage: cold {cold.wall_s:.2f} s, warm median {result['warm_median_s']:.2f} s")
    return result, report


def cold_pairs(
    work: Path, pycache: Path, tools: Tools, main: User, cold: dict[str, Any], cc: dict[str, Any]
) -> dict[str, Any]:
    """The first cold ingest and ccusage run, then ``COLD_PAIRS`` more of each, alternating:
    each ingest into a fresh store of the same corpus (the main user's HOME)."""
    argv = [str(tools.ccusage), "daily", "--json", "--offline"]
    sufd_s, cc_s = [cold["wall_s"]], [cc["cold_s"]]
    for i in range(COLD_PAIRS):
        user = User(work / f"pair-{i}", pycache)
        user.root.mkdir(parents=True)
        user.home.symlink_to(main.home, target_is_directory=True)
        log(f"pair {i + 1}/{COLD_PAIRS}: cold sufd ingest, then ccusage")
        sufd_s.append(user.run([*tools.sufd, "ingest", "--json"], f"pair-{i}-ingest").wall_s)
        cc_s.append(main.run(argv, f"pair-{i}-ccusage").wall_s)
        shutil.rmtree(user.root)
    ratio = statistics.median(sufd_s) / statistics.median(cc_s)
    log(f"paired: sufd median {statistics.median(sufd_s):.2f} s, ccusage median"
        f" {statistics.median(cc_s):.2f} s, ratio {ratio:.2f}x")  # fmt: skip
    return {"sufd_s": sufd_s, "ccusage_s": cc_s, "ratio": ratio}


def warm_reports(user: User, tools: Tools) -> tuple[dict[str, Any], Any]:
    argv = [*tools.sufctl, "report", "daily", "--json"]
    log(f"sufctl report daily --json: {REPORT_WARMUPS} warm-ups, {REPORT_RUNS} timed runs")
    for i in range(REPORT_WARMUPS):
        user.run(argv, f"report-warmup-{i}")
    runs = [user.run(argv, f"report-{i}") for i in range(REPORT_RUNS)]
    times = [r.wall_s for r in runs]
    result: dict[str, Any] = {
        "argv": argv,
        "runs_s": times,
        "runs_cpu_s": [r.cpu_s for r in runs],
        "median_s": statistics.median(times),
        "p95_s": percentile(times, 95),  # nearest rank: of 10 runs, the slowest
        "peak_rss_mb": max(r.rss_mb for r in runs),
    }
    log(f"report: median {result['median_s'] * 1e3:.0f} ms, p95 {result['p95_s'] * 1e3:.0f} ms")
    return result, runs[-1].json()


def reingest(user: User, tools: Tools) -> dict[str, Any]:
    log(f"no-change re-ingest, {REINGEST_RUNS} runs")
    runs = [
        user.run([*tools.sufd, "ingest", "--json"], f"reingest-{i}") for i in range(REINGEST_RUNS)
    ]
    summaries = [run.json() for run in runs]
    return {
        "wall_s": statistics.median(run.wall_s for run in runs),
        "runs_s": [run.wall_s for run in runs],
        "cpu_s": statistics.median(run.cpu_s for run in runs),
        "peak_rss_mb": max(run.rss_mb for run in runs),
        "read_nothing": all(
            summary.get("bytes_read") == 0 and summary.get("events_new") == 0
            for summary in summaries
        ),
        "summary": summaries[0],
    }


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=COST_REL_TOL, abs_tol=0.0)


def _compare_row(where: str, ours: dict[str, Any], theirs: dict[str, Any], cost: str) -> list[str]:
    problems = [
        f"{where} {key}: sufd {ours.get(key)} != ccusage {theirs.get(key)}"
        for key in (*TOKEN_KEYS, "totalTokens")
        if key in theirs and ours.get(key) != theirs[key]
    ]
    if not _close(float(ours.get(cost, math.nan)), float(theirs.get(cost, math.nan))):
        problems.append(f"{where} cost: sufd {ours.get(cost)} != ccusage {theirs.get(cost)}")
    return problems


def cross_check(sufd_report: Any, ccusage_report: Any) -> dict[str, Any]:
    """Daily totals (and, reported apart, per-model breakdowns) of sufd against ccusage."""
    ours = {r["period"]: r for r in sufd_report["daily"]}
    theirs = {r["period"]: r for r in ccusage_report["daily"]}
    problems = [f"days only in sufd: {d}" for d in sorted(set(ours) - set(theirs))]
    problems += [f"days only in ccusage: {d}" for d in sorted(set(theirs) - set(ours))]
    for day in sorted(set(ours) & set(theirs)):
        problems += _compare_row(day, ours[day], theirs[day], "totalCost")
    problems += _compare_row("totals", sufd_report["totals"], ccusage_report["totals"], "totalCost")
    if sufd_report.get("timezone") != "UTC":
        problems.append(f"sufd reported in zone {sufd_report.get('timezone')!r}, not UTC")
    rel = [
        abs(ours[d]["totalCost"] - theirs[d]["totalCost"]) / abs(theirs[d]["totalCost"])
        for d in set(ours) & set(theirs)
        if theirs[d]["totalCost"]
    ]

    def models(report: Any) -> dict[tuple[str, str], Any]:
        return {
            (r["period"], m["modelName"]): m for r in report["daily"] for m in r["modelBreakdowns"]
        }

    ours_m, theirs_m = models(sufd_report), models(ccusage_report)
    breakdown = [f"model row only in sufd: {k}" for k in sorted(set(ours_m) - set(theirs_m))]
    breakdown += [f"model row only in ccusage: {k}" for k in sorted(set(theirs_m) - set(ours_m))]
    for key in sorted(set(ours_m) & set(theirs_m)):
        breakdown += _compare_row(f"{key[0]} {key[1]}", ours_m[key], theirs_m[key], "cost")
    return {
        "passed": not problems,
        "days": len(theirs),
        "max_cost_rel_diff": max(rel, default=0.0),
        "problems": problems[:50],
        "breakdown_rows": len(theirs_m),
        "breakdown_passed": not breakdown,
        "breakdown_problems": breakdown[:50],
    }


# ------------------------------------------------------------------------------------------------
# machine and results


def machine_info(tools: Tools) -> dict[str, Any]:
    import sufd

    return {
        "date": utc_now(),
        "nproc": nproc(),
        "cpu_model": cpu_model(),
        "free_h": command_output(["free", "-h"]) or "?",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "sqlite": sqlite3.sqlite_version,
        "ccusage": tools.ccusage_version,
        "node": command_output(["node", "--version"]) or "?",
        "sufd": sufd.__version__,
        "git": git_describe() or "?",
        "loadavg_at_start": loadavg(),
    }


@dataclass(frozen=True)
class Check(_Check):
    """One row of the results table, counted in the targets met unless it is not ``gating``."""

    gating: bool = True  # False: a PASS/FAIL shown beside the target that counts


def build_checks(fig: dict[str, Any]) -> list[Check]:
    ms = 1e3
    speed_native = fig["report_speedup_vs_ccusage_native_warm"]
    rss_max = max(fig["cold_ingest_peak_rss_mb"], fig["small_peak_rss_mb"], fig["big_peak_rss_mb"])
    return [
        Check(
            "cold `sufd ingest`",
            f"{fig['cold_ingest_s']:.2f} s ({fig['cold_ingest_mb_per_s']:.1f} MB/s;"
            f" CPU {fig['cold_ingest_cpu_s']:.1f} s)",
            "-",
            None,
        ),
        Check(
            "ccusage daily, first (cold) run",
            f"{fig['ccusage_cold_s']:.2f} s (CPU {fig['ccusage_cold_cpu_s']:.1f} s)",
            "-",
            None,
        ),
        Check(
            f"ccusage daily, warm (median of {CCUSAGE_WARM_RUNS})",
            f"{fig['ccusage_warm_median_s']:.2f} s",
            "-",
            None,
        ),
        Check(
            f"cold ingest / ccusage, medians of {COLD_PAIRS + 1} alternating runs",
            f"{fig['cold_ratio_paired_median']:.2f}x"
            f" ({statistics.median(fig['paired_cold_ingest_s']):.2f} s /"
            f" {statistics.median(fig['paired_ccusage_s']):.2f} s)",
            f"<= {COLD_RATIO_MAX:g}x",
            fig["cold_ratio_paired_median"] <= COLD_RATIO_MAX,
        ),
        Check(
            "cold ingest / ccusage, first run of each",
            f"{fig['cold_ratio_vs_ccusage_cold']:.2f}x",
            f"<= {COLD_RATIO_MAX:g}x",
            fig["cold_ratio_vs_ccusage_cold"] <= COLD_RATIO_MAX,
            gating=False,
        ),
        Check(
            "cold ingest / ccusage warm",
            f"{fig['cold_ratio_vs_ccusage_warm']:.2f}x",
            f"<= {COLD_RATIO_MAX:g}x",
            fig["cold_ratio_vs_ccusage_warm"] <= COLD_RATIO_MAX,
            gating=False,
        ),
        Check(
            "peak RSS, cold ingest (max of 3 corpora)",
            f"{rss_max:.1f} MB",
            f"<= {RSS_MAX_MB:g} MB",
            rss_max <= RSS_MAX_MB,
        ),
        Check(
            "peak RSS, main corpus",
            f"{fig['cold_ingest_peak_rss_mb']:.1f} MB ({fig['corpus_bytes'] / 1e6:,.0f} MB)",
            "-",
            None,
        ),
        Check(
            "peak RSS, 1/5 corpus",
            f"{fig['small_peak_rss_mb']:.1f} MB ({fig['small_corpus_bytes'] / 1e6:,.0f} MB)",
            "-",
            None,
        ),
        Check(
            "peak RSS, one big file",
            f"{fig['big_peak_rss_mb']:.1f} MB ({fig['big_file_bytes'] / 1e6:,.0f} MB file)",
            "-",
            None,
        ),
        Check(
            "RSS growth: main / (1/5) corpus",
            f"{fig['rss_growth_main_vs_small']:.2f}x",
            f"<= {RSS_GROWTH_MAX:g}x",
            fig["rss_growth_main_vs_small"] <= RSS_GROWTH_MAX,
        ),
        Check(
            "RSS growth: big file / (1/5) corpus",
            f"{fig['rss_growth_big_vs_small']:.2f}x",
            f"<= {RSS_GROWTH_MAX:g}x",
            fig["rss_growth_big_vs_small"] <= RSS_GROWTH_MAX,
        ),
        Check(
            f"warm `sufctl report daily --json`, median of {REPORT_RUNS}",
            f"{fig['report_median_ms']:.0f} ms",
            f"<= {REPORT_MAX_MS:g} ms",
            fig["report_median_ms"] <= REPORT_MAX_MS,
        ),
        Check(
            f"warm `sufctl report daily --json`, p95 of {REPORT_RUNS}",
            f"{fig['report_p95_ms']:.0f} ms",
            f"<= {REPORT_MAX_MS:g} ms",
            fig["report_p95_ms"] <= REPORT_MAX_MS,
            gating=False,
        ),
        Check(
            "ccusage warm / report median",
            f"{fig['report_speedup_vs_ccusage_warm']:.1f}x",
            f">= {REPORT_SPEEDUP_MIN:g}x",
            fig["report_speedup_vs_ccusage_warm"] >= REPORT_SPEEDUP_MIN,
        ),
        Check(
            "ccusage native binary warm / report median",
            "n/a" if speed_native is None else f"{speed_native:.1f}x",
            f">= {REPORT_SPEEDUP_MIN:g}x",
            None if speed_native is None else speed_native >= REPORT_SPEEDUP_MIN,
            gating=False,
        ),
        Check(
            f"no-change re-ingest, median of {REINGEST_RUNS}",
            f"{fig['reingest_s'] * ms:.0f} ms",
            f"<= {REINGEST_MAX_S * ms:g} ms",
            fig["reingest_s"] <= REINGEST_MAX_S,
        ),
        Check(
            "store footprint after cold ingest (db + WAL)",
            f"{fig['store_bytes_per_event']:.0f} B/event ({fig['store_bytes'] / 1e6:,.1f} MB)",
            f"<= {STORE_BYTES_PER_EVENT_MAX:g} B/event",
            fig["store_bytes_per_event"] <= STORE_BYTES_PER_EVENT_MAX,
        ),
        Check(
            "daily totals sufd == ccusage",
            f"{fig['correctness_days']} days",
            f"tokens exact, cost rel <= {COST_REL_TOL:g}",
            bool(fig["correctness_passed"]),
        ),
    ]


def _verdict(check: Check) -> str:
    if check.passed is None:
        return "info" if check.target == "-" else "n/a"
    word = "PASS" if check.passed else "FAIL"
    return word if check.gating else f"({word})"


def format_table(checks: Sequence[Check]) -> str:
    rows = [("figure", "value", "target", "result")]
    rows += [(c.name, c.value, c.target, _verdict(c)) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) + " |"
        for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def figures(
    corpus: dict[str, Any],
    cold: dict[str, Any],
    cc: dict[str, Any],
    report: dict[str, Any],
    again: dict[str, Any],
    rss: dict[str, dict[str, Any]],
    check: dict[str, Any],
    pairs: dict[str, Any],
) -> dict[str, Any]:
    native = cc["native_warm_median_s"]
    small, big = rss["small"], rss["big"]
    return {
        "corpus_bytes": corpus["bytes"],
        "corpus_files": corpus["files"],
        "corpus_jsonl_files": corpus["jsonl_files"],
        "corpus_usage_lines": corpus["usage_lines"],
        "sufd_events": cold["summary"].get("events_new"),
        "cold_ingest_s": cold["wall_s"],
        "cold_ingest_cpu_s": cold["cpu_s"],
        "cold_ingest_mb_per_s": cold["mb_per_s"],
        "cold_ingest_peak_rss_mb": cold["peak_rss_mb"],
        "ccusage_cold_s": cc["cold_s"],
        "ccusage_cold_cpu_s": cc["cold_cpu_s"],
        "ccusage_warm_median_s": cc["warm_median_s"],
        "ccusage_peak_rss_mb": cc["peak_rss_mb"],
        "ccusage_native_warm_median_s": native,
        "cold_ratio_vs_ccusage_cold": cold["wall_s"] / cc["cold_s"],
        "cold_ratio_vs_ccusage_warm": cold["wall_s"] / cc["warm_median_s"],
        "paired_cold_ingest_s": pairs["sufd_s"],
        "paired_ccusage_s": pairs["ccusage_s"],
        "cold_ratio_paired_median": pairs["ratio"],
        "report_median_ms": report["median_s"] * 1e3,
        "report_p95_ms": report["p95_s"] * 1e3,
        "report_speedup_vs_ccusage_warm": cc["warm_median_s"] / report["median_s"],
        "report_speedup_vs_ccusage_native_warm": None
        if native is None
        else native / report["median_s"],
        "reingest_s": again["wall_s"],
        "small_corpus_bytes": small["corpus"]["bytes"],
        "small_cold_ingest_s": small["ingest"]["wall_s"],
        "small_peak_rss_mb": small["ingest"]["peak_rss_mb"],
        "big_file_bytes": big["corpus"]["largest_file_bytes"],
        "big_cold_ingest_s": big["ingest"]["wall_s"],
        "big_peak_rss_mb": big["ingest"]["peak_rss_mb"],
        "rss_growth_main_vs_small": cold["peak_rss_mb"] / small["ingest"]["peak_rss_mb"],
        "rss_growth_big_vs_small": big["ingest"]["peak_rss_mb"] / small["ingest"]["peak_rss_mb"],
        "correctness_days": check["days"],
        "correctness_passed": check["passed"],
    }


# ------------------------------------------------------------------------------------------------
# the run


def warm_up_interpreter(work: Path, pycache: Path, tools: Tools) -> None:
    """Import every module sufd and sufctl use once, so their bytecode is cached."""
    user = User(work / "warmup", pycache)
    user.run([*tools.sufd, "ingest", "--json"], "warmup-ingest")
    user.run([*tools.sufctl, "report", "daily", "--json"], "warmup-report", check=False)
    shutil.rmtree(user.root)


def rss_corpus(
    work: Path,
    pycache: Path,
    tools: Tools,
    name: str,
    big: bool,
    target: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    user = User(work / name, pycache)
    if big:
        corpus = make_big_file_corpus(user.home, work / "probe", target, args.seed)
    else:
        corpus = make_corpus(user.home, target, args.seed)
    ingest = cold_ingest(user, tools, corpus["bytes"], f"{name}-cold-ingest", args.drop_caches)
    if not args.keep:
        shutil.rmtree(user.home)
    return {"corpus": corpus, "ingest": ingest}


def run_benchmark(args: argparse.Namespace, work: Path, tools: Tools) -> dict[str, Any]:
    size_mb = QUICK_SIZE_MB if args.quick else args.size_mb
    target = int(size_mb * 1e6)
    pycache = work / "pycache"
    machine = machine_info(tools)
    log("warming up the interpreter's bytecode cache")
    warm_up_interpreter(work, pycache, tools)

    main_user = User(work / "main", pycache)
    corpus = make_corpus(main_user.home, target, args.seed)
    log(
        f"corpus: {corpus['bytes'] / 1e6:,.1f} MB, {corpus['files']:,} files"
        f" ({corpus['jsonl_files']:,} .jsonl), {corpus['usage_lines']:,} usage lines"
    )
    cold = cold_ingest(main_user, tools, corpus["bytes"], "main-cold-ingest", args.drop_caches)
    store = store_footprint(main_user)
    cc, cc_report = ccusage_runs(main_user, tools, args.drop_caches)
    pairs = cold_pairs(work, pycache, tools, main_user, cold, cc)
    report, sufd_report = warm_reports(main_user, tools)
    again = reingest(main_user, tools)
    check = cross_check(sufd_report, cc_report)
    log(f"cross-check: {'PASS' if check['passed'] else 'FAIL'} over {check['days']} days")
    rss = {
        "small": rss_corpus(
            work, pycache, tools, "small", False, int(target * SMALL_FRACTION), args
        ),
        "big": rss_corpus(work, pycache, tools, "big", True, int(target * BIG_FILE_FRACTION), args),
    }
    fig = figures(corpus, cold, cc, report, again, rss, check, pairs)
    fig["store_bytes"] = store["bytes"]
    fig["store_bytes_per_event"] = store["bytes_per_event"]
    machine["loadavg_at_end"] = loadavg()
    checks = build_checks(fig)
    gating = [c for c in checks if c.gating and c.passed is not None]
    return {
        "schema": 1,
        "benchmark": "issue-2 ingest",
        "command": shlex.join(
            [Path(sys.executable).name, "-m", "benchmarks.ingest_bench", *args.argv]
        ),
        "machine": machine,
        "settings": {
            "size_mb": size_mb,
            "quick": args.quick,
            "seed": args.seed,
            "drop_caches": args.drop_caches,
            "workdir": str(work),
            "env": sorted(main_user.env()),
            "rss_measured_with": "os.wait4() rusage ru_maxrss of each child (KiB), as MB (10^6 B)",
            "wall_measured_with": "time.perf_counter() from Popen to os.wait4() return",
            "report_p95": f"nearest rank of {REPORT_RUNS} runs",
        },
        "targets": {
            "cold_ratio_max": COLD_RATIO_MAX,
            "rss_max_mb": RSS_MAX_MB,
            "rss_growth_max": RSS_GROWTH_MAX,
            "report_max_ms": REPORT_MAX_MS,
            "report_speedup_min": REPORT_SPEEDUP_MIN,
            "reingest_max_s": REINGEST_MAX_S,
            "cost_rel_tol": COST_REL_TOL,
            "store_bytes_per_event_max": STORE_BYTES_PER_EVENT_MAX,
        },
        "corpus": corpus,
        "figures": fig,
        "checks": [
            {
                "name": c.name,
                "value": c.value,
                "target": c.target,
                "passed": c.passed,
                "gating": c.gating,
            }
            for c in checks
        ],
        "targets_met": sum(1 for c in gating if c.passed),
        "targets_total": len(gating),
        "details": {
            "cold_ingest": cold,
            "ccusage": cc,
            "report": report,
            "reingest": again,
            "rss_corpora": rss,
            "cross_check": check,
            "store": store,
        },
    }


def print_results(result: dict[str, Any]) -> None:
    m, c = result["machine"], result["corpus"]
    print(f"sufd {m['sufd']} ({m['git']}) vs ccusage {m['ccusage']} - {m['date']}")
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" SQLite {m['sqlite']}, {m['platform']}"
    )
    print(
        f"corpus: {c['bytes']:,} bytes, {c['files']:,} files ({c['jsonl_files']:,} .jsonl),"
        f" {c['usage_lines']:,} usage lines, {result['figures']['sufd_events']:,} events in sufd"
    )
    checks = [Check(**row) for row in result["checks"]]
    print(format_table(checks))
    print(
        f"{result['targets_met']}/{result['targets_total']} targets met"
        " (results in parentheses are shown, not counted)"
    )
    store = result["details"]["store"]
    largest = list(store["objects"].items())[:8]
    parts = [f"{name} {o['bytes_per_event']:.0f}" for name, o in largest]
    print(
        f"store: {store['bytes']:,} bytes ({store['page_count']:,} pages of {store['page_size']},"
        f" {store['freelist_count']:,} free) for {store['events']:,} events;"
        f" B/event by object ({store['measured_with']}): {', '.join(parts) or 'n/a'}"
    )
    cross = result["details"]["cross_check"]
    print(f"correctness cross-check: {'PASS' if cross['passed'] else 'FAIL'}")
    for problem in cross["problems"][:10]:
        print(f"  {problem}")
    print(
        f"per-model breakdowns: {'PASS' if cross['breakdown_passed'] else 'FAIL'}"
        f" ({cross['breakdown_rows']} (day, model) rows)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "ingest_bench",
        "Issue 2 benchmark: generate a corpus, then time cold/no-change `sufd ingest`"
        " and warm `sufctl report daily --json` against `ccusage daily --json --offline`, check"
        " peak RSS on three corpora and that the daily totals agree.",
    )
    parser.add_argument(
        "--size-mb",
        type=float,
        default=DEFAULT_SIZE_MB,
        help="main corpus size in MB (default 500)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: a {QUICK_SIZE_MB:g} MB corpus"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where to create the run's fresh directory (default: the system temp dir, /tmp)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory at the end")
    parser.add_argument(
        "--json-out", type=Path, metavar="PATH", help="also write the results as JSON"
    )
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument(
        "--ccusage",
        type=Path,
        default=DEFAULT_CCUSAGE,
        help=f"ccusage binary (default {DEFAULT_CCUSAGE})",
    )
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="drop the OS page cache before each cold run (Linux, root); by default the freshly"
        " generated corpus is in the page cache for sufd and ccusage alike",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(raw)
    args.argv = raw
    if not args.quick and args.size_mb <= 0:
        _parser().error("--size-mb must be positive")
    with work_dir(args.workdir, "sufd-bench-", args.keep) as work:
        log(f"work dir {work}")
        try:
            tools = find_tools(args.ccusage)
            result = run_benchmark(args, work, tools)
        except BenchError as exc:
            print(f"ingest_bench: {exc}", file=sys.stderr)
            return 2
    if args.json_out is not None:
        write_json(args.json_out, result)
        log(f"wrote {args.json_out}")
    print_results(result)
    return 0 if result["figures"]["correctness_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
