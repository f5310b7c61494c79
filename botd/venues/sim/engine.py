"""The built-in exchange's matching engine: price-time priority, fees and balances.

Deterministic by construction: ids come from counters, time is the ``ts`` each call passes in,
and there is no randomness. All amounts are exact ``Decimal``.

Accounts opened with ``unlimited=True`` (the synthetic market's liquidity provider and flow
trader) skip balance checks and never lock; their balances are still tracked so that the sum
of every asset over all accounts plus the fees collected stays constant, and may go negative.

Other accounts keep a bounded history, as a real venue does, so that orders can be queried
after they closed and missed executions recovered: the last ``closed_history`` closed orders
(filled, cancelled, expired; a rejected order never existed on the venue) and the last
``execution_history`` executions. The generator's accounts keep none: they place and cancel
thousands of orders a second in a backtest and nobody asks about them.

An account can also record what changed since it was last asked (:meth:`track_changes`,
:meth:`take_changes`), so that a persistent paper venue writes a small delta per operation
instead of the whole account; that costs nothing for an account that does not ask.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from botd.model import (
    Balance,
    BookLevel,
    ExecutionReport,
    Instrument,
    Liquidity,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
    VenueOrder,
)
from botd.model.orders import stop_problem
from botd.venues.sim.book import Book, BookSide, SimOrder

__all__ = [
    "AccountChanges",
    "AccountReport",
    "AccountSnapshot",
    "EngineResult",
    "MatchingEngine",
    "RestingOrder",
]

_ZERO = Decimal(0)
S_FILLED = OrderStatus.FILLED
S_PARTIAL = OrderStatus.PARTIALLY_FILLED
S_EXPIRED = OrderStatus.EXPIRED


@dataclass(frozen=True, slots=True)
class AccountReport:
    account: str
    report: ExecutionReport


@dataclass(slots=True)
class EngineResult:
    reports: list[AccountReport]  # in the order events happened
    trades: list[Trade]  # public trade prints


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """An open order with everything needed to put it back in the book exactly as it was."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None  # None only for a stop order still waiting for its trigger
    tif: TimeInForce
    post_only: bool
    ts: int
    filled: Decimal
    locked: Decimal
    cost: Decimal
    updated: int
    stop_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """One account, whole: balances, open orders in time priority, and its history."""

    free: dict[str, Decimal]
    locked: dict[str, Decimal]
    open: list[RestingOrder]
    closed: list[VenueOrder]  # oldest first
    executions: list[ExecutionReport]  # oldest first


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """What changed in one account since the previous :meth:`MatchingEngine.take_changes`.

    ``upserted`` are open orders that are new or changed, in venue order id (= time) order;
    ``removed`` are venue order ids no longer open; ``closed`` and ``executions`` are the
    history entries added. Balances are given whole: they are a handful of assets.
    """

    free: dict[str, Decimal]
    locked: dict[str, Decimal]
    upserted: list[RestingOrder]
    removed: list[str]
    closed: list[VenueOrder]
    executions: list[ExecutionReport]


@dataclass(slots=True)
class _Changes:
    dirty: bool = False
    touched: dict[str, SimOrder] = field(default_factory=dict)  # venue order id -> order
    closed: list[VenueOrder] = field(default_factory=list)
    executions: list[ExecutionReport] = field(default_factory=list)


class _Account:
    __slots__ = ("changes", "closed", "executions", "free", "locked", "open", "unlimited")

    def __init__(self, unlimited: bool, history: bool, execution_history: int) -> None:
        self.unlimited = unlimited
        self.free: dict[str, Decimal] = {}
        self.locked: dict[str, Decimal] = {}
        self.open: dict[str, SimOrder] = {}  # client order id -> resting order
        # None: no history kept (see the module docstring).
        self.closed: OrderedDict[str, VenueOrder] | None = OrderedDict() if history else None
        self.executions: deque[ExecutionReport] | None = (
            deque(maxlen=execution_history) if history else None
        )
        self.changes: _Changes | None = None


def _crosses(side: Side, limit: Decimal | None, price: Decimal) -> bool:
    """Would an order on ``side`` with ``limit`` (None: market) trade against ``price``?"""
    if limit is None:
        return True
    return price <= limit if side is Side.BUY else price >= limit


def _price(order: SimOrder) -> Decimal:
    assert order.price is not None
    return order.price


def _stop(order: SimOrder) -> Decimal:
    assert order.stop_price is not None
    return order.stop_price


