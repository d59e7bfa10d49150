"""systemd's notification protocol (sd_notify) in pure Python.

Does nothing unless ``NOTIFY_SOCKET`` is set, so the daemon calls it unconditionally.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping

from sufd.logger import get_logger

__all__ = ["Notifier"]

log = get_logger(__name__)


class Notifier:
    """Sends ``READY=1``, ``STATUS=``, ``WATCHDOG=1``, ``RELOADING=1`` and ``STOPPING=1``."""

    def __init__(self, env: Mapping[str, str]) -> None:
        path = env.get("NOTIFY_SOCKET", "")
        # An "@" prefix names a Linux abstract socket.
        self._addr = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s: float | None = (
            int(usec) / 2e6 if usec.isdigit() and int(usec) else None
        )
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self._addr)

    def send(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; failures are logged once, never raised."""
        if not self._addr:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self._addr)
        except OSError as exc:
            if not self._warned:
                log.warning("notify.failed", error=str(exc))
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> None:
        """The daemon serves requests."""
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """A one-line summary shown by ``systemctl status``."""
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        """Still alive (only meaningful when ``WATCHDOG_USEC`` is set)."""
        if self.watchdog_interval_s is not None:
            self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """A configuration reload starts; ``ready`` ends it."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.send("STOPPING=1")
