"""Intents in, venue calls out, order and fill events back onto the bus.

Strategies call :meth:`Gateway.submit` synchronously and get the client order id at once; the
send happens in the gateway's worker task. Cancels jump the queue ahead of new orders. Venue
reports are applied idempotently: a trade id is counted once, however often it is repeated.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import structlog
from structlog.contextvars import bound_contextvars

from botd.bus import Bus
from botd.clock import Clock
from botd.errors import OrderRejected, TransientVenueError
from botd.gateway.ids import ClientIdFactory
from botd.model import (
    Balance,
    ExecutionReport,
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Quote,
    Side,
)
from botd.venues.base import VenueAdapter

__all__ = ["Gateway"]

_SEEN_TRADES_MAX = 200_000
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class _Submit:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class _Cancel:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class _Deny:
    client_order_id: str
    reason: str


_Command = _Submit | _Cancel | _Deny


class Gateway:
    def __init__(
        self,
        *,
        bus: Bus,
        clock: Clock,
        venues: Mapping[str, VenueAdapter],
        ids: ClientIdFactory,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._venues = dict(venues)
        self._ids = ids
        self._log = log or structlog.get_logger("botd.gateway")
        self._orders: dict[str, Order] = {}
        self._submits: deque[_Command] = deque()
        self._cancels: deque[_Cancel] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._seen_trades: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._balances: dict[str, dict[str, Balance]] = {}
        self._last_quotes: dict[tuple[str, str], Quote] = {}
        self.unknown_reports = 0
        self.duplicate_fills = 0
        bus.subscribe(Quote, self._remember_quote, name="gateway.quotes")

    # -- synchronous API for the strategy host ------------------------------------------------
    def submit(self, intent: OrderIntent) -> str:
        cid = self._ids.next()
        now = self._clock.time_ns()
        problem, order = self._prepare(cid, intent, now)
        self._orders[cid] = order
        if problem:
            self._enqueue(_Deny(cid, problem))
        else:
            self._enqueue(_Submit(cid))
        return cid

    def cancel(self, client_order_id: str) -> None:
        order = self._orders.get(client_order_id)
        if order is None or not order.is_open:
            return
        self._cancels.append(_Cancel(client_order_id))
        self._idle.clear()
        self._wakeup.set()

    def cancel_all(self, strategy_id: str | None = None) -> int:
        orders = self.open_orders(strategy_id)
        for order in orders:
            self.cancel(order.client_order_id)
        return len(orders)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        return [
            o
            for o in self._orders.values()
            if o.is_open and (strategy_id is None or o.strategy_id == strategy_id)
        ]

    def order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def balance(self, venue: str, asset: str) -> Balance:
        return self._balances.get(venue, {}).get(asset) or Balance(asset, _ZERO)

    def instrument(self, venue: str, symbol: str) -> Instrument:
        adapter = self._venues.get(venue)
        if adapter is None:
            raise ValueError(f"unknown venue {venue!r} (configured: {', '.join(self._venues)})")
        inst = adapter.instruments().get(symbol)
        if inst is None:
            raise ValueError(f"venue {venue!r} has no symbol {symbol!r}")
        return inst

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self._last_quotes.get((venue, symbol))

    # -- async side ------------------------------------------------------------------------
    async def run(self) -> None:
        """Send commands and consume every venue's execution reports until cancelled."""
        for name in self._venues:
            await self.refresh_balances(name)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._worker(), name="gateway.worker")
            for name, adapter in self._venues.items():
                tg.create_task(self._consume(name, adapter), name=f"gateway.reports.{name}")

    async def drain(self) -> None:
        """Wait until every queued command has been sent and answered."""
        while not self._idle.is_set():
            await self._idle.wait()

    async def wait_no_open_orders(self, poll_s: float = 0.05) -> None:
        while self.open_orders():
            await self._clock.sleep(poll_s)

    async def refresh_balances(self, venue: str) -> None:
        try:
            self._balances[venue] = await self._venues[venue].balances()
        except (TransientVenueError, OSError) as exc:
            self._log.warning("balance refresh failed", venue=venue, error=str(exc))

    # -- internals -------------------------------------------------------------------------
    def _prepare(self, cid: str, intent: OrderIntent, now: int) -> tuple[str, Order]:
        """Quantize onto the venue's grid and check its rules; returns (problem, order)."""
        order = Order(
            client_order_id=cid,
            strategy_id=intent.strategy_id,
            venue=intent.venue,
            symbol=intent.symbol,
            side=intent.side,
            type=intent.type,
            qty=intent.qty,
            price=intent.price,
            tif=intent.tif,
            post_only=intent.post_only,
            ts_created=now,
            ts_updated=now,
        )
        try:
            inst = self.instrument(intent.venue, intent.symbol)
        except ValueError as exc:
            return str(exc), order
        qty = inst.round_qty(intent.qty)
        price = None if intent.price is None else inst.round_price(intent.price, intent.side)
        order = replace(order, qty=qty, price=price)
        if intent.type is OrderType.LIMIT and price is None:
            return "a limit order needs a price", order
        if intent.type is OrderType.MARKET and intent.post_only:
            return "a market order cannot be post-only", order
        reference = price
        if reference is None:
            quote = self.last_quote(intent.venue, intent.symbol)
            if quote is not None:
                reference = quote.ask if intent.side is Side.BUY else quote.bid
        problems = inst.violations(qty, reference)
        if problems:
            return "; ".join(problems), order
        return "", order

    def _enqueue(self, cmd: _Command) -> None:
        self._submits.append(cmd)
        self._idle.clear()
        self._wakeup.set()

    async def _worker(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._cancels or self._submits:
                cmd: _Command = (
                    self._cancels.popleft() if self._cancels else self._submits.popleft()
                )
                await self._execute(cmd)
            self._idle.set()

    async def _execute(self, cmd: _Command) -> None:
        order = self._orders[cmd.client_order_id]
        with bound_contextvars(
            client_order_id=order.client_order_id, strategy=order.strategy_id, venue=order.venue
        ):
            if isinstance(cmd, _Deny):
                self._log.warning("order denied before sending", reason=cmd.reason)
                self._update(
                    order,
                    order.transition(
                        OrderStatus.REJECTED, self._clock.time_ns(), reason=cmd.reason
                    ),
                )
            elif isinstance(cmd, _Submit):
                await self._send(order)
            else:
                await self._send_cancel(order)

    async def _send(self, order: Order) -> None:
        if order.status is not OrderStatus.PENDING:
            return  # cancelled while queued
        adapter = self._venues[order.venue]
        sent = order.transition(OrderStatus.SUBMITTED, self._clock.time_ns())
        self._update(order, sent)
        self._log.info(
            "order submitted",
            symbol=order.symbol,
            side=order.side.value,
            type=order.type.value,
            qty=str(order.qty),
            price="market" if order.price is None else str(order.price),
            tif=order.tif.value,
        )
        try:
            ack = await adapter.submit(sent)
        except OrderRejected as exc:
            current = self._orders[order.client_order_id]
            if current.can_become(OrderStatus.REJECTED):
                reason = f"{exc.code}: {exc.reason}" if exc.code else exc.reason
                self._log.warning("order rejected by venue", reason=reason)
                rejected = current.transition(
                    OrderStatus.REJECTED, self._clock.time_ns(), reason=reason
                )
                self._update(current, rejected)
            return
        except (TransientVenueError, TimeoutError, OSError) as exc:
            current = self._orders[order.client_order_id]
            if current.can_become(OrderStatus.UNKNOWN):
                # Never treat this as a failure: the order may be live on the venue.
                self._log.error("order outcome unknown", error=str(exc))
                self._update(
                    current,
                    current.transition(OrderStatus.UNKNOWN, self._clock.time_ns(), reason=str(exc)),
                )
            return
        current = self._orders[order.client_order_id]
        if current.status is OrderStatus.SUBMITTED and ack.status is not OrderStatus.SUBMITTED:
            accepted = current.transition(
                OrderStatus.ACCEPTED, ack.ts_event, venue_order_id=ack.venue_order_id
            )
            self._update(current, accepted)
        elif current.venue_order_id is None:
            # The report stream got there first; only the venue's id is news.
            self._orders[current.client_order_id] = replace(
                current, venue_order_id=ack.venue_order_id
            )

    async def _send_cancel(self, order: Order) -> None:
        now = self._clock.time_ns()
        if order.status is OrderStatus.PENDING:
            # Never sent: nothing to ask the venue.
            self._update(
                order,
                order.transition(OrderStatus.REJECTED, now, reason="cancelled before sending"),
            )
            return
        if not order.is_open or order.status is OrderStatus.PENDING_CANCEL:
            return
        if order.can_become(OrderStatus.PENDING_CANCEL):
            self._update(order, order.transition(OrderStatus.PENDING_CANCEL, now))
        try:
            await self._venues[order.venue].cancel(order.symbol, order.client_order_id)
        except OrderRejected as exc:
            # Usually lost a race against a fill; the report stream tells us how it ended.
            self._log.info("cancel refused by venue", reason=exc.reason)
        except (TransientVenueError, TimeoutError, OSError) as exc:
            self._log.warning("cancel outcome unknown", error=str(exc))

    async def _consume(self, name: str, adapter: VenueAdapter) -> None:
        async for report in adapter.executions():
            self.apply(report)
            # Every accepted, cancelled or filled order moves funds between free and locked.
            await self.refresh_balances(name)

    def apply(self, report: ExecutionReport) -> None:
        """Apply one venue report. Idempotent: replays and duplicates change nothing."""
        order = self._orders.get(report.client_order_id)
        if order is None:
            self.unknown_reports += 1
            self._log.warning(
                "report for an order we do not know",
                venue=report.venue,
                client_order_id=report.client_order_id,
                status=report.status.value,
            )
            return
        with bound_contextvars(
            client_order_id=order.client_order_id, strategy=order.strategy_id, venue=order.venue
        ):
            if report.last_qty > 0:
                self._apply_fill(order, report)
                order = self._orders[order.client_order_id]
                if report.status in (
                    OrderStatus.CANCELED,
                    OrderStatus.EXPIRED,
                ) and order.can_become(report.status):
                    self._update(
                        order,
                        order.transition(report.status, report.ts_event, reason=report.reason),
                    )
                return
            if report.status is order.status or report.status in (
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.FILLED,
            ):
                return  # fills move these statuses, not bare reports
            if not order.can_become(report.status):
                self._log.debug(
                    "stale report ignored", status=report.status.value, current=order.status.value
                )
                return
            changes: dict[str, object] = {"reason": report.reason or order.reason}
            if report.venue_order_id:
                changes["venue_order_id"] = report.venue_order_id
            self._update(order, order.transition(report.status, report.ts_event, **changes))

    def _apply_fill(self, order: Order, report: ExecutionReport) -> None:
        key = (report.venue, report.trade_id)
        if key in self._seen_trades:
            self.duplicate_fills += 1
            return
        self._seen_trades[key] = None
        if len(self._seen_trades) > _SEEN_TRADES_MAX:
            self._seen_trades.popitem(last=False)
        previous = order.status
        filled = order.with_fill(report.last_qty, report.last_price, report.ts_event)
        if report.venue_order_id and filled.venue_order_id is None:
            filled = replace(filled, venue_order_id=report.venue_order_id)
        fill = Fill(
            client_order_id=order.client_order_id,
            strategy_id=order.strategy_id,
            venue=order.venue,
            symbol=order.symbol,
            side=order.side,
            qty=report.last_qty,
            price=report.last_price,
            fee=report.fee,
            fee_asset=report.fee_asset,
            liquidity=report.liquidity,
            trade_id=report.trade_id,
            venue_order_id=report.venue_order_id,
            ts_event=report.ts_event,
            ts_recv=self._clock.time_ns(),
        )
        self._log.info(
            "fill",
            symbol=fill.symbol,
            side=fill.side.value,
            qty=str(fill.qty),
            price=str(fill.price),
            fee=str(fill.fee),
            fee_asset=fill.fee_asset,
            liquidity=fill.liquidity.value,
            order_status=filled.status.value,
        )
        self._orders[order.client_order_id] = filled
        self._bus.publish(fill)
        self._publish(filled, previous)

    def _update(self, old: Order, new: Order) -> None:
        self._orders[new.client_order_id] = new
        if new.status in (OrderStatus.ACCEPTED, OrderStatus.CANCELED, OrderStatus.EXPIRED):
            if new.reason:
                self._log.info(f"order {new.status.value}", reason=new.reason)
            else:
                self._log.info(f"order {new.status.value}")
        self._publish(new, old.status)

    def _publish(self, order: Order, previous: OrderStatus) -> None:
        now = self._clock.time_ns()
        self._bus.publish(OrderUpdate(order, previous, order.ts_updated or now, now))

    def _remember_quote(self, quote: Quote) -> None:
        self._last_quotes[(quote.venue, quote.symbol)] = quote
