"""Market data across Binance's 24 h connection cut without a gap (WIRE_FACTS §1.5).

:class:`HandoverMarketStream` runs one :class:`~botd.venues.binance.stream.BinanceMarketStream`
connection at a time, except around a handover: when the current connection reaches
``max_connection_age_s`` (the venue disconnects at 24 h) or the venue announces
``serverShutdown``, the next connection is opened while the current one keeps delivering. The
first event on the new connection makes it current and the old one is closed. Across the
overlap, trades are deduplicated by trade id; books restart from the new connection's own
local book (a :class:`BookSnapshot` per synced symbol at the switch, then its deltas). Closed
klines (:class:`Bar`) go out once per (symbol, interval, start): a bar not later than the last
one passed for its symbol and interval is dropped, here and, through a shared ``bar_marks``, on
the next stream after a reconnect.

A current connection that fails ends :meth:`HandoverMarketStream.events` with its error, as a
single connection does: the feed runner reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp

from botd.clock import NS_PER_SECOND, Clock
from botd.errors import TransientVenueError
from botd.model import Bar, MarketEvent, Trade
from botd.venues.binance.constants import DEFAULT_MAX_CONNECTION_AGE_S
from botd.venues.binance.http import BinanceHttp
from botd.venues.binance.stream import BinanceMarketStream
from botd.venues.binance.wsapi import ConnectLimiter

__all__ = ["HandoverMarketStream"]

log = logging.getLogger(__name__)

_SEEN_TRADES: Final = 10_000
# Events read ahead of the consumer; beyond this a connection's reader waits (backpressure,
# as with a single connection), never drops.
_QUEUE: Final = 10_000
_RETRY_S: Final = 5.0  # after a failed attempt to open the next connection


@dataclass(eq=False)
class _Leg:
    stream: BinanceMarketStream
    opened_ns: int
    task: asyncio.Task[None] | None = None
    shutdown: bool = False


class _Tick:
    """Wakes the loop: a connection's age is up, or the venue announced a shutdown."""


_TICK: Final = _Tick()
_Item = tuple[_Leg | None, MarketEvent | BaseException | _Tick]


