"""Binance Spot wire structs (WIRE_FACTS §1.3-1.6) and their explicit domain converters.

Structs mirror the JSON exactly: numbers stay the strings Binance sends and become ``Decimal``
only in a converter, through :func:`dec`, which accepts plain decimal notation and nothing else
(no floats, no NaN/Infinity, no exponents, no underscores or padding that ``Decimal()`` would
quietly accept). Unknown JSON fields are ignored: Binance adds fields without notice.

Decoding or converting a malformed message raises :class:`WireError` and only that, so a feed
can count and log a bad message and carry on. Wire types never reach the bus.

Times are epoch milliseconds on the wire (the default ``timeUnit``); domain times are ns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Final, TypeVar

import msgspec

from botd.model import (
    Balance,
    Bar,
    BookDelta,
    BookLevel,
    BookSnapshot,
    ExecutionReport,
    Instrument,
    Liquidity,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    Trade,
    VenueOrder,
)
from botd.venues.base import SubmitAck

__all__ = [
    "AccountInfo",
    "AggTradeEvent",
    "BalanceEntry",
    "BalanceUpdate",
    "BookTicker",
    "BookTickerEvent",
    "CombinedStream",
    "DepthSnapshot",
    "DepthUpdateEvent",
    "ErrorBody",
    "ExchangeInfo",
    "ExecutionReportEvent",
    "Kline",
    "KlineEvent",
    "MarketStreamEvent",
    "MyTrade",
    "OrderFill",
    "OrderResponse",
    "OutboundAccountPosition",
    "QueryOrder",
    "ServerShutdown",
    "ServerTime",
    "SymbolFilter",
    "SymbolInfo",
    "UnhandledEvent",
    "UserDataEvent",
    "WireError",
    "WsApiMessage",
    "WsRateLimit",
    "dec",
    "decode_account",
    "decode_book_tickers",
    "decode_cancel_open_orders",
    "decode_combined",
    "decode_depth",
    "decode_error",
    "decode_exchange_info",
    "decode_market_event",
    "decode_my_trades",
    "decode_open_orders",
    "decode_order_response",
    "decode_query_order",
    "decode_server_time",
    "decode_user_event",
    "decode_ws_api_message",
    "map_order_status",
]

_MS: Final = 1_000_000  # ns per ms


class WireError(ValueError):
    """A venue message that does not have the documented shape. Count it, log it, drop it."""


# Binance prints decimals as plain digits ("0.00100000"; "-1.5" only in balance deltas). The
# length cap keeps a hostile "1" * 10**6 from costing us a huge Decimal.
_DECIMAL_RE: Final = re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,40})?")
_SIGNED_DECIMAL_RE: Final = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?")


def dec(text: str, *, signed: bool = False) -> Decimal:
    """A wire number as an exact Decimal; :class:`WireError` for anything else.

    Prices, quantities, fees and balances are never negative, so a minus sign is refused
    unless the field is a signed change (``signed=True``).
    """
    pattern = _SIGNED_DECIMAL_RE if signed else _DECIMAL_RE
    if not pattern.fullmatch(text):
        raise WireError(f"not a {'signed ' if signed else ''}decimal number: {text[:40]!r}")
    return Decimal(text)


def _positive_or_none(text: str) -> Decimal | None:
    value = dec(text)
    return value if value > 0 else None


# Binance order status -> ours (WIRE_FACTS §1.3 enums).
_STATUS: Final[Mapping[str, OrderStatus]] = MappingProxyType(
    {
        "NEW": OrderStatus.ACCEPTED,
        # PENDING_NEW: held by the venue (an order list's pending leg), not yet working.
        "PENDING_NEW": OrderStatus.ACCEPTED,
        "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
        "FILLED": OrderStatus.FILLED,
        "CANCELED": OrderStatus.CANCELED,
        "PENDING_CANCEL": OrderStatus.PENDING_CANCEL,
        "REJECTED": OrderStatus.REJECTED,
        "EXPIRED": OrderStatus.EXPIRED,
        # Expired by self-trade prevention: for us the order simply ended unfilled (in part).
        "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
    }
)
_SIDE: Final[Mapping[str, Side]] = MappingProxyType({"BUY": Side.BUY, "SELL": Side.SELL})
# LIMIT_MAKER is our post-only limit; other Binance types are not placed by botd.
_TYPE: Final[Mapping[str, OrderType]] = MappingProxyType(
    {"LIMIT": OrderType.LIMIT, "LIMIT_MAKER": OrderType.LIMIT, "MARKET": OrderType.MARKET}
)


def map_order_status(status: str) -> OrderStatus:
    try:
        return _STATUS[status]
    except KeyError:
        raise WireError(f"unknown order status {status[:40]!r}") from None


def _side(side: str) -> Side:
    try:
        return _SIDE[side]
    except KeyError:
        raise WireError(f"unknown side {side[:40]!r}") from None


def _order_type(kind: str) -> OrderType:
    try:
        return _TYPE[kind]
    except KeyError:
        raise WireError(f"order type {kind[:40]!r} is not one botd places") from None


def _avg_price(cum_quote: str, cum_qty: str) -> Decimal | None:
    qty = dec(cum_qty)
    return dec(cum_quote) / qty if qty > 0 else None


# --------------------------------------------------------------------------- exchangeInfo


class SymbolFilter(msgspec.Struct, frozen=True, rename="camel"):
    """One entry of ``symbols[].filters``, discriminated by ``filterType``.

    One struct with optional fields rather than a tagged union: a union would reject the whole
    exchangeInfo on the first filter type added after this was written.
    """

    filter_type: str
    min_price: str | None = None
    max_price: str | None = None
    tick_size: str | None = None
    min_qty: str | None = None
    max_qty: str | None = None
    step_size: str | None = None
    min_notional: str | None = None
    max_notional: str | None = None
    apply_to_market: bool | None = None  # MIN_NOTIONAL
    apply_min_to_market: bool | None = None  # NOTIONAL
    apply_max_to_market: bool | None = None
    avg_price_mins: int | None = None


class SymbolInfo(msgspec.Struct, frozen=True, rename="camel"):
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    filters: tuple[SymbolFilter, ...] = ()
    order_types: tuple[str, ...] = ()
    is_spot_trading_allowed: bool = True

    def filter(self, filter_type: str) -> SymbolFilter | None:
        return next((f for f in self.filters if f.filter_type == filter_type), None)

    def to_instrument(self, venue: str) -> Instrument:
        # A missing filter or a 0 disables that rule (WIRE_FACTS §1.4), hence the 0 defaults.
        price = self.filter("PRICE_FILTER")
        lot = self.filter("LOT_SIZE")
        notional = self.filter("NOTIONAL") or self.filter("MIN_NOTIONAL")
        tick = dec(price.tick_size) if price and price.tick_size is not None else Decimal(0)
        step = dec(lot.step_size) if lot and lot.step_size is not None else Decimal(0)
        min_qty = dec(lot.min_qty) if lot and lot.min_qty is not None else Decimal(0)
        max_qty = _positive_or_none(lot.max_qty) if lot and lot.max_qty is not None else None
        min_notional = (
            dec(notional.min_notional)
            if notional and notional.min_notional is not None
            else Decimal(0)
        )
        return Instrument(
            venue=venue,
            symbol=self.symbol,
            base=self.base_asset,
            quote=self.quote_asset,
            tick_size=tick,
            step_size=step,
            min_qty=min_qty,
            min_notional=min_notional,
            max_qty=max_qty,
        )

    def market_lot(self) -> tuple[Decimal, Decimal, Decimal] | None:
        """MARKET_LOT_SIZE (min_qty, max_qty, step_size); the rule LOT_SIZE applies to
        limit orders, applied to market orders. None when the symbol has none."""
        lot = self.filter("MARKET_LOT_SIZE")
        if lot is None or lot.min_qty is None or lot.max_qty is None or lot.step_size is None:
            return None
        return dec(lot.min_qty), dec(lot.max_qty), dec(lot.step_size)


class RateLimitInfo(msgspec.Struct, frozen=True, rename="camel"):
    rate_limit_type: str
    interval: str
    interval_num: int
    limit: int
    count: int | None = None  # present in WS API replies and rateLimit/order


class ExchangeInfo(msgspec.Struct, frozen=True, rename="camel"):
    symbols: tuple[SymbolInfo, ...]
    server_time: int = 0
    timezone: str = "UTC"
    rate_limits: tuple[RateLimitInfo, ...] = ()

    def to_instruments(self, venue: str, *, trading_only: bool = True) -> dict[str, Instrument]:
        return {
            s.symbol: s.to_instrument(venue)
            for s in self.symbols
            if not trading_only or s.status == "TRADING"
        }


# --------------------------------------------------------------------------- depth

_Level = tuple[str, str]  # [price, qty]


def _levels(levels: tuple[_Level, ...]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(dec(p), dec(q)) for p, q in levels)


class DepthSnapshot(msgspec.Struct, frozen=True, rename="camel"):
    """GET /api/v3/depth, and the partial-depth streams ``<s>@depth<N>``."""

    last_update_id: int
    bids: tuple[_Level, ...]
    asks: tuple[_Level, ...]

    def to_book_snapshot(self, venue: str, symbol: str, ts_recv: int) -> BookSnapshot:
        # The snapshot carries no venue time; receive time is the best we know.
        return BookSnapshot(
            venue=venue,
            symbol=symbol,
            bids=_levels(self.bids),
            asks=_levels(self.asks),
            sequence=self.last_update_id,
            ts_event=ts_recv,
            ts_recv=ts_recv,
        )


# --------------------------------------------------------------------------- orders (REST)


class OrderFill(msgspec.Struct, frozen=True, rename="camel"):
    price: str
    qty: str
    commission: str
    commission_asset: str
    trade_id: int


class OrderResponse(msgspec.Struct, frozen=True, rename="camel"):
    """POST /api/v3/order in any ``newOrderRespType`` (ACK has only the first five fields,
    RESULT adds the order state, FULL adds ``fills``), and DELETE /api/v3/order, whose
    ``clientOrderId`` is the cancel's own id and ``origClientOrderId`` the order's."""

    symbol: str
    order_id: int
    client_order_id: str
    order_list_id: int = -1
    transact_time: int = 0
    orig_client_order_id: str | None = None
    price: str | None = None
    orig_qty: str | None = None
    executed_qty: str | None = None
    cummulative_quote_qty: str | None = None  # sic: Binance's spelling
    status: str | None = None
    time_in_force: str | None = None
    type: str | None = None
    side: str | None = None
    working_time: int | None = None
    fills: tuple[OrderFill, ...] = ()

    @property
    def our_client_order_id(self) -> str:
        return self.orig_client_order_id or self.client_order_id

    def to_submit_ack(self) -> SubmitAck:
        # ACK carries no status: the order was accepted for processing, i.e. it exists.
        status = map_order_status(self.status) if self.status else OrderStatus.ACCEPTED
        return SubmitAck(
            client_order_id=self.our_client_order_id,
            venue_order_id=str(self.order_id),
            status=status,
            ts_event=self.transact_time * _MS,
        )

    def to_execution_reports(self, venue: str) -> list[ExecutionReport]:
        """One report per fill of a FULL response. These fills happened as the order arrived,
        so this order took liquidity: they are taker fills by construction."""
        if not self.fills:
            return []
        if self.side is None or self.executed_qty is None or self.orig_qty is None:
            raise WireError("FULL order response without side or quantities")
        final = map_order_status(self.status) if self.status else OrderStatus.PARTIALLY_FILLED
        reports: list[ExecutionReport] = []
        for i, fill in enumerate(self.fills):
            last = i == len(self.fills) - 1
            reports.append(
                ExecutionReport(
                    venue=venue,
                    symbol=self.symbol,
                    client_order_id=self.our_client_order_id,
                    venue_order_id=str(self.order_id),
                    # Earlier fills left the order partially filled; the last one carries
                    # the status the venue reported for the whole response.
                    status=final if last else OrderStatus.PARTIALLY_FILLED,
                    ts_event=self.transact_time * _MS,
                    last_qty=dec(fill.qty),
                    last_price=dec(fill.price),
                    fee=dec(fill.commission),
                    fee_asset=fill.commission_asset,
                    liquidity=Liquidity.TAKER,
                    trade_id=str(fill.trade_id),
                )
            )
        return reports

    def to_venue_order(self, venue: str) -> VenueOrder:
        status, side, kind = self.status, self.side, self.type
        qty, executed = self.orig_qty, self.executed_qty
        if status is None or side is None or kind is None or qty is None or executed is None:
            raise WireError("order response has no order state (ACK type?)")
        return VenueOrder(
            venue=venue,
            symbol=self.symbol,
            client_order_id=self.our_client_order_id,
            venue_order_id=str(self.order_id),
            side=_side(side),
            type=_order_type(kind),
            qty=dec(qty),
            price=_positive_or_none(self.price) if self.price is not None else None,
            status=map_order_status(status),
            filled_qty=dec(executed),
            avg_price=_avg_price(self.cummulative_quote_qty or "0", executed),
            ts_event=(self.working_time or self.transact_time) * _MS,
        )


class QueryOrder(msgspec.Struct, frozen=True, rename="camel"):
    """GET /api/v3/order and each element of GET /api/v3/openOrders."""

    symbol: str
    order_id: int
    client_order_id: str
    price: str
    orig_qty: str
    executed_qty: str
    cummulative_quote_qty: str
    status: str
    time_in_force: str
    type: str
    side: str
    order_list_id: int = -1
    stop_price: str | None = None
    time: int = 0
    update_time: int = 0
    is_working: bool = True
    orig_quote_order_qty: str | None = None

    def to_venue_order(self, venue: str) -> VenueOrder:
        return VenueOrder(
            venue=venue,
            symbol=self.symbol,
            client_order_id=self.client_order_id,
            venue_order_id=str(self.order_id),
            side=_side(self.side),
            type=_order_type(self.type),
            qty=dec(self.orig_qty),
            # Market orders report price "0.00000000": no limit price.
            price=_positive_or_none(self.price),
            status=map_order_status(self.status),
            filled_qty=dec(self.executed_qty),
            avg_price=_avg_price(self.cummulative_quote_qty, self.executed_qty),
            ts_event=(self.update_time or self.time) * _MS,
        )


class BalanceEntry(msgspec.Struct, frozen=True):
    asset: str
    free: str
    locked: str

    def to_balance(self) -> Balance:
        return Balance(self.asset, dec(self.free), dec(self.locked))


class AccountInfo(msgspec.Struct, frozen=True, rename="camel"):
    """GET /api/v3/account (only what botd reads)."""

    balances: tuple[BalanceEntry, ...]
    can_trade: bool = True
    update_time: int = 0
    account_type: str = "SPOT"

    def to_balances(self) -> dict[str, Balance]:
        return {b.asset: b.to_balance() for b in self.balances}


class MyTrade(msgspec.Struct, frozen=True, rename="camel"):
    """One element of GET /api/v3/myTrades."""

    symbol: str
    id: int
    order_id: int
    price: str
    qty: str
    commission: str
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool
    order_list_id: int = -1
    quote_qty: str | None = None

    @property
    def side(self) -> Side:
        return Side.BUY if self.is_buyer else Side.SELL

    def to_execution_report(
        self, venue: str, client_order_id: str, status: OrderStatus
    ) -> ExecutionReport:
        """myTrades knows only the venue's order id: the caller resolves our client id (from
        its journal or an order query) and the order's status after this fill."""
        return ExecutionReport(
            venue=venue,
            symbol=self.symbol,
            client_order_id=client_order_id,
            venue_order_id=str(self.order_id),
            status=status,
            ts_event=self.time * _MS,
            last_qty=dec(self.qty),
            last_price=dec(self.price),
            fee=dec(self.commission),
            fee_asset=self.commission_asset,
            liquidity=Liquidity.MAKER if self.is_maker else Liquidity.TAKER,
            trade_id=str(self.id),
        )


