"""Time bars built from trades.

A bar covers ``[start, start + timeframe)`` of venue time (``ts_event``). It closes when the
first trade of a later interval arrives or, for a quiet market, when the local clock passes the
interval's end plus a small grace period — whichever comes first. An interval without trades
produces no bar. Trades older than the open bar (late prints) are counted and dropped.

Timeframes a venue delivers itself (``VenueCapabilities.bar_timeframes``, e.g. Binance klines)
are not built here: ``venue_bars`` names them per venue, and :meth:`BarAggregator.ensure`
only counts their users, so each bar reaches the bus once, from the venue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal

import structlog

from botd.bus import Bus, Subscription
from botd.clock import NS_PER_SECOND, Clock
from botd.durations import timeframe_ns
from botd.model import Bar, Trade

__all__ = ["BarAggregator"]


@dataclass(slots=True)
class _Open:
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class _Builder:
    __slots__ = ("current", "late", "length", "symbol", "timeframe", "venue")

    def __init__(self, venue: str, symbol: str, timeframe: str) -> None:
        self.venue = venue
        self.symbol = symbol
        self.timeframe = timeframe
        self.length = timeframe_ns(timeframe)
        self.current: _Open | None = None
        self.late = 0

    def add(self, trade: Trade, now: int) -> Bar | None:
        """Fold one trade in; returns the bar it closed, if any."""
        start = trade.ts_event - trade.ts_event % self.length
        cur = self.current
        if cur is not None and start < cur.start:
            self.late += 1
            return None
        if cur is not None and start == cur.start:
            if trade.price > cur.high:
                cur.high = trade.price
            if trade.price < cur.low:
                cur.low = trade.price
            cur.close = trade.price
            cur.volume += trade.size
            return None
        closed = self.close(now)
        p = trade.price
        self.current = _Open(start, p, p, p, p, trade.size)
        return closed

    def close(self, now: int) -> Bar | None:
        cur = self.current
        if cur is None:
            return None
        self.current = None
        end = cur.start + self.length
        return Bar(
            self.venue,
            self.symbol,
            self.timeframe,
            cur.open,
            cur.high,
            cur.low,
            cur.close,
            cur.volume,
            cur.start,
            end,
            end,
            now,
        )

    def due(self, now: int, grace_ns: int) -> bool:
        return self.current is not None and now >= self.current.start + self.length + grace_ns


class BarAggregator:
    """Builds the bars that strategies asked for and publishes them on the bus."""

    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        *,
        grace_s: float = 0.25,
        log: structlog.typing.FilteringBoundLogger | None = None,
        venue_bars: Callable[[str], Collection[str]] | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._venue_bars = venue_bars
        self._grace_ns = int(grace_s * NS_PER_SECOND)
        self._log = log or structlog.get_logger("botd.bars")
        self._builders: dict[tuple[str, str], dict[str, _Builder]] = {}
        self._users: Counter[tuple[str, str, str]] = Counter()
        self._subs: dict[tuple[str, str], Subscription] = {}

    def ensure(self, venue: str, symbol: str, timeframe: str) -> None:
        """Start building ``timeframe`` bars for one instrument (reference-counted); nothing
        to build when the venue delivers that timeframe itself."""
        key = (venue, symbol, timeframe)
        if self._venue_bars is not None and timeframe in self._venue_bars(venue):
            self._users[key] += 1  # for release(); the venue's bars come through the bus
            return
        timeframe_ns(timeframe)  # validate before registering anything
        self._users[key] += 1
        builders = self._builders.setdefault((venue, symbol), {})
        if timeframe not in builders:
            builders[timeframe] = _Builder(venue, symbol, timeframe)
        if (venue, symbol) not in self._subs:
            self._subs[(venue, symbol)] = self._bus.subscribe(
                Trade, self._on_trade, venue=venue, symbol=symbol, name="bars"
            )

    def release(self, venue: str, symbol: str, timeframe: str) -> None:
        key = (venue, symbol, timeframe)
        if self._users[key] <= 0:
            return
        self._users[key] -= 1
        if self._users[key]:
            return
        del self._users[key]
        builders = self._builders.get((venue, symbol), {})
        builders.pop(timeframe, None)
        if not builders:
            self._builders.pop((venue, symbol), None)
            sub = self._subs.pop((venue, symbol), None)
            if sub is not None:
                self._bus.unsubscribe(sub)

    @property
    def late_trades(self) -> int:
        return sum(b.late for group in self._builders.values() for b in group.values())

    def _on_trade(self, trade: Trade) -> None:
        builders = self._builders.get((trade.venue, trade.symbol))
        if not builders:
            return
        now = self._clock.time_ns()
        for builder in list(builders.values()):
            bar = builder.add(trade, now)
            if bar is not None:
                self._bus.publish(bar)

    def flush_due(self) -> int:
        """Close every bar whose interval (plus grace) has passed; returns how many."""
        now = self._clock.time_ns()
        closed = 0
        for group in list(self._builders.values()):
            for builder in list(group.values()):
                if builder.due(now, self._grace_ns):
                    bar = builder.close(now)
                    if bar is not None:
                        closed += 1
                        self._bus.publish(bar)
        return closed

    async def run(self, tick_s: float = 0.1) -> None:
        while True:
            await self._clock.sleep(tick_s)
            self.flush_due()
