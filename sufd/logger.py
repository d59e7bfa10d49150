"""Getting a logger: what every module imports to log (``log = get_logger(__name__)``).

Light on purpose (stdlib ``logging`` only). Where log output goes and in what format is
:mod:`sufd.logs`, which only the entry points import, once per process. A logger from here
is bound to structlog when it first logs something shown.

Importing structlog (and the asyncio it imports) took 140 ms, a third of a ``sufd ingest``
with nothing new to read, though a one-shot command shows only warnings. Such a command
calls :func:`defer` instead of configuring logging at once: events below what its stderr
shows are dropped without structlog, and the first one shown configures logging first.
Until :func:`defer` is called (the daemon never calls it), a logger binds on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["cli_level", "defer", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}
_shown_from = logging.NOTSET  # events below this level are dropped unseen
_configure: Callable[[], object] | None = None


def cli_level(level: str) -> int:
    """The lowest level a one-shot command shows on stderr: warnings, unless ``debug``."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    return numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)


def defer(level: str, configure: Callable[[], object]) -> None:
    """Drop events below :func:`cli_level` of ``level``; call ``configure`` before the first
    event that is shown."""
    global _shown_from, _configure
    _shown_from, _configure = cli_level(level), configure


def get_logger(name: str) -> Any:
    """A logger for module ``name``: structlog's, once anything is logged through it."""
    return _Lazy(name)


def _drop(*_args: Any, **_kwargs: Any) -> None:
    return None


class _Lazy:
    __slots__ = ("_name", "_bound")

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None

    def __getattr__(self, method: str) -> Any:
        if _LEVELS.get(method, logging.CRITICAL) < _shown_from:
            return _drop
        if self._bound is None:
            global _configure
            if _configure is not None:
                configure, _configure = _configure, None
                configure()
            import structlog

            self._bound = structlog.get_logger(self._name)
        return getattr(self._bound, method)
