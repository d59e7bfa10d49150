"""The one place that resolves settings: defaults < config file < ``SUFD_*`` env < CLI flags.

Nothing else in sufd reads ``os.environ`` or the config file. :func:`load` snapshots the
environment once and returns a frozen :class:`Settings` that is passed down explicitly.
"""

# Over 500 lines: every config key, its default, env override and check resolve in this one place.
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, get_args

from sufd.errors import ConfigError

__all__ = [
    "APP_NAME",
    "COST_MODES",
    "KNOWN_SOURCES",
    "PRICE_FIELDS",
    "Paths",
    "Settings",
    "SourceSettings",
    "check_price_field",
    "default_config_path",
    "load",
    "local_zone",
    "shared_runtime_dir",
]

APP_NAME = "sufd"
# The one list of the agents sufd knows, in the order it reads, watches and lists them; the
# adapters are registered in sufd.sources under these names (checked there at import).
KNOWN_SOURCES = (
    "claude",
    "codex",
    "cline",
    "roo-code",
    "kilo-code",
    "cursor",
    "gemini",
    "opencode",
    "kilo-cli",
)
LOG_LEVELS = ("debug", "info", "warning", "error")

CostMode = Literal["auto", "calculate", "display"]
COST_MODES: tuple[str, ...] = get_args(CostMode)


# NamedTuples rather than dataclasses: immutable all the same, and cheaper to import, which
# matters for sufctl and the status line (every millisecond of start-up is user-visible).
class Paths(NamedTuple):
    """Every filesystem location sufd uses, resolved once."""

    config_file: Path
    data_dir: Path
    state_dir: Path
    log_dir: Path
    runtime_dir: Path
    db: Path
    # Set by load() in the shared runtime dir: sufd-<hash of the ledger>.sock there.
    ledger_socket: Path | None = None

    @property
    def socket(self) -> Path:
        """The control socket: ``runtime_dir/sufd.sock``, or named after the ledger in the
        shared runtime dir (see :func:`load`)."""
        return self.ledger_socket or self.runtime_dir / "sufd.sock"

    @property
    def socket_lock(self) -> Path:
        """The lock of the socket (one daemon per socket): ``sufd.lock`` beside ``sufd.sock``."""
        return self.socket.with_suffix(".lock")

    @property
    def lock(self) -> Path:
        """The lock of the ledger (one daemon per ledger file): beside the ledger's resolved
        path, so every path naming the same file names the same lock."""
        return Path(os.path.realpath(self.db) + ".lock")

    def as_dict(self) -> dict[str, str]:
        """Plain strings, for ``sufd paths --json`` and the config writer."""
        return {
            "config": str(self.config_file),
            "data_dir": str(self.data_dir),
            "db": str(self.db),
            "state_dir": str(self.state_dir),
            "log_dir": str(self.log_dir),
            "runtime_dir": str(self.runtime_dir),
            "socket": str(self.socket),
            "lock": str(self.lock),
        }


class SourceSettings(NamedTuple):
    """Per-source switches: on/off and optional explicit roots that replace discovery."""

    enabled: bool = True
    roots: tuple[Path, ...] = ()


class Settings(NamedTuple):
    """The effective configuration of one sufd process."""

    paths: Paths
    home: Path
    env: Mapping[str, str]
    sources: Mapping[str, SourceSettings]
    cost_mode: CostMode = "auto"
    timezone: str | None = None
    log_level: str = "info"
    max_line_bytes: int = 64 * 1024 * 1024
    watch_enabled: bool = True
    debounce_ms: int = 200
    reconcile_interval_s: int = 60
    force_polling: bool = False
    price_overrides: Mapping[str, Mapping[str, float]] = MappingProxyType({})
    origins: Mapping[str, str] = MappingProxyType({})

    def source(self, name: str) -> SourceSettings:
        """Settings of one source (defaults when the config does not mention it)."""
        return self.sources.get(name, SourceSettings())


