"""The registry of source adapters: the only list of the agents sufd understands.

Adding an agent is one new module in this package plus one line in :data:`SOURCES`.
"""

from __future__ import annotations

from sufd.settings import Settings
from sufd.sources.base import FileContext, Malformed, Record, Source
from sufd.sources.claude import ClaudeCode
from sufd.sources.cline import Cline, KiloCode, RooCode
from sufd.sources.codex import Codex
from sufd.sources.cursor import Cursor
from sufd.sources.gemini import GeminiCli
from sufd.sources.opencode import KiloCli, OpenCode

__all__ = ["SOURCES", "FileContext", "Malformed", "Record", "Source", "enabled_sources"]

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        ClaudeCode(),
        Codex(),
        Cline(),
        RooCode(),
        KiloCode(),
        Cursor(),
        GeminiCli(),
        OpenCode(),
        KiloCli(),
    )
}


def enabled_sources(settings: Settings) -> list[Source]:
    """The registered sources that the settings leave switched on."""
    return [s for name, s in SOURCES.items() if settings.source(name).enabled]