class HandoverMarketStream:
    def __init__(
        self,
        *,
        ws_base: str,
        http: BinanceHttp,
        clock: Clock,
        venue: str,
        symbols: Sequence[str],
        session: aiohttp.ClientSession | None = None,
        depth: bool = False,
        bar_intervals: Sequence[str] = (),
        bar_marks: dict[tuple[str, str], int] | None = None,
        stale_after_s: float = 10.0,
        max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S,
        limiter: ConnectLimiter | None = None,
    ) -> None:
        self._ws_base = ws_base
        self._http = http
        self._clock = clock
        self._venue = venue
        self._symbols = tuple(symbols)
        self._session = session
        self._depth = depth
        self._bar_intervals = tuple(bar_intervals)
        # (symbol, interval) -> start of the last bar passed on; the owner may share it
        # across streams so a reconnect does not repeat a bar.
        self._bar_marks = bar_marks if bar_marks is not None else {}
        self.duplicate_bars = 0
        self._stale_after_s = stale_after_s
        self._max_age_ns = int(max_connection_age_s * NS_PER_SECOND)
        self._limiter = limiter or ConnectLimiter(clock)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE)
        self._legs: list[_Leg] = []
        self.handovers = 0
        self.duplicate_trades = 0
        self.current: BinanceMarketStream | None = None
        self._gaps_closed = 0
        self._missed_closed = 0
        self._malformed_closed = 0

    @property
    def gaps(self) -> int:
        """Depth sequence gaps detected (and resynchronised) over every connection."""
        return self._gaps_closed + sum(leg.stream.gaps for leg in self._legs)

    @property
    def missed(self) -> int:
        """Depth update ids those gaps skipped."""
        return self._missed_closed + sum(leg.stream.missed for leg in self._legs)

    @property
    def malformed(self) -> int:
        return self._malformed_closed + sum(leg.stream.malformed for leg in self._legs)

    def _start_leg(self) -> _Leg:
        leg: _Leg

        def shutdown() -> None:
            leg.shutdown = True
            self._tick(leg)

        stream = BinanceMarketStream(
            ws_base=self._ws_base,
            http=self._http,
            clock=self._clock,
            venue=self._venue,
            symbols=self._symbols,
            session=self._session,
            depth=self._depth,
            bar_intervals=self._bar_intervals,
            stale_after_s=self._stale_after_s,
            on_shutdown=shutdown,
            before_connect=self._limiter.acquire,
        )
        leg = _Leg(stream, self._clock.monotonic_ns())
        leg.task = asyncio.create_task(self._pump(leg), name="binance-market-stream")
        self._legs.append(leg)
        return leg

    def _tick(self, leg: _Leg) -> None:
        # A full queue means events are flowing: the loop looks at the clock again anyway.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((leg, _TICK))

    async def _pump(self, leg: _Leg) -> None:
        try:
            async for event in leg.stream.events():
                await self._queue.put((leg, event))
            await self._queue.put((leg, TransientVenueError("Binance market stream ended")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._queue.put((leg, exc))

    async def _stop_leg(self, leg: _Leg) -> None:
        if leg in self._legs:
            self._legs.remove(leg)
            self._gaps_closed += leg.stream.gaps
            self._missed_closed += leg.stream.missed
            self._malformed_closed += leg.stream.malformed
        if leg.task is not None:
            leg.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await leg.task

    async def _timer(self, leg: _Leg, seconds: float) -> None:
        await self._clock.sleep(seconds)
        self._tick(leg)

    async def events(self) -> AsyncIterator[MarketEvent]:
        seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        cur = self._start_leg()
        self.current = cur.stream
        nxt: _Leg | None = None
        retry_ns = 0
        timer: asyncio.Task[None] | None = None
        try:
            while True:
                if nxt is None:
                    now = self._clock.monotonic_ns()
                    due_ns = max(cur.opened_ns + self._max_age_ns, retry_ns) - now
                    if (cur.shutdown and now >= retry_ns) or due_ns <= 0:
                        reason = "server shutdown" if cur.shutdown else "connection age"
                        log.info("Binance market stream: opening the next connection (%s)", reason)
                        nxt = self._start_leg()
                    elif timer is None or timer.done():
                        timer = asyncio.create_task(self._timer(cur, due_ns / NS_PER_SECOND))
                leg, item = await self._queue.get()
                if isinstance(item, _Tick):
                    continue
                if isinstance(item, BaseException):
                    if leg is cur:
                        if nxt is None:
                            raise item
                        # Lost before the next one went live: it takes over as it comes up.
                        log.warning("Binance market stream lost during handover: %s", item)
                        await self._stop_leg(cur)
                        cur, nxt = nxt, None
                        self.current = cur.stream
                    elif leg is not None and leg is nxt:
                        log.warning("Binance market stream: next connection failed: %s", item)
                        await self._stop_leg(leg)
                        nxt = None
                        retry_ns = self._clock.monotonic_ns() + int(_RETRY_S * NS_PER_SECOND)
                    continue
                if leg is nxt and nxt is not None:
                    # The new connection delivers: it is current from here on.
                    old, cur, nxt = cur, nxt, None
                    self.current = cur.stream
                    self.handovers += 1
                    await self._stop_leg(old)
                    if timer is not None:
                        timer.cancel()
                        timer = None
                    ts = self._clock.time_ns()
                    for book in cur.stream.books.values():
                        if book.synced:
                            yield book.snapshot(ts)
                if leg is not cur:
                    continue
                if isinstance(item, Trade):
                    key = (item.symbol, item.trade_id)
                    if key in seen:
                        self.duplicate_trades += 1
                        continue
                    seen[key] = None
                    if len(seen) > _SEEN_TRADES:
                        seen.popitem(last=False)
                elif isinstance(item, Bar):
                    mark = (item.symbol, item.timeframe)
                    if item.start <= self._bar_marks.get(mark, -1):
                        self.duplicate_bars += 1
                        continue
                    self._bar_marks[mark] = item.start
                yield item
        finally:
            if timer is not None:
                timer.cancel()
            for leg in list(self._legs):
                await self._stop_leg(leg)
            self.current = None
