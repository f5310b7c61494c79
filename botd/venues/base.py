"""The contract every venue adapter fulfils, and the data it declares about itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from botd.model import (
    Balance,
    ExecutionReport,
    Instrument,
    MarketEvent,
    Order,
    OrderStatus,
    VenueOrder,
)
from botd.model.enums import OrderType, TimeInForce

__all__ = ["RateLimit", "SubmitAck", "VenueAdapter", "VenueCapabilities"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limit pool a venue enforces, e.g. 6000 request weight per 60 s per IP.

    ``kind`` says how the venue counts: ``fixed`` windows aligned to the epoch (Binance's
    per-minute weight resets on the minute), a ``rolling`` window (Alpaca: 200 per any 60 s),
    or a token ``bucket`` refilled continuously (``limit`` tokens per ``interval_s``).
    """

    pool: str
    limit: int
    interval_s: float
    scope: str = "ip"  # "ip" or "account"
    kind: str = "rolling"  # "fixed" | "rolling" | "bucket"


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    order_types: frozenset[OrderType] = frozenset({OrderType.MARKET, OrderType.LIMIT})
    time_in_force: frozenset[TimeInForce] = frozenset(TimeInForce)
    post_only: bool = True
    rate_limits: tuple[RateLimit, ...] = field(default_factory=tuple)
    # What each kind of request costs in each pool: endpoint -> {pool: cost}. The gateway's
    # endpoints are order.submit, order.cancel, order.cancel_all, order.query,
    # order.open_orders, account.fills and account.balances.
    endpoint_costs: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # Timeframes whose bars the venue itself delivers through market_data (e.g. Binance
    # klines, "1m"); the bar aggregator builds no bars from trades for these.
    bar_timeframes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SubmitAck:
    """The venue's synchronous answer to an order it accepted for processing."""

    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    ts_event: int


class VenueAdapter(Protocol):
    """A trading platform as botd sees it.

    Submits raise :class:`botd.errors.OrderRejected` for a definitive refusal and
    :class:`botd.errors.TransientVenueError` when the outcome is unknown (a timeout, a 5xx, a
    dropped connection: the order may be live). Everything that happens to an order afterwards
    arrives through :meth:`executions`; :meth:`query_order`, :meth:`open_orders` and
    :meth:`fills` answer the questions reconciliation asks. Every method may raise
    ``TransientVenueError`` (retry later), ``RateLimited`` (wait) or ``AuthError`` (stop).
    """

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> VenueCapabilities: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def instruments(self) -> Mapping[str, Instrument]: ...

    def market_data(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]: ...

    def executions(self) -> AsyncIterator[ExecutionReport]: ...

    async def submit(self, order: Order) -> SubmitAck: ...

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        """Cancel one order. ``OrderRejected`` with code ``UNKNOWN_ORDER`` when the venue has
        no open order with that id (already filled, cancelled, or never received)."""
        ...

    async def cancel_all(self, symbol: str) -> None:
        """Cancel every open order of ours in ``symbol`` in one request where possible."""
        ...

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The venue's view of one order by our client id; None if the venue never saw it."""
        ...

    async def open_orders(self) -> list[VenueOrder]: ...

    async def fills(self, symbol: str, since_ns: int) -> list[ExecutionReport]:
        """Executions of our orders in ``symbol`` at or after ``since_ns``, oldest first,
        each with its trade id (for recovering fills missed while disconnected)."""
        ...

    async def balances(self) -> dict[str, Balance]: ...
