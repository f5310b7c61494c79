"""Intents in, venue calls out, order and fill events back onto the bus.

The gateway owns order identity and the order lifecycle:

* ``submit`` runs the intent through risk, assigns our client order id and returns it at once;
  the send happens in the venue's worker, and only after the order is durably in the journal.
* Each venue has one worker. Cancels go before new orders; every request passes the venue's
  rate limiter, and an order that cannot leave before its deadline is rejected, not sent stale.
* A submit whose outcome we could not observe (timeout, 5xx, dropped connection) becomes
  ``UNKNOWN``, never ``REJECTED``: the gateway asks the venue by client id, with backoff,
  before anything else is sent for that order. Submits are never retried blindly.
* Venue reports are applied idempotently: a trade id counts once per order of ours (a
  self-trade is one trade id with two of our orders in it), however often it arrives, and an
  impossible transition is logged and counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars

from botd.bus import Bus
from botd.clock import NS_PER_SECOND, Clock
from botd.errors import Banned, OrderRejected, RateLimited, TransientVenueError
from botd.gateway.ids import ClientIdFactory
from botd.gateway.inline import within
from botd.gateway.throttle import Priority, Throttle, Throttled
from botd.model import (
    Balance,
    ExecutionReport,
    Fill,
    IllegalTransition,
    Instrument,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Quote,
    VenueOrder,
)
from botd.risk import Approved, Denied, RiskDecision, RiskEngine, TradingState
from botd.store import Journal, JournalError
from botd.venues.base import VenueAdapter, VenueCapabilities

__all__ = ["Alert", "Gateway", "GatewayConfig"]

_SEEN_TRADES_MAX = 200_000
_ZERO = Decimal(0)
_ID_BLOCK = 10_000
_DENIAL_LOG_WINDOW_NS = 10 * NS_PER_SECOND
_BALANCE_REFRESH_MIN_S = 1.0
_PREWRITE_MAX = 256
_TRANSPORT_ERRORS = (TransientVenueError, TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    submit_timeout_s: float = 10.0  # no answer within this: the outcome is unknown
    order_deadline_s: float = 5.0  # an order that cannot leave within this is rejected
    resolve_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
    # An UNKNOWN order the venue still does not know after this many queries, spread over at
    # least the first backoff steps, was never received.
    not_found_after: int = 3
    cancel_retries: int = 6


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator must hear about (published on the bus for notifiers)."""

    kind: str
    venue: str
    message: str
    ts_event: int


@dataclass(frozen=True, slots=True)
class _Submit:
    client_order_id: str
    deadline_ns: int


@dataclass(frozen=True, slots=True)
class _Cancel:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class _Deny:
    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class _CancelSymbol:
    """Every open order of ours in one symbol, in one request (the venue's cancel-all)."""

    symbol: str
    client_order_ids: tuple[str, ...]


_Command = _Submit | _Cancel | _Deny | _CancelSymbol


@dataclass(slots=True)
class _VenueState:
    name: str
    adapter: VenueAdapter
    throttle: Throttle
    submits: deque[_Submit | _Deny] = field(default_factory=deque)
    cancels: deque[_Cancel | _CancelSymbol] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: int = 0
    resolving: set[str] = field(default_factory=set)
    balances: dict[str, Balance] = field(default_factory=dict)
    balances_stale: asyncio.Event = field(default_factory=asyncio.Event)
    # Recovery after a stream gap runs in its own task, one at a time; a gap reported while it
    # runs asks for one more run.
    recovering: bool = False
    recover_again: bool = False
    # Orders whose missed fills are being fetched again, with backoff, after a failed attempt.
    fill_retries: set[str] = field(default_factory=set)
    # Cancels retried after an unexpected exception: how many times so far, per order.
    cancel_crashes: dict[str, int] = field(default_factory=dict)

    @property
    def sending(self) -> bool:
        return bool(self.submits or self.cancels or self.inflight)

    @property
    def busy(self) -> bool:
        return self.sending or bool(self.resolving)


