"""Health: loop lag and venue connectivity with a reconnect grace; VenueDown/VenueUp once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botd.bus import Bus
from botd.clock import FakeClock
from botd.errors import TransientVenueError
from botd.events import VenueDown, VenueUp
from botd.feeds.runner import FeedRunner
from botd.healthmon import HealthMonitor
from botd.loopmon import LoopLagMonitor
from botd.model import Quote


@dataclass
class Feed:
    venue: str
    connected: bool = True
    down_since_ns: int | None = None
    last_error: str = ""


@dataclass
class Lag:
    recent_peak_ns: int = 0


def monitor(
    clock: FakeClock, feeds: Sequence[Feed], lag: Lag, bus: Bus | None = None
) -> HealthMonitor:
    return HealthMonitor(
        clock=clock,
        bus=bus or Bus(),
        feeds=feeds,
        lag=lag,
        max_loop_lag_ms=500,
        venue_grace_s=30,
    )


async def test_a_venue_is_unhealthy_only_past_its_grace_and_reported_once() -> None:
    clock, bus = FakeClock(), Bus()
    events: list[object] = []
    bus.subscribe(VenueDown, events.append)
    bus.subscribe(VenueUp, events.append)
    paper, binance = Feed("paper"), Feed("binance")
    health = monitor(clock, [paper, binance], Lag(), bus)
    assert health.check().healthy

    binance.connected, binance.down_since_ns = False, clock.monotonic_ns()
    binance.last_error = "Cannot connect to host 127.0.0.1:9"
    await clock.advance(30)
    report = health.check()
    assert report.healthy  # reconnecting, within the grace
    assert report.venues == {"paper": "up", "binance": "reconnecting"}
    assert events == []

    await clock.advance(1)
    report = health.check()
    assert not report.healthy
    assert report.venues["binance"] == "down"
    assert report.reason == (
        "venue binance disconnected for 31 s (grace 30 s): Cannot connect to host 127.0.0.1:9"
    )
    health.check()
    await clock.advance(10)
    health.check()
    [down] = events
    assert isinstance(down, VenueDown)
    assert (down.venue, down.reason, down.down_for_s) == (
        "binance",
        "Cannot connect to host 127.0.0.1:9",
        31.0,
    )

    binance.connected, binance.down_since_ns = True, None
    report = health.check()
    assert report.healthy and report.venues["binance"] == "up"
    assert isinstance(events[1], VenueUp)
    assert events[1].down_for_s == 41.0
    health.check()
    assert len(events) == 2


async def test_a_short_outage_is_never_reported() -> None:
    clock, bus = FakeClock(), Bus()
    events: list[object] = []
    bus.subscribe(VenueDown, events.append)
    bus.subscribe(VenueUp, events.append)
    feed = Feed("binance", connected=False, down_since_ns=clock.monotonic_ns())
    health = monitor(clock, [feed], Lag(), bus)
    await clock.advance(5)
    assert health.check().healthy
    feed.connected, feed.down_since_ns = True, None
    assert health.check().healthy
    assert events == []


def test_loop_lag_over_the_threshold_is_unhealthy() -> None:
    lag = Lag(recent_peak_ns=499_000_000)
    health = monitor(FakeClock(), [Feed("paper")], lag)
    assert health.check().healthy
    lag.recent_peak_ns = 1_200_000_000
    report = health.check()
    assert not report.healthy
    assert report.reason == "event loop lag 1200 ms over 500 ms"
    assert report.as_status()["healthy"] is False
    assert report.as_status()["loop_lag_ms"] == 1200.0


async def test_lag_monitor_keeps_a_recent_peak() -> None:
    perf = [0]
    clock = FakeClock()
    mon = LoopLagMonitor(
        clock, warn_ms=100, interval_s=0.1, peak_window_s=1.0, perf=lambda: perf[0]
    )
    task = asyncio.create_task(mon.run())
    await asyncio.sleep(0)

    async def tick(lag_ms: int) -> None:
        perf[0] += 100_000_000 + lag_ms * 1_000_000
        await clock.advance(0.1)

    await tick(0)
    await tick(2000)  # the loop was blocked for 2 s
    assert mon.recent_peak_ns == 2_000_000_000
    for _ in range(5):
        await tick(1)
    assert mon.recent_peak_ns == 2_000_000_000  # remembered for the window...
    for _ in range(10):
        await tick(1)
    assert mon.recent_peak_ns == 1_000_000  # ...then forgotten
    assert mon.last_lag_ns == 1_000_000
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class FlakyAdapter:
    """Streams quotes until `drop` is set, then fails; refuses to connect while `down`."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = False
        self.drop = asyncio.Event()

    async def market_data(self, symbols: Sequence[str]) -> AsyncIterator[Any]:
        if self.down:
            raise TransientVenueError("connection refused")
        one = Decimal(1)
        for _ in range(3):
            yield Quote("flaky", "BTCUSDT", Decimal(100), Decimal(101), one, one, 0, 0)
        await self.drop.wait()
        raise OSError("connection reset")


async def test_feed_runner_reports_its_connection() -> None:
    clock, adapter = FakeClock(), FlakyAdapter()
    runner = FeedRunner(
        adapter=adapter,  # type: ignore[arg-type]
        symbols=["BTCUSDT"],
        bus=Bus(),
        clock=clock,
        rng=random.Random(1),
        backoff_initial_s=1,
        backoff_max_s=1,
    )
    assert runner.venue == "flaky"
    assert not runner.connected and runner.down_since_ns == 0  # not connected yet
    adapter.down = True
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0)
    assert not runner.connected
    assert runner.last_error == "connection refused"
    await clock.advance(2)
    assert runner.down_since_ns == 0  # down since start, not since the latest attempt
    adapter.down = False
    await clock.advance(2)
    assert runner.connected and runner.down_since_ns is None
    assert runner.events == 3
    adapter.drop.set()
    await asyncio.sleep(0)
    assert not runner.connected
    assert runner.last_error == "connection reset"
    assert runner.down_since_ns == clock.monotonic_ns()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
