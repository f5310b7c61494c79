"""Market-data events. Prices and sizes are exact Decimals parsed from the venue's strings."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from botd.model.enums import Side

__all__ = ["Bar", "BookDelta", "BookLevel", "BookSnapshot", "MarketEvent", "Quote", "Trade"]


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book."""

    venue: str
    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    ts_event: int  # venue time, ns since epoch
    ts_recv: int  # local receive time, ns since epoch

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade print. ``side`` is the aggressor's side."""

    venue: str
    symbol: str
    price: Decimal
    size: Decimal
    side: Side
    trade_id: str
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class Bar:
    venue: str
    symbol: str
    timeframe: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    start: int  # interval start, ns since epoch (inclusive)
    end: int  # interval end, ns since epoch (exclusive)
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    size: Decimal


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Full depth: bids best (highest) first, asks best (lowest) first."""

    venue: str
    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    sequence: int
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class BookDelta:
    """One level changed; ``size == 0`` removes the level."""

    venue: str
    symbol: str
    side: Side
    price: Decimal
    size: Decimal
    sequence: int
    ts_event: int
    ts_recv: int


MarketEvent = Quote | Trade | Bar | BookSnapshot | BookDelta