# Each default is written once, on its field above; load() takes them from here.
_DEFAULT: Mapping[str, Any] = Settings._field_defaults


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the config file lives unless ``--config`` or ``SUFD_CONFIG`` says otherwise."""
    env = os.environ if env is None else env
    if env.get("SUFD_CONFIG"):
        return _expand(env["SUFD_CONFIG"], env)
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def load(
    config_file: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    platform: str = sys.platform,
) -> Settings:
    """Resolve the settings of this process.

    Args:
        config_file: ``--config`` from the command line; else ``SUFD_CONFIG``; else the
            platform config dir. A missing file means defaults; a broken one is an error.
        overrides: values from command-line flags, keyed like the flat setting names
            (``"cost_mode"``, ``"paths.db"``, ...). ``None`` values are ignored.
        platform: ``sys.platform``; tests pass ``"darwin"`` to exercise the macOS paths.

    Raises:
        ConfigError: the config file cannot be parsed or holds an invalid value; the message
            names the file and the key.
    """
    env = MappingProxyType(dict(os.environ))
    home = Path(env.get("HOME") or Path.home())
    path = config_file or default_config_path(env)
    raw = _read_toml(path)
    res = _Resolver(path, raw, env, overrides or {})

    data_dir = res.path("paths.data_dir", "SUFD_DATA_DIR", lambda: _platform_dir("data"))
    state_dir = res.path("paths.state_dir", "SUFD_STATE_DIR", lambda: _platform_dir("state"))
    log_dir = res.path("paths.log_dir", "SUFD_LOG_DIR", lambda: _platform_dir("log"))
    runtime_dir = res.path(
        "paths.runtime_dir", "SUFD_RUNTIME_DIR", lambda: _default_runtime_dir(env, home, platform)
    )
    db = res.path("paths.db", "SUFD_DB", lambda: data_dir / "ledger.sqlite3")
    paths = Paths(
        path, data_dir, state_dir, log_dir, runtime_dir, db, _ledger_socket(runtime_dir, db, env)
    )

    d = _DEFAULT
    cost_mode = res.choice("ingest.cost_mode", "SUFD_COST_MODE", d["cost_mode"], COST_MODES)
    max_line = res.integer(
        "ingest.max_line_bytes", "SUFD_MAX_LINE_BYTES", d["max_line_bytes"], minimum=4096
    )
    tz = res.text("report.timezone", "SUFD_TIMEZONE", d["timezone"])
    if tz is not None:
        _check_zone(tz, path)
    level = res.choice("log.level", "SUFD_LOG_LEVEL", d["log_level"], LOG_LEVELS)

    debounce = res.integer("watch.debounce_ms", "SUFD_DEBOUNCE_MS", d["debounce_ms"], minimum=1)
    reconcile = res.integer(
        "watch.reconcile_interval_s",
        "SUFD_RECONCILE_INTERVAL_S",
        d["reconcile_interval_s"],
        minimum=1,
    )
    polling = res.boolean("watch.force_polling", "SUFD_FORCE_POLLING", d["force_polling"])
    watch_on = res.boolean("watch.enabled", None, d["watch_enabled"])
    for var in ("SUFD_DISABLE_WATCHER", "STACKUNDERFLOW_DISABLE_WATCHER"):
        if env.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            watch_on = False
            res.origins["watch.enabled"] = f"env {var}"

    sources = _sources(res)
    overrides_tbl = res.table("prices").get("overrides", {})
    price_overrides = _price_overrides(overrides_tbl, path)
    res.warn_unknown()
    return Settings(
        paths=paths,
        home=home,
        env=env,
        sources=MappingProxyType(sources),
        cost_mode=cost_mode,  # type: ignore[arg-type]
        timezone=tz,
        log_level=level,
        max_line_bytes=max_line,
        watch_enabled=watch_on,
        debounce_ms=debounce,
        reconcile_interval_s=reconcile,
        force_polling=polling,
        price_overrides=MappingProxyType(price_overrides),
        origins=MappingProxyType(res.origins),
    )


# Keys the file may hold that load() does not look up itself: the others are known because it
# looks them up (see _Resolver.warn_unknown).
_OTHER_KEYS = frozenset(("paths.socket", "paths.config", "prices.overrides"))


class _Resolver:
    """Looks a setting up in flags, env, file and defaults, recording where it came from."""

    def __init__(
        self, path: Path, raw: dict[str, Any], env: Mapping[str, str], flags: Mapping[str, Any]
    ) -> None:
        self.file = path
        self.raw = raw
        self.env = env
        self.flags = {k: v for k, v in flags.items() if v is not None}
        self.origins: dict[str, str] = {}
        self.warnings: list[str] = []

    def table(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.file}: [{name}] must be a table, not {type(value).__name__}")
        return value

    def _lookup(self, key: str, env_key: str | None) -> Any:
        """The value of ``key`` (``None``: the default), recording where it came from."""
        section, leaf = key.split(".")
        tbl = self.table(section)
        if key in self.flags:
            value, self.origins[key] = self.flags[key], "flag"
        elif env_key and self.env.get(env_key):
            value, self.origins[key] = self.env[env_key], f"env {env_key}"
        elif leaf in tbl:
            value, self.origins[key] = tbl[leaf], f"file {self.file}"
        else:
            value, self.origins[key] = None, "default"
        return value

    def path(self, key: str, env_key: str, default: Callable[[], Path]) -> Path:
        value = self._lookup(key, env_key)
        if value is None:
            # Computed only when needed: platformdirs is not imported once install wrote paths.
            return default()
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{self.file}: {key} must be a non-empty path string, got {value!r}")
        return _expand(str(value), self.env)

    def text(self, key: str, env_key: str, default: str | None) -> str | None:
        value = self._lookup(key, env_key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{self.file}: {key} must be a string, got {value!r}")
        return value

    def choice(self, key: str, env_key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key, env_key, default) or default
        value = value.lower()
        if value not in allowed:
            raise ConfigError(
                f"{self.file}: {key} = {value!r} is not one of {', '.join(allowed)}"
                f" (from {self.origins[key]})"
            )
        return value

    def integer(self, key: str, env_key: str, default: int, *, minimum: int) -> int:
        value = self._lookup(key, env_key)
        if value is None:
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.file}: {key} must be an integer, got {value!r}") from None
        if isinstance(value, bool) or number < minimum:
            raise ConfigError(f"{self.file}: {key} must be an integer >= {minimum}, got {value!r}")
        return number

    def boolean(self, key: str, env_key: str | None, default: bool) -> bool:
        value = self._lookup(key, env_key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{self.file}: {key} must be true or false, got {value!r}")

    def warn_unknown(self) -> None:
        """Warn of what the file holds that nothing looked up (call it last). ``[sources]``
        is left to :func:`_sources`, which knows the source names."""
        known = {*self.origins, *_OTHER_KEYS}
        sections = {k.split(".", 1)[0] for k in known}
        for name, value in self.raw.items():
            if name not in sections:
                self.warnings.append(f"{self.file}: unknown section or key {name!r} ignored")
            elif name != "sources" and isinstance(value, dict):
                for key in value:
                    if f"{name}.{key}" not in known:
                        self.warnings.append(f"{self.file}: unknown key {name}.{key} ignored")
        if self.warnings:
            self.origins["_warnings"] = "\n".join(self.warnings)


def _sources(res: _Resolver) -> dict[str, SourceSettings]:
    tbl = res.table("sources")
    disabled = {s.strip() for s in res.env.get("SUFD_DISABLE_SOURCES", "").split(",") if s.strip()}
    out: dict[str, SourceSettings] = {}
    default = SourceSettings()
    for name in KNOWN_SOURCES:
        entry = tbl.get(name, {})
        if not isinstance(entry, dict):
            raise ConfigError(f"{res.file}: [sources.{name}] must be a table")
        enabled = entry.get("enabled", default.enabled)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{res.file}: sources.{name}.enabled must be true or false")
        roots = entry.get("roots", list(default.roots))
        if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
            raise ConfigError(f"{res.file}: sources.{name}.roots must be a list of paths")
        res.origins[f"sources.{name}.enabled"] = (
            f"file {res.file}" if "enabled" in entry else "default"
        )
        if name in disabled:
            enabled = False
            res.origins[f"sources.{name}.enabled"] = "env SUFD_DISABLE_SOURCES"
        out[name] = SourceSettings(enabled, tuple(_expand(r, res.env) for r in roots))
    for name in tbl:
        if name not in KNOWN_SOURCES:
            res.warnings.append(f"{res.file}: unknown source [sources.{name}] ignored")
    return out


# A model's price fields: the keys of ``[prices.overrides]`` and of the bundled price table.
PRICE_FIELDS = (
    "input",
    "output",
    "cache_write",
    "cache_read",
    "input_above_200k",
    "output_above_200k",
    "cache_write_above_200k",
    "cache_read_above_200k",
    "fast_multiplier",
)


def check_price_field(name: str, where: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a price field; ``where`` names the key."""
    if name not in PRICE_FIELDS:
        raise ConfigError(f"{where} is not a price key (one of {', '.join(sorted(PRICE_FIELDS))})")


