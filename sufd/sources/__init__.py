"""The registry of source adapters: one instance of each agent's adapter, by name.

The names, and their order, are :data:`sufd.settings.KNOWN_SOURCES`: settings, ``sufctl`` and
the daemon check names against that list without importing the adapters. This registry
holds one adapter per name in that order (ingest, watching, ``status`` and ``doctor`` follow
it) and fails at import when an adapter and the list disagree. Adding an agent is one new
module in this package, its class in :data:`_ADAPTERS` and its name in ``KNOWN_SOURCES``.
"""

from __future__ import annotations

from sufd.settings import KNOWN_SOURCES, Settings
from sufd.sources.base import FileContext, Malformed, Record, Source
from sufd.sources.claude import ClaudeCode
from sufd.sources.cline import Cline, KiloCode, RooCode
from sufd.sources.codex import Codex
from sufd.sources.cursor import Cursor
from sufd.sources.gemini import GeminiCli
from sufd.sources.opencode import KiloCli, OpenCode

__all__ = ["SOURCES", "FileContext", "Malformed", "Record", "Source", "enabled_sources"]

_ADAPTERS: tuple[type[Source], ...] = (
    ClaudeCode,
    Codex,
    Cline,
    RooCode,
    KiloCode,
    Cursor,
    GeminiCli,
    OpenCode,
    KiloCli,
)


def _registry(adapters: tuple[type[Source], ...], names: tuple[str, ...]) -> dict[str, Source]:
    """One instance per name of ``names``, in that order.

    Raises:
        RuntimeError: an adapter's name is not in ``names``, or a name has no adapter (or
            two): the registry and the settings would disagree about what exists.
    """
    by_name: dict[str, list[type[Source]]] = {}
    for cls in adapters:
        by_name.setdefault(cls.name, []).append(cls)
    unknown = sorted(set(by_name) - set(names))
    missing = [n for n in names if len(by_name.get(n, ())) != 1]
    if unknown or missing:
        raise RuntimeError(
            f"sufd.sources and settings.KNOWN_SOURCES disagree: adapters not in KNOWN_SOURCES"
            f" {unknown}, names without exactly one adapter {missing}"
        )
    return {name: by_name[name][0]() for name in names}


SOURCES: dict[str, Source] = _registry(_ADAPTERS, KNOWN_SOURCES)


def enabled_sources(settings: Settings) -> list[Source]:
    """The registered sources that the settings leave switched on."""
    return [s for name, s in SOURCES.items() if settings.source(name).enabled]
