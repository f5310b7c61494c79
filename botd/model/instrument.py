from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from botd.model.enums import Side

__all__ = ["Instrument"]

_ZERO = Decimal(0)


def _round_to(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=rounding)
    return (units * step).quantize(step)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable symbol on one venue, with the venue's trading rules."""

    venue: str
    symbol: str
    base: str
    quote: str
    tick_size: Decimal  # prices must be multiples of this
    step_size: Decimal  # quantities must be multiples of this
    min_qty: Decimal = _ZERO
    min_notional: Decimal = _ZERO  # price * quantity must reach this
    max_qty: Decimal | None = None

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """Round onto the tick grid on the side that never pays more than asked:
        buys round down, sells round up."""
        return _round_to(price, self.tick_size, ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)

    def round_qty(self, qty: Decimal) -> Decimal:
        """Quantities always round down: never trade more than asked."""
        return _round_to(qty, self.step_size, ROUND_FLOOR)

    def violations(self, qty: Decimal, price: Decimal | None) -> list[str]:
        """Every rule an order of ``qty`` at ``price`` breaks; empty when it is valid.

        ``price`` is the limit price, or a reference price for a market order (for the
        notional check), or None to skip price checks.
        """
        problems: list[str] = []
        if qty <= 0:
            problems.append(f"quantity {qty} must be positive")
        if self.step_size > 0 and qty % self.step_size != 0:
            problems.append(f"quantity {qty} is not a multiple of step size {self.step_size}")
        if qty < self.min_qty:
            problems.append(f"quantity {qty} is below the minimum {self.min_qty}")
        if self.max_qty is not None and qty > self.max_qty:
            problems.append(f"quantity {qty} is above the maximum {self.max_qty}")
        if price is not None:
            if price <= 0:
                problems.append(f"price {price} must be positive")
            elif self.tick_size > 0 and price % self.tick_size != 0:
                problems.append(f"price {price} is not a multiple of tick size {self.tick_size}")
            if qty > 0 and price > 0 and qty * price < self.min_notional:
                problems.append(
                    f"notional {qty * price} is below the minimum {self.min_notional} {self.quote}"
                )
        return problems
