"""Keeps one venue's market-data stream flowing onto the bus.

A stream that fails is reopened with exponential backoff and full jitter, so a fleet of
daemons does not reconnect in lockstep after an outage.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import structlog

from botd.bus import Bus
from botd.clock import Clock
from botd.errors import AuthError, TransientVenueError
from botd.venues.base import VenueAdapter

__all__ = ["FeedRunner"]


class FeedRunner:
    def __init__(
        self,
        *,
        adapter: VenueAdapter,
        symbols: Sequence[str],
        bus: Bus,
        clock: Clock,
        rng: random.Random,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._adapter = adapter
        self._symbols = tuple(symbols)
        self._bus = bus
        self._clock = clock
        self._rng = rng
        self._initial = backoff_initial_s
        self._max = backoff_max_s
        self._log = (log or structlog.get_logger("botd.feed")).bind(venue=adapter.name)
        self.events = 0
        self.reconnects = 0
        self.last_event_ns = 0
        # Connection state for health: up from the first event of a connection until it
        # fails; down (since when, and why) before that.
        self.connected = False
        self.down_since_ns: int | None = clock.monotonic_ns()
        self.last_error = ""

    @property
    def venue(self) -> str:
        return self._adapter.name

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                self._log.info("market data stream opening", symbols=list(self._symbols))
                async for event in self._adapter.market_data(self._symbols):
                    attempt = 0
                    self.events += 1
                    self.last_event_ns = self._clock.monotonic_ns()
                    if not self.connected:
                        self.connected, self.down_since_ns = True, None
                    self._bus.publish(event)
                self._log.warning("market data stream ended; reopening")
                self._mark_down("stream ended")
            except AuthError:
                raise
            except (TransientVenueError, OSError, TimeoutError) as exc:
                self._log.warning("market data stream failed", error=str(exc))
                self._mark_down(str(exc) or type(exc).__name__)
            attempt += 1
            self.reconnects += 1
            delay = self._rng.uniform(0, min(self._max, self._initial * 2 ** min(attempt, 16)))
            await self._clock.sleep(delay)

    def _mark_down(self, error: str) -> None:
        self.last_error = error
        if self.connected or self.down_since_ns is None:
            self.connected = False
            self.down_since_ns = self._clock.monotonic_ns()
