"""Pre-trade risk: every intent passes here before the gateway may send it.

The engine is synchronous and owns no I/O: it reads market and order state through a
:class:`RiskView`, time through the injected clock, and hands its own state (trading states, kill
switch, daily PnL) to ``on_change`` so the app can persist it. Cancels never come here: reducing
exposure must always be possible, even when everything else is halted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

import structlog

from botd.clock import NS_PER_SECOND, Clock
from botd.model import Fill, Instrument, Order, OrderIntent, OrderType, Position, Quote, Side

__all__ = [
    "Approved",
    "Denied",
    "RiskDecision",
    "RiskEngine",
    "RiskLimits",
    "RiskView",
    "TradingState",
]

_ZERO = Decimal(0)
_DAY_NS = 86_400 * NS_PER_SECOND
_RATE_WINDOW_NS = 60 * NS_PER_SECOND
_EPOCH = date(1970, 1, 1)
_SNAPSHOT_VERSION = 1

# Why a scope is in its state: only a state the engine set itself for a daily loss may be
# lifted by the engine (at the next UTC day); everything else waits for an operator.
_OPERATOR = "operator"
_DAILY_LOSS = "daily_loss"
_KILL = "kill"


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that shrink the strategy's position
    HALTED = "halted"  # nothing new; cancels still go out

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits for one scope (a strategy, or everything). ``None`` means no limit; a value exactly
    at a limit is allowed."""

    # qty x price in the quote asset; market orders are priced at the far side of the last quote.
    max_order_notional: Decimal | None = None
    # |position + this order + same-side open orders| in the base asset, per instrument.
    max_position: Decimal | None = None
    max_open_orders: int | None = None
    # Approved intents in any rolling 60 s (monotonic clock).
    max_orders_per_minute: int | None = None
    # Realized PnL since 00:00 UTC below -this: REDUCING for the scope until the next UTC day.
    max_daily_loss: Decimal | None = None
    # Fat-finger guard: a limit price within ±band of the quote mid. While set, every order also
    # needs a quote, at most max_quote_age_s old (by its ts_recv).
    price_band: Decimal | None = Decimal("0.05")  # how far through the market a limit may be
    max_quote_age_s: float | None = 30.0


@dataclass(frozen=True, slots=True)
class Approved:
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None = None  # on the tick grid; stop and stop-limit orders only


@dataclass(frozen=True, slots=True)
class Denied:
    reason: str
    code: str


RiskDecision = Approved | Denied


class RiskView(Protocol):
    def last_quote(self, venue: str, symbol: str) -> Quote | None: ...

    def instrument(self, venue: str, symbol: str) -> Instrument:
        """Raises ValueError if the venue or symbol is unknown."""
        ...

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position: ...

    def open_orders(self, strategy_id: str | None = None) -> list[Order]: ...


@dataclass(frozen=True, slots=True)
class _StateEntry:
    state: TradingState
    reason: str
    cause: str
    ts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "cause": self.cause,
            "ts": self.ts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _StateEntry:
        return cls(
            TradingState(data["state"]), str(data["reason"]), str(data["cause"]), int(data["ts"])
        )


@dataclass(frozen=True, slots=True)
class _Scope:
    """One set of limits and the orders it counts: one strategy's, or all (``strategy_id=None``)."""

    limits: RiskLimits
    strategy_id: str | None

    @property
    def label(self) -> str:
        return "globally" if self.strategy_id is None else f"for strategy {self.strategy_id!r}"


