"""Build sufd's sdist and wheel, then check that the wheel can run as a service.

Usage::

    python packaging/build_dist.py [--outdir dist]        # build both, then check them
    python packaging/build_dist.py --check WHEEL [SDIST]  # only check existing artifacts

Building uses the standard ``build`` frontend: the sdist first, then the wheel *from that
sdist*, so a file missing from the sdist fails the wheel build too. When ``build`` is not
importable here it is installed, with the ``[build-system] requires`` of pyproject.toml,
into a throwaway virtual environment (only pip and the package index are needed).

The check opens the wheel and fails (exit 1, naming each problem) unless it holds the unit
and plist templates under ``sufd/_templates/`` (byte-identical to ``systemd/`` and
``launchd/`` in the source tree), the bundled price table, ``py.typed`` and the console
scripts; and unless the sdist holds the files the wheel is built from.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Wheel member -> source file it must equal (None: only required to exist).
WHEEL_FILES: dict[str, str | None] = {
    "sufd/_templates/sufd.service": "systemd/sufd.service",
    "sufd/_templates/io.github.sufd.plist": "launchd/io.github.sufd.plist",
    "sufd/data/prices.json": "sufd/data/prices.json",
    "sufd/py.typed": None,
    "sufd/__main__.py": None,
    "sufd/service/templates.py": None,
}
SDIST_FILES = (
    "pyproject.toml",
    "systemd/sufd.service",
    "launchd/io.github.sufd.plist",
    "sufd/data/prices.json",
)
SCRIPTS = {"sufd": "sufd.cli.sufd:main", "sufctl": "sufd.cli.sufctl:main"}


class BuildError(Exception):
    """The build failed, or its artifacts are incomplete."""


def _frontend(workdir: Path, src: Path) -> list[str]:
    """The command that runs ``build``: here, or in a throwaway venv."""
    if importlib.util.find_spec("build") is not None:
        return [sys.executable, "-m", "build"]
    requires = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8"))["build-system"][
        "requires"
    ]
    env_dir = workdir / "build-env"
    print(f"build_dist: installing build, {', '.join(requires)} into {env_dir}", flush=True)
    python = env_dir / "bin" / "python"
    packages = ["build", *requires]
    if importlib.util.find_spec("pip") is not None:
        # This interpreter's pip installs into the new environment (pip >= 22.3), which
        # saves bootstrapping a second pip with ensurepip.
        venv.EnvBuilder(with_pip=False).create(env_dir)
        _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *packages])
    else:
        venv.EnvBuilder(with_pip=True).create(env_dir)
        _run([str(python), "-m", "pip", "install", "--quiet", *packages])
    # The build requirements are installed in that environment already.
    return [str(python), "-m", "build", "--no-isolation"]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


def build(src: Path, outdir: Path) -> tuple[Path, Path]:
    """Build the sdist and (from it) the wheel of ``src`` into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sufd-build-") as tmp:
        work = Path(tmp)
        fresh = work / "dist"
        _run([*_frontend(work, src), "--outdir", str(fresh), str(src)])
        sdists = sorted(fresh.glob("*.tar.gz"))
        wheels = sorted(fresh.glob("*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            raise BuildError(f"expected one sdist and one wheel, got {sorted(fresh.iterdir())}")
        results = []
        for artifact in (sdists[0], wheels[0]):
            target = outdir / artifact.name
            target.unlink(missing_ok=True)
            shutil.move(artifact, target)
            results.append(target)
    return results[0], results[1]


def check_wheel(wheel: Path, src: Path = ROOT) -> list[str]:
    """Problems with ``wheel`` (empty when it is complete)."""
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for member, source in WHEEL_FILES.items():
            if member not in names:
                problems.append(f"{wheel.name} lacks {member}")
            elif (
                source is not None
                and (src / source).exists()
                and (zf.read(member) != (src / source).read_bytes())
            ):
                problems.append(f"{wheel.name}: {member} differs from {source}")
        entry_points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        if len(entry_points) != 1:
            problems.append(f"{wheel.name} has no entry_points.txt")
        else:
            parser = configparser.ConfigParser()
            parser.read_string(zf.read(entry_points[0]).decode())
            scripts = dict(parser["console_scripts"]) if "console_scripts" in parser else {}
            for name, target in SCRIPTS.items():
                if scripts.get(name) != target:
                    problems.append(f"{wheel.name}: console script {name} is not {target}")
    return problems


def check_sdist(sdist: Path) -> list[str]:
    """Problems with ``sdist`` (empty when it holds what the wheel is built from)."""
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    return [f"{sdist.name} lacks {f}" for f in SDIST_FILES if f not in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist", help="default: dist/")
    parser.add_argument("--src", type=Path, default=ROOT, help="the source tree to build")
    parser.add_argument(
        "--check", nargs="+", type=Path, metavar="ARTIFACT", help="check only: WHEEL [SDIST]"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            wheel, sdist = args.check[0], (args.check[1] if len(args.check) > 1 else None)
        else:
            sdist, wheel = build(args.src.resolve(), args.outdir.resolve())
    except BuildError as exc:
        print(f"build_dist: build failed: {exc}", file=sys.stderr)
        return 1
    problems = check_wheel(wheel, args.src)
    if sdist is not None:
        problems += check_sdist(sdist)
    for problem in problems:
        print(f"build_dist: {problem}", file=sys.stderr)
    if problems:
        print(
            "build_dist: the wheel is incomplete; see [tool.hatch.build] in pyproject.toml",
            file=sys.stderr,
        )
        return 1
    if sdist is not None:
        print(f"sdist: {sdist}")
    print(f"wheel: {wheel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