class ErrorBody(msgspec.Struct, frozen=True):
    """``{"code": -1121, "msg": "Invalid symbol."}``; ``data`` appears in WS API errors."""

    code: int
    msg: str
    data: dict[str, int | str] | None = None


class ServerTime(msgspec.Struct, frozen=True, rename="camel"):
    """GET /api/v3/time."""

    server_time: int


class BookTicker(msgspec.Struct, frozen=True, rename="camel"):
    """One element of GET /api/v3/ticker/bookTicker (the REST form; the stream form is
    :class:`BookTickerEvent`). REST carries no time, so the receive time stands in."""

    symbol: str
    bid_price: str
    bid_qty: str
    ask_price: str
    ask_qty: str

    def to_quote(self, venue: str, ts_recv: int) -> Quote:
        return Quote(
            venue=venue,
            symbol=self.symbol,
            bid=dec(self.bid_price),
            ask=dec(self.ask_price),
            bid_size=dec(self.bid_qty),
            ask_size=dec(self.ask_qty),
            ts_event=ts_recv,
            ts_recv=ts_recv,
        )


# --------------------------------------------------------------------------- market streams


class BookTickerEvent(msgspec.Struct, frozen=True):
    """``<s>@bookTicker``. No event time on the wire (WIRE_FACTS §1.5); ``E`` if present."""

    update_id: int = msgspec.field(name="u")
    symbol: str = msgspec.field(name="s")
    bid_price: str = msgspec.field(name="b")
    bid_qty: str = msgspec.field(name="B")
    ask_price: str = msgspec.field(name="a")
    ask_qty: str = msgspec.field(name="A")
    event_time: int | None = msgspec.field(name="E", default=None)

    def to_quote(self, venue: str, ts_recv: int) -> Quote:
        return Quote(
            venue=venue,
            symbol=self.symbol,
            bid=dec(self.bid_price),
            ask=dec(self.ask_price),
            bid_size=dec(self.bid_qty),
            ask_size=dec(self.ask_qty),
            ts_event=self.event_time * _MS if self.event_time is not None else ts_recv,
            ts_recv=ts_recv,
        )


