from decimal import Decimal as D

import pytest

from botd.bus import Bus
from botd.clock import NS_PER_SECOND, FakeClock
from botd.durations import DurationError
from botd.feeds.bars import BarAggregator
from botd.model import Bar, Side, Trade

S = NS_PER_SECOND
T0 = 1_700_000_040 * S  # a whole minute


def trade(ts: int, price: str, size: str = "1", symbol: str = "BTCUSDT") -> Trade:
    return Trade("paper", symbol, D(price), D(size), Side.BUY, str(ts), ts, ts)


def setup(timeframes: tuple[str, ...] = ("5s",)) -> tuple[Bus, FakeClock, BarAggregator, list[Bar]]:
    bus, clock = Bus(), FakeClock(start_ns=T0)
    bars: list[Bar] = []
    bus.subscribe(Bar, bars.append)
    agg = BarAggregator(bus, clock, grace_s=0.25)
    for tf in timeframes:
        agg.ensure("paper", "BTCUSDT", tf)
    return bus, clock, agg, bars


def test_ohlcv_and_close_on_next_interval_trade() -> None:
    bus, _, _, bars = setup()
    for ts, price, size in [(0, "10", "1"), (1, "12", "2"), (2, "9", "1"), (4, "11", "0.5")]:
        bus.publish(trade(T0 + ts * S, price, size))
    assert bars == []
    bus.publish(trade(T0 + 5 * S, "13"))
    (bar,) = bars
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        D("10"),
        D("12"),
        D("9"),
        D("11"),
        D("4.5"),
    )
    assert (bar.start, bar.end, bar.ts_event) == (T0, T0 + 5 * S, T0 + 5 * S)
    assert bar.timeframe == "5s"


def test_quiet_market_closes_after_end_plus_grace() -> None:
    bus, clock, agg, bars = setup()
    bus.publish(trade(T0 + 1 * S, "10"))
    clock._now = T0 + 5 * S  # just at the end: grace not over yet
    assert agg.flush_due() == 0
    clock._now = T0 + 5 * S + S // 4
    assert agg.flush_due() == 1
    assert bars[0].close == D("10")
    assert bars[0].ts_recv == T0 + 5 * S + S // 4
    assert agg.flush_due() == 0  # closed once only


async def test_run_loop_closes_bars_on_the_clock() -> None:
    import asyncio

    bus, clock, agg, bars = setup()
    task = asyncio.create_task(agg.run(tick_s=0.1))
    await asyncio.sleep(0)
    bus.publish(trade(T0 + 1 * S, "10"))
    await clock.advance(5.5)
    task.cancel()
    assert len(bars) == 1


def test_gaps_produce_no_empty_bars_and_late_trades_are_dropped() -> None:
    bus, _, agg, bars = setup()
    bus.publish(trade(T0 + 1 * S, "10"))
    bus.publish(trade(T0 + 31 * S, "20"))  # five empty intervals in between
    bus.publish(trade(T0 + 2 * S, "99"))  # late print for a closed interval
    bus.publish(trade(T0 + 36 * S, "21"))
    assert [b.close for b in bars] == [D("10"), D("20")]
    assert bars[1].start == T0 + 30 * S
    assert agg.late_trades == 1


def test_several_timeframes_and_other_symbols() -> None:
    bus, _, _, bars = setup(("5s", "1m"))
    for sec in range(0, 61):
        bus.publish(trade(T0 + sec * S, str(100 + sec)))
        bus.publish(trade(T0 + sec * S, "1", symbol="ETHUSDT"))  # not asked for
    five = [b for b in bars if b.timeframe == "5s"]
    minute = [b for b in bars if b.timeframe == "1m"]
    assert len(five) == 12
    assert len(minute) == 1
    assert (minute[0].open, minute[0].high, minute[0].close) == (D("100"), D("159"), D("159"))
    assert {b.symbol for b in bars} == {"BTCUSDT"}


def test_release_is_reference_counted() -> None:
    bus, _, agg, bars = setup()
    agg.ensure("paper", "BTCUSDT", "5s")  # a second user
    agg.release("paper", "BTCUSDT", "5s")
    bus.publish(trade(T0, "1"))
    bus.publish(trade(T0 + 5 * S, "2"))
    assert len(bars) == 1
    agg.release("paper", "BTCUSDT", "5s")
    assert bus.subscriptions == 1  # only the test's own Bar subscriber remains


def test_bad_timeframe_is_refused() -> None:
    _, _, agg, _ = setup(())
    with pytest.raises(DurationError, match="not a timeframe"):
        agg.ensure("paper", "BTCUSDT", "5 minutes")
