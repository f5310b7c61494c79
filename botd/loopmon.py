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
        peak_window_s: float = 5.0,
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
        self.last_lag_ns = 0
        # The largest lag of roughly the last peak_window_s, for the health check: one sample
        # alone would forget a long block as soon as the loop runs freely again.
        self._peak_window_ns = int(peak_window_s * 1e9)
        self._peak_ns = 0
        self._peak_at_ns = 0

    @property
    def recent_peak_ns(self) -> int:
        return self._peak_ns

    async def run(self) -> None:
        interval_ns = int(self._interval_s * 1e9)
        while True:
            started = self._perf()
            await self._clock.sleep(self._interval_s)
            now = self._perf()
            lag = now - started - interval_ns
            self.max_lag_ns = max(self.max_lag_ns, lag)
            self.last_lag_ns = lag
            if lag >= self._peak_ns or now - self._peak_at_ns > self._peak_window_ns:
                self._peak_ns, self._peak_at_ns = lag, now
            if lag > self._warn_ns:
                self.warnings += 1
                self._log.warning(
                    "event loop was blocked",
                    lag_ms=round(lag / 1e6, 1),
                    slowest_recent_hook=self._suspect(),
                )
