"""The Binance Spot venue adapter, REST trading side (first version).

Orders, cancels, queries, fills and balances go over REST (:class:`BinanceHttp`). Until the
user-data stream client lands, :meth:`BinanceAdapter.executions` carries the reports this
adapter can derive from its own REST replies:

* a submit: an ``ACCEPTED`` report, then one report per fill of the ``FULL`` response (trade
  id, price, fee), or the terminal status when nothing filled (an IOC/FOK that expired);
* a cancel / cancel-all: the ``CANCELED`` (or other final) status the venue returned.

Fills of a resting order that happen *later* are therefore not streamed yet; the gateway's
reconciliation finds them through :meth:`fills` (deduplicated by trade id). Likewise
:meth:`market_data` reads the combined websocket market stream
(:mod:`botd.venues.binance.stream`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Final, TypeVar

import aiohttp
import msgspec

from botd.clock import Clock
from botd.errors import ConfigError, OrderRejected, TransientVenueError
from botd.model import (
    Balance,
    ExecutionReport,
    Instrument,
    MarketEvent,
    Order,
    OrderStatus,
    OrderType,
    Side,
    VenueOrder,
)
from botd.venues.base import SubmitAck, VenueCapabilities
from botd.venues.binance.auth import Signer
from botd.venues.binance.constants import BINANCE_CAPABILITIES, is_unknown_order
from botd.venues.binance.http import BinanceHttp, UsageCallback
from botd.venues.binance.schemas import (
    MyTrade,
    OrderResponse,
    QueryOrder,
    WireError,
    dec,
    decode_account,
    decode_cancel_open_orders,
    decode_exchange_info,
    decode_my_trades,
    decode_open_orders,
    decode_order_response,
    decode_query_order,
    map_order_status,
)
from botd.venues.binance.stream import BinanceMarketStream, ws_base_from_rest

__all__ = ["BinanceAdapter"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_API: Final = "/api/v3"
_NS_PER_MS: Final = 1_000_000
_MY_TRADES_LIMIT: Final = 1000
# GET /api/v3/openOrders costs 6 per symbol, 80 for all symbols at once.
_OPEN_ORDERS_PER_SYMBOL: Final = 6
_OPEN_ORDERS_ALL: Final = 80
_UNKNOWN_ORDER: Final = "UNKNOWN_ORDER"


def _num(value: Decimal) -> str:
    """A Decimal as Binance wants it: plain notation, never an exponent."""
    return format(value, "f")


class BinanceAdapter:
    """:class:`botd.venues.base.VenueAdapter` for Binance Spot over REST.

    ``symbols`` are the instruments this daemon trades; ``connect()`` loads their filters from
    exchangeInfo (a symbol the venue does not list is a ``ConfigError``) and verifies the key.
    """

    def __init__(
        self,
        *,
        base_url: str,
        signer: Signer,
        clock: Clock,
        symbols: Sequence[str],
        name: str = "binance",
        session: aiohttp.ClientSession | None = None,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        poll_interval_s: float = 0.5,
        on_usage: UsageCallback | None = None,
        ws_url: str | None = None,
        book_depth: bool = False,
        stale_after_s: float = 10.0,
    ) -> None:
        if not symbols:
            raise ConfigError("the Binance venue needs at least one symbol")
        self._name = name
        self._clock = clock
        self._symbols = tuple(dict.fromkeys(symbols))
        self._http = BinanceHttp(
            base_url,
            signer,
            clock,
            session,
            recv_window_ms=recv_window_ms,
            timeout_s=timeout_s,
            on_usage=on_usage,
        )
        self._poll_interval_s = poll_interval_s
        self._session = session
        self._ws_url = ws_url or ws_base_from_rest(base_url)
        self._book_depth = book_depth
        self._stale_after_s = stale_after_s
        self._instruments: dict[str, Instrument] = {}
        # venue orderId -> our client order id, learnt from submits, queries and listings;
        # myTrades names only the venue's id.
        self._client_ids: dict[int, str] = {}
        # Unbounded on purpose: execution reports never drop (DESIGN §3).
        self._reports: asyncio.Queue[ExecutionReport] = asyncio.Queue()

    # -- identity -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> VenueCapabilities:
        return BINANCE_CAPABILITIES

    @property
    def http(self) -> BinanceHttp:
        return self._http

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._http.sync_time()
        params = {"symbols": msgspec.json.encode(list(self._symbols)).decode()}
        try:
            body = await self._http.get(
                f"{_API}/exchangeInfo", params, False, "market.exchange_info"
            )
        except OrderRejected as exc:  # -1121: a symbol the venue does not list
            raise ConfigError(
                f"Binance does not list all of {', '.join(self._symbols)}: {exc.reason}"
            ) from None
        info = self._decode(decode_exchange_info, body, "exchangeInfo")
        instruments = info.to_instruments(self._name)
        missing = [s for s in self._symbols if s not in instruments]
        if missing:
            raise ConfigError(f"Binance does not trade {', '.join(missing)} (not TRADING)")
        self._instruments = {s: instruments[s] for s in self._symbols}
        # Fail fast on a bad key (AuthError) rather than at the first order.
        await self.balances()

    async def close(self) -> None:
        await self._http.close()

    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    # -- streams ------------------------------------------------------------------------------

    async def market_data(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]:
        """Quotes (on change) and trades from the combined websocket stream at ``ws_url``
        (default: the REST base with http->ws), plus a local order book (snapshot, then
        deltas) when ``book_depth`` is on. One call is one connection: its loss or staleness
        raises ``TransientVenueError`` and the caller reconnects."""
        wanted = [s for s in dict.fromkeys(symbols) if s in self._instruments]
        if not wanted:
            return
        stream = BinanceMarketStream(
            ws_base=self._ws_url,
            http=self._http,
            clock=self._clock,
            venue=self._name,
            symbols=wanted,
            session=self._session,
            depth=self._book_depth,
            stale_after_s=self._stale_after_s,
        )
        async for event in stream.events():
            yield event

    async def executions(self) -> AsyncIterator[ExecutionReport]:
        while True:
            yield await self._reports.get()

    # -- orders -------------------------------------------------------------------------------

    async def submit(self, order: Order) -> SubmitAck:
        params: dict[str, str] = {
            "symbol": order.symbol,
            "side": "BUY" if order.side is Side.BUY else "SELL",
        }
        if order.type is OrderType.MARKET:
            params["type"] = "MARKET"
        else:
            if order.price is None:
                raise OrderRejected("a limit order needs a price", code="MISSING_PRICE")
            if order.post_only:
                params["type"] = "LIMIT_MAKER"  # takes no timeInForce
            else:
                params["type"] = "LIMIT"
                params["timeInForce"] = order.tif.value.upper()
        params["quantity"] = _num(order.qty)
        if order.type is OrderType.LIMIT and order.price is not None:
            params["price"] = _num(order.price)
        params["newClientOrderId"] = order.client_order_id
        params["newOrderRespType"] = "FULL"
        body = await self._http.post(f"{_API}/order", params, True, "order.submit")
        # The order exists now: a reply we cannot read is an unknown outcome, not a failure.
        resp = self._decode(decode_order_response, body, "order response", unknown_outcome=True)
        self._client_ids[resp.order_id] = order.client_order_id
        ack = resp.to_submit_ack()
        for report in self._submit_reports(resp):
            self._reports.put_nowait(report)
        return ack

    def _submit_reports(self, resp: OrderResponse) -> list[ExecutionReport]:
        ack = resp.to_submit_ack()
        accepted = ExecutionReport(
            venue=self._name,
            symbol=resp.symbol,
            client_order_id=ack.client_order_id,
            venue_order_id=ack.venue_order_id,
            status=OrderStatus.ACCEPTED,
            ts_event=ack.ts_event,
        )
        try:
            fills = resp.to_execution_reports(self._name)
        except WireError as exc:
            log.warning("Binance FULL response unreadable for %s: %s", ack.client_order_id, exc)
            fills = []
        if fills:
            return [accepted, *fills]
        if ack.status is OrderStatus.ACCEPTED:
            return [accepted]
        # Ended at once without a fill (an IOC/FOK that found nothing): say so.
        return [
            accepted,
            ExecutionReport(
                venue=self._name,
                symbol=resp.symbol,
                client_order_id=ack.client_order_id,
                venue_order_id=ack.venue_order_id,
                status=ack.status,
                ts_event=ack.ts_event,
            ),
        ]

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        params = {"symbol": symbol, "origClientOrderId": client_order_id}
        try:
            body = await self._http.delete(f"{_API}/order", params, True, "order.cancel")
        except OrderRejected as exc:
            if is_unknown_order(exc):
                raise OrderRejected(exc.reason, code=_UNKNOWN_ORDER) from None
            raise
        resp = self._decode(decode_order_response, body, "cancel response", unknown_outcome=True)
        self._cancel_report(resp)

    async def cancel_all(self, symbol: str) -> None:
        try:
            body = await self._http.delete(
                f"{_API}/openOrders", {"symbol": symbol}, True, "order.cancel_all"
            )
        except OrderRejected as exc:
            if is_unknown_order(exc):
                return  # nothing open: nothing to do
            raise
        responses = self._decode(
            decode_cancel_open_orders, body, "cancel-all response", unknown_outcome=True
        )
        for resp in responses:
            self._cancel_report(resp)

    def _cancel_report(self, resp: OrderResponse) -> None:
        self._client_ids[resp.order_id] = resp.our_client_order_id
        status = OrderStatus.CANCELED
        if resp.status is not None:
            try:
                status = map_order_status(resp.status)
            except WireError:
                log.warning("Binance cancel reply with unknown status %r", resp.status[:40])
        self._reports.put_nowait(
            ExecutionReport(
                venue=self._name,
                symbol=resp.symbol,
                client_order_id=resp.our_client_order_id,
                venue_order_id=str(resp.order_id),
                status=status,
                ts_event=resp.transact_time * _NS_PER_MS,
            )
        )

    # -- queries ------------------------------------------------------------------------------

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        found = await self._query({"symbol": symbol, "origClientOrderId": client_order_id})
        if found is None:
            return None
        return self._convert(lambda: found.to_venue_order(self._name), "order")

    async def _query(self, params: Mapping[str, str]) -> QueryOrder | None:
        try:
            body = await self._http.get(f"{_API}/order", params, True, "order.query")
        except OrderRejected as exc:
            if is_unknown_order(exc):
                return None
            raise
        found = self._decode(decode_query_order, body, "order")
        self._client_ids[found.order_id] = found.client_order_id
        return found

    async def open_orders(self) -> list[VenueOrder]:
        path = f"{_API}/openOrders"
        rows: list[QueryOrder] = []
        if len(self._symbols) * _OPEN_ORDERS_PER_SYMBOL < _OPEN_ORDERS_ALL:
            for symbol in self._symbols:
                body = await self._http.get(
                    path, {"symbol": symbol}, True, "order.open_orders.symbol"
                )
                rows.extend(self._decode(decode_open_orders, body, "openOrders"))
        else:
            body = await self._http.get(path, {}, True, "order.open_orders")
            wanted = set(self._symbols)
            listed = self._decode(decode_open_orders, body, "openOrders")
            rows.extend(o for o in listed if o.symbol in wanted)
        out: list[VenueOrder] = []
        for row in rows:
            self._client_ids[row.order_id] = row.client_order_id
            out.append(self._convert(partial(row.to_venue_order, self._name), "openOrders"))
        return out

    async def fills(self, symbol: str, since_ns: int) -> list[ExecutionReport]:
        """``GET /api/v3/myTrades`` from ``since_ns``, paged by trade id.

        myTrades names only the venue's order id: our client id comes from the cache this
        adapter keeps (submits, queries, listings) or else one order query. Each report's
        status is the order's status right after that fill, from the order's current executed
        quantity counted back over the later fills (one order query per order involved).
        """
        trades = await self._my_trades(symbol, since_ns)
        orders: dict[int, QueryOrder | None] = {}
        for order_id in dict.fromkeys(t.order_id for t in trades):
            orders[order_id] = await self._query({"symbol": symbol, "orderId": str(order_id)})
        try:
            # The order's cumulative quantity right after each fill, walking back from now.
            cum: dict[int, Decimal] = {
                oid: dec(found.executed_qty) for oid, found in orders.items() if found is not None
            }
            reports: list[ExecutionReport] = []
            for trade in reversed(trades):
                found = orders.get(trade.order_id)
                status = OrderStatus.PARTIALLY_FILLED
                if found is not None:
                    if cum[trade.order_id] >= dec(found.orig_qty):
                        status = OrderStatus.FILLED
                    cum[trade.order_id] -= dec(trade.qty)
                client_id = self._client_ids.get(trade.order_id, "")
                reports.append(trade.to_execution_report(self._name, client_id, status))
        except WireError as exc:
            raise TransientVenueError(f"Binance myTrades unreadable: {exc}") from None
        reports.reverse()
        return reports

    async def _my_trades(self, symbol: str, since_ns: int) -> list[MyTrade]:
        since_ms = since_ns // _NS_PER_MS
        params: dict[str, str] = {
            "symbol": symbol,
            "startTime": str(since_ms),
            "limit": str(_MY_TRADES_LIMIT),
        }
        out: list[MyTrade] = []
        seen: set[int] = set()
        while True:
            body = await self._http.get(f"{_API}/myTrades", params, True, "account.fills")
            page = self._decode(decode_my_trades, body, "myTrades")
            fresh = [t for t in page if t.id not in seen and t.time * _NS_PER_MS >= since_ns]
            for t in fresh:
                seen.add(t.id)
            out.extend(fresh)
            if len(page) < _MY_TRADES_LIMIT or not page:
                break
            # A full page: continue after its last trade (fromId pages by trade id).
            params = {
                "symbol": symbol,
                "fromId": str(max(t.id for t in page) + 1),
                "limit": str(_MY_TRADES_LIMIT),
            }
        out.sort(key=lambda t: (t.time, t.id))
        return out

    async def balances(self) -> dict[str, Balance]:
        body = await self._http.get(
            f"{_API}/account", {"omitZeroBalances": "true"}, True, "account.balances"
        )
        account = self._decode(decode_account, body, "account")
        return self._convert(account.to_balances, "account")

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _decode(
        decoder: Callable[[bytes], T], body: bytes, what: str, *, unknown_outcome: bool = False
    ) -> T:
        try:
            return decoder(body)
        except WireError as exc:
            suffix = " (outcome unknown)" if unknown_outcome else ""
            raise TransientVenueError(f"Binance {what} unreadable: {exc}{suffix}") from None

    @staticmethod
    def _convert(fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except WireError as exc:
            raise TransientVenueError(f"Binance {what} unreadable: {exc}") from None