class TradeEvent(msgspec.Struct, frozen=True, tag_field="e", tag="trade"):
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    trade_id: int = msgspec.field(name="t")
    price: str = msgspec.field(name="p")
    qty: str = msgspec.field(name="q")
    trade_time: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")

    def to_trade(self, venue: str, ts_recv: int) -> Trade:
        return _trade(self, venue, str(self.trade_id), ts_recv)


class AggTradeEvent(msgspec.Struct, frozen=True, tag_field="e", tag="aggTrade"):
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    agg_id: int = msgspec.field(name="a")
    price: str = msgspec.field(name="p")
    qty: str = msgspec.field(name="q")
    first_trade_id: int = msgspec.field(name="f")
    last_trade_id: int = msgspec.field(name="l")
    trade_time: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")

    def to_trade(self, venue: str, ts_recv: int) -> Trade:
        # Aggregate ids are their own sequence, distinct from @trade ids.
        return _trade(self, venue, str(self.agg_id), ts_recv)


def _trade(event: TradeEvent | AggTradeEvent, venue: str, trade_id: str, ts_recv: int) -> Trade:
    return Trade(
        venue=venue,
        symbol=event.symbol,
        price=dec(event.price),
        size=dec(event.qty),
        # The buyer resting means the seller crossed the spread: the aggressor sold.
        side=Side.SELL if event.buyer_is_maker else Side.BUY,
        trade_id=trade_id,
        ts_event=event.trade_time * _MS,
        ts_recv=ts_recv,
    )


