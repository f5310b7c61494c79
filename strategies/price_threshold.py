"""The beginner's strategy: buy when the price falls below one level, sell above another.

Set your own levels in botd.toml:

    [strategies.price_threshold]
    below = 64900
    above = 65100
    size = 0.001
"""

from decimal import Decimal

from botd import Quote, Strategy, param


class PriceThreshold(Strategy):
    api_version = 1
    venue = "paper"
    symbol = "BTCUSDT"

    size = param(Decimal("0.001"), min=Decimal("0"), doc="how much to buy each time")
    below = param(Decimal("64950"), doc="buy when the ask falls below this price")
    above = param(Decimal("65050"), doc="sell when the bid rises above this price")

    def on_start(self) -> None:
        if self.below >= self.above:
            raise ValueError("`below` must be lower than `above`")
        self.log.info("watching", below=str(self.below), above=str(self.above))

    def on_quote(self, quote: Quote) -> None:
        if self.open_orders:
            return  # one order at a time: wait until the last one is done
        if self.position.is_flat and quote.ask < self.below:
            self.buy(self.size)
        elif self.position.is_long and quote.bid > self.above:
            self.close_position()
