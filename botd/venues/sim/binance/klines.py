"""Candlesticks built from the simulator's public trades, shared by the kline stream and REST.

:class:`KlineBook` keeps, per symbol and interval, the bars that had trades; the bars between
them (and the one open now) are filled on read with the previous close and no volume, as
Binance shows a quiet interval. Bars are UTC-aligned like Binance's: seconds to days from the
epoch (``3d`` too), ``1w`` from Monday 00:00, ``1M`` from the first of the month.

The REST ``GET /api/v3/klines`` handler reads :meth:`KlineBook.klines` and turns each bar into
the array form with :meth:`Kline.row`; the ``<symbol>@kline_<interval>`` stream sends
:meth:`Kline.event`. Both see the same bars because both read the same book.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["INTERVALS", "Kline", "KlineBook", "interval_bounds"]

_SEC = 1000
_MIN = 60 * _SEC
_HOUR = 60 * _MIN
_DAY = 24 * _HOUR
_WEEK_OFFSET = 4 * _DAY  # 1970-01-01 was a Thursday; Monday 1970-01-05 starts week 0

#: The documented spot intervals and their length in ms (``1M``: 0, calendar months).
INTERVALS: Mapping[str, int] = {
    "1s": _SEC,
    "1m": _MIN,
    "3m": 3 * _MIN,
    "5m": 5 * _MIN,
    "15m": 15 * _MIN,
    "30m": 30 * _MIN,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
    "1w": 7 * _DAY,
    "1M": 0,
}

_ZERO = Decimal(0)


def _fmt(value: Decimal) -> str:
    return f"{value:.8f}"


def interval_bounds(interval: str, time_ms: int) -> tuple[int, int]:
    """``(open, close)`` of the ``interval`` bar holding ``time_ms``; ``close`` is the last
    millisecond of the bar (Binance's ``T``), so the next bar opens at ``close + 1``."""
    length = INTERVALS[interval]
    if interval == "1M":
        day = dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.UTC)
        start = calendar.timegm((day.year, day.month, 1, 0, 0, 0)) * 1000
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        end = calendar.timegm((year, month, 1, 0, 0, 0)) * 1000
        return start, end - 1
    offset = _WEEK_OFFSET if interval == "1w" else 0
    start = (time_ms - offset) // length * length + offset
    return start, start + length - 1


@dataclass(frozen=True, slots=True)
class Kline:
    """One bar. ``first_id``/``last_id`` are -1 and ``trades`` 0 for a bar without trades."""

    symbol: str
    interval: str
    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = _ZERO
    quote_volume: Decimal = _ZERO
    taker_buy_volume: Decimal = _ZERO
    taker_buy_quote_volume: Decimal = _ZERO
    trades: int = 0
    first_id: int = -1
    last_id: int = -1

    def row(self) -> list[object]:
        """The ``GET /api/v3/klines`` array: open time, o, h, l, c, volume, close time,
        quote volume, trades, taker buy base volume, taker buy quote volume, ``"0"``."""
        return [
            self.open_ms,
            _fmt(self.open),
            _fmt(self.high),
            _fmt(self.low),
            _fmt(self.close),
            _fmt(self.volume),
            self.close_ms,
            _fmt(self.quote_volume),
            self.trades,
            _fmt(self.taker_buy_volume),
            _fmt(self.taker_buy_quote_volume),
            "0",
        ]

    def event(self, event_ms: int, closed: bool) -> dict[str, object]:
        """The ``<symbol>@kline_<interval>`` payload."""
        return {
            "e": "kline",
            "E": event_ms,
            "s": self.symbol,
            "k": {
                "t": self.open_ms,
                "T": self.close_ms,
                "s": self.symbol,
                "i": self.interval,
                "f": self.first_id,
                "L": self.last_id,
                "o": _fmt(self.open),
                "c": _fmt(self.close),
                "h": _fmt(self.high),
                "l": _fmt(self.low),
                "v": _fmt(self.volume),
                "n": self.trades,
                "x": closed,
                "q": _fmt(self.quote_volume),
                "V": _fmt(self.taker_buy_volume),
                "Q": _fmt(self.taker_buy_quote_volume),
                "B": "0",
            },
        }


def _flat(symbol: str, interval: str, start: int, end: int, price: Decimal) -> Kline:
    """A bar without trades, at ``price``."""
    return Kline(symbol, interval, start, end, price, price, price, price)


class _Bar:
    """A bar with trades, updated in place (a :class:`Kline` is made when read, and kept
    until the next trade)."""

    __slots__ = (
        "_frozen",
        "close",
        "close_ms",
        "first_id",
        "high",
        "last_id",
        "low",
        "open",
        "open_ms",
        "quote_volume",
        "taker_buy_quote_volume",
        "taker_buy_volume",
        "trades",
        "volume",
    )

    def __init__(self, open_ms: int, close_ms: int, price: Decimal, trade_id: int) -> None:
        self.open_ms = open_ms
        self.close_ms = close_ms
        self.open = self.high = self.low = self.close = price
        self.volume = self.quote_volume = _ZERO
        self.taker_buy_volume = self.taker_buy_quote_volume = _ZERO
        self.trades = 0
        self.first_id = trade_id
        self.last_id = trade_id
        self._frozen: Kline | None = None

    def add(self, price: Decimal, qty: Decimal, quote: Decimal, taker_buy: bool, tid: int) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        self.volume += qty
        self.quote_volume += quote
        if taker_buy:
            self.taker_buy_volume += qty
            self.taker_buy_quote_volume += quote
        self.trades += 1
        self.last_id = tid
        self._frozen = None

    def freeze(self, symbol: str, interval: str) -> Kline:
        if self._frozen is not None:
            return self._frozen
        self._frozen = Kline(
            symbol,
            interval,
            self.open_ms,
            self.close_ms,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote_volume,
            self.taker_buy_volume,
            self.taker_buy_quote_volume,
            self.trades,
            self.first_id,
            self.last_id,
        )
        return self._frozen


