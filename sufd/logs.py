"""The one place that configures logging (structlog over the stdlib).

Event names are stable ``dotted.keys`` with fields; messages never contain prompt or
response text, and tracebacks never include local variables.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure"]

Mode = Literal["cli", "daemon"]


def configure(level: str = "info", *, mode: Mode = "cli") -> None:
    """Route structlog through stdlib logging to stderr.

    ``cli`` mode (one-shot commands) shows warnings and errors only unless ``level`` is
    ``debug``: the command's own output is what the user asked for.
    """
    numeric = getattr(logging, level.upper(), logging.INFO)
    if mode == "cli" and numeric > logging.DEBUG:
        numeric = max(numeric, logging.WARNING)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.ExceptionRenderer(
                    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                ),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("watchfiles").setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
