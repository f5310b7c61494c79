"""The simulated venue of a backtest: the paper matching engine, moved by historical data.

The engine's book holds only the user's resting orders. History moves a reference price per
symbol (the bid and ask of a quote, the price of a trade, the path of a bar) and a data account
with unlimited funds makes that history act on the book:

* when the market moves through a resting order, the data account trades against it at the
  order's own price (the user is the maker and pays the maker fee);
* when an order arrives, the data account offers it liquidity at the reference price moved
  against the order by the slippage (the user is the taker), so a market order fills there,
  a marketable limit order too, and anything else rests.

Every fill, fee and balance is the engine's own: nothing here computes one. An order may be
*held* before it reaches the engine: until the next bar opens (bar data, ``fill_at="next_open"``)
or for the configured latency (quote and trade data). A held order is acknowledged at once; if
the engine then refuses it (a post-only order that would now cross, funds gone meanwhile) it
ends ``EXPIRED`` with the engine's reason, since the venue had already accepted it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from botd.clock import Clock
from botd.errors import OrderRejected
from botd.model import (
    Balance,
    ExecutionReport,
    Instrument,
    MarketEvent,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    VenueOrder,
)
from botd.venues.base import SubmitAck, VenueCapabilities
from botd.venues.sim.engine import AccountReport, EngineResult, MatchingEngine

__all__ = ["USER", "BacktestVenue"]

USER = "user"
_DATA = "__data__"
_ZERO = Decimal(0)
_ONE = Decimal(1)
_BPS = Decimal("0.0001")
# The data account's offer is "everything the user could want"; it must stay a multiple of
# any step size and above any minimum.
_UNLIMITED = Decimal(10) ** 15


@dataclass(slots=True)
class _Held:
    order: Order
    release_ns: int  # -1: at the next bar's open
    seq: int


class BacktestVenue:
    """A :class:`botd.venues.base.VenueAdapter` over the matching engine, for backtests."""

    def __init__(
        self,
        *,
        name: str,
        clock: Clock,
        instruments: Sequence[Instrument],
        balances: Mapping[str, Decimal],
        maker_fee: Decimal,
        taker_fee: Decimal,
        slippage_bps: Decimal = _ZERO,
        latency_ns: int = 0,
        hold_until_next_bar: bool = True,
    ) -> None:
        self._name = name
        self._clock = clock
        self._instruments = {i.symbol: i for i in instruments}
        self.engine = MatchingEngine(
            name,
            self._instruments.values(),
            maker_fee=maker_fee,
            taker_fee=taker_fee,
            closed_history=1_000,
            execution_history=10_000,
        )
        self.engine.open_account(USER, balances)
        self.engine.open_account(_DATA, unlimited=True)
        self._slip_up = _ONE + slippage_bps * _BPS
        self._slip_down = _ONE - slippage_bps * _BPS
        self._latency_ns = latency_ns
        self._hold_bars = hold_until_next_bar
        self._bar_mode: set[str] = set()  # symbols whose data are bars
        self._bid: dict[str, Decimal] = {}
        self._ask: dict[str, Decimal] = {}
        self._held: dict[str, list[_Held]] = {s: [] for s in self._instruments}
        self._held_by_id: dict[str, _Held] = {}
        # Stop orders waiting for their trigger (after any hold), oldest first.
        self._stops: dict[str, list[Order]] = {s: [] for s in self._instruments}
        self._stops_by_id: dict[str, Order] = {}
        self._seq = itertools.count()
        self._data_ids = itertools.count()
        self._reports: deque[ExecutionReport] = deque()
        self._reported = asyncio.Event()
        # History has no rate limits; stops are simulated here against the price path.
        self._capabilities = VenueCapabilities(order_types=frozenset(OrderType))

    # -- the venue contract ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> VenueCapabilities:
        return self._capabilities

    @property
    def pending_reports(self) -> int:
        return len(self._reports)

    @property
    def held_orders(self) -> int:
        return len(self._held_by_id)

    @property
    def waiting_stops(self) -> int:
        """Stop orders armed and waiting for their trigger."""
        return len(self._stops_by_id)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    async def market_data(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]:
        # The replay feed publishes history itself; this venue has no stream of its own.
        for _ in ():
            yield _

    async def executions(self) -> AsyncIterator[ExecutionReport]:
        reports, reported = self._reports, self._reported
        while True:
            while reports:
                yield reports.popleft()
            reported.clear()
            await reported.wait()

    async def submit(self, order: Order) -> SubmitAck:
        ts = self._clock.time_ns()
        symbol = order.symbol
        if symbol not in self._instruments:
            raise OrderRejected(f"unknown symbol {symbol}", "UNKNOWN_SYMBOL")
        if order.type is OrderType.STOP or order.type is OrderType.STOP_LIMIT:
            self._check_stop(order)
        release = self._release_time(symbol, ts)
        if release is None:
            result = self._execute(order, ts)
            mine = [r.report for r in result.reports if r.account == USER]
            first = mine[0] if mine else None
            if first is not None and first.status is OrderStatus.REJECTED:
                raise OrderRejected(first.reason, first.extra.get("code", ""))
            self._forward(mine)
            venue_id = first.venue_order_id if first is not None else ""
            return SubmitAck(order.client_order_id, venue_id, OrderStatus.ACCEPTED, ts)
        held = _Held(order, release, next(self._seq))
        self._held[symbol].append(held)
        self._held_by_id[order.client_order_id] = held
        return SubmitAck(order.client_order_id, "", OrderStatus.ACCEPTED, ts)

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        ts = self._clock.time_ns()
        held = self._held_by_id.get(client_order_id)
        if held is not None and held.order.symbol == symbol:
            self._unhold(held)
            self._forward([_report(self._name, held.order, OrderStatus.CANCELED, ts)])
            return
        stop = self._stops_by_id.get(client_order_id)
        if stop is not None and stop.symbol == symbol:
            self._disarm(stop)
            self._forward([_report(self._name, stop, OrderStatus.CANCELED, ts)])
            return
        result = self.engine.cancel(USER, symbol, client_order_id, ts)
        for item in result.reports:
            if item.account == USER and item.report.status is OrderStatus.REJECTED:
                raise OrderRejected(item.report.reason, item.report.extra.get("code", ""))
        self._forward([r.report for r in result.reports if r.account == USER])

    async def cancel_all(self, symbol: str) -> None:
        if symbol not in self._instruments:
            raise OrderRejected(f"unknown symbol {symbol}", "UNKNOWN_SYMBOL")
        ts = self._clock.time_ns()
        for held in list(self._held[symbol]):
            self._unhold(held)
            self._forward([_report(self._name, held.order, OrderStatus.CANCELED, ts)])
        for stop in list(self._stops[symbol]):
            self._disarm(stop)
            self._forward([_report(self._name, stop, OrderStatus.CANCELED, ts)])
        result = self.engine.cancel_all(USER, symbol, ts)
        self._forward([r.report for r in result.reports if r.account == USER])

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        held = self._held_by_id.get(client_order_id)
        if held is not None:
            return _waiting_view(self._name, held.order)
        stop = self._stops_by_id.get(client_order_id)
        if stop is not None and stop.symbol == symbol:
            return _waiting_view(self._name, stop)
        found = self.engine.order_state(USER, client_order_id)
        return found if found is not None and found.symbol == symbol else None

    async def open_orders(self) -> list[VenueOrder]:
        stops = [_waiting_view(self._name, o) for o in self._stops_by_id.values()]
        return self.engine.open_venue_orders(USER) + stops

    async def fills(self, symbol: str, since_ns: int) -> list[ExecutionReport]:
        return self.engine.executions(USER, symbol, since_ns)

    async def balances(self) -> dict[str, Balance]:
        return self.engine.balances(USER)

    # -- history moves the market ---------------------------------------------------------------
    def quote(self, symbol: str, bid: Decimal, ask: Decimal, ts: int) -> None:
        """A new best bid and ask (quote data; a trade is a quote with ``bid == ask``)."""
        held = self._held[symbol]
        if held and symbol in self._bid:
            self._release(symbol, ts, before=True)
        self._sweep(symbol, bid, ask, ts)
        self._bid[symbol] = bid
        self._ask[symbol] = ask
        if self._stops[symbol]:
            self._trigger_stops(symbol, bid, ask, ts)
        if held:
            self._release(symbol, ts, before=False)

    def trade(self, symbol: str, price: Decimal, ts: int) -> None:
        """A trade print in a symbol that also has quotes: resting orders it reaches fill (a
        touch is enough); the bid and ask stay those of the latest quote."""
        held = self._held[symbol]
        if held:
            self._release(symbol, ts, before=False)
        self._sweep(symbol, price, price, ts)
        if self._stops[symbol]:
            self._trigger_stops(symbol, price, price, ts)

    def bar(
        self,
        symbol: str,
        open_: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        start: int,
        end: int,
    ) -> None:
        """One bar: the market opens, visits both extremes (the one against the account's
        position first), then closes. Orders held for this bar meet it at the open."""
        self._bar_mode.add(symbol)
        held = self._held[symbol]
        stops = self._stops[symbol]
        top_bid, top_ask = self.engine.best_prices(symbol)
        if top_bid is None and top_ask is None and not held and not stops:
            self._bid[symbol] = self._ask[symbol] = close  # nothing rests, nothing waits
            return
        self._sweep(symbol, open_, open_, start)
        self._bid[symbol] = self._ask[symbol] = open_
        if stops:
            # A gap through a stop meets the market at the open, not at the stop price.
            self._trigger_stops(symbol, open_, open_, start)
        if held:
            for waiting in list(held):
                self._unhold(waiting)
                self._forward_released(self._execute(waiting.order, start))
        third = (end - start) // 3
        top_bid, top_ask = self.engine.best_prices(symbol)
        if top_bid is not None or top_ask is not None or stops:
            for i, price in enumerate(self._extremes(symbol, open_, high, low), start=1):
                self._sweep(symbol, price, price, start + i * third)
                if stops:  # reached on the way there: triggered at its own price
                    self._trigger_stops(symbol, price, price, start + i * third, at_stop=True)
        self._sweep(symbol, close, close, end)
        if stops:
            self._trigger_stops(symbol, close, close, end, at_stop=True)
        self._bid[symbol] = self._ask[symbol] = close

    # -- internals ------------------------------------------------------------------------------
    def _release_time(self, symbol: str, ts: int) -> int | None:
        """When an order submitted now reaches the engine; None: at once."""
        if symbol in self._bar_mode:
            return -1 if self._hold_bars else None
        if self._latency_ns > 0:
            return ts + self._latency_ns
        if symbol not in self._bid:
            return ts  # no market yet: wait for the first price
        return None

    def _release(self, symbol: str, ts: int, *, before: bool) -> None:
        for held in list(self._held[symbol]):
            due = held.release_ns < ts if before else held.release_ns <= ts
            if due:
                self._unhold(held)
                self._forward_released(self._execute(held.order, ts))

    def _unhold(self, held: _Held) -> None:
        self._held[held.order.symbol].remove(held)
        del self._held_by_id[held.order.client_order_id]

    # -- stop orders ------------------------------------------------------------------------------
    def _check_stop(self, order: Order) -> None:
        """Refuse a stop the market has already reached, as Binance does (-2010)."""
        stop = order.stop_price
        if stop is None:
            raise OrderRejected(f"a {order.type.value} order needs a stop price", "BAD_ORDER")
        if order.side is Side.BUY:
            ask = self._ask.get(order.symbol)
            if ask is not None and ask >= stop:
                raise OrderRejected(
                    f"Order would immediately trigger: buy stop {stop}, ask {ask}",
                    "WOULD_TRIGGER",
                )
        else:
            bid = self._bid.get(order.symbol)
            if bid is not None and bid <= stop:
                raise OrderRejected(
                    f"Order would immediately trigger: sell stop {stop}, bid {bid}",
                    "WOULD_TRIGGER",
                )

    def _arm(self, order: Order, ts: int) -> EngineResult:
        """A stop order reaches the venue: it waits for its trigger, or (released after a gap
        past its stop) triggers at once at the current price."""
        stop = order.stop_price
        assert stop is not None
        bid, ask = self._bid.get(order.symbol), self._ask.get(order.symbol)
        if _stop_reached(order.side, stop, bid, ask):
            return self._execute(replace(order, type=order.type.triggered), ts)
        self._stops[order.symbol].append(order)
        self._stops_by_id[order.client_order_id] = order
        accepted = _report(self._name, order, OrderStatus.ACCEPTED, ts)
        return EngineResult([AccountReport(USER, accepted)], [])

    def _disarm(self, order: Order) -> None:
        self._stops[order.symbol].remove(order)
        del self._stops_by_id[order.client_order_id]

    def _trigger_stops(
        self, symbol: str, bid: Decimal, ask: Decimal, ts: int, *, at_stop: bool = False
    ) -> None:
        """Trigger the waiting stops the market reached: a sell stop when the bid (or the trade
        price) is at or below it, a buy stop when the ask is at or above it. Each becomes a
        market or limit order and meets the market at the current bid/ask, or, with
        ``at_stop`` (the price moved continuously through it, inside a bar), at its stop."""
        due = [o for o in self._stops[symbol] if _stop_reached(o.side, _stop_of(o), bid, ask)]
        if not due:
            return
        # Nearest first: on the way down the higher sell stops are reached first.
        due.sort(key=lambda o: _stop_of(o) if o.side is Side.BUY else -_stop_of(o))
        saved_bid, saved_ask = self._bid.get(symbol), self._ask.get(symbol)
        for order in due:
            self._disarm(order)
            if at_stop:
                self._bid[symbol] = self._ask[symbol] = _stop_of(order)
            triggered = replace(order, type=order.type.triggered)
            self._forward_released(self._execute(triggered, ts))
        if saved_bid is not None and saved_ask is not None:
            self._bid[symbol], self._ask[symbol] = saved_bid, saved_ask

    def _extremes(self, symbol: str, open_: Decimal, high: Decimal, low: Decimal) -> list[Decimal]:
        base = self._instruments[symbol].base
        held = self.engine.total_balance(USER, base)
        # Conservative: assume the market first went against what the account holds. With
        # nothing held, the nearer extreme comes first (the usual open-high-low-close path).
        if held > 0 or (held == 0 and open_ - low <= high - open_):
            return [low, high]
        return [high, low]

    def _sweep(self, symbol: str, bid: Decimal, ask: Decimal, ts: int) -> None:
        """Trade the data account against every resting user order the new prices cross."""
        top_bid, top_ask = self.engine.best_prices(symbol)
        if top_ask is not None and top_ask <= bid:
            # Onto the tick, against the resting order (data finer than --tick).
            tick = self._instruments[symbol].tick_size
            price = _round(bid, tick, ROUND_FLOOR)
            self._data_order(symbol, Side.BUY, price, _UNLIMITED, ts, sweep=True)
        if top_bid is not None and top_bid >= ask:
            tick = self._instruments[symbol].tick_size
            price = _round(ask, tick, ROUND_CEILING)
            self._data_order(symbol, Side.SELL, price, _UNLIMITED, ts, sweep=True)

    def _data_order(
        self, symbol: str, side: Side, price: Decimal, qty: Decimal, ts: int, *, sweep: bool
    ) -> None:
        cid = f"d{next(self._data_ids)}"
        result = self.engine.submit(
            _DATA,
            client_order_id=cid,
            symbol=symbol,
            side=side,
            type=OrderType.LIMIT,
            qty=qty,
            price=price,
            tif=TimeInForce.IOC if sweep else TimeInForce.GTC,
            post_only=False,
            ts=ts,
        )
        self._forward([r.report for r in result.reports if r.account == USER])

    def _execute(self, order: Order, ts: int) -> EngineResult:
        """Offer ``order`` liquidity at the reference price (moved by the slippage) and hand it
        to the engine; the engine's result for the user's order."""
        if order.type is OrderType.STOP or order.type is OrderType.STOP_LIMIT:
            return self._arm(order, ts)
        symbol, side = order.symbol, order.side
        inst = self._instruments[symbol]
        ref = self._ask.get(symbol) if side is Side.BUY else self._bid.get(symbol)
        market = order.type is OrderType.MARKET
        if ref is None:
            if market:
                return _refused(self._name, order, ts, "NO_MARKET", "no price yet to fill at")
            return self._submit(order, order.qty, ts)
        if order.post_only and order.price is not None:
            crosses = order.price >= ref if side is Side.BUY else order.price <= ref
            if crosses:
                return _refused(
                    self._name,
                    order,
                    ts,
                    "POST_ONLY_WOULD_CROSS",
                    f"post-only {side.value} at {order.price} would trade now",
                )
        if side is Side.BUY:
            price = _round(ref * self._slip_up, inst.tick_size, ROUND_CEILING)
            marketable = market or (order.price is not None and order.price >= price)
        else:
            price = _round(ref * self._slip_down, inst.tick_size, ROUND_FLOOR)
            marketable = market or (order.price is not None and order.price <= price)
        if not marketable or price <= 0:
            return self._submit(order, order.qty, ts)
        qty = order.qty
        if market and side is Side.BUY:
            # Sized when the strategy decided, priced now: never spend more than the cash.
            cash = self.engine.free_balance(USER, inst.quote)
            affordable = _round(cash / price, inst.step_size, ROUND_FLOOR)
            if affordable < qty:
                qty = affordable
            if qty <= 0 or qty < inst.min_qty or qty * price < inst.min_notional:
                return _refused(
                    self._name,
                    order,
                    ts,
                    "INSUFFICIENT_BALANCE",
                    f"needs {order.qty * price} {inst.quote} at {price}, {cash} free",
                )
        self._data_order(symbol, side.opposite, price, qty, ts, sweep=False)
        result = self._submit(order, order.qty, ts)
        leftover = self.engine.cancel_all(_DATA, symbol, ts)
        result.reports.extend(r for r in leftover.reports if r.account == USER)
        return result

    def _submit(self, order: Order, qty: Decimal, ts: int) -> EngineResult:
        return self.engine.submit(
            USER,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            qty=qty,
            price=order.price,
            tif=order.tif,
            post_only=order.post_only,
            ts=ts,
        )

    def _forward(self, reports: list[ExecutionReport]) -> None:
        if reports:
            self._reports.extend(reports)
            self._reported.set()

    def _forward_released(self, result: EngineResult) -> None:
        """Reports of an order that was acknowledged while held: a refusal now is an expiry."""
        for item in result.reports:
            if item.account != USER:
                continue
            report = item.report
            if report.status is OrderStatus.REJECTED:
                report = ExecutionReport(
                    venue=report.venue,
                    symbol=report.symbol,
                    client_order_id=report.client_order_id,
                    venue_order_id=report.venue_order_id,
                    status=OrderStatus.EXPIRED,
                    ts_event=report.ts_event,
                    reason=report.reason,
                    extra=report.extra,
                )
            self._reports.append(report)
            self._reported.set()


def _round(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)


def _stop_of(order: Order) -> Decimal:
    assert order.stop_price is not None
    return order.stop_price


def _stop_reached(side: Side, stop: Decimal, bid: Decimal | None, ask: Decimal | None) -> bool:
    """A buy stop triggers when the ask reaches it from below, a sell stop when the bid
    reaches it from above (a trade price is both)."""
    if side is Side.BUY:
        return ask is not None and ask >= stop
    return bid is not None and bid <= stop


def _waiting_view(venue: str, o: Order) -> VenueOrder:
    """An order acknowledged but not in the engine: held for its release, or a stop waiting
    for its trigger."""
    return VenueOrder(
        venue=venue,
        symbol=o.symbol,
        client_order_id=o.client_order_id,
        venue_order_id="",
        side=o.side,
        type=o.type,
        qty=o.qty,
        price=o.price,
        status=OrderStatus.ACCEPTED,
        filled_qty=_ZERO,
        avg_price=None,
        ts_event=o.ts_created,
        stop_price=o.stop_price,
    )


def _report(venue: str, order: Order, status: OrderStatus, ts: int) -> ExecutionReport:
    return ExecutionReport(
        venue=venue,
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        venue_order_id="",
        status=status,
        ts_event=ts,
    )


def _refused(venue: str, order: Order, ts: int, code: str, reason: str) -> EngineResult:
    report = ExecutionReport(
        venue=venue,
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        venue_order_id="",
        status=OrderStatus.REJECTED,
        ts_event=ts,
        reason=reason,
        extra={"code": code},
    )
    return EngineResult([AccountReport(USER, report)], [])
