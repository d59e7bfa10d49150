"""The one place that configures logging (structlog over the stdlib).

Event names are stable ``dotted.keys`` with fields; no message ever carries prompt or
response text, and tracebacks never include local variables.

The daemon writes JSON lines to ``sufd.log`` in the log dir (rotated by size) and, on
stderr, a readable console format on a TTY, ``key=value`` lines with syslog ``<N>`` level
prefixes under systemd (journald keeps the levels), or warnings only under launchd (whose
stderr file never rotates).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Literal

import structlog

__all__ = ["LOG_FILE", "configure"]

Mode = Literal["cli", "daemon"]
LOG_FILE = "sufd.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
_SYSLOG = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates ``sufd.log`` 0600 whatever the umask: at start and after every rollover (the
    stdlib reopens it with ``open()``, i.e. 0644 under systemd's default ``UMask=0022``)."""

    def _open(self) -> Any:
        flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def _under_journald(env: Mapping[str, str]) -> bool:
    stream = env.get("JOURNAL_STREAM", "")
    if ":" not in stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def _journal_renderer(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
    level = str(event.pop("level", "info"))
    event.pop("timestamp", None)
    name = event.pop("event", "")
    fields = " ".join(f"{k}={_kv(v)}" for k, v in sorted(event.items()))
    return f"<{_SYSLOG.get(level, 6)}>{name} {fields}".rstrip()


def _kv(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def configure(
    level: str = "info",
    *,
    mode: Mode = "cli",
    log_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """Configure logging once per process.

    ``cli`` mode (one-shot commands) shows warnings and errors on stderr unless ``level`` is
    ``debug``. ``daemon`` mode adds the rotating JSON file in ``log_dir``.

    Returns:
        A description of a problem with the log file (e.g. the directory is not writable),
        or ``None``. The daemon keeps running and reports it; logging then goes to stderr.
    """
    env = os.environ if env is None else env
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    stderr_level = numeric
    stderr_renderer: structlog.types.Processor
    if sys.stderr.isatty():
        stderr_renderer = structlog.dev.ConsoleRenderer(colors=True)
    elif mode == "daemon" and _under_journald(env):
        stderr_renderer = _journal_renderer
    else:
        stderr_renderer = structlog.processors.JSONRenderer(sort_keys=True)
    if mode == "cli" and numeric > logging.DEBUG:
        stderr_level = max(numeric, logging.WARNING)
    if mode == "daemon" and env.get("SUFD_SERVICE_MANAGER") == "launchd":
        stderr_level = max(numeric, logging.WARNING)

    def handler(
        h: logging.Handler, renderer: structlog.types.Processor, lvl: int
    ) -> logging.Handler:
        h.setLevel(lvl)
        h.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    tracebacks,
                    renderer,
                ],
            )
        )
        return h

    handlers = [handler(logging.StreamHandler(sys.stderr), stderr_renderer, stderr_level)]
    problem = None
    if mode == "daemon" and log_dir is not None:
        try:
            log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = log_dir / LOG_FILE
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
            rotating = _PrivateRotatingFileHandler(
                path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
            )
            handlers.append(
                handler(rotating, structlog.processors.JSONRenderer(sort_keys=True), numeric)
            )
        except OSError as exc:
            problem = f"cannot write the log file in {log_dir}: {exc.strerror or exc}"
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(numeric)
    logging.getLogger("watchfiles").setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return problem
