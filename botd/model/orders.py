"""Orders: what a strategy asks for, what the venue holds, and what happened to it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from botd.model.enums import Liquidity, OrderStatus, OrderType, Side, TimeInForce

__all__ = [
    "ExecutionReport",
    "Fill",
    "IllegalTransition",
    "Order",
    "OrderIntent",
    "OrderUpdate",
    "VenueOrder",
    "stop_problem",
]

_ZERO = Decimal(0)

S = OrderStatus
# Which status may follow which. Fills may arrive before the acknowledgement on some venues,
# and a cancel can lose the race against a fill, so those paths are allowed.
_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # A PENDING order was never sent: cancelling it needs no venue, and risk can still deny it.
    S.PENDING: frozenset({S.SUBMITTED, S.REJECTED, S.CANCELED}),
    S.SUBMITTED: frozenset(
        {
            S.ACCEPTED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.PENDING_CANCEL,
            S.CANCELED,
            S.REJECTED,
            S.EXPIRED,
            S.UNKNOWN,
        }
    ),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}
    ),
    S.PENDING_CANCEL: frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.UNKNOWN: frozenset(
        {
            S.ACCEPTED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.PENDING_CANCEL,
            S.CANCELED,
            S.REJECTED,
            S.EXPIRED,
        }
    ),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


def stop_problem(type: OrderType, price: Decimal | None, stop_price: Decimal | None) -> str | None:
    """Why ``stop_price`` does not fit the order ``type``; None if it does. A stop or
    stop-limit order needs a stop price, a stop-limit order a limit price as well, and no
    other type may carry a stop price."""
    if type is OrderType.STOP or type is OrderType.STOP_LIMIT:
        if stop_price is None:
            return f"a {type.value} order needs a stop price"
        if type is OrderType.STOP_LIMIT and price is None:
            return "a stop_limit order needs a limit price as well as a stop price"
        if type is OrderType.STOP and price is not None:
            return "a stop order triggers a market order and takes no limit price"
        return None
    if stop_price is not None:
        return f"a {type.value} order takes no stop price"
    return None


class IllegalTransition(ValueError):
    def __init__(self, client_order_id: str, old: OrderStatus, new: OrderStatus) -> None:
        super().__init__(f"order {client_order_id}: {old.value} cannot become {new.value}")
        self.old = old
        self.new = new


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a strategy wants. Risk checks it; the gateway turns it into an :class:`Order`."""

    strategy_id: str
    venue: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reduce_only: bool = False
    ts: int = 0
    # The trigger of a stop or stop-limit order; must be None for every other type.
    stop_price: Decimal | None = None

    def __post_init__(self) -> None:
        problem = stop_problem(self.type, self.price, self.stop_price)
        if problem is not None:
            raise ValueError(problem)


# What an order's transitions change besides its status (the rest is fixed at creation).
_PER_TRANSITION = frozenset({"filled_qty", "avg_fill_price", "venue_order_id", "reason"})


@dataclass(frozen=True, slots=True)
class Order:
    """One order as botd knows it. Changes produce a new value through :meth:`transition`."""

    client_order_id: str
    strategy_id: str
    venue: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    tif: TimeInForce
    post_only: bool = False
    status: OrderStatus = OrderStatus.PENDING
    filled_qty: Decimal = _ZERO
    avg_fill_price: Decimal | None = None
    venue_order_id: str | None = None
    reason: str = ""
    ts_created: int = 0
    ts_updated: int = 0
    # The trigger of a stop or stop-limit order (see :class:`OrderIntent`); None otherwise.
    stop_price: Decimal | None = None

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def can_become(self, status: OrderStatus) -> bool:
        return status in _TRANSITIONS[self.status]

    def transition(self, status: OrderStatus, ts: int, **changes: object) -> Order:
        if status not in _TRANSITIONS[self.status]:
            raise IllegalTransition(self.client_order_id, self.status, status)
        if not changes.keys() <= _PER_TRANSITION:
            return replace(self, status=status, ts_updated=ts, **changes)  # type: ignore[arg-type]
        # Every order update goes through here: the constructor called directly is about
        # twice as fast as dataclasses.replace, which matters on the backtest's order path.
        get = changes.get
        return Order(
            self.client_order_id,
            self.strategy_id,
            self.venue,
            self.symbol,
            self.side,
            self.type,
            self.qty,
            self.price,
            self.tif,
            self.post_only,
            status,
            get("filled_qty", self.filled_qty),  # type: ignore[arg-type]
            get("avg_fill_price", self.avg_fill_price),  # type: ignore[arg-type]
            get("venue_order_id", self.venue_order_id),  # type: ignore[arg-type]
            get("reason", self.reason),  # type: ignore[arg-type]
            self.ts_created,
            ts,
            self.stop_price,
        )

    def with_fill(self, qty: Decimal, price: Decimal, ts: int) -> Order:
        """Account for one execution; the status becomes partially filled or filled."""
        filled = self.filled_qty + qty
        if filled > self.qty:
            raise ValueError(
                f"order {self.client_order_id}: fills {filled} exceed quantity {self.qty}"
            )
        prev_cost = (self.avg_fill_price or _ZERO) * self.filled_qty
        avg = (prev_cost + qty * price) / filled
        status = OrderStatus.FILLED if filled == self.qty else OrderStatus.PARTIALLY_FILLED
        return self.transition(status, ts, filled_qty=filled, avg_fill_price=avg)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders."""

    client_order_id: str
    strategy_id: str
    venue: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    trade_id: str
    venue_order_id: str
    ts_event: int
    ts_recv: int

    @property
    def notional(self) -> Decimal:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order changed status. Published on the bus and handed to the owning strategy."""

    order: Order
    previous: OrderStatus
    ts_event: int
    ts_recv: int

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def strategy_id(self) -> str:
        return self.order.strategy_id

    @property
    def venue(self) -> str:
        return self.order.venue

    @property
    def symbol(self) -> str:
        return self.order.symbol

    @property
    def status(self) -> OrderStatus:
        return self.order.status

    @property
    def reason(self) -> str:
        return self.order.reason


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """What a venue says about one of our orders, already in domain terms.

    Adapters produce these from their user-data streams and REST answers; the gateway applies
    them to its orders. A report with ``last_qty > 0`` carries one execution.
    """

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    ts_event: int
    last_qty: Decimal = _ZERO
    last_price: Decimal = _ZERO
    fee: Decimal = _ZERO
    fee_asset: str = ""
    liquidity: Liquidity = Liquidity.TAKER
    trade_id: str = ""
    reason: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """The venue's current view of one order, as answered by an order query or an open-orders
    listing. ``filled_qty`` and ``avg_price`` are cumulative."""

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    status: OrderStatus
    filled_qty: Decimal
    avg_price: Decimal | None
    ts_event: int
    stop_price: Decimal | None = None