class DepthUpdateEvent(msgspec.Struct, frozen=True, tag_field="e", tag="depthUpdate"):
    """``<s>@depth[@100ms]``: levels changed between update ids ``U`` and ``u``."""

    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    first_update_id: int = msgspec.field(name="U")
    final_update_id: int = msgspec.field(name="u")
    bids: tuple[_Level, ...] = msgspec.field(name="b")
    asks: tuple[_Level, ...] = msgspec.field(name="a")

    def to_book_deltas(self, venue: str, ts_recv: int) -> list[BookDelta]:
        """Absolute level sizes (0 removes). Each carries ``u``, the book's update id once the
        whole event is applied; sequencing against ``U`` is the book builder's job."""
        if self.first_update_id > self.final_update_id:
            raise WireError(f"depthUpdate with U {self.first_update_id} > u {self.final_update_id}")
        ts_event = self.event_time * _MS
        out: list[BookDelta] = []
        for side, levels in ((Side.BUY, self.bids), (Side.SELL, self.asks)):
            for p, q in levels:
                out.append(
                    BookDelta(
                        venue=venue,
                        symbol=self.symbol,
                        side=side,
                        price=dec(p),
                        size=dec(q),
                        sequence=self.final_update_id,
                        ts_event=ts_event,
                        ts_recv=ts_recv,
                    )
                )
        return out


