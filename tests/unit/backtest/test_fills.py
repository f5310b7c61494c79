"""Fill models of the backtest venue, end to end through host, risk, gateway and engine."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from botd.backtest import run
from botd.backtest.records import FillRecord
from botd.model import OrderStatus, Side
from tests.unit.backtest.btdata import START_MS, write_klines, write_quotes

NS = 1_000_000
D = Decimal


def strategy(tmp_path: Path, body: str, *, hooks: str = "on_bar", name: str = "probe") -> Path:
    """A strategy file whose ``on_bar`` (or ``on_quote``) runs ``body`` with ``n`` = call count."""
    arg = "bar" if hooks == "on_bar" else "quote"
    source = f"""
from decimal import Decimal
from botd import Bar, Quote, Side, Strategy, param


class Probe(Strategy):
    api_version = 1
    venue = "binance"
    symbol = "BTCUSDT"
    timeframe = "1m"
    size = param(Decimal("1"))

    def {hooks}(self, {arg}):
        n = self.state["n"] = self.state.get("n", 0) + 1
{textwrap.indent(textwrap.dedent(body).strip(), " " * 8)}
"""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


BARS = [
    (100.0, 101.0, 99.0, 100.0),
    (110.0, 112.0, 108.0, 111.0),
    (111.0, 113.0, 109.0, 112.0),
    (112.0, 114.0, 110.0, 113.0),
]


def data(tmp_path: Path, bars: list[tuple[float, float, float, float]] = BARS) -> Path:
    return write_klines(tmp_path / "BTCUSDT-1m-2024-01.csv", bars)


def only(fills: list[FillRecord]) -> FillRecord:
    assert len(fills) == 1, fills
    return fills[0]


def test_market_order_fills_at_the_next_bars_open(tmp_path: Path) -> None:
    strat = strategy(tmp_path, "if n == 1: self.buy(self.size)")
    result = run(strat, data(tmp_path), cash=D(1000), fees=D(0))
    fill = only(result.fills)
    assert (fill.price, fill.quantity, fill.side) == (D("110.00"), D("1"), Side.BUY)
    assert fill.ts_ns == (START_MS + 60_000) * NS  # the second bar's open
    assert fill.liquidity == "taker"
    assert fill.venue == "binance"  # the strategy's venue, simulated


def test_market_order_at_this_close_when_configured(tmp_path: Path) -> None:
    strat = strategy(tmp_path, "if n == 1: self.buy(self.size)")
    fill = only(run(strat, data(tmp_path), fees=D(0), fill_at="close").fills)
    assert fill.price == D("100.00")


def test_slippage_moves_the_price_against_the_order_onto_the_tick(tmp_path: Path) -> None:
    strat = strategy(tmp_path, "if n == 1: self.buy(self.size)\nif n == 2: self.close_position()")
    fills = run(strat, data(tmp_path), fees=D(0), slippage_bps=D(10)).fills
    buy, sell = fills
    assert buy.price == D("110.11")  # 110 * 1.001, rounded up to the 0.01 tick
    assert sell.price == D("110.88")  # 111 * 0.999 = 110.889, rounded down


def test_taker_and_maker_fees(tmp_path: Path) -> None:
    body = """
    if n == 1:
        self.buy(self.size)
    if n == 2:
        self.sell(self.position.qty, price=Decimal("113.50"))
    """
    fills = run(
        strategy(tmp_path, body), data(tmp_path), fees=D("0.001"), maker_fees=D("0.0002")
    ).fills
    buy, sell = fills
    # The buy's fee comes out of the coins bought (as on Binance), shown in quote.
    assert buy.quantity == D("0.999")
    assert buy.fee == D("0.001") * D("110.00")
    assert buy.liquidity == "taker"
    # The sell rests above the market and fills at its own price when the high reaches it.
    assert (sell.price, sell.liquidity) == (D("113.50"), "maker")
    assert sell.quantity == D("0.999")
    assert sell.fee == D("0.999") * D("113.50") * D("0.0002")


def test_resting_limit_fills_at_its_price_when_the_range_reaches_it(tmp_path: Path) -> None:
    body = """
    if n == 1:
        self.buy(self.size, price=Decimal("108.50"))
    """
    result = run(strategy(tmp_path, body), data(tmp_path), fees=D(0))
    fill = only(result.fills)
    assert (fill.price, fill.liquidity) == (D("108.50"), "maker")
    # Not reached: a buy limit below every low never fills.
    body_low = "if n == 1: self.buy(self.size, price=Decimal('50'))"
    assert run(strategy(tmp_path, body_low, name="low"), data(tmp_path)).fills == []


def test_both_limits_in_one_bar_resolve_against_the_position(tmp_path: Path) -> None:
    # Long after bar 2; bar 3 reaches both a lower buy and an upper sell, and opens nearer its
    # high. Conservatively the market goes against the long position first: the buy at the
    # low fills before the sell at the high.
    bars = [
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 101.0, 99.0, 100.0),
        (104.0, 106.0, 94.0, 100.0),
    ]
    body = """
    if n == 1:
        self.buy(self.size)
    if n == 2:
        self.buy(self.size, price=Decimal("95"))
        self.sell(self.size, price=Decimal("105"))
    """
    fills = run(strategy(tmp_path, body), data(tmp_path, bars), fees=D(0)).fills
    assert [(f.side, f.price) for f in fills] == [
        (Side.BUY, D("100.00")),
        (Side.BUY, D("95")),
        (Side.SELL, D("105")),
    ]
    assert fills[1].ts_ns < fills[2].ts_ns


def test_flat_account_takes_the_nearer_extreme_first(tmp_path: Path) -> None:
    bars = [(100.0, 101.0, 99.0, 100.0), (104.0, 106.0, 94.0, 100.0)]
    body = """
    if n == 1:
        self.buy(self.size, price=Decimal("95"))
    """
    strat = strategy(tmp_path, body)
    (fill,) = run(strat, data(tmp_path, bars), fees=D(0)).fills
    start = (START_MS + 60_000) * NS
    # Open 104 is nearer the high: the path is open, high, low, close; the low is second.
    assert fill.ts_ns == start + 2 * (60_000 * NS // 3)


def test_sizing_never_spends_more_than_the_cash(tmp_path: Path) -> None:
    # Sized at the close (100) with all the cash; the next bar opens 10 % higher. The venue
    # fills what the cash buys at the fill price, rounded down to the step, fee included.
    strat = strategy(tmp_path, "if n == 1: self.buy(fraction=1.0)")
    result = run(strat, data(tmp_path), cash=D(1000), fees=D("0.001"), step=D("0.001"))
    fill = only(result.fills)
    gross = fill.quantity + fill.fee / fill.price  # what was bought before the base fee
    assert gross == D("9.090")  # floor(1000 / 110, 0.001)
    spent = gross * fill.price
    assert spent <= D(1000)
    (order,) = result.orders
    assert order.qty == D("10.000")
    assert order.status is OrderStatus.EXPIRED  # the unaffordable rest expired
    assert result.equity[-1].equity > 0
    assert min(p.equity for p in result.equity) > D(900)


def test_quote_data_fills_at_bid_and_ask_after_the_latency(tmp_path: Path) -> None:
    quotes = write_quotes(tmp_path / "BTCUSDT-quotes.csv", 10)
    rows = [line.split(",") for line in quotes.read_text().splitlines()[1:]]
    strat = strategy(tmp_path, "if n == 1: self.buy(self.size)", hooks="on_quote")
    now = only(run(strat, quotes, fees=D(0)).fills)
    assert now.price == D(rows[0][2])  # the ask of the quote the strategy saw
    late = only(run(strat, quotes, fees=D(0), latency_ms=250).fills)
    # Sent at t0, arriving at t0+250 ms: the quote then in force is the one at t0+200 ms.
    assert late.price == D(rows[2][2])
    assert late.ts_ns == (START_MS + 300) * NS


def test_post_only_that_would_cross_is_refused(tmp_path: Path) -> None:
    body = "if n == 1: self.buy(self.size, price=Decimal('200'), post_only=True)"
    result = run(strategy(tmp_path, body), data(tmp_path), fees=D(0))
    assert result.fills == []
    (order,) = result.orders
    assert order.status is OrderStatus.EXPIRED
    assert "post-only" in order.reason


@pytest.mark.parametrize("fill_at", ["next_open", "close"])
def test_cancel_before_fill(tmp_path: Path, fill_at: str) -> None:
    body = """
    if n == 1:
        self.state["cid"] = self.buy(self.size, price=Decimal("50"))
    if n == 2:
        self.cancel(self.state["cid"])
    """
    result = run(strategy(tmp_path, body), data(tmp_path), fill_at=fill_at)
    (order,) = result.orders
    assert order.status is OrderStatus.CANCELED


def test_step_and_min_notional_are_the_instruments_rules(tmp_path: Path) -> None:
    body = "if n == 1: self.buy(Decimal('0.123456'))"
    (fill,) = run(strategy(tmp_path, body), data(tmp_path), fees=D(0), step=D("0.01")).fills
    assert fill.quantity == D("0.12")  # risk rounds the quantity down onto the step
    result = run(strategy(tmp_path, body, name="small"), data(tmp_path), min_notional=D(100))
    assert result.fills == []
    (order,) = result.orders
    assert order.status is OrderStatus.REJECTED
    assert "minimum notional" in order.reason


def test_an_order_before_any_data_waits_for_the_first_price(tmp_path: Path) -> None:
    quotes = write_quotes(tmp_path / "BTCUSDT-quotes.csv", 5)
    first_ask = D(quotes.read_text().splitlines()[1].split(",")[2])
    source = """
from decimal import Decimal
from botd import Strategy


class Early(Strategy):
    api_version = 1
    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.buy(Decimal("1"))
"""
    path = tmp_path / "early.py"
    path.write_text(source)
    (fill,) = run(path, quotes, fees=D(0)).fills
    assert (fill.price, fill.ts_ns) == (first_ask, START_MS * NS)
