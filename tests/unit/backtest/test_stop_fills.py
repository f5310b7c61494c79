"""Stop and stop-limit orders in backtests, end to end through host, risk, gateway and the
backtest venue: triggered along the bar's conservative path, at the open after a gap, by the
bid or ask on quote data."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from botd.backtest import run
from botd.model import OrderStatus, OrderType, Side
from tests.unit.backtest.btdata import MINUTE_MS, START_MS
from tests.unit.backtest.test_fills import data, strategy

NS = 1_000_000
D = Decimal
THIRD_NS = MINUTE_MS * NS // 3  # a bar's first extreme comes a third of the way in


def bar_start(i: int) -> int:
    return (START_MS + i * MINUTE_MS) * NS


# Bar 0: buy decided at the close; bar 1: filled at its open (100) and the stop decided at its
# close; bar 2 is the one under test.
BUY_THEN_STOP = """
if n == 1:
    self.buy(self.size)
if n == 2:
    self.state["stop"] = self.stop_loss(Decimal("97"))
"""


def bars(third: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    return [(100.0, 101.0, 99.0, 100.0), (100.0, 101.0, 99.5, 100.0), third, (97, 98, 96, 97)]


def test_a_stop_loss_reached_inside_the_bar_fills_at_its_stop(tmp_path: Path) -> None:
    result = run(
        strategy(tmp_path, BUY_THEN_STOP), data(tmp_path, bars((100, 100.5, 96, 96.5))), fees=D(0)
    )
    buy, sell = result.fills
    assert (buy.side, buy.price) == (Side.BUY, D("100.00"))
    assert (sell.side, sell.price, sell.quantity, sell.liquidity) == (
        Side.SELL,
        D("97.00"),
        D("1"),
        "taker",
    )
    assert sell.ts_ns == bar_start(2) + THIRD_NS  # on the way to the low
    stop = [o for o in result.orders if o.type is OrderType.STOP]
    assert len(stop) == 1
    assert (stop[0].status, stop[0].stop_price, stop[0].side) == (
        OrderStatus.FILLED,
        D("97.00"),
        Side.SELL,
    )


def test_a_gap_through_the_stop_fills_at_the_open_not_the_stop(tmp_path: Path) -> None:
    result = run(
        strategy(tmp_path, BUY_THEN_STOP), data(tmp_path, bars((95, 96, 94, 95))), fees=D(0)
    )
    _, sell = result.fills
    assert sell.price == D("95.00")  # worse than the stop: nobody traded between 100 and 95
    assert sell.ts_ns == bar_start(2)


def test_a_stop_not_reached_never_fills_and_stays_open(tmp_path: Path) -> None:
    safe = [(100.0, 101.0, 99.0, 100.0), (100.0, 101.0, 99.5, 100.0), (100, 101, 97.01, 98)]
    result = run(strategy(tmp_path, BUY_THEN_STOP), data(tmp_path, safe), fees=D(0))
    assert [f.side for f in result.fills] == [Side.BUY]
    stop = next(o for o in result.orders if o.type is OrderType.STOP)
    assert stop.status is OrderStatus.ACCEPTED  # still waiting when the data ended


def test_a_bar_touching_both_take_profit_and_stop_assumes_the_stop_first(
    tmp_path: Path,
) -> None:
    # Long 2: a take-profit limit for one above, a stop for the other below. The bar reaches
    # both; the path goes against the long first, so the stop fills before the take-profit.
    body = """
    if n == 1:
        self.buy(Decimal("2"))
    if n == 2:
        self.sell(Decimal("1"), price=Decimal("103"))
        self.sell(Decimal("1"), stop=Decimal("97"))
    """
    result = run(strategy(tmp_path, body), data(tmp_path, bars((100, 104, 96, 100))), fees=D(0))
    _, first, second = result.fills
    assert (first.price, first.liquidity) == (D("97.00"), "taker")  # the stop
    assert (second.price, second.liquidity) == (D("103.00"), "maker")  # the take-profit
    assert first.ts_ns < second.ts_ns


def test_a_stop_limit_gapped_through_rests_at_its_limit(tmp_path: Path) -> None:
    # Sell stop 97, limit 96: the bar opens at 95, below the limit; the triggered limit rests
    # and fills only when the price comes back up to 96.
    body = """
    if n == 1:
        self.buy(self.size)
    if n == 2:
        self.sell(self.size, stop=Decimal("97"), price=Decimal("96"))
    """
    result = run(strategy(tmp_path, body), data(tmp_path, bars((95, 96.5, 94, 95))), fees=D(0))
    _, sell = result.fills
    assert (sell.price, sell.liquidity) == (D("96.00"), "maker")
    order = next(o for o in result.orders if o.type is OrderType.STOP_LIMIT)
    assert (order.status, order.price, order.stop_price) == (
        OrderStatus.FILLED,
        D("96.00"),
        D("97.00"),
    )


def test_a_buy_stop_enters_on_a_breakout(tmp_path: Path) -> None:
    body = """
    if n == 1:
        self.buy(self.size, stop=Decimal("102"))
    """
    result = run(strategy(tmp_path, body), data(tmp_path, bars((100, 103, 99, 102.5))), fees=D(0))
    buy = result.fills[0]
    assert (buy.side, buy.price) == (Side.BUY, D("102.00"))
    # Flat: the nearer extreme first (99 is nearer the open than 103), then the high.
    assert buy.ts_ns == bar_start(2) + 2 * THIRD_NS


def test_a_stop_the_market_already_passed_is_refused(tmp_path: Path) -> None:
    body = """
    if n == 1:
        self.state["cid"] = self.sell(self.size, stop=Decimal("100.50"))
    """
    result = run(strategy(tmp_path, body), data(tmp_path), fees=D(0), cash=D(1000))
    order = next(o for o in result.orders if o.type is OrderType.STOP)
    assert order.status is OrderStatus.REJECTED
    assert "WOULD_TRIGGER" in order.reason
    assert result.fills == []


def test_on_quotes_a_sell_stop_triggers_by_the_bid_and_fills_there(tmp_path: Path) -> None:
    rows = ["time,bid,ask,bid_size,ask_size"]
    prices = [(100.0, 100.2)] * 3 + [(99.9, 100.1), (96.5, 96.7), (96.4, 96.6)]
    for i, (bid, ask) in enumerate(prices):
        rows.append(f"{START_MS + i * 100},{bid:.2f},{ask:.2f},1.5,2.5")
    quotes = tmp_path / "BTCUSDT-quotes.csv"
    quotes.write_text("\n".join(rows) + "\n")
    body = """
    if n == 1:
        self.buy(self.size)
    if n == 2:
        self.stop_loss(Decimal("97"))
    """
    result = run(strategy(tmp_path, body, hooks="on_quote"), quotes, fees=D(0))
    buy, sell = result.fills
    assert buy.price == D("100.20")
    # The bid jumped from 99.90 to 96.50: the stop triggers and sells at that bid.
    assert (sell.side, sell.price) == (Side.SELL, D("96.50"))
    assert sell.ts_ns == (START_MS + 400) * NS
