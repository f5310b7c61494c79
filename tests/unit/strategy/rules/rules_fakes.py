"""A tiny stand-in for the strategy host: enough context to start a rules strategy, feed it
bars and see the orders its rules send, without the bus, the gateway or the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import structlog

from botd.model import Balance, Bar, Instrument, OrderIntent, Position, Quote
from botd.strategy.api import Strategy

D = Decimal

INSTRUMENTS = {
    "BTCUSDT": Instrument("paper", "BTCUSDT", "BTC", "USDT", D("0.01"), D("0.00001")),
    "ETHUSDT": Instrument("paper", "ETHUSDT", "ETH", "USDT", D("0.01"), D("0.0001")),
}


@dataclass
class Registered:
    condition: Callable[[], object]
    action: Callable[[], object]
    once: bool
    cooldown: float | str | None
    name: str
    was_true: bool = False
    fired: int = 0


@dataclass
class FakeHost:
    """Implements the StrategyContext methods the rules use, and ``when`` edge-triggering."""

    intents: list[OrderIntent] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    orders: list[Any] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)
    quotes: dict[str, Quote] = field(default_factory=dict)
    rules: list[Registered] = field(default_factory=list)
    clock: int = 0

    # -- StrategyContext --------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.clock

    def submit(self, intent: OrderIntent) -> str:
        self.intents.append(intent)
        return f"id{len(self.intents)}"

    def cancel(self, client_order_id: str) -> None:
        self.cancelled.append(client_order_id)

    def open_orders(self, strategy_id: str) -> list[Any]:
        return self.orders

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(venue, symbol)

    def balance(self, venue: str, asset: str) -> Balance:
        return Balance(asset, D(1000))

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self.quotes.get(symbol)

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return INSTRUMENTS[symbol]

    # -- helpers for tests ------------------------------------------------------------------
    def set_quote(self, symbol: str, bid: str, ask: str) -> None:
        self.quotes[symbol] = Quote("paper", symbol, D(bid), D(ask), D(1), D(1), 0, 0)

    def set_position(self, symbol: str, qty: str, avg: str, realized: str = "0") -> None:
        self.positions[symbol] = Position("paper", symbol, D(qty), D(avg), D(realized))

    def add_order(self, symbol: str, client_order_id: str) -> None:
        self.orders.append(SimpleNamespace(symbol=symbol, client_order_id=client_order_id))

    def check(self) -> list[str]:
        """What the host does after a market-data hook: fire rules on rising edges."""
        fired = []
        for rule in self.rules:
            now = bool(rule.condition())
            rising = now and not rule.was_true
            rule.was_true = now
            if rising and not (rule.once and rule.fired):
                rule.fired += 1
                fired.append(rule.name)
                rule.action()
        return fired

    def bar(self, strategy: Strategy, close: float, symbol: str = "BTCUSDT",
            high: float | None = None, low: float | None = None) -> list[str]:  # fmt: skip
        c = D(repr(close))
        h = D(repr(high)) if high is not None else c
        lo = D(repr(low)) if low is not None else c
        self.clock += 1
        strategy.on_bar(Bar("paper", symbol, "5s", c, h, lo, c, D(1), 0, 0, 0, 0))
        return self.check()


def start(
    cls: type[Strategy],
    host: FakeHost,
    *,
    params: dict[str, Any] | None = None,
    symbols: tuple[str, ...] | None = None,
) -> Strategy:
    """Instantiate ``cls`` the way the host does, with ``when`` recorded by ``host``."""

    def when(
        self: Strategy,
        condition: Callable[[], object],
        action: Callable[[], object],
        *,
        once: bool = False,
        cooldown: float | str | None = None,
        name: str = "",
    ) -> None:
        host.rules.append(Registered(condition, action, once, cooldown, name))

    recorded = type(cls.__name__, (cls,), {"when": when})
    strategy = recorded()
    values = {name: p.coerce(p.default) for name, p in cls.params().items()}
    for name, raw in (params or {}).items():
        values[name] = cls.params()[name].coerce(raw)
    strategy.__dict__["_param_values"] = values
    strategy.id = "test"
    strategy._ctx = host  # type: ignore[assignment]
    strategy._symbols = symbols or cls.declared_symbols()
    strategy.log = structlog.get_logger("test")
    strategy.state = {}
    strategy.on_start()
    return strategy


__all__ = ["INSTRUMENTS", "FakeHost", "start"]
