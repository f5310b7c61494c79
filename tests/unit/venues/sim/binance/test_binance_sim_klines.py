"""The simulator's kline book: UTC-aligned bars, quiet intervals filled, Binance's selection."""

from __future__ import annotations

import calendar
from decimal import Decimal

import pytest

from botd.venues.sim.binance.klines import INTERVALS, KlineBook, interval_bounds

D = Decimal
T0 = calendar.timegm((2026, 3, 4, 10, 0, 0)) * 1000  # a Wednesday


def test_interval_bounds() -> None:
    assert interval_bounds("1m", T0 + 61_000) == (T0 + 60_000, T0 + 119_999)
    assert interval_bounds("1s", T0 + 1_500) == (T0 + 1_000, T0 + 1_999)
    monday = calendar.timegm((2026, 3, 2, 0, 0, 0)) * 1000
    assert interval_bounds("1w", T0) == (monday, monday + 7 * 86_400_000 - 1)
    march = calendar.timegm((2026, 3, 1, 0, 0, 0)) * 1000
    april = calendar.timegm((2026, 4, 1, 0, 0, 0)) * 1000
    assert interval_bounds("1M", T0) == (march, april - 1)
    dec = calendar.timegm((2025, 12, 31, 23, 0, 0)) * 1000
    jan = calendar.timegm((2026, 1, 1, 0, 0, 0)) * 1000
    assert interval_bounds("1M", dec)[1] == jan - 1
    start, end = interval_bounds("3d", T0)
    assert start % (3 * 86_400_000) == 0 and start <= T0 <= end
    assert set(INTERVALS) == {
        "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
        "1d", "3d", "1w", "1M",
    }  # fmt: skip


def _book() -> KlineBook:
    book = KlineBook(intervals=["1m", "1h"])
    trades = [  # (id, price, qty, buyer is taker, time)
        (1, "100", "1", True, T0 + 1_000),
        (2, "102", "2", False, T0 + 30_000),
        (3, "99", "1", True, T0 + 59_999),
        (4, "101", "3", True, T0 + 180_500),  # minutes 1 and 2 are quiet
    ]
    for tid, p, q, taker_buy, t in trades:
        book.add_trade(
            "BTCUSDT", trade_id=tid, price=D(p), qty=D(q), buyer_is_taker=taker_buy, time_ms=t
        )
    return book


def test_bars_fold_trades_and_fill_quiet_minutes() -> None:
    book = _book()
    bars = book.klines("BTCUSDT", "1m", now_ms=T0 + 200_000)
    assert [b.open_ms - T0 for b in bars] == [0, 60_000, 120_000, 180_000]
    first, quiet, _, last = bars
    assert (first.open, first.high, first.low, first.close) == (D(100), D(102), D(99), D(99))
    assert (first.volume, first.trades, first.first_id, first.last_id) == (D(4), 3, 1, 3)
    assert first.quote_volume == D(100 + 204 + 99)
    assert (first.taker_buy_volume, first.taker_buy_quote_volume) == (D(2), D(199))
    assert (quiet.open, quiet.close, quiet.volume, quiet.trades) == (D(99), D(99), D(0), 0)
    assert (quiet.first_id, quiet.last_id) == (-1, -1)
    assert last.row() == [
        T0 + 180_000, "101.00000000", "101.00000000", "101.00000000", "101.00000000",
        "3.00000000", T0 + 239_999, "303.00000000", 1, "3.00000000", "303.00000000", "0",
    ]  # fmt: skip
    hour = book.klines("BTCUSDT", "1h", now_ms=T0 + 200_000)
    assert len(hour) == 1 and hour[0].trades == 4 and hour[0].volume == D(7)


def test_selection_by_start_end_and_limit() -> None:
    book = _book()
    now = T0 + 200_000
    opens = [b.open_ms - T0 for b in book.klines("BTCUSDT", "1m", now_ms=now, limit=2)]
    assert opens == [120_000, 180_000]  # the last two
    opens = [
        b.open_ms - T0 for b in book.klines("BTCUSDT", "1m", now_ms=now, start_ms=T0 + 1, limit=2)
    ]
    assert opens == [60_000, 120_000]  # bars opening at or after the start, the first two
    bars = book.klines("BTCUSDT", "1m", now_ms=now, end_ms=T0 + 60_000)
    assert [b.open_ms - T0 for b in bars] == [0, 60_000]
    assert book.klines("BTCUSDT", "1m", now_ms=now, start_ms=T0 + 300_000) == []
    assert book.klines("ETHUSDT", "1m", now_ms=now) == []
    assert book.bar_at("BTCUSDT", "1m", T0 - 1) is None
    assert book.bar_at("BTCUSDT", "1m", T0 + 400_000) is not None  # open, empty, at 101
    with pytest.raises(ValueError, match="not kept"):
        book.klines("BTCUSDT", "5m", now_ms=now)


def test_a_late_trade_counts_in_the_newest_bar_and_old_bars_are_bounded() -> None:
    book = KlineBook(intervals=["1m"], max_bars=2)
    for i, t in enumerate([T0, T0 + 60_000, T0 + 120_000, T0 + 5_000]):
        book.add_trade("X", trade_id=i, price=D(10 + i), qty=D(1), buyer_is_taker=True, time_ms=t)
    bars = book.klines("X", "1m", now_ms=T0 + 130_000)
    assert [b.open_ms - T0 for b in bars] == [60_000, 120_000]
    assert bars[-1].trades == 2 and bars[-1].close == D(13)
