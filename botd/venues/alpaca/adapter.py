"""The Alpaca venue adapter: trading API v2 over REST, ``trade_updates`` for executions,
the market-data websocket for quotes and trades.

The ``trade_updates`` connection is opened by :meth:`AlpacaAdapter.connect`, before any order
can be sent, so no update of ours is missed; when it is lost, :meth:`executions` raises
``TransientVenueError`` once (the gateway reconciles) and the next iteration reconnects.
Fill recovery reads the account's FILL activities, whose ids end with the execution id that
``trade_updates`` sent, so both name an execution the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import aiohttp
from pydantic import SecretStr

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
    TimeInForce,
    VenueOrder,
)
from botd.venues.alpaca.http import AlpacaHttp, NotFound, UsageSink
from botd.venues.alpaca.streams import StreamStats, TradeUpdates, market_events
from botd.venues.alpaca.wire import (
    WireError,
    format_ns,
    instrument_from_asset,
    parse_decimal,
    parse_ns,
    status_of,
    venue_order,
)
from botd.venues.base import RateLimit, SubmitAck, VenueCapabilities

__all__ = ["ALPACA_CAPABILITIES", "AlpacaAdapter"]

_UNKNOWN_ORDER: Final = "UNKNOWN_ORDER"
_PAGE: Final = 100
_OPEN_LIMIT: Final = "500"
_TIF: Final[Mapping[TimeInForce, str]] = {
    TimeInForce.GTC: "gtc",
    TimeInForce.IOC: "ioc",
    TimeInForce.FOK: "fok",
}
_ENDPOINTS: Final = (
    "order.submit",
    "order.cancel",
    "order.cancel_all",
    "order.query",
    "order.open_orders",
    "account.fills",
    "account.balances",
)
ALPACA_CAPABILITIES: Final = VenueCapabilities(
    order_types=frozenset(OrderType),  # Alpaca's own names: market, limit, stop, stop_limit
    time_in_force=frozenset(_TIF),
    post_only=False,
    rate_limits=(RateLimit("requests", 200, 60.0, scope="account", kind="rolling"),),
    endpoint_costs={e: {"requests": 1} for e in _ENDPOINTS},
)


class _Lost:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _http_to_ws(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    return "ws://" + url.removeprefix("http://")


class AlpacaAdapter:
    """:class:`botd.venues.base.VenueAdapter` for Alpaca. ``base_url`` is the trading host
    (``https://paper-api.alpaca.markets`` or a simulator); ``data_url`` the market-data
    websocket host (``wss://stream.data.alpaca.markets``); ``stock_feed`` iex, sip or test."""

    def __init__(
        self,
        *,
        base_url: str,
        key_id: SecretStr,
        secret_key: SecretStr,
        clock: Clock,
        symbols: Sequence[str],
        name: str = "alpaca",
        data_url: str | None = None,
        stock_feed: str = "iex",
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        on_usage: UsageSink | None = None,
    ) -> None:
        if not symbols:
            raise ConfigError("the Alpaca venue needs at least one symbol")
        if stock_feed not in ("iex", "sip", "test"):
            raise ConfigError(f"stock_feed must be iex, sip or test, not {stock_feed!r}")
        self._name = name
        self._clock = clock
        self._symbols = tuple(dict.fromkeys(symbols))
        self._http = AlpacaHttp(
            base_url, key_id, secret_key, clock, session, timeout_s, on_usage=on_usage
        )
        self._stream_url = _http_to_ws(base_url.rstrip("/")) + "/stream"
        self._data_url = (data_url or _http_to_ws(base_url)).rstrip("/")
        self._stock_feed = stock_feed
        self._instruments: dict[str, Instrument] = {}
        self._crypto: set[str] = set()
        self._client_ids: dict[str, str] = {}  # venue order id -> our client order id
        self._venue_ids: dict[str, str] = {}  # client order id -> venue order id
        # Unbounded on purpose: execution reports never drop (DESIGN §3).
        self._reports: asyncio.Queue[ExecutionReport | _Lost] = asyncio.Queue()
        self._updates: TradeUpdates | None = None
        self.market_stats = StreamStats()

    # -- identity and lifecycle ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> VenueCapabilities:
        return ALPACA_CAPABILITIES

    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    async def connect(self) -> None:
        for symbol in self._symbols:
            try:
                asset = await self._http.request("GET", f"/v2/assets/{symbol}")
            except NotFound:
                raise ConfigError(f"Alpaca does not list {symbol}") from None
            if not isinstance(asset, dict):
                raise TransientVenueError(f"Alpaca asset {symbol}: malformed reply")
            if asset.get("status") != "active" or not asset.get("tradable"):
                raise ConfigError(f"Alpaca does not trade {symbol} (not active and tradable)")
            inst = instrument_from_asset(self._name, asset)
            self._instruments[inst.symbol] = inst
            if asset.get("class") == "crypto":
                self._crypto.add(inst.symbol)
        await self.balances()  # a bad key fails here (AuthError), not at the first order
        await self._listen()

    async def _listen(self) -> None:
        updates = TradeUpdates(
            url=self._stream_url,
            venue=self._name,
            auth=self._http.auth_message,
            session=self._http.session,
            quote_of=self._quote_of,
            on_report=self._reports.put_nowait,
            on_lost=lambda reason: self._reports.put_nowait(_Lost(reason)),
        )
        await updates.start()
        self._updates = updates

    async def close(self) -> None:
        if self._updates is not None:
            await self._updates.close()
            self._updates = None
        await self._http.close()

    def session_calendar(self, symbol: str) -> str | None:
        """The exchange calendar ``symbol`` trades on (see :mod:`botd.sessions`): the NYSE's
        for US equities, None (around the clock) for crypto pairs."""
        if symbol in self._crypto or "/" in symbol:
            return None
        return "XNYS"

    def _quote_of(self, symbol: str) -> str:
        inst = self._instruments.get(symbol)
        return inst.quote if inst is not None else "USD"

    # -- streams ------------------------------------------------------------------------------

    async def executions(self) -> AsyncIterator[ExecutionReport]:
        while True:
            if self._updates is None:
                await self._listen()
            item = await self._reports.get()
            if isinstance(item, _Lost):
                if self._updates is not None:
                    await self._updates.close()
                    self._updates = None
                raise TransientVenueError(f"Alpaca trade_updates lost: {item.reason}")
            self._learn(item.venue_order_id, item.client_order_id)
            yield item

    async def market_data(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]:
        wanted = [s for s in dict.fromkeys(symbols) if s in self._instruments]
        crypto = [s for s in wanted if s in self._crypto]
        stocks = [s for s in wanted if s not in self._crypto]
        feeds = []
        if crypto:
            feeds.append((f"{self._data_url}/v1beta3/crypto/us", crypto))
        if stocks:
            feeds.append((f"{self._data_url}/v2/{self._stock_feed}", stocks))
        if not feeds:
            return
        if len(feeds) == 1:
            url, names = feeds[0]
            async for event in self._feed(url, names):
                yield event
            return
        queue: asyncio.Queue[MarketEvent | BaseException] = asyncio.Queue()

        async def pump(url: str, names: list[str]) -> None:
            try:
                async for event in self._feed(url, names):
                    queue.put_nowait(event)
            except Exception as exc:
                queue.put_nowait(exc)

        tasks = [asyncio.create_task(pump(url, names)) for url, names in feeds]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _feed(self, url: str, symbols: list[str]) -> AsyncIterator[MarketEvent]:
        return market_events(
            url=url,
            venue=self._name,
            symbols=symbols,
            auth=self._http.auth_message,
            session=self._http.session,
            clock=self._clock,
            stats=self.market_stats,
        )

    # -- orders -------------------------------------------------------------------------------

    def _learn(self, venue_order_id: str, client_order_id: str) -> None:
        if venue_order_id and client_order_id:
            self._client_ids[venue_order_id] = client_order_id
            self._venue_ids[client_order_id] = venue_order_id

    async def submit(self, order: Order) -> SubmitAck:
        if order.post_only:
            raise OrderRejected("Alpaca has no post-only orders", code="UNSUPPORTED")
        tif = _TIF.get(order.tif)
        if tif is None:
            raise OrderRejected(f"Alpaca has no {order.tif} orders", code="UNSUPPORTED")
        body: dict[str, Any] = {
            "symbol": order.symbol,
            "qty": format(order.qty, "f"),
            "side": order.side.value,
            "type": order.type.value,
            "time_in_force": tif,
            "client_order_id": order.client_order_id,
        }
        if order.type.has_limit:
            if order.price is None:
                raise OrderRejected("a limit order needs a price", code="BAD_PRICE")
            body["limit_price"] = format(order.price, "f")
        if order.type.is_stop:
            if order.stop_price is None:
                raise OrderRejected("a stop order needs a stop price", code="BAD_PRICE")
            body["stop_price"] = format(order.stop_price, "f")
        reply = await self._http.request("POST", "/v2/orders", body=body)
        try:
            view = venue_order(self._name, reply)
            ts = parse_ns(reply.get("created_at"))
        except (WireError, AttributeError) as exc:
            raise TransientVenueError(f"Alpaca order reply not understood: {exc}") from None
        self._learn(view.venue_order_id, order.client_order_id)
        status = view.status
        if status is not OrderStatus.REJECTED:
            status = OrderStatus.ACCEPTED
        return SubmitAck(order.client_order_id, view.venue_order_id, status, ts)

    async def _venue_id(self, client_order_id: str) -> str | None:
        known = self._venue_ids.get(client_order_id)
        if known is not None:
            return known
        found = await self._by_client_id(client_order_id)
        return None if found is None else found.venue_order_id

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        venue_id = await self._venue_id(client_order_id)
        if venue_id is None:
            raise OrderRejected(f"no order {client_order_id}", code=_UNKNOWN_ORDER)
        try:
            await self._http.request("DELETE", f"/v2/orders/{venue_id}")
        except NotFound:
            raise OrderRejected(f"no order {client_order_id}", code=_UNKNOWN_ORDER) from None
        except OrderRejected as exc:  # 422: no longer open
            raise OrderRejected(exc.reason, code=_UNKNOWN_ORDER) from None

    async def cancel_all(self, symbol: str) -> None:
        # DELETE /v2/orders would cancel every symbol's orders: cancel this symbol's one by one.
        for view in await self.open_orders():
            if view.symbol != symbol:
                continue
            with contextlib.suppress(NotFound, OrderRejected):  # closed meanwhile
                await self._http.request("DELETE", f"/v2/orders/{view.venue_order_id}")

    async def _by_client_id(self, client_order_id: str) -> VenueOrder | None:
        try:
            reply = await self._http.request(
                "GET",
                "/v2/orders:by_client_order_id",
                params={"client_order_id": client_order_id},
            )
        except NotFound:
            return None
        view = self._order(reply)
        self._learn(view.venue_order_id, view.client_order_id)
        return view

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        return await self._by_client_id(client_order_id)

    async def open_orders(self) -> list[VenueOrder]:
        reply = await self._http.request(
            "GET", "/v2/orders", params={"status": "open", "limit": _OPEN_LIMIT}
        )
        if not isinstance(reply, list):
            raise TransientVenueError("Alpaca open orders: malformed reply")
        out = [self._order(item) for item in reply]
        for view in out:
            self._learn(view.venue_order_id, view.client_order_id)
        return sorted(out, key=lambda v: v.ts_event)

    def _order(self, body: object) -> VenueOrder:
        if not isinstance(body, dict):
            raise TransientVenueError("Alpaca order: malformed reply")
        try:
            return venue_order(self._name, body)
        except WireError as exc:
            raise TransientVenueError(f"Alpaca order not understood: {exc}") from None

    # -- account ------------------------------------------------------------------------------

    async def fills(self, symbol: str, since_ns: int) -> list[ExecutionReport]:
        params = {
            "direction": "asc",
            "page_size": str(_PAGE),
            "after": format_ns(since_ns - 1),
        }
        out: list[ExecutionReport] = []
        while True:
            page = await self._http.request("GET", "/v2/account/activities/FILL", params=params)
            if not isinstance(page, list):
                raise TransientVenueError("Alpaca activities: malformed reply")
            for item in page:
                report = await self._fill_report(item)
                if report.symbol == symbol and report.ts_event >= since_ns:
                    out.append(report)
            if len(page) < _PAGE:
                return out
            params["page_token"] = str(page[-1]["id"])

    async def _fill_report(self, item: object) -> ExecutionReport:
        if not isinstance(item, dict):
            raise TransientVenueError("Alpaca activity: malformed")
        try:
            order_id = str(item["order_id"])
            client_id = self._client_ids.get(order_id)
            if client_id is None:
                view = self._order(await self._http.request("GET", f"/v2/orders/{order_id}"))
                client_id = view.client_order_id
                self._learn(order_id, client_id)
            symbol = str(item["symbol"])
            done = str(item.get("type")) == "fill"
            return ExecutionReport(
                venue=self._name,
                symbol=symbol,
                client_order_id=client_id,
                venue_order_id=order_id,
                status=OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
                ts_event=parse_ns(item["transaction_time"]),
                last_qty=parse_decimal(item["qty"], "qty"),
                last_price=parse_decimal(item["price"], "price"),
                fee=Decimal(0),
                fee_asset=self._quote_of(symbol),
                trade_id=str(item["id"]).rpartition("::")[2],
            )
        except (KeyError, WireError, NotFound) as exc:
            raise TransientVenueError(f"Alpaca fill activity not understood: {exc}") from None

    async def balances(self) -> dict[str, Balance]:
        account = await self._http.request("GET", "/v2/account")
        positions = await self._http.request("GET", "/v2/positions")
        if not isinstance(account, dict) or not isinstance(positions, list):
            raise TransientVenueError("Alpaca account: malformed reply")
        try:
            cash = parse_decimal(account["cash"], "cash")
            spendable = parse_decimal(
                account.get("non_marginable_buying_power") or account["buying_power"],
                "buying_power",
            )
            currency = str(account.get("currency") or "USD")
            out = {
                currency: Balance(currency, min(spendable, cash), max(cash - spendable, Decimal(0)))
            }
            by_position = {i.symbol.replace("/", ""): i for i in self._instruments.values()}
            for p in positions:
                inst = by_position.get(str(p["symbol"]).replace("/", ""))
                asset = inst.base if inst is not None else str(p["symbol"])
                qty = parse_decimal(p["qty"], "qty")
                available = parse_decimal(p.get("qty_available", p["qty"]), "qty_available")
                out[asset] = Balance(asset, available, qty - available)
        except (KeyError, TypeError, WireError) as exc:
            raise TransientVenueError(f"Alpaca account not understood: {exc}") from None
        return out

    def order_status(self, text: str) -> OrderStatus:
        """Alpaca's order status in botd's terms (for tools and tests)."""
        return status_of(text)