class Kline(msgspec.Struct, frozen=True):
    start_time: int = msgspec.field(name="t")
    close_time: int = msgspec.field(name="T")  # last ms of the interval, inclusive
    symbol: str = msgspec.field(name="s")
    interval: str = msgspec.field(name="i")
    open: str = msgspec.field(name="o")
    close: str = msgspec.field(name="c")
    high: str = msgspec.field(name="h")
    low: str = msgspec.field(name="l")
    volume: str = msgspec.field(name="v")
    closed: bool = msgspec.field(name="x")


class KlineEvent(msgspec.Struct, frozen=True, tag_field="e", tag="kline"):
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    kline: Kline = msgspec.field(name="k")

    def to_bar(self, venue: str, ts_recv: int) -> Bar:
        """The bar as it stands; ``kline.closed`` says whether it is final."""
        k = self.kline
        return Bar(
            venue=venue,
            symbol=self.symbol,
            timeframe=k.interval,
            open=dec(k.open),
            high=dec(k.high),
            low=dec(k.low),
            close=dec(k.close),
            volume=dec(k.volume),
            start=k.start_time * _MS,
            end=(k.close_time + 1) * _MS,  # domain end is exclusive
            ts_event=self.event_time * _MS,
            ts_recv=ts_recv,
        )


