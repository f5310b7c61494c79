"""What the simulator's market publishes on Alpaca's data streams after each engine call:
trades, quotes, one-minute bars, and crypto order books; and the last trade prices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botd.model import Side, Trade
from botd.venues.sim.alpaca.assets import AssetSpec
from botd.venues.sim.alpaca.streams import DataStreamHub
from botd.venues.sim.alpaca.wire import stamp
from botd.venues.sim.engine import MatchingEngine

__all__ = ["MarketFeed"]

_ZERO = Decimal(0)
_MINUTE_NS = 60_000_000_000
_BOOK_LEVELS = 10
_IEX = "V"
_TAPES = {"NASDAQ": "C", "ARCA": "B", "NYSE": "A"}


@dataclass(slots=True)
class _Bar:
    minute: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = _ZERO
    notional: Decimal = _ZERO
    count: int = 0


class MarketFeed:
    def __init__(self, engine: MatchingEngine, hub: DataStreamHub) -> None:
        self._engine = engine
        self._hub = hub
        self._last: dict[str, Decimal] = {}
        self._bars: dict[str, _Bar] = {}

    def last(self, symbol: str) -> Decimal | None:
        return self._last.get(symbol)

    def price(self, asset: AssetSpec) -> Decimal:
        """The last trade, else the mid, else the start price."""
        last = self._last.get(asset.symbol)
        if last is not None:
            return last
        bid, ask = self._engine.top_of_book(asset.symbol)
        if bid is not None and ask is not None:
            return (bid.price + ask.price) / 2
        return asset.spec.start_price

    def publish(self, asset: AssetSpec, trades: Sequence[Trade], ts: int, *, quote: bool) -> None:
        """After an engine call on ``asset``: its trades, and the quote when asked for or
        when something traded."""
        self.roll_bar(asset, ts)
        messages = [self._trade(asset, t, ts) for t in trades]
        for t in trades:
            self._last[asset.symbol] = t.price
            self._add_to_bar(asset, t)
        bid, ask = self._engine.top_of_book(asset.symbol)
        if (quote or trades) and bid is not None and ask is not None:
            q: dict[str, Any] = {
                "T": "q",
                "S": asset.symbol,
                "bp": float(bid.price),
                "bs": float(bid.size),
                "ap": float(ask.price),
                "as": float(ask.size),
                "t": stamp(ts),
            }
            if not asset.is_crypto:
                tape = _TAPES.get(asset.exchange, "C")
                q.update({"bx": _IEX, "ax": _IEX, "c": ["R"], "z": tape})
            messages.append(q)
        if asset.is_crypto:
            bids, asks = self._engine.depth(asset.symbol, _BOOK_LEVELS)
            book = self._hub.book(
                asset.symbol,
                [(lv.price, lv.size) for lv in bids],
                [(lv.price, lv.size) for lv in asks],
                ts,
            )
            if book is not None:
                messages.append(book)
        self._hub.publish(asset.feed, messages)

    @staticmethod
    def _trade(asset: AssetSpec, t: Trade, ts: int) -> dict[str, Any]:
        if asset.is_crypto:
            return {
                "T": "t",
                "S": asset.symbol,
                "p": float(t.price),
                "s": float(t.size),
                "t": stamp(ts),
                "i": int(t.trade_id),
                "tks": "B" if t.side is Side.BUY else "S",
            }
        return {
            "T": "t",
            "S": asset.symbol,
            "i": int(t.trade_id),
            "x": _IEX,
            "p": float(t.price),
            "s": float(t.size),
            "c": ["@"],
            "t": stamp(ts),
            "z": _TAPES.get(asset.exchange, "C"),
        }

    def roll_bar(self, asset: AssetSpec, ts: int) -> None:
        """Send the bar of a minute that is over (minutes without trades have none)."""
        bar = self._bars.get(asset.symbol)
        if bar is None or ts // _MINUTE_NS == bar.minute:
            return
        del self._bars[asset.symbol]
        message = {
            "T": "b",
            "S": asset.symbol,
            "o": float(bar.open),
            "h": float(bar.high),
            "l": float(bar.low),
            "c": float(bar.close),
            "v": float(bar.volume),
            "t": stamp(bar.minute * _MINUTE_NS),
            "n": bar.count,
            "vw": float(bar.notional / bar.volume) if bar.volume else float(bar.close),
        }
        self._hub.publish(asset.feed, [message])

    def _add_to_bar(self, asset: AssetSpec, t: Trade) -> None:
        bar = self._bars.get(asset.symbol)
        if bar is None:
            bar = _Bar(t.ts_event // _MINUTE_NS, t.price, t.price, t.price, t.price)
            self._bars[asset.symbol] = bar
        bar.high = max(bar.high, t.price)
        bar.low = min(bar.low, t.price)
        bar.close = t.price
        bar.volume += t.size
        bar.notional += t.size * t.price
        bar.count += 1