def _price_overrides(tbl: Any, path: Path) -> dict[str, Mapping[str, float]]:
    if not isinstance(tbl, dict):
        raise ConfigError(f"{path}: [prices.overrides] must be a table of models")
    out: dict[str, Mapping[str, float]] = {}
    for model, entry in tbl.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: prices.overrides.{model!r} must be a table")
        clean: dict[str, float] = {}
        for key, value in entry.items():
            check_price_field(key, f"{path}: prices.overrides.{model!r}.{key}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(
                    f"{path}: prices.overrides.{model!r}.{key} must be a number >= 0"
                    f" (USD per million tokens), got {value!r}"
                )
            clean[key] = float(value)
        out[str(model)] = MappingProxyType(clean)
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    import tomllib

    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config file is not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _check_zone(name: str, path: Path) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{path}: report.timezone = {name!r} is not an IANA time zone") from None


def _expand(value: str, env: Mapping[str, str]) -> Path:
    if value == "~" or value.startswith("~/"):
        value = (env.get("HOME") or str(Path.home())) + value[1:]
    return Path(value).absolute()


def _platform_dir(kind: Literal["data", "state", "log"]) -> Path:
    """platformdirs' ``user_data_dir``, ``user_state_dir`` or ``user_log_dir`` for sufd."""
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")(APP_NAME, appauthor=False))


