"""Donchian channel breakout: buy a close above the highest high of the last N bars, exit on
a close below the lowest low of the last M bars (the classic "turtle" rule, long only)."""

from decimal import Decimal

from botd import Bar, Strategy, param
from botd.indicators import DonchianChannel


class DonchianBreakout(Strategy):
    api_version = 1
    venue = "paper"
    symbol = "BTCUSDT"
    timeframe = "10s"

    size = param(Decimal("0.001"), min=Decimal("0"))
    entry = param(20, min=2, doc="breakout channel length, in bars")
    exit = param(10, min=2, doc="exit channel length, in bars")

    def on_start(self) -> None:
        self.entry_channel = DonchianChannel(self.entry)
        self.exit_channel = DonchianChannel(self.exit)

    def on_bar(self, bar: Bar) -> None:
        # The channels of the bars *before* this one: a breakout is a close beyond them.
        entry, leave = self.entry_channel.value, self.exit_channel.value
        self.entry_channel.update(bar.high, bar.low)
        self.exit_channel.update(bar.high, bar.low)
        if entry is None or leave is None or self.open_orders:
            return
        if self.position.is_flat and bar.close > entry.upper:
            self.log.info("breakout", close=str(bar.close), channel_high=entry.upper)
            self.buy(self.size)
        elif self.position.is_long and bar.close < leave.lower:
            self.log.info("exit", close=str(bar.close), channel_low=leave.lower)
            self.close_position()
