"""botd: an event-driven automated trading daemon.

This module is the public API for strategy authors; everything else is internal.
"""

from botd.model import (
    Balance,
    Bar,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    Quote,
    Side,
    TimeInForce,
    Trade,
)
from botd.strategy import API_VERSION, Strategy, param
from botd.strategy.when import crosses_above, crosses_below

__all__ = [
    "API_VERSION",
    "Balance",
    "Bar",
    "Fill",
    "Instrument",
    "Order",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Position",
    "Quote",
    "Side",
    "Strategy",
    "TimeInForce",
    "Trade",
    "crosses_above",
    "crosses_below",
    "param",
]
