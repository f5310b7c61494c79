"""Binance Spot market data over the combined websocket stream (WIRE_FACTS §1.5).

:class:`BinanceMarketStream` opens ``{ws_base}/stream?streams=...`` with aiohttp and turns each
message into domain events: ``<s>@bookTicker`` -> :class:`Quote` (only when the top changed, and
never with an empty side), ``<s>@trade`` -> :class:`Trade`, and, when ``depth`` is on,
``<s>@depth@100ms`` diffs -> a :class:`LocalBook` per symbol kept with the documented
snapshot + diff procedure: a :class:`BookSnapshot` after every (re)sync, then :class:`BookDelta`;
for each of ``bar_intervals``, ``<s>@kline_<interval>`` -> a :class:`Bar` when the kline closes
(``x: true``; updates of the open kline are ignored).

One call of :meth:`BinanceMarketStream.events` is one connection. It ends only by raising:
a lost or closed connection, a server shutdown notice, or no message for ``stale_after_s`` of
clock time is a :class:`TransientVenueError`; whoever iterates (the FeedRunner) reconnects with
backoff. A malformed message is logged and counted (:attr:`malformed`), never raised; a sequence
gap in a depth stream is logged, counted (:attr:`gaps`) and resynchronised from a new REST
snapshot without dropping the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Final

import aiohttp
import msgspec

from botd.clock import NS_PER_SECOND, Clock
from botd.errors import TransientVenueError
from botd.model import BookDelta, BookLevel, BookSnapshot, MarketEvent, Quote, Side
from botd.venues.binance.http import BinanceHttp
from botd.venues.binance.schemas import (
    AggTradeEvent,
    BookTickerEvent,
    DepthSnapshot,
    DepthUpdateEvent,
    KlineEvent,
    ServerShutdown,
    TradeEvent,
    WireError,
    decode_book_tickers,
    decode_combined,
    decode_depth,
)

__all__ = ["BinanceMarketStream", "LocalBook", "ws_base_from_rest"]

log = logging.getLogger(__name__)

_API: Final = "/api/v3"
_MAX_BUFFER: Final = 10_000  # diffs held while waiting for a snapshot
_MAX_LOGGED: Final = 200  # characters of a malformed message worth logging


def ws_base_from_rest(base_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port``; ``https`` -> ``wss``. Anything else as is."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    return base


class LocalBook:
    """One symbol's order book from a REST snapshot plus ``depthUpdate`` diffs.

    Unsynced, diffs are buffered (:meth:`on_diff` returns ``None``) until :meth:`on_snapshot`
    gets a snapshot: buffered diffs with ``u <= lastUpdateId`` are dropped, the first one left
    must have ``U <= lastUpdateId + 1 <= u``, each later one ``U == previous u + 1``. A break of
    that chain is a gap: counted in :attr:`gaps`, the book goes back to unsynced (keeping the
    diff that broke it) and :attr:`needs_snapshot` says a new snapshot is due.
    """

    def __init__(self, venue: str, symbol: str) -> None:
        self.venue = venue
        self.symbol = symbol
        self.update_id = 0
        self.synced = False
        self.gaps = 0
        self.missed = 0  # update ids the detected gaps skipped
        self.syncs = 0
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._buffer: deque[DepthUpdateEvent] = deque(maxlen=_MAX_BUFFER)

    @property
    def needs_snapshot(self) -> bool:
        return not self.synced and bool(self._buffer)

    def bids(self) -> tuple[BookLevel, ...]:
        return tuple(BookLevel(p, self._bids[p]) for p in sorted(self._bids, reverse=True))

    def asks(self) -> tuple[BookLevel, ...]:
        return tuple(BookLevel(p, self._asks[p]) for p in sorted(self._asks))

    def snapshot(self, ts_recv: int) -> BookSnapshot:
        return BookSnapshot(
            venue=self.venue,
            symbol=self.symbol,
            bids=self.bids(),
            asks=self.asks(),
            sequence=self.update_id,
            ts_event=ts_recv,
            ts_recv=ts_recv,
        )

    def on_diff(self, event: DepthUpdateEvent, ts_recv: int) -> list[BookDelta] | None:
        """The level changes of ``event`` once applied; ``None`` when it was buffered (unsynced,
        or a gap just made the book unsynced) or ignored (already covered). :class:`WireError`
        for an unreadable diff, before the book changes."""
        deltas = event.to_book_deltas(self.venue, ts_recv)  # validates before any change
        if not self.synced:
            self._buffer.append(event)
            return None
        if event.final_update_id <= self.update_id:
            return None  # already in the book
        if event.first_update_id != self.update_id + 1:
            self._gap(event.first_update_id)
            self._buffer.append(event)
            return None
        self._apply(deltas, event.final_update_id)
        return deltas

    def on_snapshot(self, snap: DepthSnapshot, ts_recv: int) -> BookSnapshot | None:
        """Set the book to ``snap`` and apply the buffered diffs. ``None`` when ``snap`` is older
        than the buffered diffs (keep them, fetch again) or they do not chain onto it (a gap:
        the buffer is cleared, wait for the next diff and fetch again). :class:`WireError` for
        an unreadable snapshot."""
        if self._buffer and snap.last_update_id + 1 < self._buffer[0].first_update_id:
            log.info(
                "Binance depth snapshot %s for %s older than the stream (U %s); fetching again",
                snap.last_update_id,
                self.symbol,
                self._buffer[0].first_update_id,
            )
            return None
        image = snap.to_book_snapshot(self.venue, self.symbol, ts_recv)
        self._bids = {lv.price: lv.size for lv in image.bids if lv.size > 0}
        self._asks = {lv.price: lv.size for lv in image.asks if lv.size > 0}
        self.update_id = snap.last_update_id
        pending = list(self._buffer)
        self._buffer.clear()
        first = True
        for event in pending:
            if event.final_update_id <= self.update_id:
                continue
            ok = (
                event.first_update_id <= self.update_id + 1
                if first
                else event.first_update_id == self.update_id + 1
            )
            if not ok:
                self._gap(event.first_update_id)
                return None
            try:
                deltas = event.to_book_deltas(self.venue, ts_recv)
            except WireError:
                continue  # on_diff already refused it; it never got into the buffer
            self._apply(deltas, event.final_update_id)
            first = False
        self.synced = True
        self.syncs += 1
        return self.snapshot(ts_recv)

    def _apply(self, deltas: list[BookDelta], final_update_id: int) -> None:
        for d in deltas:
            side = self._bids if d.side is Side.BUY else self._asks
            if d.size == 0:
                side.pop(d.price, None)
            else:
                side[d.price] = d.size
        self.update_id = final_update_id

    def _gap(self, first_update_id: int) -> None:
        self.gaps += 1
        self.missed += max(0, first_update_id - self.update_id - 1)
        log.warning(
            "Binance depth gap on %s: book at %s, next diff starts at %s; resyncing",
            self.symbol,
            self.update_id,
            first_update_id,
        )
        self.synced = False
        self._bids.clear()
        self._asks.clear()


class BinanceMarketStream:
    """Market data for ``symbols`` (venue names, e.g. ``BTCUSDT``) from one combined stream.

    ``http`` serves the REST side: the depth snapshots and an initial top of book right after
    connecting (the bookTicker stream only speaks on change). ``session`` is used if given,
    else one is opened per connection.
    """

    def __init__(
        self,
        *,
        ws_base: str,
        http: BinanceHttp,
        clock: Clock,
        venue: str,
        symbols: Sequence[str],
        session: aiohttp.ClientSession | None = None,
        quotes: bool = True,
        trades: bool = True,
        depth: bool = False,
        depth_limit: int = 1000,
        bar_intervals: Sequence[str] = (),
        stale_after_s: float = 10.0,
        close_timeout_s: float = 5.0,
        on_shutdown: Callable[[], None] | None = None,
        before_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._ws_base = ws_base.rstrip("/")
        self._http = http
        self._clock = clock
        self._venue = venue
        self._symbols = tuple(dict.fromkeys(symbols))
        self._session = session
        self._quotes = quotes
        self._trades = trades
        self._depth = depth
        self._depth_limit = depth_limit
        self._bar_intervals = tuple(dict.fromkeys(bar_intervals))
        self._stale_after_ns = int(stale_after_s * NS_PER_SECOND)
        self._close_timeout_s = close_timeout_s
        self.malformed = 0
        self.books: dict[str, LocalBook] = {}
        self._last_top: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
        self._last_msg_ns = 0
        self._stale = False
        # With on_shutdown, serverShutdown is reported to it (the caller hands over to a new
        # connection) instead of ending the stream; the venue closes it soon after anyway.
        self._on_shutdown = on_shutdown
        self._before_connect = before_connect  # e.g. a connection-attempt limiter

    @property
    def gaps(self) -> int:
        return sum(b.gaps for b in self.books.values())

    @property
    def missed(self) -> int:
        """Depth update ids skipped by the gaps detected (each then resynchronised)."""
        return sum(b.missed for b in self.books.values())

    def stream_names(self) -> list[str]:
        names: list[str] = []
        for symbol in self._symbols:
            low = symbol.lower()
            if self._quotes:
                names.append(f"{low}@bookTicker")
            if self._trades:
                names.append(f"{low}@trade")
            if self._depth:
                names.append(f"{low}@depth@100ms")
            names.extend(f"{low}@kline_{i}" for i in self._bar_intervals)
        return names

    def url(self) -> str:
        return f"{self._ws_base}/stream?streams={'/'.join(self.stream_names())}"

    async def events(self) -> AsyncIterator[MarketEvent]:
        """One connection's events; raises :class:`TransientVenueError` when it ends."""
        if not self._symbols:
            return
        session = self._session
        own = session is None or session.closed
        if own:
            session = aiohttp.ClientSession()
        assert session is not None
        watchdog: asyncio.Task[None] | None = None
        try:
            if self._before_connect is not None:
                await self._before_connect()
            try:
                ws = await session.ws_connect(
                    self.url(), timeout=aiohttp.ClientWSTimeout(ws_close=self._close_timeout_s)
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise TransientVenueError(f"Binance market stream connect failed: {exc}") from None
            try:
                self.books = {s: LocalBook(self._venue, s) for s in self._symbols}
                self._last_top.clear()
                self._stale = False
                self._last_msg_ns = self._clock.monotonic_ns()
                watchdog = asyncio.create_task(self._watchdog(ws))
                if self._quotes:
                    for quote in await self._initial_quotes():
                        yield quote
                async for event in self._receive(ws):
                    yield event
            finally:
                await ws.close()
        finally:
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            if own:
                await session.close()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[MarketEvent]:
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                self._last_msg_ns = self._clock.monotonic_ns()
                for event in await self._handle(msg.data):
                    yield event
                continue
            if self._stale:
                raise TransientVenueError("stale")
            if msg.type is aiohttp.WSMsgType.ERROR:
                raise TransientVenueError(f"Binance market stream failed: {ws.exception()}")
            raise TransientVenueError(
                f"Binance market stream closed ({msg.type.name}, code {ws.close_code})"
            )

    async def _watchdog(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            idle = self._clock.monotonic_ns() - self._last_msg_ns
            if idle >= self._stale_after_ns:
                log.warning("Binance market stream stale: nothing for %.1f s", idle / NS_PER_SECOND)
                self._stale = True
                await ws.close()
                return
            await self._clock.sleep((self._stale_after_ns - idle) / NS_PER_SECOND)

    async def _initial_quotes(self) -> list[Quote]:
        params = {"symbols": msgspec.json.encode(list(self._symbols)).decode()}
        body = await self._http.get(
            f"{_API}/ticker/bookTicker", params, False, "market.book_ticker"
        )
        ts_recv = self._clock.time_ns()
        try:
            tickers = decode_book_tickers(body)
            quotes = [t.to_quote(self._venue, ts_recv) for t in tickers if t.symbol in self.books]
        except WireError as exc:
            self._malformed(body, exc)
            return []
        return [q for q in quotes if self._fresh_quote(q)]

    async def _handle(self, data: str | bytes) -> list[MarketEvent]:
        ts_recv = self._clock.time_ns()
        try:
            _, event = decode_combined(data)
            if isinstance(event, BookTickerEvent):
                if event.symbol not in self.books:
                    return []
                quote = event.to_quote(self._venue, ts_recv)
                return [quote] if self._fresh_quote(quote) else []
            if isinstance(event, TradeEvent | AggTradeEvent):
                if event.symbol not in self.books:
                    return []
                return [event.to_trade(self._venue, ts_recv)]
            if isinstance(event, DepthUpdateEvent):
                book = self.books.get(event.symbol)
                if book is None:
                    return []
                return await self._on_diff(book, event, ts_recv)
            if isinstance(event, KlineEvent):
                if not event.kline.closed or event.symbol not in self.books:
                    return []
                return [event.to_bar(self._venue, ts_recv)]
            if isinstance(event, ServerShutdown):
                if self._on_shutdown is None:
                    raise TransientVenueError("Binance market stream: server shutting down")
                log.info("Binance market stream: server shutting down; handing over")
                self._on_shutdown()
        except WireError as exc:
            self._malformed(data, exc)
        return []

    async def _on_diff(
        self, book: LocalBook, event: DepthUpdateEvent, ts_recv: int
    ) -> list[MarketEvent]:
        deltas = book.on_diff(event, ts_recv)
        if deltas is not None:
            return list(deltas)
        if not book.needs_snapshot:
            return []
        body = await self._http.get(
            f"{_API}/depth",
            {"symbol": book.symbol, "limit": str(self._depth_limit)},
            False,
            "market.depth",
        )
        try:
            snap = decode_depth(body)
            image = book.on_snapshot(snap, self._clock.time_ns())
        except WireError as exc:
            raise TransientVenueError(f"Binance depth snapshot unreadable: {exc}") from None
        return [image] if image is not None else []

    def _fresh_quote(self, quote: Quote) -> bool:
        """A quote worth yielding: both sides present and something changed."""
        if quote.bid <= 0 or quote.ask <= 0:
            return False
        top = (quote.bid, quote.ask, quote.bid_size, quote.ask_size)
        if self._last_top.get(quote.symbol) == top:
            return False
        self._last_top[quote.symbol] = top
        return True

    def _malformed(self, data: str | bytes, exc: Exception) -> None:
        self.malformed += 1
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        log.warning("Binance market stream: malformed message (%s): %r", exc, text[:_MAX_LOGGED])
