"""Runs strategy instances: binds them, feeds them events, and contains their failures."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import structlog

from botd.bus import Bus, Subscription
from botd.clock import NS_PER_SECOND, Clock
from botd.errors import StrategyError
from botd.model import (
    Balance,
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderUpdate,
    Position,
    Quote,
    Trade,
)
from botd.strategy.api import Strategy
from botd.strategy.loader import LoadedStrategy
from botd.strategy.params import ParamError

__all__ = ["HostedStrategy", "MarketView", "OrderPort", "StrategyHost", "StrategyStatus"]

# Keys of a [strategies.<id>] settings table that are not parameters.
_RESERVED_KEYS = frozenset({"enabled", "venue", "symbol", "symbols"})


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


@dataclass(slots=True)
class HostedStrategy:
    id: str
    strategy: Strategy
    source: LoadedStrategy
    status: StrategyStatus = StrategyStatus.RUNNING
    subscriptions: list[Subscription] = field(default_factory=list)
    errors: deque[int] = field(default_factory=deque)  # monotonic ns of recent failures
    error_total: int = 0
    halt_reason: str = ""


class StrategyHost:
    """Owns every running strategy.

    Each hook call is wrapped: an exception is logged with its traceback and counted, and a
    strategy that fails ``max_errors`` times within ``error_window_s`` is halted and its orders
    cancelled. The other strategies never notice.
    """

    def __init__(
        self,
        *,
        bus: Bus,
        clock: Clock,
        orders: OrderPort,
        market: MarketView,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        max_errors: int = 5,
        error_window_s: float = 60.0,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._orders = orders
        self._market = market
        self._overrides = overrides or {}
        self._max_errors = max_errors
        self._window_ns = int(error_window_s * NS_PER_SECOND)
        self._log = log or structlog.get_logger("botd.strategy")
        self._running: dict[str, HostedStrategy] = {}
        self._positions: dict[tuple[str, str, str], Position] = {}
        bus.subscribe(OrderUpdate, self._on_order_update, name="host.order_update")
        bus.subscribe(Fill, self._on_fill, name="host.fill")

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def strategies(self) -> Mapping[str, HostedStrategy]:
        return self._running

    def start(self, loaded: LoadedStrategy) -> HostedStrategy | None:
        """Instantiate, configure and start one strategy. Problems are logged, never raised."""
        log = self._log.bind(strategy=loaded.id, file=str(loaded.path))
        if loaded.id in self._running and self._running[loaded.id].status is StrategyStatus.RUNNING:
            log.error("strategy already running; not started twice")
            return None
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

        hosted = HostedStrategy(loaded.id, strategy, loaded)
        self._running[loaded.id] = hosted
        self._subscribe(hosted)
        log.info(
            "strategy started",
            venue=strategy.venue,
            symbols=list(strategy.traded_symbols),
            params={k: str(v) for k, v in strategy._param_values.items()},
        )
        self._call(hosted, strategy.on_start)
        return hosted

    def stop(self, strategy_id: str, *, cancel_orders: bool = False) -> None:
        hosted = self._running.get(strategy_id)
        if hosted is None or hosted.status is StrategyStatus.STOPPED:
            return
        self._unsubscribe(hosted)
        if hosted.status is StrategyStatus.RUNNING:
            self._call(hosted, hosted.strategy.on_stop, count_failure=False)
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
        self._unsubscribe(hosted)
        self._cancel_orders_of(strategy_id)
        self._log.error(
            "strategy halted; its orders are being cancelled", strategy=strategy_id, reason=reason
        )

    # -- StrategyContext (what strategies can see and do) ---------------------------------
    def now_ns(self) -> int:
        return self._clock.time_ns()

    def submit(self, intent: OrderIntent) -> str:
        hosted = self._running.get(intent.strategy_id)
        if hosted is None or hosted.status is not StrategyStatus.RUNNING:
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

    def _empty_position(self, venue: str, symbol: str) -> Position:
        inst = self._market.instrument(venue, symbol)
        # Anything below one tradable unit is dust: it cannot be sold, so it is not a position.
        return Position(venue, symbol, min_tradable=max(inst.min_qty, inst.step_size))

    def balance(self, venue: str, asset: str) -> Balance:
        return self._market.balance(venue, asset)

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self._market.last_quote(venue, symbol)

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self._market.instrument(venue, symbol)

    # -- internals --------------------------------------------------------------------------
    def _instantiate(self, loaded: LoadedStrategy, overrides: dict[str, Any]) -> Strategy:
        cls = loaded.cls
        declared = cls.params()
        values: dict[str, Any] = {}
        for key, raw in overrides.items():
            if key in _RESERVED_KEYS:
                continue
            if key not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ParamError(f"unknown parameter {key!r} (known parameters: {known})")
            values[key] = declared[key].coerce(raw)
        for name, p in declared.items():
            if name not in values:
                values[name] = p.coerce(p.default)

        symbols = overrides.get("symbols") or (
            [overrides["symbol"]] if "symbol" in overrides else list(cls.declared_symbols())
        )
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ParamError(f"symbols must be a list of strings, got {symbols!r}")
        venue = overrides.get("venue", cls.venue)
        for sym in symbols:
            self._market.instrument(venue, sym)  # raises KeyError-like ValueError if unknown

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

    def _subscribe(self, hosted: HostedStrategy) -> None:
        strategy = hosted.strategy
        cls = type(strategy)
        wanted: list[tuple[type, Callable[[Any], None]]] = []
        if cls.on_quote is not Strategy.on_quote:
            wanted.append((Quote, strategy.on_quote))
        if cls.on_trade is not Strategy.on_trade:
            wanted.append((Trade, strategy.on_trade))
        for event_type, hook in wanted:
            for symbol in strategy.traded_symbols:
                hosted.subscriptions.append(
                    self._bus.subscribe(
                        event_type,
                        self._guarded(hosted, hook),
                        venue=strategy.venue,
                        symbol=symbol,
                        name=f"{hosted.id}.{hook.__name__}",
                    )
                )

    def _unsubscribe(self, hosted: HostedStrategy) -> None:
        for sub in hosted.subscriptions:
            self._bus.unsubscribe(sub)
        hosted.subscriptions.clear()

    def _guarded(
        self, hosted: HostedStrategy, hook: Callable[[Any], None]
    ) -> Callable[[Any], None]:
        def call(event: Any) -> None:
            if hosted.status is StrategyStatus.RUNNING:
                self._call(hosted, hook, event)

        return call

    def _call(
        self,
        hosted: HostedStrategy,
        hook: Callable[..., None],
        *args: Any,
        count_failure: bool = True,
    ) -> None:
        try:
            hook(*args)
        except Exception as exc:
            hosted.error_total += 1
            self._log.exception(
                "strategy hook raised",
                strategy=hosted.id,
                hook=getattr(hook, "__name__", "?"),
                error=f"{type(exc).__name__}: {exc}",
                errors_total=hosted.error_total,
            )
            if count_failure:
                self._count_failure(hosted)

    def _count_failure(self, hosted: HostedStrategy) -> None:
        now = self._clock.monotonic_ns()
        hosted.errors.append(now)
        while hosted.errors and now - hosted.errors[0] > self._window_ns:
            hosted.errors.popleft()
        if len(hosted.errors) >= self._max_errors:
            self.halt(
                hosted.id,
                f"{len(hosted.errors)} failures within {self._window_ns / NS_PER_SECOND:g}s",
            )

    def _cancel_orders_of(self, strategy_id: str) -> None:
        for order in self._orders.open_orders(strategy_id):
            self._orders.cancel(order.client_order_id)

    def _on_order_update(self, update: OrderUpdate) -> None:
        hosted = self._running.get(update.strategy_id)
        if hosted is not None and hosted.status is StrategyStatus.RUNNING:
            self._call(hosted, hosted.strategy.on_order, update)

    def _on_fill(self, fill: Fill) -> None:
        key = (fill.strategy_id, fill.venue, fill.symbol)
        pos = self._positions.get(key) or self._empty_position(fill.venue, fill.symbol)
        pos = pos.apply_fill(fill.side, fill.qty, fill.price)
        if fill.fee:
            inst = self._market.instrument(fill.venue, fill.symbol)
            pos = pos.apply_fee(fill.fee, fill.fee_asset, base=inst.base, quote=inst.quote)
        self._positions[key] = pos
        hosted = self._running.get(fill.strategy_id)
        if hosted is not None and hosted.status is StrategyStatus.RUNNING:
            self._call(hosted, hosted.strategy.on_fill, fill)
