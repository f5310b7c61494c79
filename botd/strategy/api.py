"""The public strategy API (version 1): what a plugin file subclasses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Protocol

import structlog

from botd.durations import parse_duration
from botd.model import (
    Balance,
    Bar,
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderType,
    OrderUpdate,
    Position,
    Quote,
    Side,
    TimeInForce,
    Trade,
)
from botd.strategy.params import Param
from botd.strategy.when import WhenRule

__all__ = ["API_VERSION", "Strategy", "StrategyContext"]

API_VERSION = 1


class StrategyContext(Protocol):
    """What the host gives a strategy: a narrow view, never the gateway or the settings."""

    def now_ns(self) -> int: ...
    def add_rule(self, strategy_id: str, rule: WhenRule) -> None: ...
    def every(self, strategy_id: str, interval_s: float, fn: Callable[[], None]) -> None: ...
    def cron(self, strategy_id: str, expr: str, fn: Callable[[], None], tz: str) -> None: ...
    def submit(self, intent: OrderIntent) -> str: ...
    def cancel(self, client_order_id: str) -> None: ...
    def open_orders(self, strategy_id: str) -> list[Order]: ...
    def position(self, strategy_id: str, venue: str, symbol: str) -> Position: ...
    def balance(self, venue: str, asset: str) -> Balance: ...
    def last_quote(self, venue: str, symbol: str) -> Quote | None: ...
    def instrument(self, venue: str, symbol: str) -> Instrument: ...
    def market_open(self, venue: str, symbol: str) -> bool: ...


class Strategy:
    """Subclass this in a file under ``strategies/``.

    Hooks are plain synchronous methods: override the ones you need. Actions (``buy``, ``sell``,
    ``cancel``…) hand an intent to risk checks and the gateway and return at once with the
    client order id; what happens next arrives in ``on_order`` and ``on_fill``.
    """

    api_version: ClassVar[int] = API_VERSION
    venue: ClassVar[str] = "paper"
    symbol: ClassVar[str | None] = None
    symbols: ClassVar[Sequence[str]] = ()
    timeframe: ClassVar[str] = "1m"  # bars for on_bar, built from trades

    # Set by the host before on_start.
    id: str
    log: structlog.typing.FilteringBoundLogger
    state: dict[str, Any]
    _ctx: StrategyContext
    _symbols: tuple[str, ...]
    _param_values: dict[str, Any]

    # -- hooks ------------------------------------------------------------------------------
    def on_start(self) -> None:
        pass

    def on_stop(self) -> None:
        pass

    def on_quote(self, quote: Quote) -> None:
        pass

    def on_trade(self, trade: Trade) -> None:
        pass

    def on_bar(self, bar: Bar) -> None:
        pass

    def on_fill(self, fill: Fill) -> None:
        pass

    def on_order(self, update: OrderUpdate) -> None:
        pass

    def on_session_open(self) -> None:
        """The regular session of this strategy's (first) symbol opened (US equities: 09:30
        New York time on trading days). Never called for symbols that trade around the
        clock."""

    def on_session_close(self) -> None:
        """The regular session closed (16:00 New York time, or an early close)."""

    # -- identity and parameters ------------------------------------------------------------
    @classmethod
    def params(cls) -> dict[str, Param[Any]]:
        found: dict[str, Param[Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Param):
                    found[name] = value
        return found

    @classmethod
    def declared_symbols(cls) -> tuple[str, ...]:
        if cls.symbols:
            return tuple(cls.symbols)
        return (cls.symbol,) if cls.symbol else ()

    @property
    def traded_symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def primary_symbol(self) -> str:
        return self._symbols[0]

    # -- views ------------------------------------------------------------------------------
    @property
    def now(self) -> int:
        """Current time in ns since the epoch (simulated time in a backtest)."""
        return self._ctx.now_ns()

    @property
    def position(self) -> Position:
        """This strategy's own position in its (first) symbol, built from its own fills."""
        return self._ctx.position(self.id, self.venue, self.primary_symbol)

    def position_of(self, symbol: str) -> Position:
        return self._ctx.position(self.id, self.venue, symbol)

    @property
    def open_orders(self) -> list[Order]:
        return self._ctx.open_orders(self.id)

    def balance(self, asset: str) -> Balance:
        return self._ctx.balance(self.venue, asset)

    def last_quote(self, symbol: str | None = None) -> Quote | None:
        return self._ctx.last_quote(self.venue, symbol or self.primary_symbol)

    def instrument(self, symbol: str | None = None) -> Instrument:
        return self._ctx.instrument(self.venue, symbol or self.primary_symbol)

    @property
    def market_open(self) -> bool:
        """Whether this strategy's (first) symbol is in its regular trading session now:
        always True for crypto and other around-the-clock venues, the exchange calendar's
        answer for US equities."""
        return self._ctx.market_open(self.venue, self.primary_symbol)

    # -- rules and timers -------------------------------------------------------------------
    def when(
        self,
        condition: Callable[[], object],
        action: Callable[[], object],
        *,
        once: bool = False,
        cooldown: float | str | None = None,
        name: str = "",
    ) -> None:
        """Run ``action`` each time ``condition`` *becomes* true (not on every event while it
        stays true). Conditions are checked after each of this strategy's market-data hooks.
        ``once`` fires at most once; ``cooldown`` ("30s", "5m", or seconds) skips edges that
        come sooner than that after the last firing."""
        cooldown_s = None if cooldown is None else parse_duration(cooldown)
        rule = WhenRule(condition, action, once=once, cooldown_s=cooldown_s, name=name)
        self._ctx.add_rule(self.id, rule)

    def every(self, interval: float | str, fn: Callable[[], None]) -> None:
        """Call ``fn`` every ``interval`` ("500ms", "5m", "1h" or seconds) until this strategy
        stops or reloads."""
        self._ctx.every(self.id, parse_duration(interval), fn)

    def cron(self, expr: str, fn: Callable[[], None], *, tz: str = "UTC") -> None:
        """Call ``fn`` on a crontab schedule, e.g. ``"30 15 * * MON-FRI"`` (weekdays 0 and 7
        are Sunday, as in crontab)."""
        self._ctx.cron(self.id, expr, fn, tz)

    # -- actions ----------------------------------------------------------------------------
    def buy(
        self,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        *,
        quote: Decimal | None = None,
        fraction: float | None = None,
        symbol: str | None = None,
        type: OrderType | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        reduce_only: bool = False,
        stop: Decimal | None = None,
    ) -> str:
        """Buy ``qty``, or ``quote`` worth, or ``fraction`` of the free quote balance, at
        ``price`` (a limit order) or at market.

        With ``stop`` the order waits at the venue until the last trade price rises to
        ``stop`` or above, then buys at market (a stop order) or, with ``price`` as well, at
        that limit (a stop-limit order). Sizing by ``quote`` or ``fraction`` then uses the
        limit, or else the stop price."""
        ref = price if price is not None else stop
        qty = self._size(Side.BUY, qty, ref, quote, fraction, symbol)
        return self._order(Side.BUY, qty, price, symbol, type, tif, post_only, reduce_only, stop)

    def sell(
        self,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        *,
        quote: Decimal | None = None,
        fraction: float | None = None,
        symbol: str | None = None,
        type: OrderType | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        reduce_only: bool = False,
        stop: Decimal | None = None,
    ) -> str:
        """Sell ``qty``, or ``quote`` worth, or ``fraction`` of the free base balance, at
        ``price`` (a limit order) or at market.

        With ``stop`` the order waits at the venue until the last trade price falls to
        ``stop`` or below, then sells at market (a stop order: a stop-loss) or, with ``price``
        as well, at that limit (a stop-limit order)."""
        ref = price if price is not None else stop
        qty = self._size(Side.SELL, qty, ref, quote, fraction, symbol)
        return self._order(Side.SELL, qty, price, symbol, type, tif, post_only, reduce_only, stop)

    def stop_loss(
        self, stop: Decimal, *, price: Decimal | None = None, symbol: str | None = None
    ) -> str | None:
        """Protect this strategy's whole position: a stop order on the closing side (a sell
        stop below the market for a long, a buy stop above it for a short), reduce-only, at
        market once triggered or at ``price`` (a stop-limit). None when flat. Cancel it (or
        let it fill) yourself when the position changes."""
        pos = self.position_of(symbol or self.primary_symbol)
        if pos.is_flat:
            return None
        side = Side.SELL if pos.is_long else Side.BUY
        return self._order(
            side, abs(pos.qty), price, pos.symbol, None, TimeInForce.GTC, False, True, stop
        )

    def cancel(self, client_order_id: str) -> None:
        self._ctx.cancel(client_order_id)

    def cancel_all(self) -> None:
        for order in self._ctx.open_orders(self.id):
            self._ctx.cancel(order.client_order_id)

    def close_position(self, symbol: str | None = None) -> str | None:
        """Send a market order that flattens this strategy's position; None when flat."""
        pos = self.position_of(symbol or self.primary_symbol)
        if pos.is_flat:
            return None
        side = Side.SELL if pos.is_long else Side.BUY
        return self._order(
            side, abs(pos.qty), None, pos.symbol, OrderType.MARKET, TimeInForce.GTC, False, True
        )

    def _size(
        self,
        side: Side,
        qty: Decimal | None,
        price: Decimal | None,
        quote: Decimal | None,
        fraction: float | None,
        symbol: str | None,
    ) -> Decimal:
        given = [
            name
            for name, v in (("qty", qty), ("quote", quote), ("fraction", fraction))
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of qty, quote or fraction")
        if qty is not None:
            return _as_decimal(qty, "qty")
        sym = symbol or self.primary_symbol
        inst = self._ctx.instrument(self.venue, sym)
        if fraction is not None:
            f = _as_decimal(fraction, "fraction")
            if not 0 < f <= 1:
                raise ValueError(f"fraction must be in (0, 1], got {fraction}")
            if side is Side.SELL:
                return inst.round_qty(self._ctx.balance(self.venue, inst.base).free * f)
            quote = self._ctx.balance(self.venue, inst.quote).free * f
        assert quote is not None
        ref = price
        if ref is None:
            q = self._ctx.last_quote(self.venue, sym)
            if q is None:
                raise ValueError(f"no quote for {sym} yet: cannot size an order by amount")
            ref = q.ask if side is Side.BUY else q.bid
        return inst.round_qty(_as_decimal(quote, "quote") / _as_decimal(ref, "price"))

    def _order(
        self,
        side: Side,
        qty: Decimal,
        price: Decimal | None,
        symbol: str | None,
        type: OrderType | None,
        tif: TimeInForce,
        post_only: bool,
        reduce_only: bool,
        stop: Decimal | None = None,
    ) -> str:
        if stop is not None:
            order_type = type or (OrderType.STOP if price is None else OrderType.STOP_LIMIT)
        else:
            order_type = type or (OrderType.LIMIT if price is not None else OrderType.MARKET)
        if order_type.has_limit and price is None:
            raise ValueError(f"a {order_type.value} order needs a price")
        intent = OrderIntent(
            strategy_id=self.id,
            venue=self.venue,
            symbol=symbol or self.primary_symbol,
            side=side,
            qty=qty,
            type=order_type,
            price=None if price is None else _as_decimal(price, "price"),
            tif=tif,
            post_only=post_only,
            reduce_only=reduce_only,
            ts=self._ctx.now_ns(),
            stop_price=None if stop is None else _as_decimal(stop, "stop"),
        )
        return self._ctx.submit(intent)


def _as_decimal(value: object, what: str) -> Decimal:
    """Strategies may pass floats for convenience; convert once, through the shortest repr."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number, not bool")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    raise TypeError(f"{what} must be a Decimal, int or float, not {type(value).__name__}")
