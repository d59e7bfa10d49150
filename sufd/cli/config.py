"""``sufd config show`` and ``sufd config set``: inspect and change the TOML config.

The file is read with tomllib and written with tomli-w; a change is validated by resolving
the whole configuration from the new text before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from sufd.errors import ConfigError
from sufd.settings import Settings, load

__all__ = ["SETTABLE", "set_value", "show"]

SETTABLE = {
    "paths.data_dir",
    "paths.state_dir",
    "paths.log_dir",
    "paths.runtime_dir",
    "paths.db",
    "ingest.cost_mode",
    "ingest.max_line_bytes",
    "report.timezone",
    "log.level",
    "watch.enabled",
    "watch.debounce_ms",
    "watch.reconcile_interval_s",
    "watch.force_polling",
}


def _effective(settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {f"paths.{k}": v for k, v in settings.paths.as_dict().items()}
    values.update(
        {
            "ingest.cost_mode": settings.cost_mode,
            "ingest.max_line_bytes": settings.max_line_bytes,
            "report.timezone": settings.timezone,
            "log.level": settings.log_level,
            "watch.enabled": settings.watch_enabled,
            "watch.debounce_ms": settings.debounce_ms,
            "watch.reconcile_interval_s": settings.reconcile_interval_s,
            "watch.force_polling": settings.force_polling,
        }
    )
    for name, src in settings.sources.items():
        values[f"sources.{name}.enabled"] = src.enabled
        values[f"sources.{name}.roots"] = [str(r) for r in src.roots]
    for model, prices in settings.price_overrides.items():
        values[f"prices.overrides.{model}"] = dict(prices)
    return values


def show(settings: Settings, *, as_json: bool) -> int:
    """Print every effective setting with its origin."""
    values = _effective(settings)
    origins = settings.origins
    rows = {
        key: {"value": value, "origin": origins.get(key, _origin_guess(key, settings))}
        for key, value in sorted(values.items())
    }
    if as_json:
        print(
            json.dumps({"config_file": str(settings.paths.config_file), "settings": rows}, indent=2)
        )
        return 0
    exists = settings.paths.config_file.exists()
    print(
        f"# config file: {settings.paths.config_file}{'' if exists else ' (not present: defaults)'}"
    )
    width = max(len(k) for k in rows)
    for key, row in rows.items():
        print(f"{key.ljust(width)} = {json.dumps(row['value'])}  # {row['origin']}")
    return 0


def _origin_guess(key: str, settings: Settings) -> str:
    if key in ("paths.socket", "paths.lock", "paths.config"):
        return "derived"
    return "default"


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_value(settings: Settings, key: str, raw: str) -> int:
    """Validate and write one setting.

    Raises:
        ConfigError: unknown key, or the value makes the configuration invalid.
    """
    parts = key.split(".")
    allowed = key in SETTABLE or (
        len(parts) == 3 and parts[0] == "sources" and parts[2] in ("enabled", "roots")
    )
    if not allowed:
        raise ConfigError(f"{key!r} is not a setting that can be set (see `sufd config show`)")
    path = settings.paths.config_file
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text()) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot update an unreadable config file: {exc}") from exc
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: {part} is not a table")
        node = child
    node[parts[-1]] = _parse_value(raw)
    text = tomli_w.dumps(data)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            load(Path(tmp))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(tmp, str(path))) from None
        if path.exists():
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{key} = {json.dumps(node[parts[-1]])} written to {path}")
    print("A running daemon picks it up on `sufctl reload` (or SIGHUP).")
    return 0
