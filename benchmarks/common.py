"""What the benchmark scripts share: errors and progress, statistics, the machine, environments,
measured commands and the work directory a run lives in.

Nothing here prints a result or names a figure: each script keeps its own tables and JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "CCUSAGE_VERSION",
    "DEFAULT_CCUSAGE",
    "REPO",
    "RUN_TIMEOUT_S",
    "BenchError",
    "Check",
    "Run",
    "add_output_options",
    "ccusage_version",
    "command_output",
    "cpu_model",
    "entry_point",
    "git_describe",
    "isolated_env",
    "loadavg",
    "log",
    "machine_line",
    "median",
    "mem_total_gb",
    "new_parser",
    "nproc",
    "percentile",
    "plain_env",
    "run_isolated",
    "run_measured",
    "utc_now",
    "work_dir",
    "write_json",
]

REPO = Path(__file__).resolve().parent.parent
"""The repository the benchmarks belong to."""
CCUSAGE_VERSION = "20.0.24"
"""The ccusage release the comparisons are pinned to."""
DEFAULT_CCUSAGE = REPO / ".ci" / "node_modules" / ".bin" / "ccusage"
"""Where ``npm install --prefix .ci ccusage@CCUSAGE_VERSION`` puts it."""
RUN_TIMEOUT_S = 3600.0
"""The longest one benchmarked command may run."""


class BenchError(Exception):
    """A setup problem or a command that failed; ends the run with exit status 2."""


@dataclass(frozen=True)
class Check:
    """One row of the results table."""

    name: str
    value: str
    target: str
    passed: bool | None  # None: shown for information, no target


_T0 = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr, stamped with the seconds since the benchmark started."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the smallest value with at least ``pct`` % at or below it)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else math.nan


# ------------------------------------------------------------------------------------------------
# the machine


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def nproc() -> int | None:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages, to two decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what ``platform`` knows, or ``?``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def mem_total_gb() -> float:
    """``MemTotal`` of ``/proc/meminfo`` in GB (10^9 bytes), to one decimal."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) * 1024 / 1e9, 1)
    return math.nan


def command_output(argv: Sequence[str], cwd: Path = REPO, timeout: float = 30) -> str | None:
    """What a command prints on stdout, stripped; None when it cannot be started."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except OSError:
        return None
    return proc.stdout.strip()


def git_describe(cwd: Path = REPO, timeout: float = 30) -> str | None:
    """``git describe --always --dirty`` of ``cwd`` (see :func:`command_output`)."""
    return command_output(["git", "describe", "--always", "--dirty"], cwd, timeout)


def machine_line(machine: dict[str, Any], *extra: str) -> str:
    """``machine: N CPUs (model), M GB, Python X, SQLite Y``, then ``extra`` and the date."""
    m = machine
    head = (
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python"
        f" {m['python']}, SQLite {m['sqlite']}"
    )
    return ", ".join([head, *extra, str(m["date"])])


# ------------------------------------------------------------------------------------------------
# environments and commands


def plain_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's PATH, ``LANG=C.UTF-8``, HOME, ``TZ=UTC``, ``NO_COLOR=1`` and ``extra``:
    nothing else of the caller's environment."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "TZ": "UTC",
        "NO_COLOR": "1",
        **extra,
    }


def isolated_env(root: Path, pycache: Path) -> dict[str, str]:
    """The environment of an isolated user: HOME ``root/home`` and the XDG dirs under ``root``
    (created, the XDG ones mode 0700), bytecode cached under ``pycache``."""
    xdg = {
        "XDG_CONFIG_HOME": root / "xdg-config",
        "XDG_DATA_HOME": root / "xdg-data",
        "XDG_STATE_HOME": root / "xdg-state",
        "XDG_CACHE_HOME": root / "xdg-cache",
        "XDG_RUNTIME_DIR": root / "xdg-runtime",
    }
    for path in xdg.values():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    dirs = {key: str(path) for key, path in xdg.items()}
    return plain_env(home, **dirs, PYTHONPYCACHEPREFIX=str(pycache))


def entry_point(name: str, module: str) -> tuple[str, ...]:
    """The console script ``name`` next to this interpreter, else ``python -m module``."""
    script = Path(sys.executable).parent / name
    return (str(script),) if script.is_file() else (sys.executable, "-m", module)


def ccusage_version(ccusage: Path, warn: Callable[[str], None]) -> str:
    """The version ``ccusage --version`` reports (``?`` if none); ``warn`` is told when it is
    not :data:`CCUSAGE_VERSION`. Raises :class:`BenchError` when ``ccusage`` is missing."""
    if not ccusage.is_file():
        raise BenchError(
            f"ccusage not found at {ccusage}; run"
            f" `npm install --prefix {REPO / '.ci'} ccusage@{CCUSAGE_VERSION}` or pass --ccusage"
        )
    proc = subprocess.run(
        [str(ccusage), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(REPO)},
        check=False,
    )
    version = proc.stdout.strip().split()[-1] if proc.stdout.strip() else "?"
    if version != CCUSAGE_VERSION:
        warn(f"warning: {ccusage} reports version {version!r}, the baseline is {CCUSAGE_VERSION}")
    return version


@dataclass(frozen=True)
class Run:
    """One finished subprocess: wall time, peak RSS and its output."""

    argv: tuple[str, ...]
    wall_s: float
    cpu_s: float
    maxrss_kib: int
    returncode: int
    stdout: str
    stderr: str

    @property
    def rss_mb(self) -> float:
        """Peak RSS in MB (10^6 bytes)."""
        return self.maxrss_kib * 1024 / 1e6

    def json(self) -> Any:
        """Its stdout parsed as JSON; :class:`BenchError` when it is not."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise BenchError(f"{self.describe()} did not print JSON: {exc}") from None

    def describe(self) -> str:
        """The command line, shell-quoted."""
        return shlex.join(self.argv)


