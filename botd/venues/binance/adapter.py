"""The Binance Spot venue adapter.

Orders, cancels, order queries and open-order listings go over the WebSocket API
(``trade_over="ws"``, the default; :mod:`botd.venues.binance.wsapi`) or REST
(``trade_over="rest"``; :class:`BinanceHttp`); fills (myTrades), balances and exchangeInfo over
REST. :meth:`BinanceAdapter.executions` merges, through one
:class:`~botd.venues.binance.userdata.ReportSequencer` (each fact once, in order):

* what the replies to our own requests say: a submit's ``ACCEPTED`` and ``FULL`` fills (or
  the final status of an IOC/FOK that found nothing), a cancel's final status;
* the user-data stream of the WS API (``executionReport``: fills of resting orders, cancels
  and expiries however they happen).

When the user-data connection had to be replaced without overlap (events may be lost) or a
held report expired, :meth:`executions` raises :class:`TransientVenueError` once: the gateway
then reconciles (queries every open order and its fills) and iterates again; no queued report
is lost. :meth:`market_data` reads the combined websocket market stream
(:mod:`botd.venues.binance.stream`), handing over to a new connection before the 24 h cut;
with ``bar_intervals`` it also carries the venue's closed klines as :class:`Bar` (declared in
``capabilities.bar_timeframes``), each bar once across reconnects.
``outboundAccountPosition`` events keep a balance cache that :meth:`balances` serves when it
is known to be current. exchangeInfo is re-read every ``instruments_refresh_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Final, Literal, TypeVar

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
from botd.venues.binance.constants import (
    BINANCE_CAPABILITIES,
    DEFAULT_MAX_CONNECTION_AGE_S,
    KLINE_INTERVALS,
    is_unknown_order,
    ws_api_url_from_rest,
)
from botd.venues.binance.http import BinanceHttp, UsageCallback
from botd.venues.binance.market import HandoverMarketStream
from botd.venues.binance.schemas import (
    ExecutionReportEvent,
    MyTrade,
    OrderResponse,
    OutboundAccountPosition,
    QueryOrder,
    UserDataEvent,
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
from botd.venues.binance.stream import ws_base_from_rest
from botd.venues.binance.userdata import ReportSequencer
from botd.venues.binance.wsapi import BinanceWsApi, ConnectLimiter

__all__ = ["BinanceAdapter"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_API: Final = "/api/v3"
_NS_PER_MS: Final = 1_000_000
_MY_TRADES_LIMIT: Final = 1000
_MAX_CLIENT_IDS: Final = 100_000  # venue order ids remembered (about 10 MB at most)
# GET /api/v3/openOrders costs 6 per symbol, 80 for all symbols at once.
_OPEN_ORDERS_PER_SYMBOL: Final = 6
_OPEN_ORDERS_ALL: Final = 80
_UNKNOWN_ORDER: Final = "UNKNOWN_ORDER"
# WS API method for each REST trading call.
_WS_METHODS: Final[Mapping[tuple[str, str], str]] = {
    ("POST", f"{_API}/order"): "order.place",
    ("DELETE", f"{_API}/order"): "order.cancel",
    ("GET", f"{_API}/order"): "order.status",
    ("GET", f"{_API}/openOrders"): "openOrders.status",
    ("DELETE", f"{_API}/openOrders"): "openOrders.cancelAll",
}


class _Gap:
    """Queued where user-data events may be missing: :meth:`executions` raises there."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _num(value: Decimal) -> str:
    """A Decimal as Binance wants it: plain notation, never an exponent."""
    return format(value, "f")


