"""Long-only moving-average crossover on the mid price.

Buys when the fast average crosses above the slow one and sells when it crosses back below.
"""

from decimal import Decimal

from botd import Quote, Strategy, param
from botd.indicators import SMA


class SmaCross(Strategy):
    api_version = 1
    venue = "paper"
    symbol = "ETHUSDT"

    size = param(Decimal("0.01"), min=Decimal("0"))
    fast = param(10, min=1, doc="fast average length, in quotes")
    slow = param(40, min=2, doc="slow average length, in quotes")

    def on_start(self) -> None:
        if self.fast >= self.slow:
            raise ValueError("`fast` must be shorter than `slow`")
        self.fast_ma = SMA(self.fast)
        self.slow_ma = SMA(self.slow)
        self.was_above: bool | None = None

    def on_quote(self, quote: Quote) -> None:
        f = self.fast_ma.update(quote.mid)
        s = self.slow_ma.update(quote.mid)
        if f is None or s is None:
            return  # still warming up
        above = f > s
        crossed = self.was_above is not None and above != self.was_above
        self.was_above = above
        if not crossed or self.open_orders:
            return
        if above and self.position.is_flat:
            self.buy(self.size)
        elif not above and self.position.is_long:
            self.close_position()