class Gateway:
    def __init__(
        self,
        *,
        bus: Bus,
        clock: Clock,
        venues: Mapping[str, VenueAdapter],
        risk: RiskEngine,
        journal: Journal | None = None,
        ids: ClientIdFactory | None = None,
        throttles: Mapping[str, Throttle] | None = None,
        config: GatewayConfig | None = None,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._risk = risk
        self._journal = journal
        self._ids = ids or ClientIdFactory()
        self.config = config or GatewayConfig()
        self._log = log or structlog.get_logger("botd.gateway")
        throttles = dict(throttles or {})
        self._venues = {
            name: _VenueState(name, adapter, throttles.get(name) or _throttle_for(adapter, clock))
            for name, adapter in venues.items()
        }
        self._orders: dict[str, Order] = {}
        # The open ones again, so open_orders() costs what is open, not every order ever sent
        # (strategies ask on every event; a long session or a backtest sends many).
        self._open: dict[str, Order] = {}
        self._cancel_after_resolve: set[str] = set()
        # Keyed by (venue, trade id, client order id): a self-trade is one trade id with two
        # executions of ours, one per side, and both count.
        self._seen_trades: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        # Fills taken from a report and waiting on their journal write, per client order id:
        # a venue view read meanwhile already counts them, so it must not move the order on.
        self._fills_in_flight: Counter[str] = Counter()
        self._last_quotes: dict[tuple[str, str], Quote] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._denials: dict[tuple[str, str], tuple[int | None, int]] = {}
        self._journal_writes: dict[str, asyncio.Future[None]] = {}
        # Set whenever an order changes or a command finishes: what drain() waits on.
        self._progress = asyncio.Event()
        self.unknown_reports = 0
        self.duplicate_fills = 0
        # Told of every intent as it arrives (metrics: tick-to-intent latency); None = off.
        self.on_intent: Callable[[OrderIntent, int], None] | None = None
        self.illegal_transitions = 0
        self._order_context = _OrderContext()
        bus.subscribe(Quote, self._remember_quote, name="gateway.quotes")

    def attach_journal(self, journal: Journal) -> None:
        self._journal = journal

    # -- synchronous API for the strategy host ------------------------------------------------
    def submit(self, intent: OrderIntent) -> str:
        cid = self._ids.next(intent.strategy_id)
        now = self._clock.time_ns()
        if self.on_intent is not None:
            self.on_intent(intent, now)
        venue = self._venues.get(intent.venue)
        decision: RiskDecision
        if venue is not None and intent.type not in venue.adapter.capabilities.order_types:
            decision = _unsupported_type(venue.name, intent.type, venue.adapter.capabilities)
        else:
            decision = self._risk.check(intent)
        # Built once, with what risk approved (rounded to the venue's grid) or as asked.
        approved = decision if isinstance(decision, Approved) else None
        order = Order(
            client_order_id=cid,
            strategy_id=intent.strategy_id,
            venue=intent.venue,
            symbol=intent.symbol,
            side=intent.side,
            type=intent.type,
            qty=intent.qty if approved is None else approved.qty,
            price=intent.price if approved is None else approved.price,
            tif=intent.tif,
            post_only=intent.post_only,
            ts_created=now,
            ts_updated=now,
            stop_price=intent.stop_price if approved is None else approved.stop_price,
        )
        self._keep(order)
        if venue is None:
            # Nowhere to queue the denial: publish it on the next loop turn instead.
            reason = f"unknown venue {intent.venue!r} (configured: {', '.join(self._venues)})"
            asyncio.get_running_loop().call_soon(self._deny_now, cid, reason)
        elif not isinstance(decision, Approved):
            self._enqueue(venue, _Deny(cid, f"{decision.code}: {decision.reason}"))
        else:
            deadline = now + int(self.config.order_deadline_s * NS_PER_SECOND)
            self._enqueue(venue, _Submit(cid, deadline))
        self._refill_ids()
        return cid

    def cancel(self, client_order_id: str) -> None:
        order = self._orders.get(client_order_id)
        if order is None or not order.is_open:
            return
        venue = self._venues[order.venue]
        if order.status is OrderStatus.UNKNOWN:
            # Nothing may be sent for an order until we know what the venue did with it.
            self._cancel_after_resolve.add(client_order_id)
            return
        if order.status is OrderStatus.PENDING_CANCEL or any(
            isinstance(c, _Cancel) and c.client_order_id == client_order_id for c in venue.cancels
        ):
            return  # already on its way: cancels coalesce
        venue.cancels.append(_Cancel(client_order_id))
        venue.wakeup.set()

    def cancel_all(self, strategy_id: str | None = None, venue: str | None = None) -> int:
        orders = [o for o in self.open_orders(strategy_id) if venue is None or o.venue == venue]
        for order in orders:
            self.cancel(order.client_order_id)
        return len(orders)

    def kill(self, reason: str) -> int:
        """Kill switch: halt all trading (persisted by risk) and cancel every open order."""
        self._risk.kill(reason)
        self._alert("kill_switch", "*", f"kill switch engaged: {reason}")
        orders = self.open_orders()
        by_symbol: dict[tuple[str, str], list[str]] = {}
        for order in orders:
            live = order.status not in (OrderStatus.PENDING, OrderStatus.UNKNOWN)
            if live and order.status is not OrderStatus.PENDING_CANCEL:
                by_symbol.setdefault((order.venue, order.symbol), []).append(order.client_order_id)
            else:
                self.cancel(order.client_order_id)
        for (venue_name, symbol), cids in by_symbol.items():
            venue = self._venues[venue_name]
            if len(cids) == 1:
                self.cancel(cids[0])
            else:
                venue.cancels.append(_CancelSymbol(symbol, tuple(cids)))
                venue.wakeup.set()
        return len(orders)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        if strategy_id is None:
            return list(self._open.values())
        return [o for o in self._open.values() if o.strategy_id == strategy_id]

    def order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def all_orders(self) -> list[Order]:
        """Every order this run knows (the journal's and this run's), open or closed."""
        return list(self._orders.values())

    def balance(self, venue: str, asset: str) -> Balance:
        state = self._venues.get(venue)
        found = state.balances.get(asset) if state is not None else None
        return found or Balance(asset, _ZERO)

    def balances(self, venue: str) -> dict[str, Balance]:
        return dict(self._venues[venue].balances)

    @property
    def trades_seen(self) -> int:
        return len(self._seen_trades)

    def instrument(self, venue: str, symbol: str) -> Instrument:
        state = self._venues.get(venue)
        if state is None:
            raise ValueError(f"unknown venue {venue!r} (configured: {', '.join(self._venues)})")
        inst = state.adapter.instruments().get(symbol)
        if inst is None:
            raise ValueError(f"venue {venue!r} has no symbol {symbol!r}")
        return inst

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self._last_quotes.get((venue, symbol))

    def throttle(self, venue: str) -> Throttle:
        return self._venues[venue].throttle

    def adapter(self, venue: str) -> VenueAdapter:
        return self._venues[venue].adapter

    @property
    def venue_names(self) -> list[str]:
        return list(self._venues)

    def known(self, client_order_id: str) -> bool:
        return client_order_id in self._orders

    async def adopt(self, found: VenueOrder) -> None:
        """Bring our copy of an order in line with the venue's view of it."""
        venue = self._venues[found.venue]
        order = self._orders[found.client_order_id]
        with bound_contextvars(
            client_order_id=order.client_order_id, strategy=order.strategy_id, venue=order.venue
        ):
            if order.status is OrderStatus.PENDING:
                # Journaled as pending, yet the venue has it: we stopped between the send and
                # recording it. It was sent.
                self._to(order, OrderStatus.SUBMITTED)
            await self._adopt_venue_view(venue, found)

    def close_missing(self, client_order_id: str, reason: str) -> None:
        """The venue has no record of an order we hold open: close it with ``reason``."""
        order = self._orders[client_order_id]
        with bound_contextvars(client_order_id=client_order_id, strategy=order.strategy_id):
            target = (
                OrderStatus.REJECTED
                if order.can_become(OrderStatus.REJECTED)
                else OrderStatus.CANCELED
            )
            self._log.warning("order closed by reconciliation", reason=reason)
            self._to(order, target, reason=reason)

    @property
    def busy(self) -> bool:
        """Commands queued or in flight, or orders of unknown outcome being resolved."""
        return any(v.busy for v in self._venues.values())

    @property
    def busy_sending(self) -> bool:
        return any(v.sending for v in self._venues.values())

    # -- async side ------------------------------------------------------------------------
    async def start(self) -> None:
        """Load what the journal knows and reserve client order ids; before ``run``."""
        journal = self._require_journal()
        for order in await journal.orders():
            self._keep(order)
        for fill in await journal.fills():
            self._seen_trades[(fill.venue, fill.trade_id, fill.client_order_id)] = None
        first = await journal.next_sequence("client_order_id", _ID_BLOCK)
        self._ids = ClientIdFactory(first, first + _ID_BLOCK)

    def restore(self, orders: Iterable[Order]) -> None:
        """Adopt orders known from elsewhere (tests, reconciliation)."""
        for order in orders:
            self._keep(order)

    async def run(self) -> None:
        """Send commands and consume every venue's execution reports until cancelled."""
        self._require_journal()
        for name in self._venues:
            await self.refresh_balances(name)
        try:
            async with asyncio.TaskGroup() as tg:
                for venue in self._venues.values():
                    tg.create_task(self._worker(venue), name=f"gateway.worker.{venue.name}")
                    tg.create_task(self._consume(venue), name=f"gateway.reports.{venue.name}")
                    tg.create_task(self._balances(venue), name=f"gateway.balances.{venue.name}")
                for cid, order in self._orders.items():
                    if order.status is OrderStatus.UNKNOWN:
                        self._start_resolving(self._venues[order.venue], cid)
        finally:
            for task in self._tasks:
                task.cancel()

    async def drain(self) -> None:
        """Wait until every queued command has been sent and answered, and every order of
        unknown outcome resolved."""
        while self.busy:
            self._progress.clear()
            await self._progress.wait()

    async def wait_no_open_orders(self) -> None:
        """Wait until no order is live on a venue (cancels confirmed, fills done)."""
        while any(o.status is not OrderStatus.PENDING for o in self.open_orders()):
            self._progress.clear()
            await self._progress.wait()

    async def refresh_balances(self, venue: str) -> None:
        state = self._venues[venue]
        try:
            await state.throttle.acquire("account.balances", Priority.QUERY)
            state.balances = await state.adapter.balances()
        except (*_TRANSPORT_ERRORS, RateLimited, Throttled) as exc:
            self._log.warning("balance refresh failed", venue=venue, error=str(exc))
            self._obey_limit(state, exc)

    # -- internals: commands ------------------------------------------------------------------
    def _require_journal(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the gateway needs a journal before it sends anything")
        return self._journal

    def _enqueue(self, venue: _VenueState, cmd: _Submit | _Deny) -> None:
        venue.submits.append(cmd)
        venue.wakeup.set()

    def _refill_ids(self) -> None:
        remaining = self._ids.remaining
        if remaining is None or remaining > _ID_BLOCK // 2 or self._journal is None:
            return
        if any(t.get_name() == "gateway.ids" for t in self._tasks):
            return
        self._spawn(self._reserve_ids(), "gateway.ids")

    async def _reserve_ids(self) -> None:
        journal = self._require_journal()
        try:
            first = await journal.next_sequence("client_order_id", _ID_BLOCK)
        except JournalError as exc:
            self._journal_failed(None, exc)
            return
        self._ids.add_block(first, first + _ID_BLOCK)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _worker(self, venue: _VenueState) -> None:
        while True:
            await venue.wakeup.wait()
            venue.wakeup.clear()
            while venue.cancels or venue.submits:
                cmd: _Command = (
                    venue.cancels.popleft() if venue.cancels else venue.submits.popleft()
                )
                venue.inflight += 1
                try:
                    await self._execute(venue, cmd)
                except Exception as exc:  # a bug in one command must not stop the venue
                    self._command_failed(venue, cmd, exc)
                finally:
                    venue.inflight -= 1

    async def _execute(self, venue: _VenueState, cmd: _Command) -> None:
        if isinstance(cmd, _CancelSymbol):
            await self._send_cancel_symbol(venue, cmd)
            return
        order = self._orders[cmd.client_order_id]
        with self._order_context.bound(order):
            if isinstance(cmd, _Deny):
                self._log_denial(order, cmd.reason)
                self._to(order, OrderStatus.REJECTED, reason=cmd.reason)
            elif isinstance(cmd, _Submit):
                await self._send(venue, order, cmd.deadline_ns)
            else:
                await self._send_cancel(venue, order)

    def _prewrite(self, venue: _VenueState, first: Order) -> None:
        """Start the durable journal writes of this order and of the orders queued behind it,
        so one commit (one fsync) covers a burst instead of one each."""
        journal = self._require_journal()
        batch = [first]
        for cmd in itertools.islice(venue.submits, _PREWRITE_MAX):
            if isinstance(cmd, _Submit):
                batch.append(self._orders[cmd.client_order_id])
        for order in batch:
            cid = order.client_order_id
            if cid not in self._journal_writes and order.status is OrderStatus.PENDING:
                self._journal_writes[cid] = asyncio.ensure_future(journal.write_order(order))

    def _deny_now(self, cid: str, reason: str) -> None:
        order = self._orders[cid]
        with bound_contextvars(client_order_id=cid, strategy=order.strategy_id):
            self._log_denial(order, reason)
            self._to(order, OrderStatus.REJECTED, reason=reason)

    def _log_denial(self, order: Order, reason: str) -> None:
        """One line per strategy and reason per window: a strategy that retries on every
        quote while trading is halted must not flood the log."""
        key = (order.strategy_id, reason.split(":", 1)[0])
        now = self._clock.monotonic_ns()
        last, suppressed = self._denials.get(key, (None, 0))
        if last is not None and now - last < _DENIAL_LOG_WINDOW_NS:
            self._denials[key] = (last, suppressed + 1)
            return
        self._denials[key] = (now, 0)
        if suppressed:
            self._log.warning(
                "order denied before sending", reason=reason, similar_since=suppressed
            )
        else:
            self._log.warning("order denied before sending", reason=reason)

    async def _send(self, venue: _VenueState, order: Order, deadline_ns: int) -> None:
        if order.status is not OrderStatus.PENDING:
            return  # cancelled while queued
        # Write-ahead: the order is durable before any byte of it leaves. If that fails,
        # nothing is sent and the venue goes cancel-only.
        try:
            if venue.submits or order.client_order_id in self._journal_writes:
                self._prewrite(venue, order)
                await self._journal_writes.pop(order.client_order_id)
            else:
                # Nothing queued behind it to share a commit with: no task for the write.
                await self._require_journal().write_order(order)
        except JournalError as exc:
            self._journal_failed(venue.name, exc)
            self._log.error("order not sent: the journal could not record it", error=str(exc))
            self._to(order, OrderStatus.REJECTED, reason=f"JOURNAL: journal write failed: {exc}")
            return
        if self._risk.state_of(venue=venue.name, strategy_id=order.strategy_id) is (
            TradingState.HALTED
        ):
            self._log.warning("order not sent: trading was halted while it was queued")
            self._to(order, OrderStatus.REJECTED, reason="HALTED: trading halted while queued")
            return
        try:
            await venue.throttle.acquire("order.submit", Priority.SUBMIT, deadline_ns=deadline_ns)
        except Throttled as exc:
            self._log.warning("order not sent: rate limit would make it late", error=str(exc))
            self._to(order, OrderStatus.REJECTED, reason=f"THROTTLED: {exc}")
            return
        except Banned as exc:
            self._log.warning("order not sent: venue ban in force", error=str(exc))
            self._to(order, OrderStatus.REJECTED, reason=f"BANNED: {exc}")
            return
        current = self._orders[order.client_order_id]
        if current.status is not OrderStatus.PENDING:
            return  # cancelled while waiting for the rate limiter
        sent = self._to(current, OrderStatus.SUBMITTED)
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
            # The timeout as `async with asyncio.timeout(...)`, with no timer for a venue
            # that answers without waiting (a backtest's).
            ack = await within(venue.adapter.submit(sent), self.config.submit_timeout_s)
        except OrderRejected as exc:
            self._on_rejected(order.client_order_id, exc)
            return
        except Banned as exc:
            venue.throttle.ban(exc.retry_after)
            self._alert("banned", venue.name, f"venue banned us: {exc}")
            self._resolve_refused(order.client_order_id, f"BANNED: {exc}")
            return
        except RateLimited as exc:
            venue.throttle.pause(exc.retry_after or 1.0)
            self._resolve_refused(order.client_order_id, f"RATE_LIMITED: {exc}")
            return
        except _TRANSPORT_ERRORS as exc:
            self._became_unknown(venue, order.client_order_id, exc)
            return
        current = self._orders[order.client_order_id]
        if current.status is OrderStatus.SUBMITTED:
            self._to(current, OrderStatus.ACCEPTED, venue_order_id=ack.venue_order_id)
        elif current.venue_order_id is None:
            # The report stream got there first; only the venue's id is news.
            self._store(replace(current, venue_order_id=ack.venue_order_id))

    def _on_rejected(self, cid: str, exc: OrderRejected) -> None:
        current = self._orders[cid]
        reason = f"{exc.code}: {exc.reason}" if exc.code else exc.reason
        self._log.warning("order rejected by venue", reason=reason)
        self._to(current, OrderStatus.REJECTED, reason=reason)

    def _resolve_refused(self, cid: str, reason: str) -> None:
        """The venue refused the request itself (429/418): it was not processed."""
        self._log.warning("order refused by venue", reason=reason)
        self._to(self._orders[cid], OrderStatus.REJECTED, reason=reason)

    def _became_unknown(self, venue: _VenueState, cid: str, exc: BaseException) -> None:
        current = self._orders[cid]
        if not current.can_become(OrderStatus.UNKNOWN):
            return  # a report already told us what happened
        # Never a failure: the order may be live. Find out before anything else is sent.
        self._log.error("order outcome unknown; asking the venue", error=str(exc) or repr(exc))
        self._to(current, OrderStatus.UNKNOWN, reason=str(exc) or type(exc).__name__)
        self._start_resolving(venue, cid)

    def _start_resolving(self, venue: _VenueState, cid: str) -> None:
        if cid in venue.resolving:
            return
        venue.resolving.add(cid)
        self._spawn(self._resolve(venue, cid), f"gateway.resolve.{cid}")

    async def _resolve(self, venue: _VenueState, cid: str) -> None:
        try:
            await self._resolve_loop(venue, cid)
        finally:
            venue.resolving.discard(cid)
            self._progress.set()
            if cid in self._cancel_after_resolve:
                self._cancel_after_resolve.discard(cid)
                self.cancel(cid)

    async def _resolve_loop(self, venue: _VenueState, cid: str) -> None:
        misses = 0
        attempt = 0
        with bound_contextvars(client_order_id=cid, venue=venue.name):
            while self._orders[cid].status is OrderStatus.UNKNOWN:
                delays = self.config.resolve_backoff_s
                await self._clock.sleep(delays[min(attempt, len(delays) - 1)])
                attempt += 1
                order = self._orders[cid]
                if order.status is not OrderStatus.UNKNOWN:
                    return  # a report arrived meanwhile
                try:
                    await venue.throttle.acquire("order.query", Priority.QUERY)
                    found = await venue.adapter.query_order(order.symbol, cid)
                except (*_TRANSPORT_ERRORS, RateLimited, Throttled) as exc:
                    self._log.warning("order query failed; will retry", error=str(exc))
                    self._obey_limit(venue, exc)
                    continue
                if found is None:
                    misses += 1
                    if misses >= self.config.not_found_after:
                        self._log.warning("venue never received the order", queries=misses)
                        self._to(
                            self._orders[cid],
                            OrderStatus.REJECTED,
                            reason="not received by the venue (its outcome was unknown)",
                        )
                    continue
                await self._adopt_venue_view(venue, found)
                self._log.info("order outcome resolved", status=self._orders[cid].status.value)

    async def _adopt_venue_view(self, venue: _VenueState, found: VenueOrder) -> None:
        """Bring one order in line with the venue: recover its fills, then its status."""
        order = self._orders[found.client_order_id]
        if found.filled_qty > order.filled_qty:
            try:
                await venue.throttle.acquire("account.fills", Priority.QUERY)
                executions = await venue.adapter.fills(found.symbol, order.ts_created)
            except (*_TRANSPORT_ERRORS, RateLimited, Throttled) as exc:
                self._log.warning("fill recovery failed; will retry", error=str(exc))
                self._obey_limit(venue, exc)
                if order.status is not OrderStatus.UNKNOWN:  # UNKNOWN: _resolve_loop retries
                    self._retry_fill_recovery(venue, found.client_order_id)
                return
            for report in executions:
                if report.client_order_id == found.client_order_id:
                    await self.apply(report)
        order = self._orders[found.client_order_id]
        if order.venue_order_id is None and found.venue_order_id:
            order = self._store(replace(order, venue_order_id=found.venue_order_id))
        if _older_than(found, order):
            return  # the report stream moved on while the query was out: keep what it said
        if self._fills_in_flight[found.client_order_id]:
            # A fill the venue's view already counts is still being journaled: moving the
            # order to a final status now would leave no room for it. The stream's own
            # status report (or the next reconciliation) settles the status after it.
            return
        if found.status is not order.status and found.status not in (
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
        ):
            self._to(order, found.status, reason=order.reason)
        elif order.status is OrderStatus.UNKNOWN and found.status is OrderStatus.PARTIALLY_FILLED:
            self._to(order, OrderStatus.ACCEPTED)

    async def _send_cancel(self, venue: _VenueState, order: Order) -> None:
        if order.status is OrderStatus.PENDING:
            self._to(order, OrderStatus.CANCELED, reason="cancelled before it was sent")
            return
        if not order.is_open or order.status is OrderStatus.UNKNOWN:
            return
        if order.status is not OrderStatus.PENDING_CANCEL:
            order = self._to(order, OrderStatus.PENDING_CANCEL)
        for attempt in range(self.config.cancel_retries):
            try:
                await venue.throttle.acquire("order.cancel", Priority.CANCEL)
                await venue.adapter.cancel(order.symbol, order.client_order_id)
                return  # the report stream says when it is gone
            except OrderRejected as exc:
                # Usually lost a race against a fill: ask what became of it.
                self._log.info("cancel refused by venue", reason=exc.reason, code=exc.code)
                await self._query_and_adopt(venue, order.client_order_id)
                return
            except Banned as exc:
                venue.throttle.ban(exc.retry_after)
            except RateLimited as exc:
                venue.throttle.pause(exc.retry_after or 1.0)
            except (*_TRANSPORT_ERRORS, Throttled) as exc:
                # Cancels are idempotent: sending one again is safe.
                self._log.warning("cancel failed; retrying", error=str(exc), attempt=attempt + 1)
            delays = self.config.resolve_backoff_s
            await self._clock.sleep(delays[min(attempt, len(delays) - 1)])
        self._log.error("cancel not confirmed; reconciliation will settle it")

    async def _send_cancel_symbol(self, venue: _VenueState, cmd: _CancelSymbol) -> None:
        for cid in cmd.client_order_ids:
            order = self._orders[cid]
            if order.is_open and order.can_become(OrderStatus.PENDING_CANCEL):
                self._to(order, OrderStatus.PENDING_CANCEL)
        try:
            await venue.throttle.acquire("order.cancel_all", Priority.CANCEL)
            await venue.adapter.cancel_all(cmd.symbol)
            self._log.info("cancelled every open order in one request", symbol=cmd.symbol)
        except (*_TRANSPORT_ERRORS, RateLimited, Throttled, OrderRejected) as exc:
            # Fall back to one cancel per order: each is retried on its own.
            self._log.warning("cancel-all failed; cancelling one by one", error=str(exc))
            for cid in cmd.client_order_ids:
                if self._orders[cid].is_open:
                    venue.cancels.append(_Cancel(cid))

    async def _query_and_adopt(self, venue: _VenueState, cid: str) -> None:
        order = self._orders[cid]
        try:
            await venue.throttle.acquire("order.query", Priority.QUERY)
            found = await venue.adapter.query_order(order.symbol, cid)
        except (*_TRANSPORT_ERRORS, RateLimited, Throttled) as exc:
            self._log.warning("order query failed", error=str(exc))
            self._obey_limit(venue, exc)
            return
        if found is not None:
            await self._adopt_venue_view(venue, found)

    # -- internals: reports -------------------------------------------------------------------
    async def _consume(self, venue: _VenueState) -> None:
        attempt = 0
        while True:
            try:
                async for report in venue.adapter.executions():
                    attempt = 0
                    await self.apply(report)
                    # Every accepted, cancelled or filled order moves funds.
                    venue.balances_stale.set()
                raise TransientVenueError("execution stream ended")
            except _TRANSPORT_ERRORS as exc:
                attempt += 1
                self._log.warning(
                    "execution stream lost; reconnecting and recovering missed reports",
                    venue=venue.name,
                    error=str(exc),
                )
                delays = self.config.resolve_backoff_s
                await self._clock.sleep(delays[min(attempt - 1, len(delays) - 1)])
                # In its own task: reports keep being applied while the queries are out.
                self._request_recovery(venue)

    # -- internals: recovery and failures no other handler expects -----------------------------
    def _request_recovery(self, venue: _VenueState) -> None:
        """Recover missed reports in the venue's recovery task: start it, or, if it is running,
        have it run once more when done (the gap may have opened after it queried)."""
        if venue.recovering:
            venue.recover_again = True
            return
        venue.recovering = True
        self._spawn(self._recovery_loop(venue), f"gateway.recover.{venue.name}")

    async def _recovery_loop(self, venue: _VenueState) -> None:
        try:
            while True:
                venue.recover_again = False
                try:
                    await self.recover(venue.name)
                except Exception as exc:  # a bug here must not end recovery for good
                    self._log.error(
                        "recovery failed; the periodic reconciliation will settle it",
                        venue=venue.name,
                        error=repr(exc),
                        exc_info=exc,
                    )
                if not venue.recover_again:
                    return
        finally:
            venue.recovering = False
            self._progress.set()

    def _retry_fill_recovery(self, venue: _VenueState, cid: str) -> None:
        if cid in venue.fill_retries:
            return  # already retrying: its next attempt covers this one
        venue.fill_retries.add(cid)
        self._spawn(self._fill_recovery_loop(venue, cid), f"gateway.fills.{cid}")

    async def _fill_recovery_loop(self, venue: _VenueState, cid: str) -> None:
        """Ask again, with backoff, until our fills of ``cid`` catch up with the venue's count;
        after the last step the periodic reconciliation takes over."""
        try:
            with bound_contextvars(client_order_id=cid, venue=venue.name):
                for delay in self.config.resolve_backoff_s:
                    await self._clock.sleep(delay)
                    order = self._orders[cid]
                    try:
                        await venue.throttle.acquire("order.query", Priority.QUERY)
                        found = await venue.adapter.query_order(order.symbol, cid)
                    except (*_TRANSPORT_ERRORS, RateLimited, Throttled) as exc:
                        self._log.warning("order query failed; will retry", error=str(exc))
                        self._obey_limit(venue, exc)
                        continue
                    if found is None:
                        return  # the venue forgot it: reconciliation's business
                    # A failure in here does not start another retry: this one is running.
                    await self._adopt_venue_view(venue, found)
                    if self._orders[cid].filled_qty >= found.filled_qty:
                        self._log.info("missed fills recovered", filled=str(found.filled_qty))
                        return
                self._log.error("fill recovery gave up; reconciliation will settle it")
        finally:
            venue.fill_retries.discard(cid)
            self._progress.set()

    def _command_failed(self, venue: _VenueState, cmd: _Command, exc: Exception) -> None:
        """A command raised what no handler expects (a bug, in an adapter or here). It is logged
        with its traceback and alerted; the worker goes on with the next command. A submit that
        got as far as the venue has an unknown outcome (the request may have arrived) and is
        resolved by query, never resent; a cancel is tried again as cancels are."""
        kind = type(exc).__name__
        what = type(cmd).__name__.lstrip("_").lower()
        self._log.error(
            "command failed unexpectedly",
            command=what,
            venue=venue.name,
            client_order_id=getattr(cmd, "client_order_id", None),
            error=repr(exc),
            exc_info=exc,
        )
        # The alert names the exception type only: its text is in the (redacted) log.
        self._alert("command_failed", venue.name, f"{what} failed unexpectedly: {kind}")
        if isinstance(cmd, _CancelSymbol):
            for cid in cmd.client_order_ids:
                if cid in self._open:
                    venue.cancels.append(_Cancel(cid))
            return
        order = self._orders.get(cmd.client_order_id)
        if order is None:
            return  # the failure was that the order is unknown: nothing to settle
        with self._order_context.bound(order):
            if isinstance(cmd, _Cancel):
                self._retry_cancel_later(venue, order.client_order_id)
            elif order.status is OrderStatus.PENDING:
                # Nothing left for the venue: only SUBMITTED orders have been handed over.
                reason = (
                    cmd.reason if isinstance(cmd, _Deny) else f"INTERNAL: {kind} before sending"
                )
                self._to(order, OrderStatus.REJECTED, reason=reason)
            elif isinstance(cmd, _Submit):
                self._became_unknown(
                    venue, order.client_order_id, RuntimeError(f"unexpected {kind} while sending")
                )

    def _obey_limit(self, venue: _VenueState, exc: BaseException) -> None:
        """A query, fill recovery or balance read answered 429/418: hold back every request
        to the venue, not just the one that failed. Otherwise the other tasks asking at the
        same time (recovery walks every open order) go on sending over the limit, and Binance
        bans an IP that sends after a 429."""
        if isinstance(exc, Banned):
            if venue.throttle.state == "banned":
                return  # the throttle's own refusal: no news
            venue.throttle.ban(exc.retry_after)
            self._alert("banned", venue.name, f"venue banned us: {exc}")
        elif isinstance(exc, RateLimited):
            venue.throttle.pause(exc.retry_after or 1.0)

    def _retry_cancel_later(self, venue: _VenueState, cid: str) -> None:
        tries = venue.cancel_crashes.get(cid, 0) + 1
        if tries > self.config.cancel_retries:
            venue.cancel_crashes.pop(cid, None)
            self._log.error("cancel not confirmed; reconciliation will settle it")
            return
        venue.cancel_crashes[cid] = tries
        delays = self.config.resolve_backoff_s
        delay = delays[min(tries - 1, len(delays) - 1)]
        self._spawn(self._cancel_after(venue, cid, delay), f"gateway.cancel_retry.{cid}")

    async def _cancel_after(self, venue: _VenueState, cid: str, delay: float) -> None:
        await self._clock.sleep(delay)
        order = self._orders[cid]
        if not order.is_open:
            venue.cancel_crashes.pop(cid, None)
            return
        if order.status is OrderStatus.UNKNOWN:
            self._cancel_after_resolve.add(cid)
            return
        if not any(isinstance(c, _Cancel) and c.client_order_id == cid for c in venue.cancels):
            venue.cancels.append(_Cancel(cid))
            venue.wakeup.set()

    async def _balances(self, venue: _VenueState) -> None:
        """Re-read balances after activity: at once, then at most once per interval, so a
        burst of reports costs one request and never holds up report processing."""
        while True:
            await venue.balances_stale.wait()
            venue.balances_stale.clear()
            await self.refresh_balances(venue.name)
            await self._clock.sleep(_BALANCE_REFRESH_MIN_S)

    async def recover(self, venue_name: str) -> None:
        """Ask the venue about every open order of ours: what reports did we miss?"""
        venue = self._venues[venue_name]
        for order in list(self.open_orders()):
            if order.venue != venue_name or order.status is OrderStatus.PENDING:
                continue
            await self._query_and_adopt(venue, order.client_order_id)

    async def apply(self, report: ExecutionReport) -> None:
        """Apply one venue report. Idempotent: replays and duplicates change nothing."""
        order = self._orders.get(report.client_order_id)
        if order is None:
            self.unknown_reports += 1
            self._log.warning(
                "report for an order we never sent",
                venue=report.venue,
                client_order_id=report.client_order_id,
                status=report.status.value,
            )
            self._event("foreign_order", venue=report.venue, client_order_id=report.client_order_id)
            return
        with self._order_context.bound(order):
            if report.last_qty > 0:
                await self._apply_fill(order, report)
                order = self._orders[order.client_order_id]
                if report.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
                    self._to(order, report.status, reason=report.reason)
                return
            if report.status is order.status or report.status in (
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.FILLED,
            ):
                return  # fills move these statuses, not bare reports
            changes: dict[str, object] = {}
            if report.venue_order_id:
                changes["venue_order_id"] = report.venue_order_id
            self._to(order, report.status, reason=report.reason or order.reason, **changes)

    def _with_fill(self, order: Order, report: ExecutionReport) -> Order | None:
        """The order with this fill counted, or None (logged, counted) if it does not fit."""
        try:
            filled = order.with_fill(report.last_qty, report.last_price, report.ts_event)
        except (IllegalTransition, ValueError) as exc:
            self.illegal_transitions += 1
            self._log.error("fill does not fit the order; kept for reconciliation", error=str(exc))
            self._event("bad_fill", client_order_id=order.client_order_id, error=str(exc))
            return None
        if report.venue_order_id and filled.venue_order_id is None:
            filled = replace(filled, venue_order_id=report.venue_order_id)
        return filled

    async def _apply_fill(self, order: Order, report: ExecutionReport) -> None:
        key = (report.venue, report.trade_id, report.client_order_id)
        if key in self._seen_trades:
            self.duplicate_fills += 1
            return
        self._seen_trades[key] = None
        if len(self._seen_trades) > _SEEN_TRADES_MAX:
            self._seen_trades.popitem(last=False)
        previous = order.status
        filled = self._with_fill(order, report)
        if filled is None:
            return
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
        journal = self._require_journal()
        self._fills_in_flight[order.client_order_id] += 1
        try:
            await journal.write_fill(fill)
            if journal.keeps_events:
                journal.append_event(
                    "fill",
                    {
                        "client_order_id": fill.client_order_id,
                        "trade_id": fill.trade_id,
                        "venue": fill.venue,
                        "qty": str(fill.qty),
                        "price": str(fill.price),
                        "fee": str(fill.fee),
                        "fee_asset": fill.fee_asset,
                    },
                    fill.ts_event,
                )
        except JournalError as exc:
            # The fill happened whatever our disk says; keep trading state right in memory
            # and stop new orders on this venue.
            self._journal_failed(order.venue, exc)
        finally:
            self._fills_in_flight[order.client_order_id] -= 1
            if self._fills_in_flight[order.client_order_id] <= 0:
                del self._fills_in_flight[order.client_order_id]
        current = self._orders[order.client_order_id]
        if current is not order:
            # Another report of this order was applied while the write was out (the report
            # stream and a recovery query run side by side): count this fill on top of it,
            # never over it, or the order is left short of its fills for good.
            previous = current.status
            filled = self._with_fill(current, report)
            if filled is None:
                return
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
        self._store(filled)
        self._bus.publish(fill)
        self._publish(filled, previous)

    # -- internals: state ----------------------------------------------------------------------
    def _to(self, order: Order, status: OrderStatus, **changes: object) -> Order:
        """Move an order to ``status``; an impossible move is logged and counted, not raised."""
        try:
            new = order.transition(status, self._clock.time_ns(), **changes)
        except IllegalTransition as exc:
            self.illegal_transitions += 1
            self._log.warning("ignored an impossible order transition", error=str(exc))
            return order
        self._store(new)
        # Rejections are logged where they happen, each saying who refused and why.
        if status in (OrderStatus.ACCEPTED, OrderStatus.CANCELED, OrderStatus.EXPIRED):
            if new.reason:
                self._log.info(f"order {status.value}", reason=new.reason)
            else:
                self._log.info(f"order {status.value}")
        self._publish(new, order.status)
        return new

    def _keep(self, order: Order) -> None:
        cid = order.client_order_id
        self._orders[cid] = order
        if order.status.is_open:
            self._open[cid] = order
        else:
            self._open.pop(cid, None)

    def _store(self, order: Order) -> Order:
        self._keep(order)
        self._progress.set()
        journal = self._journal
        if journal is not None and journal.healthy:
            journal.update_order(order)
            # The event log keeps every step (the orders table keeps the latest), so a session
            # can be replayed from it.
            if journal.keeps_events:
                journal.append_event(
                    "order",
                    {
                        "client_order_id": order.client_order_id,
                        "strategy": order.strategy_id,
                        "venue": order.venue,
                        "symbol": order.symbol,
                        "side": order.side.value,
                        "type": order.type.value,
                        "qty": str(order.qty),
                        "price": None if order.price is None else str(order.price),
                        "status": order.status.value,
                        "filled_qty": str(order.filled_qty),
                        "reason": order.reason,
                    },
                    order.ts_updated or None,
                )
        return order

    def _publish(self, order: Order, previous: OrderStatus) -> None:
        now = self._clock.time_ns()
        self._bus.publish(OrderUpdate(order, previous, order.ts_updated or now, now))

    def _journal_failed(self, venue: str | None, exc: BaseException) -> None:
        names = [venue] if venue else list(self._venues)
        for name in names:
            already = self._risk.snapshot().get("venues", {}).get(name, {}).get("state")
            # Set even while the kill switch is on: releasing it must not resume a venue
            # whose journal is broken.
            self._risk.set_state(TradingState.HALTED, f"journal failed: {exc}", venue=name)
            if already != TradingState.HALTED.value:
                self._alert("journal_failed", name, f"journal write failed; cancel-only: {exc}")

    def _alert(self, kind: str, venue: str, message: str) -> None:
        self._log.error("ALERT", kind=kind, venue=venue, message=message)
        self._bus.publish(Alert(kind, venue, message, self._clock.time_ns()))
        self._event(f"alert.{kind}", venue=venue, message=message)

    def _event(self, kind: str, **data: object) -> None:
        if self._journal is not None and self._journal.healthy:
            with contextlib.suppress(JournalError):
                self._journal.append_event(kind, {k: str(v) for k, v in data.items()})

    def _remember_quote(self, quote: Quote) -> None:
        self._last_quotes[(quote.venue, quote.symbol)] = quote


class _OrderContext:
    """``bound_contextvars(client_order_id=..., strategy=..., venue=...)`` for one order, at a
    fraction of its cost (it runs for every command and every report): the same structlog
    context variables, set on entry and reset by token on exit, without copying the context."""

    __slots__ = ("_vars",)

    def __init__(self) -> None:
        # structlog's own variables for these keys (created on first use, as it would).
        tokens = bind_contextvars(client_order_id=..., strategy=..., venue=...)
        self._vars = tuple(t.var for t in tokens.values())
        for token in reversed(list(tokens.values())):
            token.var.reset(token)

    def bound(self, order: Order) -> _Bound:
        return _Bound(self._vars, (order.client_order_id, order.strategy_id, order.venue))


class _Bound:
    __slots__ = ("_tokens", "_values", "_vars")

    def __init__(
        self, variables: tuple[contextvars.ContextVar[Any], ...], values: tuple[str, ...]
    ) -> None:
        self._vars = variables
        self._values = values
        self._tokens: list[contextvars.Token[Any]] = []

    def __enter__(self) -> None:
        self._tokens = [var.set(value) for var, value in zip(self._vars, self._values, strict=True)]

    def __exit__(self, *_: object) -> None:
        for token in reversed(self._tokens):
            token.var.reset(token)


def _older_than(found: VenueOrder, order: Order) -> bool:
    """Whether the venue's answer predates what its report stream already told us: fewer
    fills, or open where our copy is closed (a query in flight while the stream moved on)."""
    return found.filled_qty < order.filled_qty or (found.status.is_open and not order.is_open)


def _unsupported_type(venue: str, kind: OrderType, caps: VenueCapabilities) -> Denied:
    """Refused before risk and before sending: the venue cannot take this kind of order."""
    supported = ", ".join(sorted(t.value for t in caps.order_types))
    return Denied(
        f"venue {venue!r} does not support {kind.value} orders (it takes: {supported})",
        "UNSUPPORTED_ORDER_TYPE",
    )


def _throttle_for(adapter: VenueAdapter, clock: Clock) -> Throttle:
    caps = adapter.capabilities
    costs = {name: dict(c) for name, c in caps.endpoint_costs.items()}
    for endpoint in (
        "order.submit",
        "order.cancel",
        "order.cancel_all",
        "order.query",
        "order.open_orders",
        "account.fills",
        "account.balances",
    ):
        costs.setdefault(endpoint, {})
    return Throttle(adapter.name, clock, caps.rate_limits, costs)
