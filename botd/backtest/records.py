"""What a backtest run records: every execution and the equity curve.

The engine produces these; the statistics, the trade list and the report consume them.
Money is Decimal in quote currency throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from botd.model import Side

__all__ = ["EquityPoint", "FillRecord"]


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One execution, as the simulated venue reported it."""

    ts_ns: int
    strategy_id: str
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal  # in quote currency
    order_id: str
    liquidity: str  # "maker" | "taker"


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """Account value at one instant, open positions marked to market."""

    ts_ns: int
    equity: Decimal
    exposure: Decimal  # |position market value| in quote currency
