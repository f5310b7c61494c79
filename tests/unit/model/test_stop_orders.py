"""Stop and stop-limit order types: what a stop price fits, and what a stop becomes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from botd.model import OrderIntent, OrderType, Side


def intent(type: OrderType, price: str | None, stop: str | None) -> OrderIntent:
    return OrderIntent(
        strategy_id="s",
        venue="paper",
        symbol="BTCUSDT",
        side=Side.SELL,
        qty=D("1"),
        type=type,
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
    )


@pytest.mark.parametrize(
    ("type", "price", "stop"),
    [
        (OrderType.STOP, None, "95"),
        (OrderType.STOP_LIMIT, "94", "95"),
        (OrderType.LIMIT, "94", None),
        (OrderType.MARKET, None, None),
    ],
)
def test_valid_combinations(type: OrderType, price: str | None, stop: str | None) -> None:
    made = intent(type, price, stop)
    assert made.stop_price == (None if stop is None else D(stop))


@pytest.mark.parametrize(
    ("type", "price", "stop", "message"),
    [
        (OrderType.STOP, None, None, "a stop order needs a stop price"),
        (OrderType.STOP_LIMIT, "94", None, "a stop_limit order needs a stop price"),
        (OrderType.STOP_LIMIT, None, "95", "needs a limit price as well as a stop price"),
        (OrderType.STOP, "94", "95", "a stop order triggers a market order"),
        (OrderType.LIMIT, "94", "95", "a limit order takes no stop price"),
        (OrderType.MARKET, None, "95", "a market order takes no stop price"),
    ],
)
def test_invalid_combinations_are_refused(
    type: OrderType, price: str | None, stop: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        intent(type, price, stop)


def test_what_each_type_is_and_becomes() -> None:
    assert [t.is_stop for t in OrderType] == [False, False, True, True]
    assert [t.has_limit for t in OrderType] == [False, True, False, True]
    assert [t.triggered for t in OrderType] == [
        OrderType.MARKET,
        OrderType.LIMIT,
        OrderType.MARKET,
        OrderType.LIMIT,
    ]
    assert OrderType("stop_limit") is OrderType.STOP_LIMIT  # the journal's spelling
