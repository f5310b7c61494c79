"""Notices when something blocks the event loop.

Everything in botd shares one event loop, so a strategy hook that sleeps or computes for a
second delays every market event, order and timer by that second. This task sleeps a short
interval on the loop and reports how late it woke up.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from botd.clock import Clock, perf_ns

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    def __init__(
        self,
        clock: Clock,
        *,
        warn_ms: float,
        interval_s: float = 0.1,
        suspect: Callable[[], str | None] = lambda: None,
        perf: Callable[[], int] = perf_ns,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._clock = clock
        self._warn_ns = int(warn_ms * 1_000_000)
        self._interval_s = interval_s
        self._suspect = suspect
        self._perf = perf
        self._log = log or structlog.get_logger("botd.loop")
        self.max_lag_ns = 0
        self.warnings = 0

    async def run(self) -> None:
        interval_ns = int(self._interval_s * 1e9)
        while True:
            started = self._perf()
            await self._clock.sleep(self._interval_s)
            lag = self._perf() - started - interval_ns
            self.max_lag_ns = max(self.max_lag_ns, lag)
            if lag > self._warn_ns:
                self.warnings += 1
                self._log.warning(
                    "event loop was blocked",
                    lag_ms=round(lag / 1e6, 1),
                    slowest_recent_hook=self._suspect(),
                )