class ServerShutdown(msgspec.Struct, frozen=True, tag_field="e", tag="serverShutdown"):
    event_time: int = msgspec.field(name="E")


class CombinedStream(msgspec.Struct, frozen=True):
    """``/stream?streams=...`` wrapper; ``data`` is decoded by stream name."""

    stream: str
    data: msgspec.Raw


MarketStreamEvent = (
    BookTickerEvent
    | TradeEvent
    | AggTradeEvent
    | DepthUpdateEvent
    | DepthSnapshot
    | KlineEvent
    | ServerShutdown
)


# --------------------------------------------------------------------------- user data


class ExecutionReportEvent(msgspec.Struct, frozen=True, tag_field="e", tag="executionReport"):
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    client_order_id: str = msgspec.field(name="c")
    side: str = msgspec.field(name="S")
    order_type: str = msgspec.field(name="o")
    time_in_force: str = msgspec.field(name="f")
    qty: str = msgspec.field(name="q")
    price: str = msgspec.field(name="p")
    execution_type: str = msgspec.field(name="x")
    status: str = msgspec.field(name="X")
    reject_reason: str = msgspec.field(name="r")
    order_id: int = msgspec.field(name="i")
    last_qty: str = msgspec.field(name="l")
    cum_qty: str = msgspec.field(name="z")
    last_price: str = msgspec.field(name="L")
    commission: str = msgspec.field(name="n")
    # null when nothing was charged (no trade in this report).
    commission_asset: str | None = msgspec.field(name="N")
    transaction_time: int = msgspec.field(name="T")
    trade_id: int = msgspec.field(name="t")  # -1 when this report carries no trade
    is_maker: bool = msgspec.field(name="m")
    cum_quote: str = msgspec.field(name="Z")
    # Set on a cancel: ``c`` is then the cancel request's own id and ``C`` ours.
    orig_client_order_id: str = msgspec.field(name="C", default="")
    order_created: int = msgspec.field(name="O", default=0)
    expiry_reason: str | None = msgspec.field(name="eR", default=None)

    def to_execution_report(self, venue: str) -> ExecutionReport:
        reason = "" if self.reject_reason == "NONE" else self.reject_reason
        if not reason and self.status == "EXPIRED_IN_MATCH":
            reason = "EXPIRED_IN_MATCH"  # self-trade prevention expired it
        has_trade = self.trade_id >= 0
        return ExecutionReport(
            venue=venue,
            symbol=self.symbol,
            client_order_id=self.orig_client_order_id or self.client_order_id,
            venue_order_id=str(self.order_id),
            status=map_order_status(self.status),
            ts_event=self.transaction_time * _MS,
            last_qty=dec(self.last_qty),
            last_price=dec(self.last_price),
            fee=dec(self.commission),
            fee_asset=self.commission_asset or "",
            liquidity=Liquidity.MAKER if self.is_maker else Liquidity.TAKER,
            trade_id=str(self.trade_id) if has_trade else "",
            reason=reason,
            extra={
                "execution_type": self.execution_type,
                "cum_qty": self.cum_qty,
                "cum_quote": self.cum_quote,
                "side": self.side,
                "order_type": self.order_type,
            },
        )


