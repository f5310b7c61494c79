import dataclasses
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


def test_transition_keeps_every_other_field_as_dataclasses_replace_would() -> None:
    # transition() builds the new Order field by field (for speed): a field added to Order
    # and forgotten there shows up here as a difference from dataclasses.replace.
    o = Order(
        client_order_id="c9",
        strategy_id="s9",
        venue="paper",
        symbol="ETHUSDT",
        side=Side.SELL,
        type=OrderType.STOP_LIMIT,
        qty=D("5"),
        price=D("99"),
        tif=TimeInForce.IOC,
        post_only=True,
        status=OrderStatus.ACCEPTED,
        filled_qty=D("1"),
        avg_fill_price=D("98.5"),
        venue_order_id="v1",
        reason="r",
        ts_created=7,
        ts_updated=8,
        stop_price=D("100"),
    )
    for status, changes in [
        (OrderStatus.PENDING_CANCEL, {}),
        (OrderStatus.CANCELED, {"reason": "user"}),
        (OrderStatus.PARTIALLY_FILLED, {"filled_qty": D("2"), "avg_fill_price": D("99")}),
        (OrderStatus.ACCEPTED, {"venue_order_id": "v2"}),
    ]:
        if not o.can_become(status):
            continue
        expected = dataclasses.replace(o, status=status, ts_updated=20, **changes)  # type: ignore[arg-type]
        assert o.transition(status, 20, **changes) == expected
    with pytest.raises(TypeError):
        o.transition(OrderStatus.CANCELED, 20, colour="red")
