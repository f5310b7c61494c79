"""The only place botd reads the wall clock or sleeps.

Everything else receives a :class:`Clock` and asks it for time, so tests and backtests can
drive time explicitly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["NS_PER_SECOND", "Clock", "FakeClock", "LiveClock", "SimClock", "perf_ns"]

NS_PER_SECOND = 1_000_000_000


def perf_ns() -> int:
    """Elapsed-work counter for timing our own code (strategy hooks, loop lag).

    Separate from :class:`Clock` on purpose: in a backtest the trading clock is simulated, but a
    strategy that burns 50 ms of CPU per call is slow in real time either way.
    """
    return time.perf_counter_ns()


class Clock(Protocol):
    def time_ns(self) -> int:
        """Wall-clock time, integer nanoseconds since the Unix epoch."""
        ...

    def monotonic_ns(self) -> int:
        """A monotonic reading for durations and timeouts."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class LiveClock:
    """Real time."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """Time that moves only when a test says so.

    ``sleep`` parks the caller until :meth:`advance` moves time past its deadline; sleepers wake
    in deadline order, each seeing ``time_ns()`` equal to its own deadline.
    """

    def __init__(self, start_ns: int = 1_700_000_000 * NS_PER_SECOND) -> None:
        self._now = start_ns
        self._start = start_ns
        self._seq = itertools.count()
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []

    def time_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._now - self._start

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self._now + int(seconds * NS_PER_SECOND)
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline falls inside the step."""
        target = self._now + int(seconds * NS_PER_SECOND)
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self._now = max(self._now, deadline)
            fut.set_result(None)
            # Let the woken task run (and possibly sleep again) before moving on.
            for _ in range(3):
                await asyncio.sleep(0)
        self._now = max(self._now, target)
        await asyncio.sleep(0)


class SimClock(FakeClock):
    """Backtest time: set by the replay feed to each event's timestamp, never backwards.

    Moving time costs one comparison unless a sleeper (a timer, the gateway's balance refresh)
    falls due, so the replay loop calls :meth:`due` and awaits :meth:`advance_to` only then.
    """

    def due(self, ts_ns: int) -> bool:
        """True if moving to ``ts_ns`` would wake a sleeper."""
        sleepers = self._sleepers
        return bool(sleepers) and sleepers[0][0] <= ts_ns

    def set(self, ts_ns: int) -> None:
        """Move to ``ts_ns`` without waking anyone (the caller checked :meth:`due`)."""
        if ts_ns > self._now:
            self._now = ts_ns

    async def advance_to(self, ts_ns: int) -> None:
        """Move to ``ts_ns``, waking every sleeper due by then in deadline order."""
        sleepers = self._sleepers
        # A loop that can tell when no callback is ready (botd.backtest.loop.ReplayLoop) spares
        # the turns in which nothing would run.
        idle: Callable[[], bool] | None = getattr(asyncio.get_running_loop(), "idle", None)
        while sleepers and sleepers[0][0] <= ts_ns:
            deadline, _, fut = heapq.heappop(sleepers)
            if fut.done():
                continue
            self.set(deadline)
            fut.set_result(None)
            # Let the woken task run (and possibly sleep again) before moving on.
            for _ in range(3):
                await asyncio.sleep(0)
                if idle is not None and idle():
                    break
        self.set(ts_ns)
