"""Runs strategy instances: binds them, feeds them events, and contains their failures.

Every hook call goes through :meth:`StrategyHost._call`: exceptions are logged with their
traceback and counted, and each call is timed against a budget. A strategy that fails too
often, or overruns its budget too often, within a window is halted and its orders cancelled;
the other strategies never notice.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

import structlog

from botd.bus import Bus, Subscription
from botd.clock import NS_PER_SECOND, Clock, perf_ns
from botd.errors import StrategyError
from botd.events import StrategyHalted
from botd.feeds.bars import BarAggregator
from botd.model import (
    Balance,
    Bar,
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderUpdate,
    Position,
    Quote,
    Trade,
)
from botd.schedule import Scheduler
from botd.sessions import ALWAYS_OPEN, SessionCalendar, SessionSource
from botd.strategy.api import Strategy
from botd.strategy.loader import LoadedStrategy
from botd.strategy.params import ParamError, resolve_params
from botd.strategy.when import WhenRule

_ZERO = Decimal(0)

__all__ = [
    "HostLimits",
    "HostedStrategy",
    "MarketView",
    "OrderPort",
    "StrategyHost",
    "StrategyStatus",
]


class OrderPort(Protocol):
    def submit(self, intent: OrderIntent) -> str: ...
    def cancel(self, client_order_id: str) -> None: ...
    def open_orders(self, strategy_id: str | None = None) -> list[Order]: ...


class MarketView(Protocol):
    def last_quote(self, venue: str, symbol: str) -> Quote | None: ...
    def instrument(self, venue: str, symbol: str) -> Instrument: ...
    def balance(self, venue: str, asset: str) -> Balance: ...


class StrategyStatus(StrEnum):
    RUNNING = "running"
    HALTED = "halted"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class HostLimits:
    max_errors: int = 5  # hook failures within the window that halt a strategy
    error_window_s: float = 60.0
    hook_budget_ms: float = 5.0  # a hook call slower than this is an overrun
    max_overruns: int = 10  # overruns within the window that halt a strategy


@dataclass(slots=True)
class HostedStrategy:
    id: str
    strategy: Strategy
    source: LoadedStrategy
    status: StrategyStatus = StrategyStatus.RUNNING
    subscriptions: list[Subscription] = field(default_factory=list)
    bars: list[tuple[str, str, str]] = field(default_factory=list)
    rules: list[WhenRule] = field(default_factory=list)
    errors: deque[int] = field(default_factory=deque)  # monotonic ns of recent failures
    overruns: deque[int] = field(default_factory=deque)
    error_total: int = 0
    overrun_total: int = 0
    calls: int = 0
    hook_ns: int = 0  # total time spent in hooks (metrics read it at scrape time)
    halt_reason: str = ""
    # Whether the strategy overrides on_order / on_fill (set when it starts): the base class's
    # no-ops are not called, on every order update and fill, through the guarded call.
    wants_orders: bool = True
    wants_fills: bool = True


class StrategyHost:
    def __init__(
        self,
        *,
        bus: Bus,
        clock: Clock,
        orders: OrderPort,
        market: MarketView,
        bars: BarAggregator | None = None,
        scheduler: Scheduler | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        limits: HostLimits | None = None,
        perf: Callable[[], int] = perf_ns,
        log: structlog.typing.FilteringBoundLogger | None = None,
        sessions: SessionSource | None = None,
    ) -> None:
        self._bus = bus
        # Which calendar each (venue, symbol) trades on; None: everything around the clock.
        self._sessions = sessions
        self._clock = clock
        self._orders = orders
        self._market = market
        self._bars = bars
        self._scheduler = scheduler
        self._overrides = overrides or {}
        self.limits = limits or HostLimits()
        self._window_ns = int(self.limits.error_window_s * NS_PER_SECOND)
        self._budget_ns = int(self.limits.hook_budget_ms * 1_000_000)
        self._perf = perf
        self._log = log or structlog.get_logger("botd.strategy")
        self._running: dict[str, HostedStrategy] = {}
        self._positions: dict[tuple[str, str, str], Position] = {}
        # The flat position per instrument (immutable), asked for on every event by flat
        # strategies; rebuilt if the venue's instrument (its rules) changes.
        self._flat: dict[tuple[str, str], tuple[Instrument, Position]] = {}
        self.last_overrun: str | None = None  # the latest slow hook, for the loop-lag monitor
        # self.state of strategies from the previous run, handed to each when it first starts.
        self.saved_states: dict[str, dict[str, Any]] = {}
        # Told the realized PnL of every fill (risk keeps the daily loss from it).
        self.on_realized: Callable[[Fill, Decimal], None] | None = None
        bus.subscribe(OrderUpdate, self._on_order_update, name="host.order_update")
        bus.subscribe(Fill, self._on_fill, name="host.fill")

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def strategies(self) -> Mapping[str, HostedStrategy]:
        return self._running

    def is_running(self, strategy_id: str) -> bool:
        hosted = self._running.get(strategy_id)
        return hosted is not None and hosted.status is StrategyStatus.RUNNING

    def start(self, loaded: LoadedStrategy) -> HostedStrategy | None:
        """Instantiate, configure and start one strategy. Problems are logged, never raised."""
        if self.is_running(loaded.id):
            self._log.error("strategy already running; not started twice", strategy=loaded.id)
            return None
        hosted = self.prepare(loaded)
        if hosted is None:
            return None
        self._activate(hosted, state=self.saved_states.pop(loaded.id, {}))
        return hosted

    def prepare(self, loaded: LoadedStrategy) -> HostedStrategy | None:
        """Build and configure an instance without starting it; None (logged) if invalid."""
        log = self._log.bind(strategy=loaded.id, file=str(loaded.path))
        overrides = dict(self._overrides.get(loaded.id, {}))
        if overrides.get("enabled", True) is False:
            log.info("strategy disabled in settings")
            return None
        try:
            strategy = self._instantiate(loaded, overrides)
        except (ParamError, ValueError, TypeError) as exc:
            log.error("strategy not started: invalid configuration", error=str(exc))
            return None
        except Exception:
            log.exception("strategy not started: constructor failed")
            return None
        return HostedStrategy(loaded.id, strategy, loaded)

    def replace(self, new: HostedStrategy) -> None:
        """Swap a running strategy for a prepared new version, handing over ``state``."""
        old = self._running.get(new.id)
        state: dict[str, Any] = {}
        if old is not None:
            if old.status is StrategyStatus.RUNNING:
                self._deactivate(old, call_on_stop=True)
                old.status = StrategyStatus.STOPPED
            state = self._handover(old)
        self._activate(new, state)

    def stop(self, strategy_id: str, *, cancel_orders: bool = False) -> None:
        hosted = self._running.get(strategy_id)
        if hosted is None or hosted.status is StrategyStatus.STOPPED:
            return
        self._deactivate(hosted, call_on_stop=hosted.status is StrategyStatus.RUNNING)
        hosted.status = StrategyStatus.STOPPED
        if cancel_orders:
            self._cancel_orders_of(strategy_id)
        self._log.info("strategy stopped", strategy=strategy_id)

    def stop_all(self, *, cancel_orders: bool = False) -> None:
        for sid in list(self._running):
            self.stop(sid, cancel_orders=cancel_orders)

    def halt(self, strategy_id: str, reason: str) -> None:
        hosted = self._running.get(strategy_id)
        if hosted is None or hosted.status is not StrategyStatus.RUNNING:
            return
        hosted.status = StrategyStatus.HALTED
        hosted.halt_reason = reason
        self._deactivate(hosted, call_on_stop=False)
        self._cancel_orders_of(strategy_id)
        self._log.error(
            "strategy halted; its orders are being cancelled", strategy=strategy_id, reason=reason
        )
        self._bus.publish(StrategyHalted(strategy_id, reason, self._clock.time_ns()))

    def positions(self) -> dict[tuple[str, str, str], Position]:
        """Every booked position by (strategy, venue, symbol); a copy, for reports."""
        return dict(self._positions)

    def rebuild_positions(self, fills: Iterable[Fill]) -> None:
        """Positions from the journal's fills, oldest first, before any strategy starts."""
        self._positions.clear()
        for fill in fills:
            self._book_fill(fill)

    def states(self) -> dict[str, dict[str, Any]]:
        """Every strategy's ``self.state`` (JSON-checked), for the journal."""
        out: dict[str, dict[str, Any]] = {}
        for sid, hosted in self._running.items():
            try:
                out[sid] = json.loads(json.dumps(hosted.strategy.state))
            except (TypeError, ValueError) as exc:
                self._log.warning(
                    "strategy state is not JSON-serialisable; not saved",
                    strategy=sid,
                    error=str(exc),
                )
        return out

    # -- StrategyContext (what strategies can see and do) ---------------------------------
    def now_ns(self) -> int:
        return self._clock.time_ns()

    def submit(self, intent: OrderIntent) -> str:
        if not self.is_running(intent.strategy_id):
            raise StrategyError(f"strategy {intent.strategy_id} is not running; order refused")
        return self._orders.submit(intent)

    def cancel(self, client_order_id: str) -> None:
        self._orders.cancel(client_order_id)

    def open_orders(self, strategy_id: str) -> list[Order]:
        return self._orders.open_orders(strategy_id)

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position:
        return self._positions.get((strategy_id, venue, symbol)) or self._empty_position(
            venue, symbol
        )

    def balance(self, venue: str, asset: str) -> Balance:
        return self._market.balance(venue, asset)

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self._market.last_quote(venue, symbol)

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self._market.instrument(venue, symbol)

    def market_open(self, venue: str, symbol: str) -> bool:
        return self.calendar(venue, symbol).is_open(self._clock.time_ns())

    def calendar(self, venue: str, symbol: str) -> SessionCalendar:
        if self._sessions is None:
            return ALWAYS_OPEN
        return self._sessions.calendar(venue, symbol)

    def add_rule(self, strategy_id: str, rule: WhenRule) -> None:
        self._running[strategy_id].rules.append(rule)

    def every(self, strategy_id: str, interval_s: float, fn: Callable[[], None]) -> None:
        hosted = self._running[strategy_id]
        self._require_scheduler().every(
            interval_s, self._timer(hosted, fn), owner=strategy_id, name=_name(fn)
        )

    def cron(self, strategy_id: str, expr: str, fn: Callable[[], None], tz: str) -> None:
        hosted = self._running[strategy_id]
        self._require_scheduler().cron(
            expr, self._timer(hosted, fn), owner=strategy_id, name=_name(fn), tz=tz
        )

    # -- internals --------------------------------------------------------------------------
    def _require_scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise StrategyError("timers are not available in this host")
        return self._scheduler

    def _empty_position(self, venue: str, symbol: str) -> Position:
        inst = self._market.instrument(venue, symbol)
        cached = self._flat.get((venue, symbol))
        if cached is not None and cached[0] is inst:
            return cached[1]
        # Anything below one tradable unit is dust: it cannot be sold, so it is not a position.
        flat = Position(venue, symbol, min_tradable=max(inst.min_qty, inst.step_size))
        self._flat[(venue, symbol)] = (inst, flat)
        return flat

    def _instantiate(self, loaded: LoadedStrategy, overrides: dict[str, Any]) -> Strategy:
        cls = loaded.cls
        values = resolve_params(cls.params(), overrides)
        if "symbols" in overrides:
            symbols = overrides["symbols"]
        elif "symbol" in overrides:
            symbols = [overrides["symbol"]]
        else:
            symbols = list(cls.declared_symbols())
        if (
            not symbols
            or not isinstance(symbols, list)
            or not all(isinstance(s, str) for s in symbols)
        ):
            raise ParamError(f"symbols must be a non-empty list of strings, got {symbols!r}")
        venue = overrides.get("venue", cls.venue)
        for sym in symbols:
            self._market.instrument(venue, sym)  # ValueError naming the venue and symbol

        strategy = cls()
        strategy.__dict__["_param_values"] = values
        strategy.id = loaded.id
        strategy._ctx = self
        strategy._symbols = tuple(symbols)
        strategy.log = self._log.bind(strategy=loaded.id)
        strategy.state = {}
        if venue != cls.venue:
            strategy.venue = venue  # type: ignore[misc]
        return strategy

    def _activate(self, hosted: HostedStrategy, state: dict[str, Any]) -> None:
        strategy = hosted.strategy
        strategy.state = state
        cls = type(strategy)
        hosted.wants_orders = cls.on_order is not Strategy.on_order
        hosted.wants_fills = cls.on_fill is not Strategy.on_fill
        hosted.status = StrategyStatus.RUNNING
        self._running[hosted.id] = hosted
        self._subscribe(hosted)
        self._log.info(
            "strategy started",
            strategy=hosted.id,
            file=str(hosted.source.path),
            venue=strategy.venue,
            symbols=list(strategy.traded_symbols),
            params={k: str(v) for k, v in strategy._param_values.items()},
        )
        self._call(hosted, strategy.on_start)
        if hosted.error_total:
            # Half-initialised strategies must not trade.
            self.halt(hosted.id, "on_start failed")
        elif hosted.status is StrategyStatus.RUNNING:
            self._watch_sessions(hosted)

    def _watch_sessions(self, hosted: HostedStrategy) -> None:
        """Call on_session_open / on_session_close at the opens and closes of the strategy's
        (first) symbol, on the injected clock; cancelled with the strategy's other timers."""
        strategy = hosted.strategy
        cls = type(strategy)
        if (
            cls.on_session_open is Strategy.on_session_open
            and cls.on_session_close is Strategy.on_session_close
        ):
            return
        try:
            calendar = self.calendar(strategy.venue, strategy.primary_symbol)
        except Exception as exc:  # an unknown calendar code: trade on, without the hooks
            self._log.error(
                "no trading calendar; session hooks will not be called",
                strategy=hosted.id,
                error=str(exc),
            )
            return
        if calendar is ALWAYS_OPEN or self._scheduler is None:
            return

        def change(at_ns: int) -> None:
            if hosted.status is not StrategyStatus.RUNNING:
                return
            if calendar.is_open(at_ns):
                self._call(hosted, strategy.on_session_open)
            else:
                self._call(hosted, strategy.on_session_close)

        self._scheduler.series(
            calendar.next_change,
            change,
            owner=hosted.id,
            name="session",
            description=f"session opens and closes ({calendar.name})",
        )

    def _deactivate(self, hosted: HostedStrategy, *, call_on_stop: bool) -> None:
        for sub in hosted.subscriptions:
            self._bus.unsubscribe(sub)
        hosted.subscriptions.clear()
        if self._bars is not None:
            for venue, symbol, timeframe in hosted.bars:
                self._bars.release(venue, symbol, timeframe)
        hosted.bars.clear()
        hosted.rules.clear()
        if self._scheduler is not None:
            self._scheduler.cancel_owner(hosted.id)
        if call_on_stop:
            self._call(hosted, hosted.strategy.on_stop, count_failure=False)

    def _handover(self, old: HostedStrategy) -> dict[str, Any]:
        """The old instance's ``state`` for the new one: a JSON round trip, so the new version
        cannot share mutable objects with the old and the state stays persistable."""
        state = old.strategy.state
        try:
            result: dict[str, Any] = json.loads(json.dumps(state))
        except (TypeError, ValueError) as exc:
            self._log.warning(
                "strategy state is not JSON-serialisable; handed over as a deep copy",
                strategy=old.id,
                error=str(exc),
            )
            return copy.deepcopy(state)
        return result

    def _subscribe(self, hosted: HostedStrategy) -> None:
        strategy = hosted.strategy
        cls = type(strategy)
        wanted: list[tuple[type, Callable[[Any], None]]] = []
        if cls.on_quote is not Strategy.on_quote:
            wanted.append((Quote, strategy.on_quote))
        if cls.on_trade is not Strategy.on_trade:
            wanted.append((Trade, strategy.on_trade))
        if cls.on_bar is not Strategy.on_bar:
            wanted.append((Bar, self._bar_filter(strategy)))
            if self._bars is not None:
                for symbol in strategy.traded_symbols:
                    self._bars.ensure(strategy.venue, symbol, strategy.timeframe)
                    hosted.bars.append((strategy.venue, symbol, strategy.timeframe))
        if not wanted:
            # Nothing to react to but rules, which are checked after market events.
            wanted.append((Quote, _noop))
        for event_type, hook in wanted:
            for symbol in strategy.traded_symbols:
                hosted.subscriptions.append(
                    self._bus.subscribe(
                        event_type,
                        self._guarded(hosted, hook),
                        venue=strategy.venue,
                        symbol=symbol,
                        name=f"{hosted.id}.{event_type.__name__.lower()}",
                    )
                )

    @staticmethod
    def _bar_filter(strategy: Strategy) -> Callable[[Bar], None]:
        timeframe = strategy.timeframe

        def on_bar(bar: Bar) -> None:
            if bar.timeframe == timeframe:
                strategy.on_bar(bar)

        on_bar.__name__ = "on_bar"
        return on_bar

    def _guarded(
        self, hosted: HostedStrategy, hook: Callable[[Any], None]
    ) -> Callable[[Any], None]:
        def call(event: Any) -> None:
            if hosted.status is StrategyStatus.RUNNING:
                self._call(hosted, hook, event)
                if hosted.rules and hosted.status is StrategyStatus.RUNNING:
                    self._check_rules(hosted)

        return call

    def _timer(self, hosted: HostedStrategy, fn: Callable[[], None]) -> Callable[[], None]:
        def fire() -> None:
            if hosted.status is StrategyStatus.RUNNING:
                self._call(hosted, fn)

        return fire

    def _check_rules(self, hosted: HostedStrategy) -> None:
        now = self._clock.time_ns()
        for rule in list(hosted.rules):
            fire = self._call(hosted, rule.check, now, label=f"when {rule.name or '?'}")
            if fire is True and hosted.status is StrategyStatus.RUNNING:
                self._call(hosted, rule.action, label=f"then {rule.name or '?'}")

    def _call(
        self,
        hosted: HostedStrategy,
        hook: Callable[..., Any],
        *args: Any,
        count_failure: bool = True,
        label: str | None = None,
    ) -> Any:
        # The hook's name is only needed to report a problem: not worked out on every call.
        hosted.calls += 1
        started = self._perf()
        try:
            return hook(*args)
        except Exception as exc:
            hosted.error_total += 1
            self._log.exception(
                "strategy hook raised",
                strategy=hosted.id,
                hook=label or _name(hook),
                error=f"{type(exc).__name__}: {exc}",
                errors_total=hosted.error_total,
            )
            if count_failure:
                self._count(hosted, hosted.errors, self.limits.max_errors, "failures")
            return None
        finally:
            elapsed = self._perf() - started
            hosted.hook_ns += elapsed
            if elapsed > self._budget_ns:
                self._overrun(hosted, label or _name(hook), elapsed)

    def _overrun(self, hosted: HostedStrategy, hook: str, elapsed_ns: int) -> None:
        hosted.overrun_total += 1
        self.last_overrun = f"{hosted.id}.{hook} ({elapsed_ns / 1e6:.1f} ms)"
        self._log.warning(
            "strategy hook over its time budget",
            strategy=hosted.id,
            hook=hook,
            elapsed_ms=round(elapsed_ns / 1e6, 2),
            budget_ms=self.limits.hook_budget_ms,
            overruns_total=hosted.overrun_total,
        )
        self._count(hosted, hosted.overruns, self.limits.max_overruns, "time-budget overruns")

    def _count(self, hosted: HostedStrategy, times: deque[int], limit: int, what: str) -> None:
        now = self._clock.monotonic_ns()
        times.append(now)
        while times and now - times[0] > self._window_ns:
            times.popleft()
        if len(times) >= limit:
            window = self._window_ns / NS_PER_SECOND
            self.halt(hosted.id, f"{len(times)} {what} within {window:g}s")

    def _cancel_orders_of(self, strategy_id: str) -> None:
        for order in self._orders.open_orders(strategy_id):
            self._orders.cancel(order.client_order_id)

    def _on_order_update(self, update: OrderUpdate) -> None:
        hosted = self._running.get(update.strategy_id)
        if hosted is not None and hosted.wants_orders and hosted.status is StrategyStatus.RUNNING:
            self._call(hosted, hosted.strategy.on_order, update)

    def _book_fill(self, fill: Fill) -> Position:
        key = (fill.strategy_id, fill.venue, fill.symbol)
        pos = self._positions.get(key) or self._empty_position(fill.venue, fill.symbol)
        pos = pos.apply_fill(fill.side, fill.qty, fill.price)
        if fill.fee:
            inst = self._market.instrument(fill.venue, fill.symbol)
            pos = pos.apply_fee(fill.fee, fill.fee_asset, base=inst.base, quote=inst.quote)
        self._positions[key] = pos
        return pos

    def _on_fill(self, fill: Fill) -> None:
        before = self._positions.get((fill.strategy_id, fill.venue, fill.symbol))
        after = self._book_fill(fill)
        if self.on_realized is not None:
            realized_before = before.realized_pnl if before is not None else _ZERO
            self.on_realized(fill, after.realized_pnl - realized_before)
        hosted = self._running.get(fill.strategy_id)
        if hosted is not None and hosted.wants_fills and hosted.status is StrategyStatus.RUNNING:
            self._call(hosted, hosted.strategy.on_fill, fill)


def _noop(_: object) -> None:
    return None


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", repr(fn)))