class _Series:
    """The bars with trades of one symbol and interval, oldest first."""

    __slots__ = ("bars",)

    def __init__(self) -> None:
        self.bars: list[_Bar] = []


class KlineBook:
    """Bars of every documented interval for each symbol, fed trade by trade.

    ``max_bars`` bounds the bars with trades kept per symbol and interval (the oldest go
    first); ``intervals`` restricts the intervals kept (all documented ones by default)."""

    def __init__(self, *, max_bars: int = 5000, intervals: Iterable[str] | None = None) -> None:
        names = list(intervals) if intervals is not None else list(INTERVALS)
        unknown = [n for n in names if n not in INTERVALS]
        if unknown:
            raise ValueError(f"unknown kline intervals {unknown}; known: {list(INTERVALS)}")
        if max_bars < 1:
            raise ValueError("max_bars must be at least 1")
        self._intervals = names
        self._max_bars = max_bars
        self._series: dict[tuple[str, str], _Series] = {}

    @property
    def intervals(self) -> list[str]:
        return list(self._intervals)

    def add_trade(
        self,
        symbol: str,
        *,
        trade_id: int,
        price: Decimal,
        qty: Decimal,
        buyer_is_taker: bool,
        time_ms: int,
    ) -> None:
        """Count one public trade. A trade stamped before the newest bar (the server clock
        stepped back) counts in the newest bar: a closed bar never changes."""
        quote = price * qty
        for interval in self._intervals:
            series = self._series.get((symbol, interval))
            if series is None:
                series = self._series[(symbol, interval)] = _Series()
            bars = series.bars
            last = bars[-1] if bars else None
            at = time_ms if last is None else max(time_ms, last.open_ms)
            if last is None or at > last.close_ms:
                start, end = interval_bounds(interval, at)
                last = _Bar(start, end, price, trade_id)
                bars.append(last)
                if len(bars) > self._max_bars:
                    del bars[: len(bars) - self._max_bars]
            last.add(price, qty, quote, buyer_is_taker, trade_id)

    def bar_at(self, symbol: str, interval: str, time_ms: int) -> Kline | None:
        """The bar holding ``time_ms`` (an empty one after a quiet spell), or ``None`` before
        the symbol's first trade."""
        self._check(interval)
        series = self._series.get((symbol, interval))
        if series is None or not series.bars:
            return None
        start, end = interval_bounds(interval, time_ms)
        for bar in reversed(series.bars):
            if bar.open_ms == start:
                return bar.freeze(symbol, interval)
            if bar.open_ms < start:
                return _flat(symbol, interval, start, end, bar.close)
        return None

    def klines(
        self,
        symbol: str,
        interval: str,
        *,
        now_ms: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Kline]:
        """Bars in time order, Binance's ``GET /api/v3/klines`` selection: those opening at or
        after ``start_ms`` and at or before ``end_ms`` (and ``now_ms``), the first ``limit``
        of them when ``start_ms`` is given, else the last ``limit``. The last bar may still be
        open (``close_ms >= now_ms``). Quiet intervals come as empty bars at the previous
        close; nothing comes before the symbol's first trade (or the oldest bar kept)."""
        self._check(interval)
        if limit < 1:
            return []
        series = self._series.get((symbol, interval))
        if series is None or not series.bars:
            return []
        bars = series.bars
        hi = now_ms if end_ms is None else min(end_ms, now_ms)
        lo = bars[0].open_ms if start_ms is None else max(start_ms, bars[0].open_ms)
        length = INTERVALS[interval]
        if start_ms is None and length:  # only the last ``limit`` bars are wanted
            lo = max(lo, interval_bounds(interval, hi)[0] - (limit - 1) * length)
        if hi < lo:
            return []
        out: list[Kline] = []
        from_start = start_ms is not None
        # Skip the stored bars before ``lo``, remembering the last close for filling.
        i = bisect.bisect_left(bars, lo, key=lambda b: b.open_ms)
        last_close = bars[i - 1].close if i > 0 else None
        t, _ = interval_bounds(interval, lo)
        if t < lo:  # ``lo`` falls inside a bar: Binance starts at the next bar
            t = interval_bounds(interval, t)[1] + 1
        while t <= hi:
            start, end = interval_bounds(interval, t)
            t = end + 1
            if i < len(bars) and bars[i].open_ms == start:
                out.append(bars[i].freeze(symbol, interval))
                last_close = bars[i].close
                i += 1
            elif last_close is not None:
                out.append(_flat(symbol, interval, start, end, last_close))
            else:
                continue
            if from_start and len(out) >= limit:
                break
        return out if from_start else out[-limit:]

    def _check(self, interval: str) -> None:
        if interval not in self._intervals:
            raise ValueError(f"interval {interval!r} is not kept; kept: {self._intervals}")
