from decimal import Decimal as D

import pytest

from botd.model import IllegalTransition, Order, OrderStatus, OrderType, Side, TimeInForce


def make(qty: str = "1", status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(
        client_order_id="c1",
        strategy_id="s",
        venue="paper",
        symbol="BTCUSDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        qty=D(qty),
        price=D("100"),
        tif=TimeInForce.GTC,
        status=status,
    )


def test_happy_path_to_filled_tracks_average_price() -> None:
    o = make("3").transition(OrderStatus.SUBMITTED, 1).transition(OrderStatus.ACCEPTED, 2)
    o = o.with_fill(D("1"), D("100"), 3)
    assert o.status is OrderStatus.PARTIALLY_FILLED
    assert o.remaining_qty == D("2")
    o = o.with_fill(D("2"), D("103"), 4)
    assert o.status is OrderStatus.FILLED
    assert o.avg_fill_price == D("102")
    assert not o.is_open
    assert o.ts_updated == 4


def test_original_value_is_unchanged() -> None:
    o = make()
    o.transition(OrderStatus.SUBMITTED, 1)
    assert o.status is OrderStatus.PENDING


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (OrderStatus.PENDING, OrderStatus.FILLED),
        (OrderStatus.FILLED, OrderStatus.CANCELED),
        (OrderStatus.CANCELED, OrderStatus.ACCEPTED),
        (OrderStatus.REJECTED, OrderStatus.SUBMITTED),
        (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED),
        (OrderStatus.ACCEPTED, OrderStatus.REJECTED),
    ],
)
def test_illegal_transitions_raise(start: OrderStatus, target: OrderStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"{start.value} cannot become {target.value}"):
        make(status=start).transition(target, 1)


def test_fill_racing_a_cancel_is_allowed() -> None:
    o = make("2", OrderStatus.PENDING_CANCEL).with_fill(D("2"), D("100"), 5)
    assert o.status is OrderStatus.FILLED


def test_unknown_outcome_can_resolve_either_way() -> None:
    assert make(status=OrderStatus.UNKNOWN).can_become(OrderStatus.ACCEPTED)
    assert make(status=OrderStatus.UNKNOWN).can_become(OrderStatus.REJECTED)


def test_overfill_is_refused() -> None:
    o = make("1", OrderStatus.ACCEPTED)
    with pytest.raises(ValueError, match="exceed"):
        o.with_fill(D("1.5"), D("100"), 1)


def test_terminal_statuses() -> None:
    terminal = {s for s in OrderStatus if s.is_terminal}
    assert terminal == {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
    }
