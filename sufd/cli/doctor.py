"""``sufd doctor``: check the installation and explain each finding in one line."""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sufd.daemon.runtime import UnsafeRuntimeDir, prepare_runtime_dir
from sufd.service.managers import ServiceManager, SystemdUser, for_platform
from sufd.service.runner import Runner
from sufd.settings import Settings
from sufd.sources import enabled_sources
from sufd.store.health import quarantined, quick_check, wal_bytes

__all__ = ["Check", "run_checks"]


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: ``ok``, ``warn`` or ``fail``, with a one-line explanation."""

    status: str
    name: str
    detail: str


def _interpreter() -> Check:
    exe = sys.executable
    tmp = tempfile.gettempdir()
    if exe.startswith((tmp + os.sep, "/tmp/", "/var/tmp/")):
        return Check(
            "fail",
            "interpreter",
            f"{exe} is in a temporary directory; reinstall with pipx or uv tool",
        )
    return Check("ok", "interpreter", exe)


def _writable(name: str, path: Path) -> Check:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return Check("fail", name, f"{path} cannot be created: {probe} is not a directory")
    if os.access(probe, os.W_OK):
        return Check(
            "ok", name, f"{path} is writable" + ("" if path.exists() else " (will be created)")
        )
    return Check("fail", name, f"{path} is not writable (nearest existing: {probe})")


def _runtime(settings: Settings) -> Check:
    path = settings.paths.runtime_dir
    if not path.exists():
        return Check("ok", "runtime dir", f"{path} (will be created 0700)")
    try:
        prepare_runtime_dir(path)
    except UnsafeRuntimeDir as exc:
        return Check("fail", "runtime dir", str(exc))
    return Check("ok", "runtime dir", f"{path} is private (0700, owned by you)")


def _inotify(settings: Settings) -> Check:
    limit_file = Path("/proc/sys/fs/inotify/max_user_watches")
    if not limit_file.exists():
        return Check("ok", "watch limits", "no inotify limits on this platform")
    limit = int(limit_file.read_text().strip())
    dirs = 0
    for source in enabled_sources(settings):
        for root in source.roots(settings):
            if root.is_dir():
                # Symlinked directories below a root are not watched.
                dirs += 1 + sum(1 for p in root.rglob("*") if p.is_dir() and not p.is_symlink())
    if dirs > limit * 0.8:
        return Check(
            "warn",
            "watch limits",
            f"{dirs} directories to watch, limit {limit}: raise fs.inotify.max_user_watches",
        )
    return Check("ok", "watch limits", f"{dirs} directories to watch, inotify limit {limit}")


def _service(mgr: ServiceManager) -> list[Check]:
    if not mgr.unit_path.exists():
        return [
            Check("warn", "service", f"not installed ({mgr.unit_path} missing): run `sufd install`")
        ]
    ok, why = mgr.reachable()
    if not ok:
        return [
            Check(
                "warn",
                "service",
                f"installed at {mgr.unit_path}, but {mgr.name} is not reachable: {why}",
            )
        ]
    state = mgr.state()
    checks = [
        Check(
            "ok" if state["enabled"] else "fail",
            "service enabled",
            f"{mgr.name}: {'enabled' if state['enabled'] else 'not enabled (run `sufd install`)'}",
        ),
        Check(
            "ok" if state["active"] else "fail",
            "service active",
            f"{mgr.name}: {'active' if state['active'] else 'not running (run `sufd start`)'}",
        ),
    ]
    if isinstance(mgr, SystemdUser):
        lingering, message = mgr.linger(False)
        checks.append(Check("ok" if lingering else "warn", "linger", message))
    return checks


def _roots(settings: Settings) -> list[Check]:
    checks = []
    for source in enabled_sources(settings):
        found = [str(r) for r in source.roots(settings) if r.is_dir()]
        if found:
            checks.append(Check("ok", f"roots {source.name}", ", ".join(found)))
        else:
            checks.append(
                Check(
                    "warn",
                    f"roots {source.name}",
                    "no log directory found yet (watched for when the daemon runs)",
                )
            )
    return checks


def _store(settings: Settings) -> list[Check]:
    db = settings.paths.db
    checks = [_store_file(db)]
    for path, note in quarantined(db):
        when = note.get("moved_at", "at some point")
        why = note.get("error") or "reason not recorded"
        found = note.get("found", "")
        checks.append(
            Check(
                "warn",
                "store history",
                f"{when}: the ledger was found {note.get('reason', 'corrupt')} {found} ({why});"
                f" sufd moved it to {path} and rebuilt the ledger from the source files."
                " Events whose source files had already been deleted are only in that copy"
                f" (`sqlite3 {path} .recover` extracts what is readable); delete it when you"
                " no longer need it",
            )
        )
    return checks


def _store_file(db: Path) -> Check:
    if not db.exists():
        return Check("ok", "store", f"{db} does not exist yet (created on first run)")
    try:
        result = quick_check(db)
    except sqlite3.Error as exc:
        result = str(exc)
    if result is not None:
        return Check(
            "fail",
            "store",
            f"{db} is corrupt ({result}). The daemon moves it aside and rebuilds the ledger from"
            " the source files when it finds this (at start, or while running: `sufd restart`"
            " makes it look now)",
        )
    wal = wal_bytes(db)
    return Check(
        "ok",
        "store",
        f"{db}: integrity ok ({db.stat().st_size / 1e6:,.1f} MB, WAL {wal / 1e6:,.1f} MB)",
    )


def run_checks(
    settings: Settings, *, platform: str = sys.platform, runner: Runner | None = None
) -> list[Check]:
    """Every check, in the order they are printed."""
    runner = runner or Runner()
    mgr = for_platform(platform, runner, settings.env, settings.home)
    p = settings.paths
    checks: list[Check] = [_interpreter()]
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: _writable("config", p.config_file.parent),
        lambda: _writable("data dir", p.data_dir),
        lambda: _writable("state dir", p.state_dir),
        lambda: _writable("log dir", p.log_dir),
        lambda: _runtime(settings),
        lambda: _inotify(settings),
        lambda: _service(mgr),
        lambda: _roots(settings),
        lambda: _store(settings),
    ]
    for step in steps:
        found = step()
        checks.extend(found if isinstance(found, list) else [found])
    return checks