def run_measured(
    argv: Sequence[str], env: dict[str, str], cwd: Path, scratch: Path, check: bool = True
) -> Run:
    """Run ``argv``; time it from spawn to reap and take its rusage from ``os.wait4``.

    Output goes to files in ``scratch`` (no pipes to drain while waiting), read back afterwards.
    With ``check``, a non-zero exit raises :class:`BenchError`.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    out_path, err_path = scratch / "stdout", scratch / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        timer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    run = Run(
        argv=tuple(argv),
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_kib=usage.ru_maxrss,
        returncode=proc.returncode,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )
    if check and run.returncode != 0:
        raise BenchError(
            f"{run.describe()} exited {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        )
    return run


# ------------------------------------------------------------------------------------------------
# the command line and the work directory


def new_parser(module: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``python -m benchmarks.<module>``."""
    return argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=description)


def add_output_options(parser: argparse.ArgumentParser, workdir_note: str = "") -> None:
    """``--json-out``, ``--keep`` and ``--workdir``, as :func:`run_isolated` reads them
    (``workdir_note`` is appended to the default in ``--workdir``'s help)."""
    parser.add_argument("--json-out", type=Path, help="write every figure and detail here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--workdir",
        type=Path,
        help=f"create the work directory under this one (default: the system temp{workdir_note})",
    )


def write_json(
    path: Path, data: Any, indent: int = 2, default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``data`` as indented JSON and a newline, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, default=default) + "\n")


@contextmanager
def work_dir(parent: Path | None, prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh directory under ``parent`` (default: the system temp), removed on the way out
    unless ``keep`` (then its path is logged)."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    finally:
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_isolated(
    run: Callable[[Path], dict[str, Any]],
    args: argparse.Namespace,
    prefix: str,
    stopped: str,
    json_default: Callable[[Any], Any] | None = None,
) -> dict[str, Any] | int:
    """``run`` in a :func:`work_dir` (under ``args.workdir``, kept with ``args.keep``), with
    SIGTERM raised as KeyboardInterrupt so that the daemons and helpers are stopped on the way
    out.

    Returns the result with ``work_dir`` added (the directory when kept, else None) and also
    written to ``args.json_out`` when given, or the exit status: 2 (printed ``error: ...``) after
    a :class:`BenchError` or a command that timed out, 130 (printed ``interrupted; <stopped>``)
    after an interrupt.
    """
    with work_dir(args.workdir, prefix, args.keep) as work:
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            result = run(work)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"interrupted; {stopped}", file=sys.stderr)
            return 130
    result["work_dir"] = str(work) if args.keep else None
    if args.json_out:
        write_json(args.json_out, result, default=json_default)
    return result