class _Deny(Exception):
    """Control flow inside :meth:`RiskEngine.check`; never escapes it."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RiskEngine:
    def __init__(
        self,
        *,
        clock: Clock,
        view: RiskView,
        limits: RiskLimits = RiskLimits(),  # frozen: sharing the default is safe
        strategy_limits: Mapping[str, RiskLimits] | None = None,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._clock = clock
        self._view = view
        self._limits = limits
        self._strategy_limits = dict(strategy_limits or {})
        self._log = log or structlog.get_logger("botd.risk")
        self.on_change: Callable[[dict[str, Any]], None] | None = None
        self._killed = False
        self._global = _StateEntry(TradingState.ACTIVE, "", _OPERATOR, 0)
        self._venues: dict[str, _StateEntry] = {}
        self._strategies: dict[str, _StateEntry] = {}
        self._day = clock.time_ns() // _DAY_NS
        self._pnl_global = _ZERO
        self._pnl: dict[str, Decimal] = {}
        # Every strategy that ever traded, so the global position sums all of them; persisted so a
        # restart still counts positions opened before it.
        self._known: set[str] = set(self._strategy_limits)
        self._sent_global: deque[int] = deque()
        self._sent: dict[str, deque[int]] = {}

    # -- the check -----------------------------------------------------------------------------
    def check(self, intent: OrderIntent) -> RiskDecision:
        self._roll_day()
        try:
            qty, price, stop = self._check(intent)
        except _Deny as deny:
            self._log.debug(
                "intent denied", strategy=intent.strategy_id, code=deny.code, reason=deny.reason
            )
            return Denied(deny.reason, deny.code)
        now = self._clock.monotonic_ns()
        for scope in self._scopes(intent):
            if scope.limits.max_orders_per_minute is not None:
                self._window(scope).append(now)
        self._known.add(intent.strategy_id)
        return Approved(qty, price, stop)

    def _check(self, intent: OrderIntent) -> tuple[Decimal, Decimal | None, Decimal | None]:
        self._check_state(intent)
        try:
            inst = self._view.instrument(intent.venue, intent.symbol)
        except ValueError as exc:
            raise _Deny("UNKNOWN_INSTRUMENT", str(exc)) from None
        quote = self._view.last_quote(intent.venue, intent.symbol)
        if quote is not None and (quote.bid <= 0 or quote.ask <= 0):
            quote = None  # a one-sided book gives neither a mid nor a fill price
        # What a market order is expected to pay: the far side of the book.
        market_ref = None if quote is None else quote.ask if intent.side is Side.BUY else quote.bid
        stop = None
        if intent.type.is_stop:
            stop = self._quantize_stop(intent, inst, quote)
            # Once triggered a stop trades around its stop price, not today's market.
            market_ref = stop
        qty, price = self._quantize(intent, inst, market_ref)
        scopes = self._scopes(intent)
        for scope in scopes:
            self._check_band(scope, intent, price, quote, stop)
        for scope in scopes:
            self._check_notional(
                scope, intent, inst, qty, price if price is not None else market_ref
            )
        for scope in scopes:
            self._check_position(scope, intent, inst, qty)
        for scope in scopes:
            self._check_open_orders(scope)
        for scope in scopes:
            self._check_rate(scope)
        for scope in scopes:
            self._check_daily_loss(scope, intent, qty)
        return qty, price, stop

    def _quantize_stop(self, intent: OrderIntent, inst: Instrument, quote: Quote | None) -> Decimal:
        """The stop price on the tick grid, rounded away from the market (a buy stop up, a sell
        stop down: it never triggers sooner than asked). Refused if the order would trigger at
        once (a buy stop at or below the ask, a sell stop at or above the bid), as Binance
        refuses it (-2010 "Order would immediately trigger")."""
        name = f"{inst.venue}:{inst.symbol}"
        stop = intent.stop_price
        if stop is None:
            raise _Deny("FILTER", f"a {intent.type.value} order needs a stop price")
        if not stop.is_finite() or stop <= 0:
            raise _Deny("FILTER", f"stop price {stop} must be a positive number")
        stop = inst.round_price(stop, intent.side.opposite)
        if quote is None:
            return stop  # no market to judge against; the price band asks for one if set
        if intent.side is Side.BUY and stop <= quote.ask:
            raise _Deny(
                "WOULD_TRIGGER",
                f"buy stop {stop} is at or below the ask {quote.ask} of {name}: it would "
                "trigger immediately (a buy stop must be above the market)",
            )
        if intent.side is Side.SELL and stop >= quote.bid:
            raise _Deny(
                "WOULD_TRIGGER",
                f"sell stop {stop} is at or above the bid {quote.bid} of {name}: it would "
                "trigger immediately (a sell stop must be below the market)",
            )
        return stop

    def _check_state(self, intent: OrderIntent) -> None:
        # Runs before quantization, so the asked quantity is judged: a request to close more than
        # the position is refused even if rounding would have saved it.
        state, reason = self._effective(intent.venue, intent.strategy_id)
        if state is TradingState.HALTED:
            raise _Deny("HALTED", f"trading is halted: {reason}")
        if state is TradingState.REDUCING and not self._reduces(intent, intent.qty):
            pos = self._view.position(intent.strategy_id, intent.venue, intent.symbol).qty
            raise _Deny(
                "REDUCING",
                f"only orders that reduce the position are allowed ({reason}); "
                f"{intent.side.value} {intent.qty} would not reduce strategy "
                f"{intent.strategy_id!r}'s position {pos} in {intent.venue}:{intent.symbol}",
            )

    def _quantize(
        self, intent: OrderIntent, inst: Instrument, market_ref: Decimal | None
    ) -> tuple[Decimal, Decimal | None]:
        name = f"{inst.venue}:{inst.symbol}"
        if not intent.qty.is_finite() or intent.qty <= 0:
            raise _Deny("FILTER", f"quantity {intent.qty} must be a positive number")
        price: Decimal | None = None
        if intent.type is OrderType.LIMIT or intent.type is OrderType.STOP_LIMIT:
            if intent.price is None:
                raise _Deny("FILTER", f"a {intent.type.value} order needs a price")
            if not intent.price.is_finite() or intent.price <= 0:
                raise _Deny("FILTER", f"price {intent.price} must be a positive number")
            price = inst.round_price(intent.price, intent.side)
            if price <= 0:
                raise _Deny(
                    "FILTER", f"price {intent.price} rounds to 0 on {name}'s tick {inst.tick_size}"
                )
        elif intent.post_only:
            raise _Deny("FILTER", f"a {intent.type.value} order cannot be post-only")
        if intent.post_only and intent.type.is_stop:
            raise _Deny("FILTER", f"a {intent.type.value} order cannot be post-only")
        qty = inst.round_qty(intent.qty)
        if qty <= 0:
            raise _Deny(
                "BELOW_MINIMUM",
                f"quantity {intent.qty} rounds down to 0 on {name}'s step {inst.step_size}",
            )
        if qty < inst.min_qty:
            raise _Deny(
                "BELOW_MINIMUM",
                f"quantity {qty} (asked {intent.qty}) is below {name}'s minimum quantity "
                f"{inst.min_qty}",
            )
        if inst.max_qty is not None and qty > inst.max_qty:
            raise _Deny(
                "FILTER", f"quantity {qty} is above {name}'s maximum quantity {inst.max_qty}"
            )
        if inst.min_notional > 0:
            ref = price if price is not None else market_ref
            if ref is None:
                # Unverifiable means unsafe: fail closed rather than guess.
                raise _Deny(
                    "NO_QUOTE",
                    f"no quote for {name}: cannot check the market order against the minimum "
                    f"notional {inst.min_notional} {inst.quote}",
                )
            if qty * ref < inst.min_notional:
                raise _Deny(
                    "BELOW_MINIMUM",
                    f"notional {qty * ref} {inst.quote} ({qty} at {ref}) is below {name}'s "
                    f"minimum notional {inst.min_notional} {inst.quote}",
                )
        return qty, price

    def _check_band(
        self,
        scope: _Scope,
        intent: OrderIntent,
        price: Decimal | None,
        quote: Quote | None,
        stop: Decimal | None = None,
    ) -> None:
        band = scope.limits.price_band
        if band is None:
            return
        name = f"{intent.venue}:{intent.symbol}"
        if quote is None:
            raise _Deny(
                "NO_QUOTE", f"no two-sided quote for {name} to check the price band {scope.label}"
            )
        max_age = scope.limits.max_quote_age_s
        if max_age is not None:
            age_ns = self._clock.time_ns() - quote.ts_recv
            if age_ns > int(max_age * NS_PER_SECOND):
                raise _Deny(
                    "STALE_QUOTE",
                    f"last quote for {name} is {age_ns / NS_PER_SECOND:.3f} s old, above "
                    f"max_quote_age_s {max_age} {scope.label}",
                )
        if price is None:
            return  # a market order is priced by the book itself; it only needed a live one
        if stop is not None:
            # A stop-limit's limit meets the market at the stop, when it triggers: judge it
            # against the stop price, not against today's quote.
            quote = replace(quote, bid=stop, ask=stop)
        # Only a price *through* the market is a fat finger: a buy far above the ask or a sell
        # far below the bid would trade at once at a terrible price. A passive limit far away
        # (a buy well below the market) just rests, and is a legitimate order.
        if intent.side is Side.BUY and price > quote.ask * (1 + band):
            through, ref, side_name = (price - quote.ask) / quote.ask, quote.ask, "ask"
        elif intent.side is Side.SELL and price < quote.bid * (1 - band):
            through, ref, side_name = (quote.bid - price) / quote.bid, quote.bid, "bid"
        else:
            return
        if stop is not None:
            side_name = "stop price"
        raise _Deny(
            "PRICE_BAND",
            f"limit price {price} is {through:.2%} through the {side_name} {ref} of {name}, "
            f"beyond price_band {band:%} {scope.label}",
        )

    def _check_notional(
        self,
        scope: _Scope,
        intent: OrderIntent,
        inst: Instrument,
        qty: Decimal,
        ref: Decimal | None,
    ) -> None:
        limit = scope.limits.max_order_notional
        if limit is None:
            return
        if ref is None:
            raise _Deny(
                "NO_QUOTE",
                f"no quote for {intent.venue}:{intent.symbol} to price the market order against "
                f"max_order_notional {limit} {scope.label}",
            )
        notional = qty * ref
        if notional > limit:
            raise _Deny(
                "MAX_NOTIONAL",
                f"notional {notional} {inst.quote} exceeds max_order_notional {limit} "
                f"{scope.label}",
            )

    def _check_position(
        self, scope: _Scope, intent: OrderIntent, inst: Instrument, qty: Decimal
    ) -> None:
        limit = scope.limits.max_position
        if limit is None:
            return
        orders = self._view.open_orders(scope.strategy_id)
        if scope.strategy_id is None:
            self._known.update(o.strategy_id for o in orders)
            strategies: Iterable[str] = self._known | {intent.strategy_id}
        else:
            strategies = (scope.strategy_id,)
        current = sum(
            (self._view.position(s, intent.venue, intent.symbol).qty for s in strategies), _ZERO
        )
        # Open orders count at full remaining size: any of them may fill before we hear of it.
        pending = _same_side_remaining(orders, intent)
        after = current + intent.side.sign * (qty + pending)
        # An order that leaves the position smaller is always fine, even above a lowered limit.
        if abs(after) > limit and abs(after) > abs(current):
            raise _Deny(
                "MAX_POSITION",
                f"position in {intent.venue}:{intent.symbol} would reach {after} {inst.base} "
                f"(now {current}, open {intent.side.value} orders {pending}, this order {qty}), "
                f"above max_position {limit} {scope.label}",
            )

    def _check_open_orders(self, scope: _Scope) -> None:
        limit = scope.limits.max_open_orders
        if limit is None:
            return
        count = len(self._view.open_orders(scope.strategy_id))
        if count >= limit:
            raise _Deny(
                "MAX_OPEN_ORDERS",
                f"{count} orders already open, max_open_orders is {limit} {scope.label}",
            )

    def _check_rate(self, scope: _Scope) -> None:
        limit = scope.limits.max_orders_per_minute
        if limit is None:
            return
        window = self._window(scope)
        now = self._clock.monotonic_ns()
        # An approval counts for exactly 60 s: at t0 + 60 s it has left the window.
        while window and now - window[0] >= _RATE_WINDOW_NS:
            window.popleft()
        if len(window) >= limit:
            raise _Deny(
                "RATE",
                f"{len(window)} orders approved in the last 60 s, max_orders_per_minute is "
                f"{limit} {scope.label}",
            )

    def _check_daily_loss(self, scope: _Scope, intent: OrderIntent, qty: Decimal) -> None:
        # A backstop to the automatic REDUCING state: it still holds after an operator lifted
        # that state, after a kill-switch release, or when the limit was lowered on restart.
        limit = scope.limits.max_daily_loss
        if limit is None:
            return
        if scope.strategy_id is None:
            pnl = self._pnl_global
        else:
            pnl = self._pnl.get(scope.strategy_id, _ZERO)
        if pnl < -limit and not self._reduces(intent, qty):
            raise _Deny(
                "DAILY_LOSS",
                f"realized PnL today {pnl} is below -{limit} (max_daily_loss) {scope.label}; "
                "only orders that reduce the position are allowed",
            )

    def _reduces(self, intent: OrderIntent, qty: Decimal) -> bool:
        if not qty.is_finite() or qty <= 0:
            return False
        pos = self._view.position(intent.strategy_id, intent.venue, intent.symbol).qty
        if pos == 0 or intent.side.sign * pos > 0:
            return False
        # Reducing orders already open use up the position they may close.
        pending = _same_side_remaining(self._view.open_orders(intent.strategy_id), intent)
        return qty + pending <= abs(pos)

    def _scopes(self, intent: OrderIntent) -> list[_Scope]:
        scopes = []
        own = self._strategy_limits.get(intent.strategy_id)
        if own is not None:
            scopes.append(_Scope(own, intent.strategy_id))
        scopes.append(_Scope(self._limits, None))
        return scopes

    def _window(self, scope: _Scope) -> deque[int]:
        if scope.strategy_id is None:
            return self._sent_global
        return self._sent.setdefault(scope.strategy_id, deque())

    # -- daily PnL -----------------------------------------------------------------------------
    def on_fill(self, fill: Fill, realized_pnl_delta: Decimal) -> None:
        self._roll_day()
        new_strategy = fill.strategy_id not in self._known
        self._known.add(fill.strategy_id)
        if realized_pnl_delta == 0 and not new_strategy:
            return
        sid = fill.strategy_id
        self._pnl[sid] = self._pnl.get(sid, _ZERO) + realized_pnl_delta
        self._pnl_global += realized_pnl_delta
        own = self._strategy_limits.get(sid)
        if own is not None and own.max_daily_loss is not None:
            self._trip(self._pnl[sid], own.max_daily_loss, sid)
        if self._limits.max_daily_loss is not None:
            self._trip(self._pnl_global, self._limits.max_daily_loss, None)
        # Persist PnL too, not only state changes: a crash must not reset today's loss.
        self._notify()

    def _trip(self, pnl: Decimal, limit: Decimal, strategy_id: str | None) -> None:
        entry = self._global if strategy_id is None else self._strategies.get(strategy_id)
        if pnl >= -limit or (entry is not None and entry.state is not TradingState.ACTIVE):
            return  # within the limit, or already restricted for a reason we must not overwrite
        scope = "all strategies" if strategy_id is None else f"strategy {strategy_id!r}"
        reason = f"daily loss: realized PnL today {pnl} is below -{limit} for {scope}"
        self._set(TradingState.REDUCING, reason, _DAILY_LOSS, None, strategy_id, notify=False)

    def _roll_day(self) -> None:
        day = self._clock.time_ns() // _DAY_NS
        if day <= self._day:
            return  # a wall clock stepping backwards must not reset today's loss
        # Move the day first: notifying calls snapshot(), which comes back here.
        self._day = day
        changed = self._pnl_global != 0 or any(self._pnl.values())
        self._pnl_global = _ZERO
        self._pnl = {}
        reason = f"new UTC day {_day_iso(day)}: daily loss limit reset"
        if self._global.cause == _DAILY_LOSS:
            self._set(TradingState.ACTIVE, reason, _OPERATOR, None, None, notify=False)
            changed = True
        for sid, entry in list(self._strategies.items()):
            if entry.cause == _DAILY_LOSS:
                self._set(TradingState.ACTIVE, reason, _OPERATOR, None, sid, notify=False)
                changed = True
        if changed:
            self._notify()

    # -- states and the kill switch -----------------------------------------------------------
    @property
    def state(self) -> TradingState:
        self._roll_day()
        return self._global.state

    @property
    def killed(self) -> bool:
        return self._killed

    def state_of(self, *, venue: str | None = None, strategy_id: str | None = None) -> TradingState:
        """The most restrictive of the global state and the named scopes' states, i.e. what an
        intent of that strategy on that venue is subject to. No arguments: the global state."""
        self._roll_day()
        return self._effective(venue, strategy_id)[0]

    def set_state(
        self,
        state: TradingState,
        reason: str,
        *,
        venue: str | None = None,
        strategy_id: str | None = None,
    ) -> None:
        if venue is not None and strategy_id is not None:
            raise ValueError("set the state of a venue or of a strategy, not both at once")
        if (
            venue is None
            and strategy_id is None
            and self._killed
            and state is not TradingState.HALTED
        ):
            raise ValueError(f"the kill switch is engaged; release() it before setting {state}")
        self._roll_day()
        self._set(state, reason, _OPERATOR, venue, strategy_id)

    def kill(self, reason: str) -> None:
        self._killed = True
        self._set(TradingState.HALTED, f"kill switch: {reason}", _KILL, None, None, notify=False)
        self._log.error("kill switch engaged", reason=reason)
        self._notify()

    def release(self, reason: str) -> None:
        was_killed = self._killed
        self._killed = False
        self._set(TradingState.ACTIVE, f"released: {reason}", _OPERATOR, None, None, notify=False)
        self._log.warning("kill switch released", reason=reason, was_engaged=was_killed)
        self._notify()

    def _effective(self, venue: str | None, strategy_id: str | None) -> tuple[TradingState, str]:
        entries = [self._global]
        if venue is not None and venue in self._venues:
            entries.append(self._venues[venue])
        if strategy_id is not None and strategy_id in self._strategies:
            entries.append(self._strategies[strategy_id])
        worst = max(
            entries, key=lambda e: e.state.rank
        )  # first wins a tie: global, venue, strategy
        return worst.state, worst.reason

    def _set(
        self,
        state: TradingState,
        reason: str,
        cause: str,
        venue: str | None,
        strategy_id: str | None,
        *,
        notify: bool = True,
    ) -> None:
        entry = _StateEntry(state, reason, cause, self._clock.time_ns())
        if venue is not None:
            previous = self._venues.get(venue)
            self._venues[venue] = entry
            scope = f"venue {venue!r}"
        elif strategy_id is not None:
            previous = self._strategies.get(strategy_id)
            self._strategies[strategy_id] = entry
            scope = f"strategy {strategy_id!r}"
        else:
            previous = self._global
            self._global = entry
            scope = "global"
        old = TradingState.ACTIVE if previous is None else previous.state
        log = self._log.info if state is TradingState.ACTIVE else self._log.warning
        log("trading state set", scope=scope, state=state.value, previous=old.value, reason=reason)
        if notify:
            self._notify()

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(self.snapshot())
        except Exception:
            # Persisting is the app's job; its failure must not undo or block a risk decision
            # (a kill switch has to take effect even when the disk is full).
            self._log.exception("risk state listener failed")

    # -- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        self._roll_day()
        return {
            "version": _SNAPSHOT_VERSION,
            "killed": self._killed,
            "global": self._global.to_json(),
            "venues": {k: v.to_json() for k, v in sorted(self._venues.items())},
            "strategies": {k: v.to_json() for k, v in sorted(self._strategies.items())},
            "daily": {
                "day": _day_iso(self._day),
                "pnl": str(self._pnl_global),
                "strategies": {k: str(v) for k, v in sorted(self._pnl.items())},
            },
            "known_strategies": sorted(self._known),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot`. The kill switch is read first and can only be engaged by this:
        a damaged rest of the snapshot still leaves a killed engine killed."""
        if data.get("killed"):
            self._killed = True
            self._global = _StateEntry(
                TradingState.HALTED, "kill switch engaged before restart", _KILL, 0
            )
        try:
            if data.get("version") != _SNAPSHOT_VERSION:
                raise ValueError(f"unsupported risk snapshot version {data.get('version')!r}")
            glob = _StateEntry.from_json(data["global"])
            venues = {str(k): _StateEntry.from_json(v) for k, v in data["venues"].items()}
            strategies = {str(k): _StateEntry.from_json(v) for k, v in data["strategies"].items()}
            daily = data["daily"]
            day = (date.fromisoformat(daily["day"]) - _EPOCH).days
            pnl_global = Decimal(daily["pnl"])
            pnl = {str(k): Decimal(v) for k, v in daily["strategies"].items()}
            known = {str(s) for s in data["known_strategies"]}
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"invalid risk snapshot: {exc!r}") from exc
        if self._killed and glob.state is not TradingState.HALTED:
            glob = _StateEntry(TradingState.HALTED, "kill switch engaged", _KILL, glob.ts)
        self._global, self._venues, self._strategies = glob, venues, strategies
        self._day, self._pnl_global, self._pnl = day, pnl_global, pnl
        self._known |= known
        self._log.info(
            "risk state restored",
            killed=self._killed,
            state=glob.state.value,
            day=daily["day"],
            pnl=str(pnl_global),
        )
        # A snapshot from an earlier day: today's loss starts at zero again.
        self._roll_day()


def _same_side_remaining(orders: Iterable[Order], intent: OrderIntent) -> Decimal:
    return sum(
        (
            o.remaining_qty
            for o in orders
            if o.is_open
            and o.venue == intent.venue
            and o.symbol == intent.symbol
            and o.side is intent.side
        ),
        _ZERO,
    )


def _day_iso(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()
