from __future__ import annotations

from enum import StrEnum

__all__ = ["Liquidity", "OrderStatus", "OrderType", "Side", "TimeInForce"]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    # Rest untriggered at the venue until the last trade price reaches ``stop_price`` (at or
    # above it for a buy, at or below for a sell), then become a market or a limit order.
    STOP = "stop"
    STOP_LIMIT = "stop_limit"

    @property
    def is_stop(self) -> bool:
        return self is OrderType.STOP or self is OrderType.STOP_LIMIT

    @property
    def has_limit(self) -> bool:
        """Whether the order carries a limit price (once triggered, for a stop-limit)."""
        return self is OrderType.LIMIT or self is OrderType.STOP_LIMIT

    @property
    def triggered(self) -> OrderType:
        """What a stop becomes when it triggers (other types are themselves)."""
        if self is OrderType.STOP:
            return OrderType.MARKET
        if self is OrderType.STOP_LIMIT:
            return OrderType.LIMIT
        return self


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till cancelled
    IOC = "ioc"  # immediate or cancel: fill what you can now, expire the rest
    FOK = "fok"  # fill or kill: fill all of it now or none of it


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class OrderStatus(StrEnum):
    PENDING = "pending"  # built and journaled locally, not yet sent
    SUBMITTED = "submitted"  # sent; no answer yet
    ACCEPTED = "accepted"  # open on the venue
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    UNKNOWN = "unknown"  # the send timed out or failed ambiguously; must be resolved by query
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        return not self.is_terminal


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
