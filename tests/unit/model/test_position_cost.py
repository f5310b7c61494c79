"""Position accounting keeps the cost of the open quantity exactly, so round trips realize
exactly what was received minus what was paid, with no digits left over from a division."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from botd.model import Position, Side

prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
qtys = st.decimals(min_value=D("0.001"), max_value=D("10"), places=3)


def test_a_round_trip_realizes_exactly_proceeds_minus_cost() -> None:
    p = Position("v", "BTCUSDT")
    buys = [(D("0.3"), D("64210.17")), (D("0.7"), D("64190.33")), (D("0.2"), D("64000.01"))]
    for q, px in buys:
        p = p.apply_fill(Side.BUY, q, px)
    p = p.apply_fill(Side.SELL, D("1.2"), D("65000"))
    paid = sum(q * px for q, px in buys)
    assert p.realized_pnl == D("1.2") * D("65000") - paid == D("1003.716")
    assert p.is_flat and p.avg_price == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(qtys, prices), min_size=1, max_size=6), prices)
def test_closing_everything_is_exact_for_longs_and_shorts(
    entries: list[tuple[D, D]], exit_price: D
) -> None:
    total = sum(q for q, _ in entries)
    cost = sum(q * px for q, px in entries)
    for side, back, sign in ((Side.BUY, Side.SELL, 1), (Side.SELL, Side.BUY, -1)):
        p = Position("v", "S")
        for q, px in entries:
            p = p.apply_fill(side, q, px)
        p = p.apply_fill(back, total, exit_price)
        assert p.qty == 0
        assert p.realized_pnl == sign * (total * exit_price - cost)  # exact, no residue


def test_partial_close_then_the_rest_adds_up_exactly() -> None:
    p = Position("v", "S").apply_fill(Side.BUY, D("3"), D("10"))
    p = p.apply_fill(Side.BUY, D("3"), D("11"))  # avg 10.5, cost 63
    p = p.apply_fill(Side.SELL, D("2"), D("12"))  # realizes 24 - 21 = 3
    assert p.realized_pnl == D("3") and p.qty == 4 and p.avg_price == D("10.5")
    p = p.apply_fill(Side.SELL, D("4"), D("9"))  # 36 - 42 = -6
    assert p.realized_pnl == D("-3") and p.is_flat


def test_flip_opens_the_rest_at_the_fill_price() -> None:
    p = Position("v", "S").apply_fill(Side.BUY, D("1"), D("100"))
    p = p.apply_fill(Side.SELL, D("3"), D("110"))
    assert p.qty == -2 and p.avg_price == 110 and p.realized_pnl == 10
    p = p.apply_fill(Side.BUY, D("2"), D("100"))
    assert p.realized_pnl == 30 and p.is_flat


def test_a_position_restored_from_qty_and_average_still_closes_right() -> None:
    # As loaded from the journal: no cost recorded, the average stands in for it.
    p = Position("v", "S", qty=D("2"), avg_price=D("50"))
    p = p.apply_fill(Side.SELL, D("2"), D("60"))
    assert p.realized_pnl == 20


def test_fee_in_base_shrinks_the_holding_and_keeps_the_cost() -> None:
    p = Position("v", "BTCUSDT").apply_fill(Side.BUY, D("1"), D("100"))
    p = p.apply_fee(D("0.001"), "BTC", base="BTC", quote="USDT")
    assert p.qty == D("0.999")
    p = p.apply_fill(Side.SELL, D("0.999"), D("110"))
    assert p.realized_pnl == D("0.999") * 110 - 100  # what was paid, all of it, is the cost
