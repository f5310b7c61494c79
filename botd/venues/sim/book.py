"""One symbol's order book: price levels in price-time priority.

Each side keeps a dict of price levels plus a sorted list of level keys whose *last* element is
the best price, so the best level is O(1), a new level costs a bisect, and consuming the best
level is a list ``pop()``. Asks are keyed by the negated price to share that layout with bids.
Cancelled orders are removed lazily: marked dead and skipped when they reach the front.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from botd.model import OrderType, Side, TimeInForce

__all__ = ["Book", "BookSide", "Level", "SimOrder"]

_ZERO = Decimal(0)
# A level's deque is rebuilt once dead entries outnumber live ones by this much, which bounds
# the garbage that lazy deletion leaves behind at a busy price.
_COMPACT_SLACK = 16


@dataclass(slots=True, eq=False)
class SimOrder:
    """An order inside the engine. Mutable; never leaves the engine."""

    account: str
    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    tif: TimeInForce
    post_only: bool
    ts: int
    filled: Decimal = _ZERO
    # Funds still reserved for this order: quote for a buy, base for a sell.
    locked: Decimal = _ZERO
    live: bool = False  # resting in the book
    cost: Decimal = _ZERO  # sum of qty * price over its executions, for the average price
    updated: int = 0  # ts of the last thing that happened to it
    # Stop and stop-limit orders: the trigger. ``type`` stays STOP/STOP_LIMIT while the order
    # waits off the book and becomes MARKET/LIMIT when it triggers; this stays set.
    stop_price: Decimal | None = None

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled


class Level:
    __slots__ = ("live", "orders", "price", "size")

    def __init__(self, price: Decimal) -> None:
        self.price = price
        self.orders: deque[SimOrder] = deque()
        self.size = _ZERO  # aggregated remaining quantity of the live orders
        self.live = 0

    def front(self) -> SimOrder:
        orders = self.orders
        while not orders[0].live:
            orders.popleft()
        return orders[0]


class BookSide:
    __slots__ = ("_keys", "_levels", "side")

    def __init__(self, side: Side) -> None:
        self.side = side
        self._levels: dict[Decimal, Level] = {}
        self._keys: list[Decimal] = []  # ascending; the best level's key is last

    def _key(self, price: Decimal) -> Decimal:
        return price if self.side is Side.BUY else price.copy_negate()

    def __len__(self) -> int:
        return len(self._keys)

    def best(self) -> Level | None:
        keys = self._keys
        return self._levels[keys[-1]] if keys else None

    def levels(self) -> Iterator[Level]:
        """Levels best first."""
        levels = self._levels
        for key in reversed(self._keys):
            yield levels[key]

    def add(self, order: SimOrder) -> None:
        assert order.price is not None
        key = self._key(order.price)
        level = self._levels.get(key)
        if level is None:
            level = self._levels[key] = Level(order.price)
            insort(self._keys, key)
        level.orders.append(order)
        level.size += order.remaining
        level.live += 1
        order.live = True

    def remove(self, order: SimOrder) -> None:
        """Take a resting order out (cancel)."""
        assert order.price is not None
        assert order.live
        key = self._key(order.price)
        level = self._levels[key]
        order.live = False
        level.size -= order.remaining
        level.live -= 1
        if level.live == 0:
            self._drop(key)
        elif len(level.orders) > 2 * level.live + _COMPACT_SLACK:
            level.orders = deque(o for o in level.orders if o.live)

    def fill_front(self, level: Level, order: SimOrder, qty: Decimal) -> None:
        """Execute ``qty`` of ``order``, which is ``level.front()`` of the best level."""
        order.filled += qty
        level.size -= qty
        if order.filled == order.qty:
            order.live = False
            level.orders.popleft()
            level.live -= 1
            if level.live == 0:
                del self._levels[self._keys.pop()]

    def _drop(self, key: Decimal) -> None:
        keys = self._keys
        del keys[bisect_left(keys, key)]
        del self._levels[key]

    def check(self) -> None:
        """Structural invariants, for tests."""
        if self._keys != sorted(self._keys) or set(self._keys) != set(self._levels):
            raise AssertionError(f"{self.side.value} side keys out of order or out of sync")
        for level in self._levels.values():
            live = [o for o in level.orders if o.live]
            if not live or len(live) != level.live:
                raise AssertionError(f"level {level.price}: live count {level.live} is wrong")
            if sum((o.remaining for o in live), _ZERO) != level.size:
                raise AssertionError(f"level {level.price}: size {level.size} is wrong")
            if any(o.price != level.price or o.side is not self.side for o in live):
                raise AssertionError(f"level {level.price} holds a foreign order")


class Book:
    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids = BookSide(Side.BUY)
        self.asks = BookSide(Side.SELL)

    def side(self, side: Side) -> BookSide:
        return self.bids if side is Side.BUY else self.asks
