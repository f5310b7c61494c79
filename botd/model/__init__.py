"""Frozen value types shared by every part of botd."""

from botd.model.account import Balance, Position
from botd.model.enums import Liquidity, OrderStatus, OrderType, Side, TimeInForce
from botd.model.instrument import Instrument
from botd.model.market import Bar, BookDelta, BookLevel, BookSnapshot, MarketEvent, Quote, Trade
from botd.model.orders import (
    ExecutionReport,
    Fill,
    IllegalTransition,
    Order,
    OrderIntent,
    OrderUpdate,
    VenueOrder,
)

__all__ = [
    "Balance",
    "Bar",
    "BookDelta",
    "BookLevel",
    "BookSnapshot",
    "ExecutionReport",
    "Fill",
    "IllegalTransition",
    "Instrument",
    "Liquidity",
    "MarketEvent",
    "Order",
    "OrderIntent",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Position",
    "Quote",
    "Side",
    "TimeInForce",
    "Trade",
    "VenueOrder",
]
