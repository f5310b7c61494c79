"""Mean reversion on RSI, written with rules: buy oversold, sell overbought.

`self.when(condition, action)` runs the action when the condition *becomes* true, so a
market that stays oversold for ten bars buys once, not ten times.
"""

from decimal import Decimal

from botd import Bar, Strategy, param
from botd.indicators import RSI


class RsiReversion(Strategy):
    api_version = 1
    venue = "paper"
    symbol = "BTCUSDT"
    timeframe = "5s"

    size = param(Decimal("0.001"), min=Decimal("0"))
    period = param(14, min=2)
    oversold = param(30.0, min=0.0, max=100.0)
    overbought = param(70.0, min=0.0, max=100.0)

    def on_start(self) -> None:
        self.rsi = RSI(self.period)
        self.when(self.is_oversold, self.enter, cooldown="1m", name="oversold")
        self.when(self.is_overbought, self.close_position, name="overbought")

    def on_bar(self, bar: Bar) -> None:
        self.rsi.update(bar.close)

    def is_oversold(self) -> bool:
        return self.rsi.value is not None and self.rsi.value < self.oversold

    def is_overbought(self) -> bool:
        return self.rsi.value is not None and self.rsi.value > self.overbought

    def enter(self) -> None:
        if self.position.is_flat and not self.open_orders:
            self.buy(self.size)
