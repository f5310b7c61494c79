"""The systemd notify protocol, spoken directly (no libsystemd).

A datagram of ``KEY=value`` lines sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET``
(see sd_notify(3)). Notification is best effort: a failure is logged once and otherwise
ignored, because a daemon must never stop trading over a status message.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

import structlog

from botd.clock import Clock

__all__ = ["SdNotifier", "run_watchdog"]

_log = structlog.stdlib.get_logger(__name__)

_USEC_PER_SECOND = 1_000_000


class SdNotifier:
    """Sends readiness, status and watchdog notifications to systemd, if it asked for them."""

    def __init__(
        self,
        address: str | None,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
        pid: int | None = None,
    ) -> None:
        # An abstract-namespace socket is spelled "@name" in the environment and "\0name" on
        # the wire.
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._pid = os.getpid() if pid is None else pid
        self._sock: socket.socket | None = None
        self._error_logged = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> SdNotifier:
        return cls(
            environ.get("NOTIFY_SOCKET"),
            _parse_int(environ.get("WATCHDOG_USEC")),
            _parse_int(environ.get("WATCHDOG_PID")),
            pid,
        )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the systemd watchdog timeout, as sd_watchdog_enabled(3)
        recommends; None when the watchdog is off or meant for another process."""
        if self._watchdog_usec is None or self._watchdog_usec <= 0:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != self._pid:
            return None
        return self._watchdog_usec / _USEC_PER_SECOND / 2

    def ready(self) -> bool:
        return self.send(READY=1)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (e.g. a slow startup reconciliation)."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * _USEC_PER_SECOND))

    def send(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if it was handed to the kernel."""
        if self._address is None or not fields:
            return False
        # A newline inside a value would start a new (bogus) assignment.
        payload = "\n".join(
            f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items()
        ).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._error_logged:
                self._error_logged = True
                _log.warning(
                    "sd_notify failed; further failures will not be logged",
                    socket=self._address.replace("\0", "@"),
                    error=str(exc),
                )
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


async def run_watchdog(notifier: SdNotifier, clock: Clock, healthy: Callable[[], bool]) -> None:
    """Ping the systemd watchdog every interval while ``healthy()`` holds.

    While the daemon reports itself unhealthy no ping is sent, so systemd's watchdog fires and
    restarts it once ``WatchdogSec`` passes without one; if health returns first, pings resume
    and nothing happens. Returns at once when no watchdog was requested.
    """
    interval = notifier.watchdog_interval()
    if interval is None or not notifier.enabled:
        return
    withholding = False
    while True:
        if healthy():
            if withholding:
                withholding = False
                _log.warning("healthy again: systemd watchdog pings resume")
            notifier.watchdog()
        elif not withholding:
            withholding = True
            _log.error("unhealthy: withholding systemd watchdog pings")
        await clock.sleep(interval)
