"""Round trips: executions grouped into trades the way a trader counts them.

A round trip is one position in one (strategy, venue, symbol), from the fill that takes it off
flat to the fill that brings it back to flat. Adding to the position (scaling in) and reducing
it (partial exits) stay inside the same round trip. A fill that crosses zero (a flip from long
to short or back) closes the round trip with the part of its quantity that reaches flat and
opens the next one, in the other direction, with the rest; its fee is split between the two in
proportion to quantity. A position still open at the end is not a round trip (see
``open_positions``); the engine's equity curve marks it to market instead.

Closing quantity is matched first in, first out against the open entry lots, so each exit's
realised P&L is the FIFO one. Because a round trip closes only when every lot is matched, its
gross P&L is also simply exit proceeds minus entry cost (with the sign of the direction).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from botd.backtest.records import FillRecord
from botd.model import Side

__all__ = ["Book", "OpenPosition", "RoundTrip", "match_fills", "open_positions", "round_trips"]

_ZERO = Decimal(0)
_PRECISION = 34  # digits for the few divisions below; sums and products stay exact


@dataclass(frozen=True, slots=True)
class RoundTrip:
    strategy_id: str
    venue: str
    symbol: str
    side: str  # "long" | "short"
    entry_ts_ns: int  # first entry fill
    exit_ts_ns: int  # the fill that brought the position back to flat
    quantity: Decimal  # total quantity entered (= total quantity exited)
    avg_entry: Decimal  # quantity-weighted over the entry fills
    avg_exit: Decimal  # quantity-weighted over the exit fills
    gross_pnl: Decimal  # before fees, quote currency
    fees: Decimal  # entry and exit fees, quote currency
    fills: int  # executions that took part (a flip fill counts in both round trips)

    @property
    def pnl(self) -> Decimal:
        """Net of fees."""
        return self.gross_pnl - self.fees

    @property
    def entry_notional(self) -> Decimal:
        return self.avg_entry * self.quantity

    @property
    def pnl_pct(self) -> Decimal:
        """Net P&L as a percentage of the capital put in (entry notional)."""
        notional = self.entry_notional
        if notional == 0:
            return _ZERO
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            return self.pnl / notional * 100

    @property
    def duration_ns(self) -> int:
        return self.exit_ts_ns - self.entry_ts_ns


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A position still open when the run ended."""

    strategy_id: str
    venue: str
    symbol: str
    side: str
    entry_ts_ns: int
    quantity: Decimal  # currently open
    avg_entry: Decimal  # of the lots still open
    fees: Decimal  # paid so far in this round trip


@dataclass(slots=True)
class _Lot:
    quantity: Decimal
    price: Decimal


@dataclass(slots=True)
class _Open:
    """The round trip being built for one (strategy, venue, symbol)."""

    direction: int  # +1 long, -1 short
    entry_ts_ns: int
    lots: deque[_Lot] = field(default_factory=deque)
    entry_qty: Decimal = _ZERO
    entry_cost: Decimal = _ZERO
    exit_qty: Decimal = _ZERO
    exit_proceeds: Decimal = _ZERO
    realised: Decimal = _ZERO
    fees: Decimal = _ZERO
    fills: int = 0

    @property
    def open_qty(self) -> Decimal:
        return self.entry_qty - self.exit_qty


_Key = tuple[str, str, str]


class Book:
    """Feeds fills one by one; collects closed round trips and the positions left open."""

    def __init__(self) -> None:
        self._open: dict[_Key, _Open] = {}
        self.closed: list[RoundTrip] = []

    def add(self, fill: FillRecord) -> None:
        if fill.quantity <= 0:
            raise ValueError(f"fill {fill.order_id!r} has a non-positive quantity")
        key = (fill.strategy_id, fill.venue, fill.symbol)
        sign = 1 if fill.side is Side.BUY else -1
        remaining = fill.quantity
        closing_fee = _ZERO
        current = self._open.get(key)
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            if current is not None and current.direction != sign:
                closing = min(remaining, current.open_qty)
                if closing < remaining:  # a flip: the fee is shared by quantity
                    closing_fee = fill.fee * closing / fill.quantity
                else:
                    closing_fee = fill.fee
                self._exit(current, closing, fill.price, closing_fee)
                remaining -= closing
                if current.open_qty == 0:
                    self.closed.append(_close(key, current, fill.ts_ns))
                    del self._open[key]
                    current = None
            if remaining > 0:
                if current is None:
                    current = _Open(direction=sign, entry_ts_ns=fill.ts_ns)
                    self._open[key] = current
                current.lots.append(_Lot(remaining, fill.price))
                current.entry_qty += remaining
                current.entry_cost += remaining * fill.price
                current.fees += fill.fee - closing_fee
                current.fills += 1

    def open_positions(self) -> list[OpenPosition]:
        result = []
        for (strategy_id, venue, symbol), pos in sorted(self._open.items()):
            qty = sum((lot.quantity for lot in pos.lots), _ZERO)
            cost = sum((lot.quantity * lot.price for lot in pos.lots), _ZERO)
            result.append(
                OpenPosition(
                    strategy_id=strategy_id,
                    venue=venue,
                    symbol=symbol,
                    side=_side_name(pos.direction),
                    entry_ts_ns=pos.entry_ts_ns,
                    quantity=qty,
                    avg_entry=_div(cost, qty),
                    fees=pos.fees,
                )
            )
        return result

    @staticmethod
    def _exit(pos: _Open, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
        left = quantity
        while left > 0:
            lot = pos.lots[0]
            matched = min(left, lot.quantity)
            pos.realised += (price - lot.price) * matched * pos.direction
            lot.quantity -= matched
            left -= matched
            if lot.quantity == 0:
                pos.lots.popleft()
        pos.exit_qty += quantity
        pos.exit_proceeds += quantity * price
        pos.fees += fee
        pos.fills += 1


def match_fills(fills: Iterable[FillRecord]) -> tuple[list[RoundTrip], list[OpenPosition]]:
    """Closed round trips ordered by exit time (then strategy, venue, symbol), and the
    positions left open ordered by strategy, venue, symbol."""
    book = Book()
    # Stable sort: fills with the same timestamp keep the order the engine produced them in.
    for fill in sorted(fills, key=lambda f: f.ts_ns):
        book.add(fill)
    closed = sorted(
        book.closed, key=lambda t: (t.exit_ts_ns, t.strategy_id, t.venue, t.symbol, t.entry_ts_ns)
    )
    return closed, book.open_positions()


def round_trips(fills: Iterable[FillRecord]) -> list[RoundTrip]:
    return match_fills(fills)[0]


def open_positions(fills: Iterable[FillRecord]) -> list[OpenPosition]:
    return match_fills(fills)[1]


def _close(key: _Key, pos: _Open, ts_ns: int) -> RoundTrip:
    strategy_id, venue, symbol = key
    return RoundTrip(
        strategy_id=strategy_id,
        venue=venue,
        symbol=symbol,
        side=_side_name(pos.direction),
        entry_ts_ns=pos.entry_ts_ns,
        exit_ts_ns=ts_ns,
        quantity=pos.entry_qty,
        avg_entry=_div(pos.entry_cost, pos.entry_qty),
        avg_exit=_div(pos.exit_proceeds, pos.exit_qty),
        gross_pnl=pos.realised,
        fees=pos.fees,
        fills=pos.fills,
    )


def _side_name(direction: int) -> str:
    return "long" if direction > 0 else "short"


def _div(a: Decimal, b: Decimal) -> Decimal:
    if b == 0:
        return _ZERO
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return a / b
