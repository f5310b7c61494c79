"""Whether the daemon is healthy, as opposed to merely alive.

Healthy means both:

* the event loop is responsive: the largest loop lag seen recently (see
  :class:`~botd.loopmon.LoopLagMonitor`) is under ``max_loop_lag_ms``;
* every enabled venue's market data is connected, or has been disconnected for no longer than
  ``venue_grace_s`` (a reconnect in progress is normal; an outage past the grace is not).

The verdict feeds the heartbeat file (``botd health``, the Docker ``HEALTHCHECK``) and the
systemd watchdog. A venue crossing its grace is published once as :class:`VenueDown`, and its
return as :class:`VenueUp`, so notifications follow the same definition as health.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from botd.bus import Bus
from botd.clock import NS_PER_SECOND, Clock
from botd.events import VenueDown, VenueUp

__all__ = ["FeedState", "HealthMonitor", "HealthReport", "LagSource"]


class FeedState(Protocol):
    """What a market-data feed tells about its connection."""

    @property
    def venue(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    @property
    def down_since_ns(self) -> int | None:
        """Monotonic time the feed lost (or had not yet made) its connection."""
        ...

    @property
    def last_error(self) -> str: ...


class LagSource(Protocol):
    @property
    def recent_peak_ns(self) -> int: ...


@dataclass(frozen=True, slots=True)
class HealthReport:
    healthy: bool
    reason: str  # empty when healthy; every problem, "; "-separated, otherwise
    loop_lag_ms: float
    venues: dict[str, str] = field(default_factory=dict)  # name -> up | reconnecting | down

    def as_status(self) -> dict[str, object]:
        """The fields the heartbeat file carries (``botd health`` reads healthy/reason)."""
        return {
            "healthy": self.healthy,
            "reason": self.reason,
            "loop_lag_ms": self.loop_lag_ms,
            "venues": dict(self.venues),
        }


class HealthMonitor:
    def __init__(
        self,
        *,
        clock: Clock,
        bus: Bus,
        feeds: Sequence[FeedState],
        lag: LagSource,
        max_loop_lag_ms: float,
        venue_grace_s: float,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._feeds = tuple(feeds)
        self._lag = lag
        self._max_lag_ns = int(max_loop_lag_ms * 1_000_000)
        self._grace_ns = int(venue_grace_s * NS_PER_SECOND)
        self._log = log or structlog.get_logger("botd.health")
        self._reported_down: dict[str, int] = {}  # venue -> monotonic ns it went down
        self._was_healthy = True
        self.last = HealthReport(True, "", 0.0)

    def check(self) -> HealthReport:
        """Evaluate now; publishes VenueDown/VenueUp and logs on transitions."""
        now = self._clock.monotonic_ns()
        problems: list[str] = []
        lag_ns = self._lag.recent_peak_ns
        if lag_ns > self._max_lag_ns:
            problems.append(
                f"event loop lag {lag_ns / 1e6:.0f} ms over {self._max_lag_ns / 1e6:g} ms"
            )
        venues: dict[str, str] = {}
        for feed in self._feeds:
            venues[feed.venue] = self._venue_state(feed, now, problems)
        report = HealthReport(not problems, "; ".join(problems), round(lag_ns / 1e6, 1), venues)
        if report.healthy != self._was_healthy:
            if report.healthy:
                self._log.info("healthy again")
            else:
                self._log.error("unhealthy", reason=report.reason)
            self._was_healthy = report.healthy
        self.last = report
        return report

    def _venue_state(self, feed: FeedState, now: int, problems: list[str]) -> str:
        name = feed.venue
        if feed.connected or feed.down_since_ns is None:
            since = self._reported_down.pop(name, None)
            if since is not None:
                down_for = (now - since) / NS_PER_SECOND
                self._log.warning("venue connected again", venue=name, down_for_s=down_for)
                self._bus.publish(VenueUp(name, down_for, self._clock.time_ns()))
            return "up"
        down_for_ns = now - feed.down_since_ns
        if down_for_ns <= self._grace_ns:
            return "reconnecting"
        down_for = down_for_ns / NS_PER_SECOND
        error = feed.last_error or "no market data yet"
        problems.append(
            f"venue {name} disconnected for {down_for:.0f} s "
            f"(grace {self._grace_ns / NS_PER_SECOND:g} s): {error}"
        )
        if name not in self._reported_down:
            self._reported_down[name] = feed.down_since_ns
            self._log.error("venue down", venue=name, down_for_s=down_for, error=error)
            self._bus.publish(VenueDown(name, error, down_for, self._clock.time_ns()))
        return "down"