def _filter_problem(
    inst: Instrument, qty: Decimal, price: Decimal | None, notional_price: Decimal | None
) -> tuple[str, str] | None:
    """The first trading rule broken, as (code, reason); the checks of ``Instrument.violations``
    with a stable code for each."""
    if not qty.is_finite() or qty <= 0:
        return "BAD_QTY", f"quantity {qty} must be positive"
    if inst.step_size > 0 and qty % inst.step_size != 0:
        return "STEP_SIZE", f"quantity {qty} is not a multiple of step size {inst.step_size}"
    if qty < inst.min_qty:
        return "MIN_QTY", f"quantity {qty} is below the minimum {inst.min_qty}"
    if inst.max_qty is not None and qty > inst.max_qty:
        return "MAX_QTY", f"quantity {qty} is above the maximum {inst.max_qty}"
    if price is not None and inst.tick_size > 0 and price % inst.tick_size != 0:
        return "TICK_SIZE", f"price {price} is not a multiple of tick size {inst.tick_size}"
    if notional_price is not None and qty * notional_price < inst.min_notional:
        notional = qty * notional_price
        return "MIN_NOTIONAL", f"notional {notional} is below the minimum {inst.min_notional}"
    return None


class MatchingEngine:
    """Every call returns the reports it caused, in order. For one submit: REJECTED alone; or
    EXPIRED alone (FOK short of liquidity, market order against an empty side); or ACCEPTED
    first if the order ends up resting, then per execution the taker's report followed by the
    maker's (sharing a trade id with the public print), then EXPIRED for an IOC/market
    remainder. Rejections carry ``extra["code"]`` and an empty ``venue_order_id``.
    Unknown accounts raise KeyError; everything else answers with reports."""

    def __init__(
        self,
        venue: str,
        instruments: Iterable[Instrument],
        *,
        maker_fee: Decimal,
        taker_fee: Decimal,
        closed_history: int = 10_000,
        execution_history: int = 50_000,
    ) -> None:
        self._venue = venue
        self._closed_history = closed_history
        self._execution_history = execution_history
        self._instruments = {i.symbol: i for i in instruments}
        self._books = {symbol: Book() for symbol in self._instruments}
        self._maker_fee = maker_fee
        self._taker_fee = taker_fee
        self._accounts: dict[str, _Account] = {}
        self._fees: dict[str, Decimal] = {}
        self._order_seq = 0
        self._trade_seq = 0
        # Stop orders waiting for their trigger, off the book: symbol -> venue order id ->
        # order (insertion order is time priority); and the last trade price of each symbol
        # as far as trigger_stops() has been shown trades.
        self._stops: dict[str, dict[str, SimOrder]] = {}
        self._last: dict[str, Decimal] = {}

    @property
    def venue(self) -> str:
        return self._venue

    @property
    def fees_collected(self) -> dict[str, Decimal]:
        """Total fees charged, per asset (a copy)."""
        return dict(self._fees)

    def instrument(self, symbol: str) -> Instrument:
        return self._instruments[symbol]

    # -- accounts ---------------------------------------------------------------------------

    def open_account(
        self,
        account: str,
        balances: Mapping[str, Decimal] | None = None,
        *,
        unlimited: bool = False,
        history: bool | None = None,
    ) -> None:
        """``history`` defaults to ``not unlimited``."""
        if account in self._accounts:
            raise ValueError(f"account {account!r} already exists")
        keep = not unlimited if history is None else history
        acct = _Account(unlimited, keep, self._execution_history)
        self._accounts[account] = acct
        for asset, amount in (balances or {}).items():
            self.deposit(account, asset, amount)

    def deposit(self, account: str, asset: str, amount: Decimal) -> None:
        """Add ``amount`` (negative: withdraw) to the free balance."""
        acct = self._account(account)
        new = acct.free.get(asset, _ZERO) + amount
        if new < 0 and not acct.unlimited:
            raise ValueError(f"account {account!r}: {asset} free balance would become {new}")
        acct.free[asset] = new
        if acct.changes is not None:
            acct.changes.dirty = True

    def free_balance(self, account: str, asset: str) -> Decimal:
        """One asset's free balance, without building every :class:`Balance`."""
        return self._account(account).free.get(asset, _ZERO)

    def total_balance(self, account: str, asset: str) -> Decimal:
        """One asset's free plus locked balance, without building every :class:`Balance`."""
        acct = self._account(account)
        return acct.free.get(asset, _ZERO) + acct.locked.get(asset, _ZERO)

    def balances(self, account: str) -> dict[str, Balance]:
        acct = self._account(account)
        assets = dict.fromkeys([*acct.free, *acct.locked])
        return {a: Balance(a, acct.free.get(a, _ZERO), acct.locked.get(a, _ZERO)) for a in assets}

    def open_orders(self, account: str) -> list[ExecutionReport]:
        """Each open order's current state, oldest first. ``extra`` carries the order's terms
        (side, type, tif, qty, price, filled_qty, post_only) as strings."""
        out = []
        for o in self._account(account).open.values():
            status = OrderStatus.ACCEPTED if o.filled == 0 else OrderStatus.PARTIALLY_FILLED
            extra = {
                "side": o.side.value,
                "type": o.type.value,
                "tif": o.tif.value,
                "qty": str(o.qty),
                "price": "" if o.price is None else str(o.price),
                "filled_qty": str(o.filled),
                "post_only": str(o.post_only).lower(),
            }
            if o.stop_price is not None:
                extra["type"] = _reported_type(o).value
                extra["stop_price"] = str(o.stop_price)
            out.append(self._report(o, status, o.ts, extra=extra))
        return out

    def open_venue_orders(self, account: str, symbol: str | None = None) -> list[VenueOrder]:
        """Each open order of ``account`` (in ``symbol`` only, unless None), oldest first."""
        return [
            self._open_view(o)
            for o in self._account(account).open.values()
            if symbol is None or o.symbol == symbol
        ]

    def order_state(self, account: str, client_order_id: str) -> VenueOrder | None:
        """The venue's view of an order: open, or closed and still in the history. None for
        an order the venue never held (rejected, never sent, or evicted from the history)."""
        acct = self._account(account)
        order = acct.open.get(client_order_id)
        if order is not None:
            return self._open_view(order)
        return None if acct.closed is None else acct.closed.get(client_order_id)

    def executions(self, account: str, symbol: str, since_ns: int) -> list[ExecutionReport]:
        """Executions of ``account`` in ``symbol`` at or after ``since_ns``, oldest first."""
        history = self._history(account).executions
        assert history is not None
        return [r for r in history if r.symbol == symbol and r.ts_event >= since_ns]

    # -- persistence ----------------------------------------------------------------------------

    @property
    def counters(self) -> tuple[int, int]:
        """The last venue order id and trade id handed out."""
        return self._order_seq, self._trade_seq

    def restore_counters(self, order_seq: int, trade_seq: int) -> None:
        """Continue ids after a restart: they never go backwards, so they never repeat."""
        self._order_seq = max(self._order_seq, order_seq)
        self._trade_seq = max(self._trade_seq, trade_seq)

    def track_changes(self, account: str) -> None:
        """Start recording what changes in ``account`` for :meth:`take_changes`."""
        self._account(account).changes = _Changes()

    def has_changes(self, account: str) -> bool:
        changes = self._account(account).changes
        return changes is not None and changes.dirty

    def take_changes(self, account: str) -> AccountChanges:
        acct = self._account(account)
        changes = acct.changes
        if changes is None:
            raise ValueError(f"account {account!r} does not track changes")
        acct.changes = _Changes()
        upserted: list[RestingOrder] = []
        removed: list[str] = []
        for voi, order in sorted(changes.touched.items(), key=lambda kv: int(kv[0])):
            if acct.open.get(order.client_order_id) is order:
                upserted.append(_resting(order))
            else:
                removed.append(voi)
        return AccountChanges(
            dict(acct.free),
            dict(acct.locked),
            upserted,
            removed,
            changes.closed,
            changes.executions,
        )

    def export_account(self, account: str) -> AccountSnapshot:
        acct = self._history(account)
        assert acct.closed is not None
        assert acct.executions is not None
        return AccountSnapshot(
            dict(acct.free),
            dict(acct.locked),
            [_resting(o) for o in acct.open.values()],
            list(acct.closed.values()),
            list(acct.executions),
        )

    def restore_account(self, account: str, snapshot: AccountSnapshot) -> None:
        """Re-create ``account`` exactly as exported: balances as they were (free and locked),
        open orders back in the book with their ids, remaining quantity and, among
        themselves, their time priority. Meant for an engine whose books are still empty; an
        order that would cross the book raises ValueError rather than trade silently."""
        if account in self._accounts:
            raise ValueError(f"account {account!r} already exists")
        acct = _Account(False, True, self._execution_history)
        acct.free.update(snapshot.free)
        acct.locked.update(snapshot.locked)
        for r in snapshot.open:
            if r.symbol not in self._books:
                raise ValueError(f"open order {r.client_order_id}: unknown symbol {r.symbol}")
            if r.client_order_id in acct.open:
                raise ValueError(f"two open orders use {r.client_order_id}")
            if not 0 <= r.filled < r.qty:
                raise ValueError(f"open order {r.client_order_id}: filled {r.filled} of {r.qty}")
            waiting = r.type is OrderType.STOP or r.type is OrderType.STOP_LIMIT
            if waiting and r.stop_price is None:
                raise ValueError(f"stop order {r.client_order_id} has no stop price")
            if not waiting and r.price is None:
                raise ValueError(f"open order {r.client_order_id} has no price")
            best = self._books[r.symbol].side(r.side.opposite).best()
            if not waiting and best is not None and _crosses(r.side, r.price, best.price):
                raise ValueError(f"open order {r.client_order_id} would cross the book")
            order = SimOrder(
                account, r.client_order_id, r.venue_order_id, r.symbol, r.side, r.type, r.qty,
                r.price, r.tif, r.post_only, r.ts, r.filled, r.locked, cost=r.cost,
                updated=r.updated, stop_price=r.stop_price,
            )  # fmt: skip
            acct.open[r.client_order_id] = order
            if waiting:
                self._stops.setdefault(r.symbol, {})[r.venue_order_id] = order
            else:
                self._books[r.symbol].side(r.side).add(order)
        assert acct.closed is not None
        assert acct.executions is not None
        for closed in snapshot.closed:
            self._keep_closed(acct.closed, closed)
        acct.executions.extend(snapshot.executions)
        self._accounts[account] = acct

    # -- market data --------------------------------------------------------------------------

    def top_of_book(self, symbol: str) -> tuple[BookLevel | None, BookLevel | None]:
        book = self._books[symbol]
        bid, ask = book.bids.best(), book.asks.best()
        return (
            None if bid is None else BookLevel(bid.price, bid.size),
            None if ask is None else BookLevel(ask.price, ask.size),
        )

    def best_prices(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        """The best bid and ask prices alone: :meth:`top_of_book` without building levels,
        for callers that ask on every market event (the backtest venue)."""
        book = self._books[symbol]
        bid, ask = book.bids.best(), book.asks.best()
        return (None if bid is None else bid.price, None if ask is None else ask.price)

    def depth(self, symbol: str, levels: int) -> tuple[list[BookLevel], list[BookLevel]]:
        book = self._books[symbol]

        def take(side: BookSide) -> list[BookLevel]:
            out: list[BookLevel] = []
            for level in side.levels():
                if len(out) >= levels:
                    break
                out.append(BookLevel(level.price, level.size))
            return out

        return take(book.bids), take(book.asks)

    # -- orders -------------------------------------------------------------------------------

    def submit(
        self,
        account: str,
        *,
        client_order_id: str,
        symbol: str,
        side: Side,
        type: OrderType,
        qty: Decimal,
        price: Decimal | None,
        tif: TimeInForce,
        post_only: bool,
        ts: int,
        stop_price: Decimal | None = None,
    ) -> EngineResult:
        acct = self._account(account)

        def reject(code: str, reason: str) -> EngineResult:
            return self._rejected(account, symbol, client_order_id, ts, code, reason)

        inst = self._instruments.get(symbol)
        if inst is None:
            return reject("UNKNOWN_SYMBOL", f"unknown symbol {symbol}")
        if client_order_id in acct.open:
            return reject("DUPLICATE_CLIENT_ID", f"an open order already uses {client_order_id}")
        if type is OrderType.STOP or type is OrderType.STOP_LIMIT or stop_price is not None:
            return self._submit_stop(
                acct, account, inst, client_order_id, side, type, qty, price, tif, post_only,
                stop_price, ts,
            )  # fmt: skip
        market = type is OrderType.MARKET
        if market:
            if post_only:
                return reject("BAD_ORDER", "post-only needs a limit order")
            limit = None  # a price sent with a market order is ignored, not enforced
        else:
            if price is None or not price.is_finite() or price <= 0:
                return reject("BAD_PRICE", f"limit price {price} must be a positive number")
            limit = price
        book = self._books[symbol]
        opposite = book.side(side.opposite)
        best = opposite.best()
        reference = limit if limit is not None else (best.price if best is not None else None)
        problem = _filter_problem(inst, qty, limit, reference)
        if problem is not None:
            return reject(*problem)
        if post_only and best is not None and _crosses(side, limit, best.price):
            return reject(
                "POST_ONLY_WOULD_CROSS", f"post-only {side.value} at {limit} would trade now"
            )

        # What the order must reserve: quote for a buy (at its limit, or the cost of walking
        # the book for a market buy), base for a sell.
        lock_asset = inst.quote if side is Side.BUY else inst.base
        if acct.unlimited:
            need = _ZERO
        elif side is Side.SELL:
            need = qty
        else:
            need = qty * limit if limit is not None else self._market_cost(opposite, qty)
        if need and acct.free.get(lock_asset, _ZERO) < need:
            return reject(
                "INSUFFICIENT_BALANCE",
                f"needs {need} {lock_asset}, {acct.free.get(lock_asset, _ZERO)} free",
            )

        self._order_seq += 1
        order = SimOrder(
            account, client_order_id, str(self._order_seq), symbol, side, type, qty, limit, tif,
            post_only, ts,
        )  # fmt: skip
        result = EngineResult([], [])
        order.updated = ts
        if (market and best is None) or (
            tif is TimeInForce.FOK and self._available(opposite, side, limit, qty) < qty
        ):
            self._remember(acct, order, S_EXPIRED, ts)
            result.reports.append(AccountReport(account, self._report(order, S_EXPIRED, ts)))
            return result

        if need:
            self._lock(acct, lock_asset, need)
            order.locked = need
        acct.open[client_order_id] = order
        self._match(order, inst, opposite, result, ts)
        if order.filled == order.qty:
            self._close(acct, order, inst, S_FILLED, ts)
        elif not market and tif is TimeInForce.GTC:
            book.side(side).add(order)
            if acct.changes is not None:
                acct.changes.dirty = True
                acct.changes.touched[order.venue_order_id] = order
            # ACCEPTED precedes the fills of this same call; it describes the order before them.
            accepted = self._report(order, OrderStatus.ACCEPTED, ts)
            result.reports.insert(0, AccountReport(account, accepted))
        else:
            self._close(acct, order, inst, S_EXPIRED, ts)
            result.reports.append(AccountReport(account, self._report(order, S_EXPIRED, ts)))
        return result

    def cancel(self, account: str, symbol: str, client_order_id: str, ts: int) -> EngineResult:
        acct = self._account(account)
        if symbol not in self._instruments:
            return self._rejected(
                account, symbol, client_order_id, ts, "UNKNOWN_SYMBOL", f"unknown symbol {symbol}"
            )
        order = acct.open.get(client_order_id)
        if order is None or order.symbol != symbol:
            return self._rejected(
                account, symbol, client_order_id, ts, "UNKNOWN_ORDER",
                f"no open order {client_order_id} on {symbol}",
            )  # fmt: skip
        return EngineResult([self._cancel(acct, account, order, ts)], [])

    def cancel_all(self, account: str, symbol: str | None, ts: int) -> EngineResult:
        """Cancel every open order of ``account`` (on ``symbol`` only, unless None), oldest
        first. Nothing to cancel is not an error: the result is empty."""
        acct = self._account(account)
        doomed = [o for o in acct.open.values() if symbol is None or o.symbol == symbol]
        return EngineResult([self._cancel(acct, account, o, ts) for o in doomed], [])

    # -- stop orders ------------------------------------------------------------------------

    def last_price(self, symbol: str) -> Decimal | None:
        """The last trade price :meth:`trigger_stops` saw in ``symbol``; None before any."""
        return self._last.get(symbol)

    def waiting_stops(self, symbol: str | None = None) -> int:
        """How many stop orders wait for their trigger (in ``symbol`` only, unless None)."""
        if symbol is not None:
            return len(self._stops.get(symbol, ()))
        return sum(len(w) for w in self._stops.values())

    def trigger_stops(self, result: EngineResult, ts: int) -> EngineResult:
        """Trigger every waiting stop that the trades of ``result`` reach, in the order the
        trades happened, and append what the triggered orders did to ``result`` (their trades
        may trigger further stops in turn). A venue that offers stops calls this with the
        result of every call that may have traded. Returns ``result``."""
        trades = result.trades
        i = 0
        while i < len(trades):
            trade = trades[i]
            i += 1
            self._last[trade.symbol] = trade.price
            if self._stops.get(trade.symbol):
                self.trigger_at(trade.symbol, trade.price, ts, result)
        return result

    def trigger_at(
        self, symbol: str, price: Decimal, ts: int, result: EngineResult | None = None
    ) -> EngineResult:
        """The last price of ``symbol`` is now ``price``: trigger the stops it reaches, oldest
        first, each becoming a market (stop) or limit (stop-limit) order with the same ids."""
        out = result if result is not None else EngineResult([], [])
        waiting = self._stops.get(symbol)
        if not waiting:
            return out
        due = [o for o in waiting.values() if _stop_reached(o.side, _stop(o), price)]
        for order in due:
            if waiting.get(order.venue_order_id) is order:
                self._trigger(order, out, ts)
        return out

    def _submit_stop(
        self,
        acct: _Account,
        account: str,
        inst: Instrument,
        client_order_id: str,
        side: Side,
        type: OrderType,
        qty: Decimal,
        price: Decimal | None,
        tif: TimeInForce,
        post_only: bool,
        stop_price: Decimal | None,
        ts: int,
    ) -> EngineResult:
        symbol = inst.symbol

        def reject(code: str, reason: str) -> EngineResult:
            return self._rejected(account, symbol, client_order_id, ts, code, reason)

        problem = stop_problem(type, price, stop_price)
        if problem is not None:
            return reject("BAD_ORDER", problem)
        assert stop_price is not None
        if not stop_price.is_finite() or stop_price <= 0:
            return reject("BAD_PRICE", f"stop price {stop_price} must be a positive number")
        if price is not None and (not price.is_finite() or price <= 0):
            return reject("BAD_PRICE", f"limit price {price} must be a positive number")
        if post_only:
            return reject("BAD_ORDER", f"a {type.value} order cannot be post-only")
        if inst.tick_size > 0 and stop_price % inst.tick_size != 0:
            return reject(
                "TICK_SIZE",
                f"stop price {stop_price} is not a multiple of tick size {inst.tick_size}",
            )
        reference = price if price is not None else stop_price
        found = _filter_problem(inst, qty, price, reference)
        if found is not None:
            return reject(*found)
        last = self._last.get(symbol)
        if last is not None and _stop_reached(side, stop_price, last):
            return reject(
                "WOULD_TRIGGER",
                f"Order would immediately trigger: {side.value} stop {stop_price}, "
                f"last price {last}",
            )
        # Reserved while waiting, as a venue does: the base for a sell, the quote at the
        # limit (stop-limit) or the stop price (stop) for a buy. Released when it triggers.
        lock_asset = inst.quote if side is Side.BUY else inst.base
        need = _ZERO if acct.unlimited else qty if side is Side.SELL else qty * reference
        if need and acct.free.get(lock_asset, _ZERO) < need:
            return reject(
                "INSUFFICIENT_BALANCE",
                f"needs {need} {lock_asset}, {acct.free.get(lock_asset, _ZERO)} free",
            )
        self._order_seq += 1
        order = SimOrder(
            account, client_order_id, str(self._order_seq), symbol, side, type, qty, price, tif,
            False, ts, updated=ts, stop_price=stop_price,
        )  # fmt: skip
        if need:
            self._lock(acct, lock_asset, need)
            order.locked = need
        acct.open[client_order_id] = order
        self._stops.setdefault(symbol, {})[order.venue_order_id] = order
        if acct.changes is not None:
            acct.changes.dirty = True
            acct.changes.touched[order.venue_order_id] = order
        report = self._report(order, OrderStatus.ACCEPTED, ts)
        return EngineResult([AccountReport(account, report)], [])

    def _trigger(self, order: SimOrder, out: EngineResult, ts: int) -> None:
        """A waiting stop's trigger was reached: it becomes a market or limit order now."""
        acct = self._accounts[order.account]
        inst = self._instruments[order.symbol]
        del self._stops[order.symbol][order.venue_order_id]
        if order.locked:  # what it reserved while waiting; it reserves afresh below
            asset = inst.quote if order.side is Side.BUY else inst.base
            acct.locked[asset] -= order.locked
            acct.free[asset] += order.locked
            order.locked = _ZERO
        order.type = order.type.triggered
        order.updated = ts
        if acct.changes is not None:
            acct.changes.dirty = True
            acct.changes.touched[order.venue_order_id] = order
        side, limit, qty = order.side, order.price, order.qty
        market = limit is None
        book = self._books[order.symbol]
        opposite = book.side(side.opposite)
        best = opposite.best()

        def expire(reason: str) -> None:
            self._close(acct, order, inst, S_EXPIRED, ts)
            report = self._report(order, S_EXPIRED, ts)
            out.reports.append(AccountReport(order.account, replace(report, reason=reason)))

        if market and best is None:
            return expire("stop triggered with no liquidity on the other side")
        if order.tif is TimeInForce.FOK and self._available(opposite, side, limit, qty) < qty:
            return expire("stop triggered; FOK could not fill in full")
        lock_asset = inst.quote if side is Side.BUY else inst.base
        if acct.unlimited:
            need = _ZERO
        elif side is Side.SELL:
            need = qty
        else:
            need = qty * limit if limit is not None else self._market_cost(opposite, qty)
        if need and acct.free.get(lock_asset, _ZERO) < need:
            free = acct.free.get(lock_asset, _ZERO)
            return expire(f"stop triggered: needs {need} {lock_asset}, {free} free")
        if need:
            self._lock(acct, lock_asset, need)
            order.locked = need
        self._match(order, inst, opposite, out, ts)
        if order.filled == order.qty:
            self._close(acct, order, inst, S_FILLED, ts)
        elif not market and order.tif is TimeInForce.GTC:
            book.side(side).add(order)  # a triggered stop-limit rests as a limit order
        else:
            expire("")

    # -- internals ----------------------------------------------------------------------------

    def _account(self, account: str) -> _Account:
        try:
            return self._accounts[account]
        except KeyError:
            raise KeyError(f"unknown account {account!r}") from None

    def _history(self, account: str) -> _Account:
        acct = self._account(account)
        if acct.closed is None:
            raise ValueError(f"account {account!r} keeps no history")
        return acct

    def _open_view(self, o: SimOrder) -> VenueOrder:
        status = OrderStatus.ACCEPTED if o.filled == 0 else OrderStatus.PARTIALLY_FILLED
        return self._venue_order(o, status, o.updated)

    def _venue_order(self, o: SimOrder, status: OrderStatus, ts: int) -> VenueOrder:
        return VenueOrder(
            venue=self._venue,
            symbol=o.symbol,
            client_order_id=o.client_order_id,
            venue_order_id=o.venue_order_id,
            side=o.side,
            type=o.type if o.stop_price is None else _reported_type(o),
            qty=o.qty,
            price=o.price,
            status=status,
            filled_qty=o.filled,
            avg_price=o.cost / o.filled if o.filled else None,
            ts_event=ts,
            stop_price=o.stop_price,
        )

    def _keep_closed(self, closed: OrderedDict[str, VenueOrder], order: VenueOrder) -> None:
        # A client id may be reused once its order closed (Binance allows it): the newest wins.
        closed.pop(order.client_order_id, None)
        closed[order.client_order_id] = order
        if len(closed) > self._closed_history:
            closed.popitem(last=False)

    def _remember(self, acct: _Account, order: SimOrder, status: OrderStatus, ts: int) -> None:
        """Record a closed order in the history of an account that keeps one."""
        order.updated = ts
        if acct.closed is None:
            return
        view = self._venue_order(order, status, ts)
        self._keep_closed(acct.closed, view)
        changes = acct.changes
        if changes is not None:
            changes.dirty = True
            changes.touched[order.venue_order_id] = order
            changes.closed.append(view)

    def _cancel(self, acct: _Account, account: str, order: SimOrder, ts: int) -> AccountReport:
        if order.live:
            self._books[order.symbol].side(order.side).remove(order)
        else:  # a stop still waiting for its trigger
            self._stops[order.symbol].pop(order.venue_order_id, None)
        self._close(acct, order, self._instruments[order.symbol], OrderStatus.CANCELED, ts)
        return AccountReport(account, self._report(order, OrderStatus.CANCELED, ts))

    def _rejected(
        self, account: str, symbol: str, client_order_id: str, ts: int, code: str, reason: str
    ) -> EngineResult:
        report = ExecutionReport(
            venue=self._venue,
            symbol=symbol,
            client_order_id=client_order_id,
            venue_order_id="",
            status=OrderStatus.REJECTED,
            ts_event=ts,
            reason=reason,
            extra={"code": code},
        )
        return EngineResult([AccountReport(account, report)], [])

    def _report(
        self,
        order: SimOrder,
        status: OrderStatus,
        ts: int,
        extra: dict[str, str] | None = None,
    ) -> ExecutionReport:
        return ExecutionReport(
            venue=self._venue,
            symbol=order.symbol,
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id,
            status=status,
            ts_event=ts,
            extra=extra or {},
        )

    @staticmethod
    def _market_cost(opposite: BookSide, qty: Decimal) -> Decimal:
        cost = _ZERO
        for level in opposite.levels():
            take = min(qty, level.size)
            cost += take * level.price
            qty -= take
            if qty == 0:
                break
        return cost

    @staticmethod
    def _available(opposite: BookSide, side: Side, limit: Decimal | None, qty: Decimal) -> Decimal:
        total = _ZERO
        for level in opposite.levels():
            if total >= qty or not _crosses(side, limit, level.price):
                break
            total += level.size
        return total

    def _match(
        self, taker: SimOrder, inst: Instrument, opposite: BookSide, out: EngineResult, ts: int
    ) -> None:
        side, limit = taker.side, taker.price
        while taker.filled < taker.qty:
            level = opposite.best()
            if level is None or not _crosses(side, limit, level.price):
                break
            maker = level.front()
            qty = min(taker.qty - taker.filled, maker.qty - maker.filled)
            price = maker.price
            assert price is not None
            opposite.fill_front(level, maker, qty)
            taker.filled += qty
            notional = qty * price
            self._trade_seq += 1
            trade_id = str(self._trade_seq)
            out.trades.append(
                Trade(self._venue, inst.symbol, price, qty, side, trade_id, ts, ts)
            )  # fmt: skip
            for order, liquidity in ((taker, Liquidity.TAKER), (maker, Liquidity.MAKER)):
                acct = self._accounts[order.account]
                order.cost += notional
                order.updated = ts
                fee, fee_asset = self._settle(acct, inst, order, qty, price, liquidity)
                status = S_FILLED if order.filled == order.qty else S_PARTIAL
                report = ExecutionReport(
                    venue=self._venue,
                    symbol=inst.symbol,
                    client_order_id=order.client_order_id,
                    venue_order_id=order.venue_order_id,
                    status=status,
                    ts_event=ts,
                    last_qty=qty,
                    last_price=price,
                    fee=fee,
                    fee_asset=fee_asset,
                    liquidity=liquidity,
                    trade_id=trade_id,
                )
                out.reports.append(AccountReport(order.account, report))
                if acct.executions is not None:
                    acct.executions.append(report)
                    changes = acct.changes
                    if changes is not None:
                        changes.dirty = True
                        changes.touched[order.venue_order_id] = order
                        changes.executions.append(report)
                if order is maker and status is S_FILLED:
                    self._close(acct, maker, inst, S_FILLED, ts)

    def _settle(
        self,
        acct: _Account,
        inst: Instrument,
        order: SimOrder,
        qty: Decimal,
        price: Decimal,
        liquidity: Liquidity,
    ) -> tuple[Decimal, str]:
        """Move the funds of one side of an execution; the fee comes out of what it receives."""
        rate = self._maker_fee if liquidity is Liquidity.MAKER else self._taker_fee
        notional = qty * price
        if order.side is Side.BUY:
            paid_asset, paid, got_asset, got = inst.quote, notional, inst.base, qty
            # A limit buy reserved its limit price; an execution at a better price hands the
            # difference back. A market buy reserved exactly what it pays.
            reserved = notional if order.type is OrderType.MARKET else qty * _price(order)
        else:
            paid_asset, paid, got_asset, got = inst.base, qty, inst.quote, notional
            reserved = qty
        free = acct.free
        if acct.unlimited:
            free[paid_asset] = free.get(paid_asset, _ZERO) - paid
        else:
            order.locked -= reserved
            acct.locked[paid_asset] -= reserved
            free[paid_asset] = free.get(paid_asset, _ZERO) + (reserved - paid)
        fee = got * rate
        free[got_asset] = free.get(got_asset, _ZERO) + (got - fee)
        self._fees[got_asset] = self._fees.get(got_asset, _ZERO) + fee
        return fee, got_asset

    @staticmethod
    def _lock(acct: _Account, asset: str, amount: Decimal) -> None:
        acct.free[asset] = acct.free.get(asset, _ZERO) - amount
        acct.locked[asset] = acct.locked.get(asset, _ZERO) + amount

    def _close(
        self, acct: _Account, order: SimOrder, inst: Instrument, status: OrderStatus, ts: int
    ) -> None:
        """The order is done (filled, cancelled, expired): hand back what it still reserves."""
        del acct.open[order.client_order_id]
        if order.locked:
            asset = inst.quote if order.side is Side.BUY else inst.base
            acct.locked[asset] -= order.locked
            acct.free[asset] += order.locked
            order.locked = _ZERO
        if acct.closed is not None:  # skip the call for the generator's many orders
            self._remember(acct, order, status, ts)

    def _check_invariants(self) -> None:
        """Raise AssertionError if the books or the balances are inconsistent (for tests)."""
        for symbol, book in self._books.items():
            book.bids.check()
            book.asks.check()
            bid, ask = book.bids.best(), book.asks.best()
            if bid is not None and ask is not None and bid.price >= ask.price:
                raise AssertionError(f"{symbol} book is crossed: {bid.price} >= {ask.price}")
            for side in (book.bids, book.asks):
                for level in side.levels():
                    for o in level.orders:
                        if (
                            o.live
                            and self._accounts[o.account].open.get(o.client_order_id) is not o
                        ):
                            raise AssertionError(f"resting order {o.venue_order_id} is not open")
        for name, acct in self._accounts.items():
            expected: dict[str, Decimal] = {}
            for o in acct.open.values():
                waiting = o.type is OrderType.STOP or o.type is OrderType.STOP_LIMIT
                if waiting and self._stops.get(o.symbol, {}).get(o.venue_order_id) is not o:
                    raise AssertionError(f"{name}: stop {o.client_order_id} is not waiting")
                if not o.live and not waiting:
                    raise AssertionError(f"{name}: open order {o.client_order_id} is not resting")
                inst = self._instruments[o.symbol]
                asset = inst.quote if o.side is Side.BUY else inst.base
                expected[asset] = expected.get(asset, _ZERO) + o.locked
            if acct.unlimited:
                continue
            for asset, amount in acct.free.items():
                if amount < 0:
                    raise AssertionError(f"{name}: free {asset} is negative: {amount}")
            for asset in {*acct.locked, *expected}:
                locked = acct.locked.get(asset, _ZERO)
                if locked < 0 or locked != expected.get(asset, _ZERO):
                    raise AssertionError(
                        f"{name}: locked {asset} {locked} != open orders' {expected.get(asset)}"
                    )


def _resting(o: SimOrder) -> RestingOrder:
    assert o.price is not None or o.stop_price is not None
    return RestingOrder(
        o.client_order_id, o.venue_order_id, o.symbol, o.side, o.type, o.qty, o.price, o.tif,
        o.post_only, o.ts, o.filled, o.locked, o.cost, o.updated, o.stop_price,
    )  # fmt: skip


def _reported_type(o: SimOrder) -> OrderType:
    """The type the owner sent: a triggered stop is still a stop (or stop-limit) to them."""
    if o.stop_price is None:
        return o.type
    return OrderType.STOP_LIMIT if o.type.has_limit else OrderType.STOP


def _stop_reached(side: Side, stop: Decimal, price: Decimal) -> bool:
    """Does a last price of ``price`` trigger a ``side`` stop at ``stop``? A buy stop triggers
    at or above its stop price, a sell stop at or below: reaching it is enough."""
    return price >= stop if side is Side.BUY else price <= stop
