"""Long-only moving-average crossover on bars.

Buys when the fast average of closes crosses above the slow one and sells when it crosses back
below. Bars are built from the venue's trades; change `timeframe` to trade slower or faster.
"""

from decimal import Decimal

from botd import Bar, Strategy, param
from botd.indicators import SMA


class SmaCross(Strategy):
    api_version = 1
    venue = "paper"
    symbol = "ETHUSDT"
    timeframe = "10s"

    size = param(Decimal("0.01"), min=Decimal("0"))
    fast = param(6, min=1, doc="fast average length, in bars")
    slow = param(18, min=2, doc="slow average length, in bars")

    def on_start(self) -> None:
        if self.fast >= self.slow:
            raise ValueError("`fast` must be shorter than `slow`")
        self.fast_ma = SMA(self.fast)
        self.slow_ma = SMA(self.slow)

    def on_bar(self, bar: Bar) -> None:
        f = self.fast_ma.update(bar.close)
        s = self.slow_ma.update(bar.close)
        if f is None or s is None or self.open_orders:
            return  # warming up, or the last order is still working
        if f > s and self.position.is_flat:
            self.buy(self.size)
        elif f < s and self.position.is_long:
            self.close_position()
