"""Session awareness: ``self.market_open`` and the ``on_session_open`` / ``on_session_close``
hooks, driven by the injected clock and the XNYS calendar (weekends, holidays, early closes),
contained like every other hook.

The rig's FakeClock starts on Tuesday 2023-11-14 at 17:13 New York time, after the close; the
twelve days after it hold a weekend, Thanksgiving (Thursday 23rd, closed) and the early close
of the day after (Friday 24th, 13:00)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog

from botd import Strategy
from botd.sessions import ALWAYS_OPEN, ExchangeCalendar, SessionCalendar
from botd.strategy.host import HostLimits, StrategyStatus
from botd.strategy.loader import LoadedStrategy
from tests.rig import Rig

ET = ZoneInfo("America/New_York")
DAY = 86_400.0


@pytest.fixture(scope="module")
def xnys() -> ExchangeCalendar:
    return ExchangeCalendar("XNYS")


class Source:
    """ETHUSDT plays a US stock on the NYSE calendar; BTCUSDT trades around the clock."""

    def __init__(self, xnys: ExchangeCalendar) -> None:
        self.xnys = xnys

    def calendar(self, venue: str, symbol: str) -> SessionCalendar:
        return self.xnys if symbol == "ETHUSDT" else ALWAYS_OPEN


def et(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, ET).strftime("%a %m-%d %H:%M")


class Stock(Strategy):
    symbol = "ETHUSDT"

    def on_start(self) -> None:
        self.state["seen"] = []
        self.state["open_at_start"] = self.market_open

    def on_session_open(self) -> None:
        self.state["seen"].append(("open", et(self.now), self.market_open))

    def on_session_close(self) -> None:
        self.state["seen"].append(("close", et(self.now), self.market_open))


class Crypto(Stock):
    symbol = "BTCUSDT"


class BrokenOpen(Stock):
    def on_session_open(self) -> None:
        raise RuntimeError("open bug")


def loaded(cls: type[Strategy], sid: str) -> LoadedStrategy:
    return LoadedStrategy(sid, cls, Path("inline.py"))


async def test_hooks_fire_at_the_open_and_close_of_trading_days_only(
    xnys: ExchangeCalendar,
) -> None:
    rig = Rig(sessions=Source(xnys))
    async with rig.running(feed=False):
        stock = rig.host.start(loaded(Stock, "stock"))
        assert stock is not None
        await rig.settle()  # the session timer starts
        await rig.clock.advance(12 * DAY)
        await rig.settle()
    assert stock.strategy.state["open_at_start"] is False  # 17:13 ET, after the close
    expected = []
    for day in ("Wed 11-15", "Thu 11-16", "Fri 11-17", "Mon 11-20", "Tue 11-21", "Wed 11-22"):
        expected += [("open", f"{day} 09:30", True), ("close", f"{day} 16:00", False)]
    expected += [("open", "Fri 11-24 09:30", True), ("close", "Fri 11-24 13:00", False)]
    assert stock.strategy.state["seen"] == expected  # no weekend, no Thanksgiving


async def test_market_open_follows_the_clock_between_hooks(xnys: ExchangeCalendar) -> None:
    rig = Rig(sessions=Source(xnys))
    async with rig.running(feed=False):
        stock = rig.host.start(loaded(Stock, "stock"))
        crypto = rig.host.start(loaded(Crypto, "crypto"))
        assert stock is not None and crypto is not None
        await rig.settle()
        seen: list[tuple[bool, bool]] = []
        # Tue 17:13 -> Wed 09:29:59 (closed) -> 09:30 (open) -> 15:59:59 -> 16:00 (closed).
        for step in (16 * 3600 + 16 * 60 + 39, 1, 6.5 * 3600 - 1, 1):
            await rig.clock.advance(step)
            seen.append((stock.strategy.market_open, crypto.strategy.market_open))
        await rig.clock.advance(3 * DAY)  # into the weekend
        seen.append((stock.strategy.market_open, crypto.strategy.market_open))
    assert seen == [(False, True), (True, True), (True, True), (False, True), (False, True)]
    # Around the clock: never an open or a close.
    assert crypto.strategy.state["seen"] == []
    assert rig.scheduler.jobs("crypto") == []


async def test_a_raising_session_hook_is_contained_and_halts_only_that_strategy(
    xnys: ExchangeCalendar,
) -> None:
    rig = Rig(sessions=Source(xnys), limits=HostLimits(max_errors=2, error_window_s=10 * DAY))
    async with rig.running(feed=False):
        good = rig.host.start(loaded(Stock, "good"))
        bad = rig.host.start(loaded(BrokenOpen, "bad"))
        assert good is not None and bad is not None
        await rig.settle()
        with structlog.testing.capture_logs() as logs:
            await rig.clock.advance(5 * DAY)
            await rig.settle()
    raised = [e for e in logs if e["event"] == "strategy hook raised"]
    assert [e["hook"] for e in raised] == ["on_session_open", "on_session_open"]
    assert bad.status is StrategyStatus.HALTED
    assert rig.scheduler.jobs("bad") == []  # its session timer went with it
    # Its closes before the halt still arrived; nothing after it.
    assert [s[0] for s in bad.strategy.state["seen"]] == ["close"]
    assert good.status is StrategyStatus.RUNNING
    assert len(good.strategy.state["seen"]) == 6  # Wed, Thu, Fri: opens and closes


async def test_stopping_a_strategy_stops_its_session_hooks(xnys: ExchangeCalendar) -> None:
    rig = Rig(sessions=Source(xnys))
    async with rig.running(feed=False):
        stock = rig.host.start(loaded(Stock, "stock"))
        assert stock is not None
        assert [j.name for j in rig.scheduler.jobs("stock")] == ["session"]
        await rig.settle()
        await rig.clock.advance(DAY)  # Wed 17:13: one open, one close
        rig.host.stop("stock")
        await rig.clock.advance(DAY)
        await rig.settle()
    assert [s[0] for s in stock.strategy.state["seen"]] == ["open", "close"]
    assert rig.scheduler.jobs("stock") == []


async def test_without_a_session_source_everything_is_open() -> None:
    rig = Rig()
    async with rig.running(feed=False):
        stock = rig.host.start(loaded(Stock, "stock"))
        assert stock is not None
        await rig.clock.advance(DAY)
    assert stock.strategy.market_open is True
    assert stock.strategy.state["seen"] == []
