"""The contract every venue adapter fulfils, and the data it declares about itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from botd.model import Balance, ExecutionReport, Instrument, MarketEvent, Order, OrderStatus
from botd.model.enums import OrderType, TimeInForce

__all__ = ["RateLimit", "SubmitAck", "VenueAdapter", "VenueCapabilities"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limit pool a venue enforces, e.g. 6000 request weight per 60 s per IP."""

    pool: str
    limit: int
    interval_s: float
    scope: str = "ip"  # "ip" or "account"


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    order_types: frozenset[OrderType] = frozenset({OrderType.MARKET, OrderType.LIMIT})
    time_in_force: frozenset[TimeInForce] = frozenset(TimeInForce)
    post_only: bool = True
    rate_limits: tuple[RateLimit, ...] = field(default_factory=tuple)


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
    :class:`botd.errors.TransientVenueError` when the outcome is unknown. Everything that
    happens to an order afterwards arrives through :meth:`executions`.
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

    async def cancel(self, symbol: str, client_order_id: str) -> None: ...

    async def open_orders(self) -> list[ExecutionReport]: ...

    async def balances(self) -> dict[str, Balance]: ...