class PositionEntry(msgspec.Struct, frozen=True):
    asset: str = msgspec.field(name="a")
    free: str = msgspec.field(name="f")
    locked: str = msgspec.field(name="l")


class OutboundAccountPosition(
    msgspec.Struct, frozen=True, tag_field="e", tag="outboundAccountPosition"
):
    """The absolute balances of the assets an event changed."""

    event_time: int = msgspec.field(name="E")
    last_update: int = msgspec.field(name="u")
    balances: tuple[PositionEntry, ...] = msgspec.field(name="B")

    def to_balances(self) -> dict[str, Balance]:
        return {b.asset: Balance(b.asset, dec(b.free), dec(b.locked)) for b in self.balances}


class BalanceUpdate(msgspec.Struct, frozen=True, tag_field="e", tag="balanceUpdate"):
    """A deposit, withdrawal or transfer: a signed change of one asset's free balance."""

    event_time: int = msgspec.field(name="E")
    asset: str = msgspec.field(name="a")
    delta: str = msgspec.field(name="d")
    clear_time: int = msgspec.field(name="T")

    def to_delta(self) -> tuple[str, Decimal]:
        return self.asset, dec(self.delta, signed=True)


class UnhandledEvent(msgspec.Struct, frozen=True):
    """A well-formed event of a type botd does not act on (listStatus, externalLockUpdate,
    eventStreamTerminated, ...): not an error, but worth a debug log."""

    event_type: str


UserDataEvent = (
    ExecutionReportEvent | OutboundAccountPosition | BalanceUpdate | ServerShutdown | UnhandledEvent
)


# --------------------------------------------------------------------------- decoders

T = TypeVar("T")


def _decoder(decoder: msgspec.json.Decoder[T], name: str) -> Callable[[bytes | str], T]:
    """Wrap a msgspec decoder so every decoding failure is a :class:`WireError`. Decoders are
    immutable and thread-safe; building each once is the point of keeping them."""

    def decode(data: bytes | str) -> T:
        try:
            return decoder.decode(data)
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            raise WireError(f"{name}: {exc}") from None

    decode.__name__ = f"decode_{name}"
    return decode


def _struct(kind: type[T]) -> Callable[[bytes | str], T]:
    return _decoder(msgspec.json.Decoder(kind), kind.__name__)


decode_exchange_info: Final = _struct(ExchangeInfo)
decode_depth: Final = _struct(DepthSnapshot)
decode_order_response: Final = _struct(OrderResponse)
decode_query_order: Final = _struct(QueryOrder)
decode_open_orders: Final = _decoder(
    msgspec.json.Decoder[tuple[QueryOrder, ...]](tuple[QueryOrder, ...]), "openOrders"
)
decode_account: Final = _struct(AccountInfo)
decode_my_trades: Final = _decoder(
    msgspec.json.Decoder[tuple[MyTrade, ...]](tuple[MyTrade, ...]), "myTrades"
)
decode_error: Final = _struct(ErrorBody)
decode_server_time: Final = _struct(ServerTime)
decode_book_tickers: Final = _decoder(
    msgspec.json.Decoder[tuple[BookTicker, ...]](tuple[BookTicker, ...]), "bookTickers"
)
# DELETE /api/v3/openOrders: one cancel response per order (botd places no order lists).
decode_cancel_open_orders: Final = _decoder(
    msgspec.json.Decoder[tuple[OrderResponse, ...]](tuple[OrderResponse, ...]), "cancelOpenOrders"
)

