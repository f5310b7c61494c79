"""Alpaca's two websocket feeds as botd events.

:class:`TradeUpdates` holds the ``trade_updates`` connection of the trading host and turns its
events into :class:`ExecutionReport`s. :func:`market_events` reads one market-data endpoint
(JSON text: numbers are decoded straight to ``Decimal``) and yields quotes and trades.
A malformed message is logged and counted, never fatal; a lost connection raises
``TransientVenueError`` for the caller to reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import aiohttp

from botd.clock import Clock
from botd.errors import AuthError, TransientVenueError
from botd.model import ExecutionReport, MarketEvent, OrderStatus, Quote, Side, Trade
from botd.venues.alpaca.wire import WireError, parse_decimal, parse_ns

__all__ = ["StreamStats", "TradeUpdates", "market_events", "report_from_update"]

log = logging.getLogger(__name__)

_HANDSHAKE_S: Final = 10.0
_EVENTS: Final[Mapping[str, OrderStatus]] = {
    "new": OrderStatus.ACCEPTED,
    "fill": OrderStatus.FILLED,
    "partial_fill": OrderStatus.PARTIALLY_FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "done_for_day": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


class StreamStats:
    def __init__(self) -> None:
        self.malformed = 0


def _loads(data: str | bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


def report_from_update(
    venue: str, data: Mapping[str, Any], quote_of: Callable[[str], str]
) -> ExecutionReport | None:
    """The report for one ``trade_updates`` event; None for events botd does not act on
    (pending states, ``accepted`` before ``new``, ``replaced``: botd never replaces)."""
    status = _EVENTS.get(str(data.get("event")))
    if status is None:
        return None
    order = data.get("order")
    if not isinstance(order, dict):
        raise WireError("trade update without an order")
    symbol = str(order.get("symbol", ""))
    common: dict[str, Any] = {
        "venue": venue,
        "symbol": symbol,
        "client_order_id": str(order.get("client_order_id", "")),
        "venue_order_id": str(order.get("id", "")),
        "status": status,
        "ts_event": parse_ns(data.get("timestamp")),
    }
    if status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED):
        return ExecutionReport(
            **common,
            last_qty=parse_decimal(data.get("qty"), "qty"),
            last_price=parse_decimal(data.get("price"), "price"),
            fee=Decimal(0),  # Alpaca charges no commission on these; fees arrive as activities
            fee_asset=quote_of(symbol),
            trade_id=str(data.get("execution_id", "")),
        )
    return ExecutionReport(**common)


class TradeUpdates:
    """One authenticated, listening ``trade_updates`` connection; every report goes to
    ``on_report``, and ``on_lost`` is called once when the connection ends."""

    def __init__(
        self,
        *,
        url: str,
        venue: str,
        auth: Callable[[], dict[str, str]],
        session: aiohttp.ClientSession,
        quote_of: Callable[[str], str],
        on_report: Callable[[ExecutionReport], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._url = url
        self._venue = venue
        self._auth = auth
        self._session = session
        self._quote_of = quote_of
        self._on_report = on_report
        self._on_lost = on_lost
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.stats = StreamStats()

    async def start(self) -> None:
        try:
            ws = await self._session.ws_connect(self._url, heartbeat=20.0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientVenueError(f"Alpaca trade_updates: {type(exc).__name__}") from None
        self._ws = ws
        creds = self._auth()
        login = {"key_id": creds["key"], "secret_key": creds["secret"]}
        try:
            await ws.send_json({"action": "authenticate", "data": login})
            reply = await self._control(ws)
            if reply.get("stream") != "authorization" or reply["data"].get("status") != (
                "authorized"
            ):
                raise AuthError("Alpaca refused the key on the trade_updates stream")
            await ws.send_json({"action": "listen", "data": {"streams": ["trade_updates"]}})
            reply = await self._control(ws)
            if reply.get("stream") != "listening" or "trade_updates" not in reply["data"].get(
                "streams", []
            ):
                raise TransientVenueError(f"Alpaca trade_updates: not listening: {reply!r}")
        except BaseException:
            await ws.close()
            raise
        self._reader = asyncio.create_task(self._read(ws), name="alpaca-trade-updates")

    async def _control(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        try:
            msg = await asyncio.wait_for(ws.receive(), _HANDSHAKE_S)
        except TimeoutError:
            raise TransientVenueError("Alpaca trade_updates: no answer") from None
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raise TransientVenueError(f"Alpaca trade_updates closed: {msg.type.name}")
        try:
            body = _loads(msg.data)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise TransientVenueError("Alpaca trade_updates: malformed control message")
        return body

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = "closed by the venue"
        try:
            async for msg in ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._handle(msg.data)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    reason = "connection error"
                    break
        finally:
            self._on_lost(reason)

    def _handle(self, data: str | bytes) -> None:
        try:
            body = _loads(data)
            if not isinstance(body, dict) or body.get("stream") != "trade_updates":
                return
            report = report_from_update(self._venue, body.get("data") or {}, self._quote_of)
        except (ValueError, TypeError) as exc:
            self.stats.malformed += 1
            log.warning("malformed Alpaca trade update ignored: %s", exc)
            return
        if report is not None:
            self._on_report(report)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None


async def market_events(
    *,
    url: str,
    venue: str,
    symbols: Sequence[str],
    auth: Callable[[], dict[str, str]],
    session: aiohttp.ClientSession,
    clock: Clock,
    stats: StreamStats,
) -> AsyncIterator[MarketEvent]:
    """Quotes and trades of ``symbols`` from the data endpoint ``url``, until the connection
    ends (``TransientVenueError``) or the consumer stops iterating."""
    try:
        ws = await session.ws_connect(url, heartbeat=20.0)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientVenueError(f"Alpaca market data: {type(exc).__name__}") from None
    try:
        await _expect(ws, "connected")
        await ws.send_json(auth())
        await _expect(ws, "authenticated")
        await ws.send_json(
            {"action": "subscribe", "trades": list(symbols), "quotes": list(symbols)}
        )
        last_mid: dict[str, Decimal] = {}
        async for msg in ws:
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            try:
                batch = _loads(msg.data)
                if not isinstance(batch, list):
                    raise WireError("a data message is not an array")
                events = [_event(venue, item, clock, last_mid) for item in batch]
            except (ValueError, TypeError, KeyError) as exc:
                stats.malformed += 1
                log.warning("malformed Alpaca market data ignored: %s", exc)
                continue
            for event in events:
                if event is not None:
                    yield event
        raise TransientVenueError("Alpaca market data connection closed")
    finally:
        await ws.close()


async def _expect(ws: aiohttp.ClientWebSocketResponse, what: str) -> None:
    try:
        msg = await asyncio.wait_for(ws.receive(), _HANDSHAKE_S)
    except TimeoutError:
        raise TransientVenueError(f"Alpaca market data: no '{what}'") from None
    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        raise TransientVenueError(f"Alpaca market data closed before '{what}'")
    body = _loads(msg.data)
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
    if first.get("T") == "success" and first.get("msg") == what:
        return
    if first.get("T") == "error" and first.get("code") in (401, 402, 409):
        raise AuthError(f"Alpaca market data refused the key: {first.get('msg')}")
    raise TransientVenueError(f"Alpaca market data: expected '{what}', got {first!r}")


def _event(venue: str, item: Any, clock: Clock, last_mid: dict[str, Decimal]) -> MarketEvent | None:
    if not isinstance(item, dict):
        raise WireError("a data item is not an object")
    kind = item.get("T")
    if kind == "q":
        symbol = str(item["S"])
        quote = Quote(
            venue=venue,
            symbol=symbol,
            bid=parse_decimal(item["bp"], "bp"),
            ask=parse_decimal(item["ap"], "ap"),
            bid_size=parse_decimal(item["bs"], "bs"),
            ask_size=parse_decimal(item["as"], "as"),
            ts_event=parse_ns(item["t"]),
            ts_recv=clock.time_ns(),
        )
        last_mid[symbol] = quote.mid
        return quote
    if kind == "t":
        symbol = str(item["S"])
        price = parse_decimal(item["p"], "p")
        taker = item.get("tks")
        if taker in ("B", "S"):
            side = Side.BUY if taker == "B" else Side.SELL
        else:  # stocks do not say who took: the tick rule against the last mid
            side = Side.BUY if price >= last_mid.get(symbol, price) else Side.SELL
        return Trade(
            venue=venue,
            symbol=symbol,
            price=price,
            size=parse_decimal(item["s"], "s"),
            side=side,
            trade_id=str(item["i"]),
            ts_event=parse_ns(item["t"]),
            ts_recv=clock.time_ns(),
        )
    if kind == "error":
        log.warning("Alpaca market data error %s: %s", item.get("code"), item.get("msg"))
    return None