class BinanceAdapter:
    """:class:`botd.venues.base.VenueAdapter` for Binance Spot.

    ``symbols`` are the instruments this daemon trades; ``connect()`` loads their filters from
    exchangeInfo (a symbol the venue does not list is a ``ConfigError``), verifies the key and
    opens the WS API connection (user data; orders too with ``trade_over="ws"``).
    ``user_data=False`` (REST trading only) leaves fills of resting orders to reconciliation.
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
        bar_intervals: Sequence[str] = (),
        stale_after_s: float = 10.0,
        trade_over: Literal["ws", "rest"] = "ws",
        ws_api_url: str | None = None,
        user_data: bool = True,
        max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S,
        instruments_refresh_s: float = 3600.0,
        report_hold_s: float = 2.0,
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
        bad = [i for i in bar_intervals if i not in KLINE_INTERVALS]
        if bad:
            raise ConfigError(
                f"bar_intervals: {', '.join(map(repr, bad))} not a Binance kline interval "
                f"({', '.join(KLINE_INTERVALS)})"
            )
        self._bar_intervals = tuple(dict.fromkeys(bar_intervals))
        self._capabilities = (
            dataclasses.replace(BINANCE_CAPABILITIES, bar_timeframes=frozenset(bar_intervals))
            if bar_intervals
            else BINANCE_CAPABILITIES
        )
        # (symbol, interval) -> start of the last bar published, kept across market_data calls
        # so that a reconnect never repeats a closed kline.
        self._bar_marks: dict[tuple[str, str], int] = {}
        self._stale_after_s = stale_after_s
        if trade_over not in ("ws", "rest"):
            raise ConfigError(f"trade_over must be 'ws' or 'rest', not {trade_over!r}")
        if trade_over == "ws" and not user_data:
            raise ConfigError("trading over the WS API needs its connection (user_data=True)")
        self._trade_over = trade_over
        self._max_age_s = max_connection_age_s
        self._refresh_s = instruments_refresh_s
        self._instruments: dict[str, Instrument] = {}
        self.not_trading: set[str] = set()  # listed symbols whose status left TRADING
        # venue orderId -> our client order id, learnt from submits, queries and listings;
        # myTrades names only the venue's id.
        self._client_ids: OrderedDict[int, str] = OrderedDict()  # bounded: see _remember
        # Unbounded on purpose: execution reports never drop (DESIGN §3).
        self._reports: asyncio.Queue[ExecutionReport | _Gap] = asyncio.Queue()
        self._sequencer = ReportSequencer(self._emit, clock, hold_s=report_hold_s)
        self._held = asyncio.Event()
        # Balances from outboundAccountPosition on top of the last REST read; trusted only
        # while no report has gone out since the last position event (that event follows its
        # reports) and the stream has had no gap.
        self._account: dict[str, Balance] | None = None
        self._positions_due = False
        self._connect_limiter = ConnectLimiter(clock)
        self._wsapi: BinanceWsApi | None = None
        if user_data:
            self._wsapi = BinanceWsApi(
                url=ws_api_url or ws_api_url_from_rest(base_url),
                signer=signer,
                clock=clock,
                offset_ms=lambda: self._http.offset_ms,
                resync_time=self._http.sync_time,
                on_event=self._on_user_event,
                on_gap=self._on_gap,
                on_usage=on_usage,
                session=session,
                limiter=self._connect_limiter,
                recv_window_ms=recv_window_ms,
                timeout_s=timeout_s,
                max_connection_age_s=max_connection_age_s,
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._markets: list[HandoverMarketStream] = []  # the latest market_data() calls
        self._book_gaps_closed = 0
        self._book_missed_closed = 0
        self.user_events = 0
        self.malformed_events = 0

    # -- identity -----------------------------------------------------------------------------

    def _remember(self, order_id: int, client_order_id: str) -> None:
        """venue orderId -> our client id, for the most recent orders only: a long-running
        daemon must not keep every id forever; an older one is learnt again by a query."""
        self._client_ids[order_id] = client_order_id
        self._client_ids.move_to_end(order_id)
        if len(self._client_ids) > _MAX_CLIENT_IDS:
            self._client_ids.popitem(last=False)

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> VenueCapabilities:
        return self._capabilities

    @property
    def http(self) -> BinanceHttp:
        return self._http

    @property
    def ws_api(self) -> BinanceWsApi | None:
        return self._wsapi

    @property
    def sequencer(self) -> ReportSequencer:
        return self._sequencer

    @property
    def book_gaps(self) -> int:
        """Depth sequence gaps the market streams detected and resynchronised, in total."""
        return self._book_gaps_closed + sum(m.gaps for m in self._markets)

    @property
    def book_updates_missed(self) -> int:
        """Depth update ids skipped by those gaps (a gap may skip several)."""
        return self._book_missed_closed + sum(m.missed for m in self._markets)

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._stop_background()  # a second connect() starts afresh
        await self._http.sync_time()
        try:
            statuses = await self._load_instruments()
        except OrderRejected as exc:  # -1121: a symbol the venue does not list
            raise ConfigError(
                f"Binance does not list all of {', '.join(self._symbols)}: {exc.reason}"
            ) from None
        missing = [s for s in self._symbols if statuses.get(s) != "TRADING"]
        if missing:
            raise ConfigError(f"Binance does not trade {', '.join(missing)} (not TRADING)")
        # Fail fast on a bad key (AuthError) rather than at the first order.
        await self.balances()
        if self._wsapi is not None:
            await self._wsapi.start()
        self._tasks = [
            asyncio.create_task(self._refresh_instruments(), name="binance-instruments"),
            asyncio.create_task(self._expire_held(), name="binance-held-reports"),
        ]

    async def close(self) -> None:
        await self._stop_background()
        await self._http.close()

    async def _stop_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._wsapi is not None:
            await self._wsapi.close()

    async def _load_instruments(self) -> dict[str, str]:
        """Read our symbols' rules; keep those TRADING; the status of each symbol listed."""
        params = {"symbols": msgspec.json.encode(list(self._symbols)).decode()}
        body = await self._http.get(f"{_API}/exchangeInfo", params, False, "market.exchange_info")
        info = self._decode(decode_exchange_info, body, "exchangeInfo")
        statuses = {s.symbol: s.status for s in info.symbols}
        instruments = info.to_instruments(self._name)
        for symbol in self._symbols:
            if symbol in instruments:
                if self._instruments.get(symbol) not in (None, instruments[symbol]):
                    log.warning("Binance changed the trading rules of %s", symbol)
                self._instruments[symbol] = instruments[symbol]
                if symbol in self.not_trading:
                    self.not_trading.discard(symbol)
                    log.warning("Binance %s is TRADING again", symbol)
            elif symbol in self._instruments and symbol not in self.not_trading:
                self.not_trading.add(symbol)
                # Kept in instruments(): its orders still need cancelling and reconciling.
                log.error(
                    "Binance %s stopped trading (status %s); orders on it will be refused",
                    symbol,
                    statuses.get(symbol, "not listed"),
                )
        return statuses

    async def _refresh_instruments(self) -> None:
        while True:
            await self._clock.sleep(self._refresh_s)
            try:
                await self._load_instruments()
            except (TransientVenueError, OrderRejected) as exc:
                log.warning("Binance exchangeInfo refresh failed: %s", exc)

    async def _expire_held(self) -> None:
        """Release reports the sequencer held for too long, after a gap marker so that the
        gateway reconciles (finds the missing fills) before it sees them."""
        while True:
            wait = self._sequencer.next_expiry_s()
            if wait is None:
                self._held.clear()
                await self._held.wait()
                continue
            if wait > 0:
                await self._clock.sleep(wait)
                continue
            self._reports.put_nowait(_Gap("a held execution report expired"))
            self._sequencer.expire()

    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    # -- streams ------------------------------------------------------------------------------

    async def market_data(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]:
        """Quotes (on change) and trades from the combined websocket stream at ``ws_url``
        (default: the REST base with http->ws), plus a local order book (snapshot, then
        deltas) when ``book_depth`` is on, and a :class:`Bar` per closed kline of each of
        ``bar_intervals`` (once, even across reconnects). A connection is replaced before
        ``max_connection_age_s`` or on ``serverShutdown`` by opening the next one first; a
        loss or staleness raises ``TransientVenueError`` and the caller reconnects."""
        wanted = [s for s in dict.fromkeys(symbols) if s in self._instruments]
        if not wanted:
            return
        stream = HandoverMarketStream(
            ws_base=self._ws_url,
            http=self._http,
            clock=self._clock,
            venue=self._name,
            symbols=wanted,
            session=self._session,
            depth=self._book_depth,
            bar_intervals=self._bar_intervals,
            bar_marks=self._bar_marks,
            stale_after_s=self._stale_after_s,
            max_connection_age_s=self._max_age_s,
            limiter=self._connect_limiter,
        )
        self._markets.append(stream)
        if len(self._markets) > 16:
            old = self._markets.pop(0)
            self._book_gaps_closed += old.gaps
            self._book_missed_closed += old.missed
        async for event in stream.events():
            yield event

    async def executions(self) -> AsyncIterator[ExecutionReport]:
        while True:
            item = await self._reports.get()
            if isinstance(item, _Gap):
                # The gateway reconciles on this, then iterates again: nothing queued is lost.
                raise TransientVenueError(f"Binance user data: {item.reason}")
            if self._sequencer.stale(item):
                continue  # queued before a query showed the order had moved on
            yield item

    # -- user data ----------------------------------------------------------------------------

    def _emit(self, report: ExecutionReport) -> None:
        # Its outboundAccountPosition is still to come (the venue sends it after the reports).
        self._positions_due = True
        self._reports.put_nowait(report)

    def _push(self, report: ExecutionReport, cum_qty: Decimal | None = None) -> None:
        self._sequencer.push(report, cum_qty)
        if self._sequencer.holding:
            self._held.set()

    def _on_user_event(self, event: UserDataEvent) -> None:
        self.user_events += 1
        try:
            if isinstance(event, ExecutionReportEvent):
                if event.symbol not in self._instruments:
                    return  # another symbol traded with the same key: not ours to report
                report = event.to_execution_report(self._name)
                self._remember(event.order_id, report.client_order_id)
                self._push(report, dec(event.cum_qty))
            elif isinstance(event, OutboundAccountPosition):
                changed = event.to_balances()
                if self._account is not None:
                    self._account.update(changed)
                self._positions_due = False
        except WireError as exc:
            self.malformed_events += 1
            log.warning("Binance user-data event unreadable: %s", exc)

    def _on_gap(self, reason: str) -> None:
        self._account = None  # position events may be missing too: read REST next time
        self._reports.put_nowait(_Gap(reason))

    async def _trade_call(
        self, verb: str, path: str, params: Mapping[str, str], endpoint: str
    ) -> bytes:
        """A signed trading call over the WS API or REST, as configured; the same reply."""
        if self._trade_over == "ws" and self._wsapi is not None:
            method = _WS_METHODS[(verb, path)]
            return await self._wsapi.request(method, params, signed=True, endpoint=endpoint)
        return await self._http.request(verb, path, params, True, endpoint)

    # -- orders -------------------------------------------------------------------------------

    async def submit(self, order: Order) -> SubmitAck:
        params: dict[str, str] = {
            "symbol": order.symbol,
            "side": "BUY" if order.side is Side.BUY else "SELL",
        }
        if order.type not in (OrderType.MARKET, OrderType.LIMIT):
            # Never send a stop as something else (a stop-limit as a plain limit would trade
            # at once): the adapter declares market and limit only.
            raise OrderRejected(
                f"{self._name} does not take {order.type.value} orders", code="UNSUPPORTED"
            )
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
        body = await self._trade_call("POST", f"{_API}/order", params, "order.submit")
        # The order exists now: a reply we cannot read is an unknown outcome, not a failure.
        resp = self._decode(decode_order_response, body, "order response", unknown_outcome=True)
        self._remember(resp.order_id, order.client_order_id)
        ack = resp.to_submit_ack()
        reports = self._submit_reports(resp)
        for report in reports[:-1]:
            self._push(report)
        # The last one may be the final status: with the executed quantity, so that it waits
        # for fills the stream has not delivered yet.
        self._push(reports[-1], _executed(resp) if not reports[-1].trade_id else None)
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
            body = await self._trade_call("DELETE", f"{_API}/order", params, "order.cancel")
        except OrderRejected as exc:
            if is_unknown_order(exc):
                raise OrderRejected(exc.reason, code=_UNKNOWN_ORDER) from None
            raise
        resp = self._decode(decode_order_response, body, "cancel response", unknown_outcome=True)
        self._cancel_report(resp)

    async def cancel_all(self, symbol: str) -> None:
        try:
            body = await self._trade_call(
                "DELETE", f"{_API}/openOrders", {"symbol": symbol}, "order.cancel_all"
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
        self._remember(resp.order_id, resp.our_client_order_id)
        status = OrderStatus.CANCELED
        if resp.status is not None:
            try:
                status = map_order_status(resp.status)
            except WireError:
                log.warning("Binance cancel reply with unknown status %r", resp.status[:40])
        self._push(
            ExecutionReport(
                venue=self._name,
                symbol=resp.symbol,
                client_order_id=resp.our_client_order_id,
                venue_order_id=str(resp.order_id),
                status=status,
                ts_event=resp.transact_time * _NS_PER_MS,
            ),
            _executed(resp),
        )

    # -- queries ------------------------------------------------------------------------------

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        found = await self._query({"symbol": symbol, "origClientOrderId": client_order_id})
        if found is None:
            return None
        venue_order = self._convert(lambda: found.to_venue_order(self._name), "order")
        self._sequencer.observe(client_order_id, venue_order.status, venue_order.filled_qty)
        return venue_order

    async def _query(self, params: Mapping[str, str]) -> QueryOrder | None:
        try:
            body = await self._trade_call("GET", f"{_API}/order", params, "order.query")
        except OrderRejected as exc:
            if is_unknown_order(exc):
                return None
            raise
        found = self._decode(decode_query_order, body, "order")
        self._remember(found.order_id, found.client_order_id)
        return found

    async def open_orders(self) -> list[VenueOrder]:
        path = f"{_API}/openOrders"
        rows: list[QueryOrder] = []
        if len(self._symbols) * _OPEN_ORDERS_PER_SYMBOL < _OPEN_ORDERS_ALL:
            for symbol in self._symbols:
                body = await self._trade_call(
                    "GET", path, {"symbol": symbol}, "order.open_orders.symbol"
                )
                rows.extend(self._decode(decode_open_orders, body, "openOrders"))
        else:
            body = await self._trade_call("GET", path, {}, "order.open_orders")
            wanted = set(self._symbols)
            listed = self._decode(decode_open_orders, body, "openOrders")
            rows.extend(o for o in listed if o.symbol in wanted)
        out: list[VenueOrder] = []
        for row in rows:
            self._remember(row.order_id, row.client_order_id)
            out.append(self._convert(partial(row.to_venue_order, self._name), "openOrders"))
        return out

    async def fills(self, symbol: str, since_ns: int) -> list[ExecutionReport]:
        """``GET /api/v3/myTrades`` from ``since_ns`` (our clock, shifted by the measured
        server-time offset), paged by trade id.

        myTrades names only the venue's order id: our client id comes from the cache this
        adapter keeps (submits, queries, listings) or else one order query. Each report's
        status is the order's status right after that fill, from the order's current executed
        quantity counted back over the later fills (one order query per order involved). A
        query that fails transiently for an order whose client id is known already costs only
        that precision (its fills say PARTIALLY_FILLED): the fills themselves are what
        recovery needs, and one failure among many queries must not withhold them all.
        """
        trades = await self._my_trades(symbol, since_ns)
        orders: dict[int, QueryOrder | None] = {}
        for order_id in dict.fromkeys(t.order_id for t in trades):
            try:
                orders[order_id] = await self._query({"symbol": symbol, "orderId": str(order_id)})
            except TransientVenueError:
                if order_id not in self._client_ids:
                    raise
                orders[order_id] = None
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
        # Trade times are the venue's clock: compare in it (our time plus the measured
        # offset), or a venue running behind us would hide the fills we are looking for.
        since_ms = since_ns // _NS_PER_MS + self._http.offset_ms
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
            fresh = [t for t in page if t.id not in seen and t.time >= since_ms]
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
        """From the user-data stream's positions when they are current, else over REST."""
        stream_live = self._wsapi is not None and self._wsapi.connected
        if self._account is not None and stream_live and not self._positions_due:
            return dict(self._account)
        self._positions_due = False
        body = await self._http.get(
            f"{_API}/account", {"omitZeroBalances": "true"}, True, "account.balances"
        )
        account = self._decode(decode_account, body, "account")
        balances = self._convert(account.to_balances, "account")
        self._account = dict(balances) if stream_live else None
        return balances

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


def _executed(resp: OrderResponse) -> Decimal | None:
    """The executed quantity an order reply states (RESULT/FULL replies, cancels)."""
    if resp.executed_qty is None:
        return None
    try:
        return dec(resp.executed_qty)
    except WireError:
        return None