_book_ticker: Final = _struct(BookTickerEvent)
_TaggedMarket = TradeEvent | AggTradeEvent | DepthUpdateEvent | KlineEvent | ServerShutdown
# Every other market event names itself in "e", so one tagged-union decoder serves them all.
_tagged_market: Final = _decoder(msgspec.json.Decoder[_TaggedMarket](_TaggedMarket), "market event")
_combined: Final = _struct(CombinedStream)


class _UserProbe(msgspec.Struct, frozen=True):
    """Tells the two user-data framings apart in one pass: the WS API wraps each event as
    ``{"subscriptionId": n, "event": {...}}``; the legacy listenKey stream sends it bare."""

    e: str | None = None
    # Raw cannot sit in a union with None; an empty Raw means "absent".
    event: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _EventHead(msgspec.Struct, frozen=True):
    e: str


_user_probe: Final = _struct(_UserProbe)
_user_head: Final = _struct(_EventHead)
_KnownUser = ExecutionReportEvent | OutboundAccountPosition | BalanceUpdate | ServerShutdown
_user_known: Final = _decoder(msgspec.json.Decoder[_KnownUser](_KnownUser), "user event")
_USER_TYPES: Final = frozenset(
    {"executionReport", "outboundAccountPosition", "balanceUpdate", "serverShutdown"}
)


def decode_market_event(stream: str, data: bytes | str) -> MarketStreamEvent:
    """One market-stream payload; ``stream`` is its name (``btcusdt@bookTicker``), which is
    what identifies bookTicker and partial-depth payloads: they carry no ``e`` field."""
    channel = stream.partition("@")[2]
    if channel == "bookTicker":
        return _book_ticker(data)
    if channel.startswith("depth") and channel[5:6].isdigit():  # depth5, depth10@100ms, ...
        return decode_depth(data)
    event: MarketStreamEvent = _tagged_market(data)
    return event


def decode_combined(data: bytes | str) -> tuple[str, MarketStreamEvent]:
    """A combined-stream message ``{"stream": ..., "data": ...}`` -> (stream, event)."""
    envelope = _combined(data)
    return envelope.stream, decode_market_event(envelope.stream, bytes(envelope.data))


def decode_user_event(data: bytes | str) -> UserDataEvent:
    """A user-data event, wrapped (WS API ``{"subscriptionId", "event"}``) or bare (legacy
    listenKey stream)."""
    probe = _user_probe(data)
    if probe.e is not None:
        kind, body = probe.e, data
    elif len(probe.event):
        body = bytes(probe.event)
        kind = _user_head(body).e
    else:
        raise WireError("user-data message has neither 'e' nor 'event'")
    if kind not in _USER_TYPES:
        return UnhandledEvent(kind)
    event: UserDataEvent = _user_known(body)
    return event


# --------------------------------------------------------------------------- WS API envelope


class WsRateLimit(msgspec.Struct, frozen=True, rename="camel"):
    """One ``rateLimits`` row of a WS API reply (WIRE_FACTS §1.3)."""

    rate_limit_type: str
    interval: str
    interval_num: int
    count: int
    limit: int = 0


class WsErrorData(msgspec.Struct, frozen=True, rename="camel"):
    retry_after: int | None = None  # epoch ms, on 429/418
    server_time: int | None = None


class WsError(msgspec.Struct, frozen=True):
    code: int
    msg: str = ""
    data: WsErrorData | None = None


class WsApiMessage(msgspec.Struct, frozen=True, rename="camel"):
    """Any frame the WS API sends: a reply ``{"id","status","result"|"error","rateLimits"}``
    or a user-data event ``{"subscriptionId","event"}``. ``result``/``event`` stay raw so each
    is decoded by the decoder of what was asked; an empty Raw means absent."""

    id: int | str | None = None
    status: int | None = None
    result: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    error: WsError | None = None
    rate_limits: tuple[WsRateLimit, ...] = ()
    subscription_id: int | None = None
    event: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)

    @property
    def is_reply(self) -> bool:
        return self.status is not None

    def usage_rows(self) -> list[tuple[str, str, int, int]]:
        return [(r.rate_limit_type, r.interval, r.interval_num, r.count) for r in self.rate_limits]


decode_ws_api_message: Final = _struct(WsApiMessage)
