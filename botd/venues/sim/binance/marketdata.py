"""Market-data REST bodies computed from the simulator's trades: klines, tickers, average price.

The server keeps a :class:`~botd.venues.sim.binance.klines.KlineBook` fed with every public
trade and hands it here; these functions only validate parameters and shape Binance's JSON:

- ``GET /api/v3/klines`` and ``/uiKlines``: ``symbol``, ``interval``, ``startTime``,
  ``endTime``, ``limit`` (default 500, at most 1000), ``timeZone`` (UTC only here);
- ``GET /api/v3/ticker/24hr``: a rolling 24-hour window read from one-minute bars (Binance's
  window is also minute-granular), ``type`` FULL or MINI;
- ``GET /api/v3/ticker/price``; ``GET /api/v3/avgPrice``: the volume-weighted price of the last
  5 minutes of trades.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from botd.venues.sim.binance.errors import BinanceError, illegal_chars, mandatory
from botd.venues.sim.binance.klines import INTERVALS, Kline, KlineBook

__all__ = [
    "AVG_PRICE_MINS",
    "LastTrade",
    "avg_price_json",
    "klines_json",
    "price_json",
    "ticker_24hr_json",
]

AVG_PRICE_MINS = 5
_DAY_MS = 86_400_000
_MAX_KLINES = 1000
_ZERO = Decimal(0)
_INT_RANGE = "^[0-9]{1,20}$"
# timeZone values whose offset is zero: bars stay UTC-aligned, all the simulator serves.
_UTC_ZONE_RE = re.compile(r"^[+-]?0{1,2}(:00)?$")


@dataclass(frozen=True, slots=True)
class LastTrade:
    price: Decimal
    qty: Decimal
    time_ms: int


def _fmt(value: Decimal) -> str:
    return f"{value:.8f}"


def _int(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise illegal_chars(name, _INT_RANGE)
    return int(raw)


def klines_json(
    book: KlineBook, symbol: str, params: dict[str, str], now_ms: int
) -> list[list[object]]:
    interval = params.get("interval", "")
    if not interval:
        raise mandatory("interval")
    if interval not in INTERVALS or interval not in book.intervals:
        raise BinanceError(-1120, "Invalid interval.")
    zone = params.get("timeZone", "")
    if zone and not _UTC_ZONE_RE.match(zone):
        # Bars shifted to another time zone are not simulated; say so rather than lie.
        raise BinanceError(-1130, "Invalid data sent for a parameter.")
    start = _int(params, "startTime")
    end = _int(params, "endTime")
    limit = _int(params, "limit")
    # Binance documents "Default 500; max 1000"; a larger limit is served as 1000. [U]
    limit = 500 if limit is None else min(max(limit, 1), _MAX_KLINES)
    if start is not None and end is not None and start > end:
        return []
    bars = book.klines(symbol, interval, now_ms=now_ms, start_ms=start, end_ms=end, limit=limit)
    return [k.row() for k in bars]


def _day_bars(book: KlineBook, symbol: str, now_ms: int) -> list[Kline]:
    return book.klines(
        symbol, "1m", now_ms=now_ms, start_ms=max(now_ms - _DAY_MS, 0), limit=24 * 60 + 1
    )


def ticker_24hr_json(
    book: KlineBook,
    symbol: str,
    *,
    last: LastTrade | None,
    bid: tuple[Decimal, Decimal] | None,
    ask: tuple[Decimal, Decimal] | None,
    now_ms: int,
    mini: bool,
) -> dict[str, object]:
    bars = _day_bars(book, symbol, now_ms)
    traded = [b for b in bars if b.trades]
    last_price = last.price if last is not None else _ZERO
    if traded:
        open_ = traded[0].open
        high = max(b.high for b in traded)
        low = min(b.low for b in traded)
        volume = sum((b.volume for b in traded), _ZERO)
        quote_volume = sum((b.quote_volume for b in traded), _ZERO)
        first_id, last_id = traded[0].first_id, traded[-1].last_id
        count = sum(b.trades for b in traded)
    else:
        open_ = high = low = last_price
        volume = quote_volume = _ZERO
        first_id, last_id, count = -1, -1, 0
    # The price before the window: the close of the bar before it when kept, else the open.
    earlier = book.klines(symbol, "1m", now_ms=now_ms, end_ms=now_ms - _DAY_MS, limit=1)
    prev_close = earlier[-1].close if earlier else open_
    open_time = max(now_ms - _DAY_MS, 0)
    if mini:
        return {
            "symbol": symbol,
            "openPrice": _fmt(open_),
            "highPrice": _fmt(high),
            "lowPrice": _fmt(low),
            "lastPrice": _fmt(last_price),
            "volume": _fmt(volume),
            "quoteVolume": _fmt(quote_volume),
            "openTime": open_time,
            "closeTime": now_ms,
            "firstId": first_id,
            "lastId": last_id,
            "count": count,
        }
    change = last_price - open_ if traded else _ZERO
    percent = change / open_ * 100 if traded and open_ else _ZERO
    weighted = quote_volume / volume if volume else _ZERO
    return {
        "symbol": symbol,
        "priceChange": _fmt(change),
        "priceChangePercent": f"{percent:.3f}",
        "weightedAvgPrice": _fmt(weighted),
        "prevClosePrice": _fmt(prev_close),
        "lastPrice": _fmt(last_price),
        "lastQty": _fmt(last.qty if last is not None else _ZERO),
        "bidPrice": _fmt(bid[0] if bid else _ZERO),
        "bidQty": _fmt(bid[1] if bid else _ZERO),
        "askPrice": _fmt(ask[0] if ask else _ZERO),
        "askQty": _fmt(ask[1] if ask else _ZERO),
        "openPrice": _fmt(open_),
        "highPrice": _fmt(high),
        "lowPrice": _fmt(low),
        "volume": _fmt(volume),
        "quoteVolume": _fmt(quote_volume),
        "openTime": open_time,
        "closeTime": now_ms,
        "firstId": first_id,
        "lastId": last_id,
        "count": count,
    }


def price_json(symbol: str, last: LastTrade | None) -> dict[str, object]:
    return {"symbol": symbol, "price": _fmt(last.price if last is not None else _ZERO)}


def avg_price_json(
    book: KlineBook, symbol: str, last: LastTrade | None, now_ms: int
) -> dict[str, object]:
    window = AVG_PRICE_MINS * 60_000
    bars = book.klines(symbol, "1m", now_ms=now_ms, start_ms=max(now_ms - window, 0), limit=6)
    volume = sum((b.volume for b in bars), _ZERO)
    quote = sum((b.quote_volume for b in bars), _ZERO)
    fallback = last.price if last is not None else _ZERO
    price = quote / volume if volume else fallback
    return {
        "mins": AVG_PRICE_MINS,
        "price": _fmt(price),
        "closeTime": last.time_ms if last is not None else now_ms,
    }