def shared_runtime_dir(env: Mapping[str, str]) -> Path:
    """The runtime dir used when there is no private one (no usable ``XDG_RUNTIME_DIR``, or
    a path too long for a socket): ``/tmp/sufd-$UID``, or ``SUFD_SHARED_RUNTIME_DIR``.

    Every HOME and config of the user without a private runtime dir lands here, so the
    sockets in it are named after their ledgers (see :func:`load`).
    """
    if env.get("SUFD_SHARED_RUNTIME_DIR"):
        return _expand(env["SUFD_SHARED_RUNTIME_DIR"], env)
    return Path(f"/tmp/{APP_NAME}-{os.getuid()}")


def _ledger_socket(runtime_dir: Path, db: Path, env: Mapping[str, str]) -> Path | None:
    """In the shared runtime dir, ``sufd-<hash of the ledger's resolved path>.sock``, so the
    daemon of each ledger has a socket of its own; elsewhere ``None`` (``sufd.sock``).

    Decided by the directory, not by where its value came from: ``sufd install`` writes the
    resolved runtime dir into the config, and the socket must not move when it does.
    """
    if runtime_dir != shared_runtime_dir(env):
        return None
    import hashlib

    digest = hashlib.sha256(os.fsencode(os.path.realpath(db))).hexdigest()[:16]
    return runtime_dir / f"{APP_NAME}-{digest}.sock"


def _default_runtime_dir(env: Mapping[str, str], home: Path, platform: str) -> Path:
    uid = os.getuid()
    if platform == "darwin":
        # Computed from HOME, not the environment's TMPDIR, so launchd and shells agree.
        candidate = home / "Library" / "Caches" / "TemporaryItems" / APP_NAME
    else:
        xdg = env.get("XDG_RUNTIME_DIR", "")
        xdg_ok = bool(xdg) and os.path.isabs(xdg) and _owned_private_dir(Path(xdg), uid)
        candidate = Path(xdg) / APP_NAME if xdg_ok else shared_runtime_dir(env)
    # sockaddr_un.sun_path is 104 bytes on macOS; keep room for "/sufd.sock".
    if len(os.fsencode(candidate / "sufd.sock")) > 100:
        candidate = shared_runtime_dir(env)
    return candidate


def _owned_private_dir(path: Path, uid: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == uid and (st.st_mode & 0o077) == 0


def local_zone(settings: Settings) -> str:
    """The IANA name reports use by default: config/env ``timezone``, else the system zone.

    The system zone is ``TZ`` when set, else the target of ``/etc/localtime``, else UTC.
    """
    if settings.timezone:
        return settings.timezone
    tz = settings.env.get("TZ", "").lstrip(":")
    if tz and not tz.startswith("/"):
        return tz
    target = Path(tz) if tz else Path("/etc/localtime")
    try:
        resolved = str(target.resolve())
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    if marker in resolved:
        return resolved.split(marker, 1)[1]
    return "UTC"
