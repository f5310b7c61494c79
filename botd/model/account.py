"""Balances and positions."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from botd.model.enums import Side

__all__ = ["Balance", "Position"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal = _ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Position:
    """A net position in one symbol, average-cost accounting.

    ``qty`` is signed: positive long, negative short. ``realized_pnl`` is in the quote asset and
    excludes fees, which are tracked separately in ``fees_quote`` when paid in the quote asset.
    """

    venue: str
    symbol: str
    qty: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO
    fees_quote: Decimal = _ZERO
    # A holding smaller than this cannot be traded (below the venue's step or minimum
    # quantity, typically left behind by fees paid in the base asset), so it counts as flat.
    min_tradable: Decimal = _ZERO
    # What the open quantity cost (quote, fees apart), kept exactly: ``avg_price`` is derived
    # from it, so a round trip realizes exactly ``proceeds - cost`` instead of carrying the
    # rounding of a divided average into the P&L. Zero when unknown (a position built from
    # qty and avg_price alone); then ``avg_price * |qty|`` stands in for it.
    cost: Decimal = field(default=_ZERO, compare=False, repr=False)

    def _cost(self) -> Decimal:
        return self.cost if self.cost or not self.qty else self.avg_price * abs(self.qty)

    @property
    def is_flat(self) -> bool:
        return abs(self.qty) < self.min_tradable if self.min_tradable else self.qty == 0

    @property
    def is_long(self) -> bool:
        return not self.is_flat and self.qty > 0

    @property
    def is_short(self) -> bool:
        return not self.is_flat and self.qty < 0

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return (mark - self.avg_price) * self.qty

    def apply_fill(self, side: Side, qty: Decimal, price: Decimal) -> Position:
        signed = qty if side is Side.BUY else -qty
        old = self.qty
        new = old + signed
        cost = self._cost()
        if old == 0 or (old > 0) == (signed > 0):
            # Opening or adding: the average moves.
            cost += price * qty
            return replace(self, qty=new, avg_price=cost / abs(new), cost=cost)
        closed = min(abs(old), qty)
        direction = 1 if old > 0 else -1
        # The closed part's share of the cost; exact when the whole position closes.
        share = cost if closed == abs(old) else cost * closed / abs(old)
        realized = self.realized_pnl + (price * closed - share) * direction
        if new == 0:
            return replace(self, qty=new, avg_price=_ZERO, realized_pnl=realized, cost=_ZERO)
        if (new > 0) == (old > 0):
            return replace(self, qty=new, realized_pnl=realized, cost=cost - share)
        # Flipped through zero: the remainder opens at this price.
        return replace(self, qty=new, avg_price=price, realized_pnl=realized, cost=price * abs(new))

    def apply_fee(self, fee: Decimal, asset: str, *, base: str, quote: str) -> Position:
        """Account for a fee. A fee paid in the base asset shrinks the holding (what a venue
        really leaves in the account) while the cost stays, so the average price rises."""
        if asset == quote:
            return replace(self, fees_quote=self.fees_quote + fee)
        if asset == base and self.qty != 0:
            new_qty = self.qty - fee if self.qty > 0 else self.qty + fee
            if new_qty == 0 or (new_qty > 0) != (self.qty > 0):
                return replace(self, qty=_ZERO, avg_price=_ZERO, cost=_ZERO)
            cost = self._cost()  # the holding shrinks, what it cost does not
            return replace(self, qty=new_qty, avg_price=cost / abs(new_qty), cost=cost)
        return self
