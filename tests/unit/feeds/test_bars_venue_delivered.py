"""Timeframes a venue delivers itself (Binance klines) are not also built from trades."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from botd.bus import Bus
from botd.clock import NS_PER_SECOND, FakeClock
from botd.durations import DurationError
from botd.feeds.bars import BarAggregator
from botd.model import Bar, Side, Trade

S = NS_PER_SECOND
T0 = 1_700_000_040 * S  # a whole minute


def trade(venue: str, ts: int, price: str) -> Trade:
    return Trade(venue, "BTCUSDT", D(price), D("1"), Side.BUY, str(ts), ts, ts)


def delivered(venue: str) -> frozenset[str]:
    return frozenset({"1m", "1w"}) if venue == "binance" else frozenset()


def setup() -> tuple[Bus, FakeClock, BarAggregator, list[Bar]]:
    bus, clock = Bus(), FakeClock(start_ns=T0)
    bars: list[Bar] = []
    bus.subscribe(Bar, bars.append)
    return bus, clock, BarAggregator(bus, clock, venue_bars=delivered), bars


def test_delivered_timeframe_gets_no_trade_bars_but_others_do() -> None:
    bus, clock, agg, bars = setup()
    agg.ensure("binance", "BTCUSDT", "1m")  # from the venue's klines
    agg.ensure("binance", "BTCUSDT", "5s")  # not delivered: built from trades
    agg.ensure("paper", "BTCUSDT", "1m")  # another venue: built from trades
    for venue in ("binance", "paper"):
        for sec, price in [(1, "10"), (7, "11"), (61, "12")]:
            bus.publish(trade(venue, T0 + sec * S, price))
    clock._now = T0 + 130 * S
    agg.flush_due()
    got = sorted((b.venue, b.timeframe, (b.start - T0) // S) for b in bars)
    assert got == [
        ("binance", "5s", 0),
        ("binance", "5s", 5),
        ("binance", "5s", 60),
        ("paper", "1m", 0),
        ("paper", "1m", 60),
    ]


def test_delivered_only_subscribes_to_nothing_and_releases_cleanly() -> None:
    bus, clock, agg, bars = setup()
    agg.ensure("binance", "BTCUSDT", "1m")
    agg.ensure("binance", "BTCUSDT", "1m")  # a second strategy
    bus.publish(trade("binance", T0 + S, "10"))
    clock._now = T0 + 200 * S
    assert agg.flush_due() == 0 and bars == []
    agg.release("binance", "BTCUSDT", "1m")
    agg.release("binance", "BTCUSDT", "1m")
    agg.release("binance", "BTCUSDT", "1m")  # one too many: ignored
    # A trade-built timeframe on the same instrument still works after the releases.
    agg.ensure("binance", "BTCUSDT", "5s")
    bus.publish(trade("binance", T0 + 201 * S, "10"))
    bus.publish(trade("binance", T0 + 206 * S, "11"))
    assert [(b.timeframe, b.close) for b in bars] == [("5s", D("10"))]


def test_venue_only_timeframes_are_accepted_where_delivered() -> None:
    _, _, agg, _ = setup()
    agg.ensure("binance", "BTCUSDT", "1w")  # botd cannot build weeks; Binance delivers them
    with pytest.raises(DurationError):
        agg.ensure("paper", "BTCUSDT", "1w")
