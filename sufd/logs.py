"""Configuring log output, once per process: the entry points call :func:`configure` (and the
daemon :func:`check_file` on its heartbeat). Modules that log do not import this; they get
their loggers from :mod:`sufd.logger`. This is the one place that configures logging
(structlog over the stdlib), so it imports structlog, which :mod:`sufd.logger` keeps off
every module's import.

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

from sufd.logger import cli_level

__all__ = ["LOG_FILE", "check_file", "configure"]

Mode = Literal["cli", "daemon"]
LOG_FILE = "sufd.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
_SYSLOG = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates ``sufd.log`` 0600 whatever the umask: at start and after every rollover (the
    stdlib reopens it with ``open()``, i.e. 0644 under systemd's default ``UMask=0022``).

    A failed write or rollover is recorded (for :func:`check_file`) instead of a traceback
    on stderr for every record.
    """

    write_error: str | None = None  # until a record is written again
    rotate_error: str | None = None  # until a rollover succeeds
    hold_rotation = False  # the directory is not writable: a rollover would fail
    _failed = False

    def _open(self) -> Any:
        flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.hold_rotation:
            return False
        return bool(super().shouldRollover(record))

    def doRollover(self) -> None:
        try:
            super().doRollover()
            self.rotate_error = None
        except OSError as exc:
            self.hold_rotation = True
            self.rotate_error = f"cannot rotate {self.baseFilename}: {_strerror(exc)}"
            if self.stream is None:  # the stdlib closed it before renaming
                self.stream = self._open()

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)
        if not self._failed:
            self.write_error = None

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed = True
        self.write_error = f"cannot write {self.baseFilename}: {_strerror(sys.exc_info()[1])}"


def _strerror(exc: BaseException | None) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


class _LogFile:
    """The daemon's log file: opened at start, checked on every heartbeat, reopened when it
    was removed or replaced, and held off (records go to stderr only) while it cannot be
    written."""

    def __init__(self, log_dir: Path, make: Any) -> None:
        self.dir = log_dir
        self.path = log_dir / LOG_FILE
        self._make = make  # builds the formatted handler around a file handler
        self.handler: _PrivateRotatingFileHandler | None = None

    def open(self) -> None:
        """Create the directory and the file (0700/0600) and attach the handler to root."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
        handler = _PrivateRotatingFileHandler(
            self.path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
        self._make(handler)
        self.handler = handler
        logging.getLogger().addHandler(handler)

    def close(self) -> None:
        """Detach and close the handler (its file is gone or unusable)."""
        handler, self.handler = self.handler, None
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()

    def problem(self) -> str | None:
        """(heartbeat) Reopen the file if it was removed or replaced; what is wrong, if
        anything. Cheap: a stat, an fstat and an access check."""
        handler = self.handler
        replaced = handler is not None and not self._same_file(handler)
        if replaced:
            self.close()  # what is written to a removed file is lost: open the path again
        if self.handler is None:
            try:
                self.open()
                if replaced:
                    structlog.get_logger(__name__).warning("log.file_reopened", path=str(self.path))
            except OSError as exc:
                self.close()
                if self.dir.exists() and not self.dir.is_dir():
                    return f"cannot write the log file: {self.dir} is not a directory"
                return f"cannot write the log file in {self.dir}: {_strerror(exc)}"
        handler = self.handler
        assert handler is not None
        writable = os.access(self.dir, os.W_OK | os.X_OK, effective_ids=True)
        if not writable:
            handler.hold_rotation = True
            return f"log directory {self.dir} is not writable: {LOG_FILE} is not rotated"
        handler.hold_rotation = False  # retried with the next record past the size limit
        return handler.write_error or handler.rotate_error

    def _same_file(self, handler: _PrivateRotatingFileHandler) -> bool:
        stream = handler.stream
        if stream is None:
            return True  # opened again by the next record
        try:
            st, fst = os.stat(self.path), os.fstat(stream.fileno())
        except (OSError, ValueError):
            return False
        return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


_log_file: _LogFile | None = None


def check_file() -> str | None:
    """What is wrong with the daemon's log file now (``None``: nothing, or not a daemon).

    Called on every heartbeat: a log file that was removed (its directory deleted by a
    cleaner, say) is opened again; one that could not be opened is retried, and records
    go to stderr meanwhile.
    """
    return _log_file.problem() if _log_file is not None else None


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
    if mode == "cli":
        stderr_level = cli_level(level)
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

    global _log_file
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler(logging.StreamHandler(sys.stderr), stderr_renderer, stderr_level)]
    root.setLevel(numeric)
    _log_file = None
    problem = None
    if mode == "daemon" and log_dir is not None:
        _log_file = _LogFile(
            log_dir,
            lambda h: handler(h, structlog.processors.JSONRenderer(sort_keys=True), numeric),
        )
        problem = _log_file.problem()
    logging.getLogger("watchfiles").setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return problem
