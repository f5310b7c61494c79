from decimal import Decimal as D

import pytest

from botd.model import Instrument, Side

BTC = Instrument(
    venue="paper",
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.00001"),
    min_qty=D("0.00001"),
    min_notional=D("5"),
    max_qty=D("9000"),
)


@pytest.mark.parametrize(
    ("price", "side", "expected"),
    [
        (D("65000.017"), Side.BUY, D("65000.01")),  # buys never pay more than asked
        (D("65000.011"), Side.SELL, D("65000.02")),  # sells never sell for less
        (D("65000.01"), Side.BUY, D("65000.01")),
        (D("65000.01"), Side.SELL, D("65000.01")),
    ],
)
def test_round_price_direction_depends_on_side(price: D, side: Side, expected: D) -> None:
    assert BTC.round_price(price, side) == expected


def test_round_qty_always_down() -> None:
    assert BTC.round_qty(D("0.123456789")) == D("0.12345")
    assert BTC.round_qty(D("0.000009")) == D("0.00000")


def test_valid_order_has_no_violations() -> None:
    assert BTC.violations(D("0.001"), D("65000.00")) == []


@pytest.mark.parametrize(
    ("qty", "price", "fragment"),
    [
        (D("0"), D("65000"), "must be positive"),
        (D("0.000015"), D("65000"), "step size"),
        (D("0.00001"), D("65000"), "notional"),
        (D("0.001"), D("65000.001"), "tick size"),
        (D("0.001"), D("-1"), "price -1 must be positive"),
        (D("9001"), D("65000"), "above the maximum"),
    ],
)
def test_each_rule_is_reported(qty: D, price: D, fragment: str) -> None:
    problems = BTC.violations(qty, price)
    assert any(fragment in p for p in problems), problems


def test_min_qty_is_checked() -> None:
    inst = Instrument("v", "X", "A", "B", D("0.01"), D("0.1"), min_qty=D("1"))
    assert any("below the minimum 1" in p for p in inst.violations(D("0.5"), D("10")))
