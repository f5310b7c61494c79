"""Round-trip matching: scale-in, partial exits, flips, open positions, FIFO lots."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botd.backtest.records import FillRecord
from botd.backtest.trades import match_fills, open_positions, round_trips
from botd.model import Side

S = 10**9


def fill(
    t: int,
    side: str,
    qty: str,
    price: str,
    fee: str = "0",
    *,
    strategy: str = "s1",
    symbol: str = "BTCUSDT",
) -> FillRecord:
    return FillRecord(
        ts_ns=t * S,
        strategy_id=strategy,
        venue="paper",
        symbol=symbol,
        side=Side.BUY if side == "buy" else Side.SELL,
        quantity=Decimal(qty),
        price=Decimal(price),
        fee=Decimal(fee),
        order_id=f"o{t}",
        liquidity="taker",
    )


def test_simple_long_round_trip() -> None:
    [trip] = round_trips([fill(0, "buy", "1", "100", "0.1"), fill(60, "sell", "1", "110", "0.11")])
    assert trip.side == "long"
    assert trip.quantity == Decimal(1)
    assert trip.avg_entry == Decimal(100)
    assert trip.avg_exit == Decimal(110)
    assert trip.gross_pnl == Decimal(10)
    assert trip.fees == Decimal("0.21")
    assert trip.pnl == Decimal("9.79")
    assert trip.pnl_pct == Decimal("9.79")  # 9.79 on 100 put in
    assert trip.duration_ns == 60 * S
    assert trip.fills == 2


def test_short_round_trip_profits_when_price_falls() -> None:
    [trip] = round_trips([fill(0, "sell", "2", "100"), fill(5, "buy", "2", "90")])
    assert trip.side == "short"
    assert trip.gross_pnl == Decimal(20)
    assert trip.pnl_pct == Decimal(10)


def test_scaling_in_is_one_round_trip() -> None:
    trips = round_trips(
        [fill(0, "buy", "1", "100"), fill(1, "buy", "1", "110"), fill(2, "sell", "2", "120")]
    )
    assert len(trips) == 1
    [trip] = trips
    assert trip.quantity == Decimal(2)
    assert trip.avg_entry == Decimal(105)
    assert trip.avg_exit == Decimal(120)
    assert trip.gross_pnl == Decimal(30)
    assert trip.entry_ts_ns == 0
    assert trip.exit_ts_ns == 2 * S
    assert trip.fills == 3


def test_partial_exits_are_one_round_trip() -> None:
    trips = round_trips(
        [fill(0, "buy", "2", "100"), fill(1, "sell", "1", "110"), fill(2, "sell", "1", "90")]
    )
    [trip] = trips
    assert trip.quantity == Decimal(2)
    assert trip.avg_exit == Decimal(100)
    assert trip.gross_pnl == Decimal(0)
    assert trip.exit_ts_ns == 2 * S


def test_partial_exit_leaves_an_open_position_that_is_not_a_trade() -> None:
    trips, still_open = match_fills(
        [fill(0, "buy", "2", "100", "0.2"), fill(1, "sell", "1", "110", "0.11")]
    )
    assert trips == []
    [pos] = still_open
    assert pos.side == "long"
    assert pos.quantity == Decimal(1)
    assert pos.avg_entry == Decimal(100)
    assert pos.fees == Decimal("0.31")
    assert pos.entry_ts_ns == 0


def test_flip_long_to_short_closes_one_and_opens_another() -> None:
    trips, still_open = match_fills(
        [
            fill(0, "buy", "1", "100", "1"),
            fill(1, "sell", "3", "110", "3"),  # 1 closes the long, 2 open a short
            fill(2, "buy", "2", "100", "0.5"),
        ]
    )
    assert still_open == []
    long, short = trips
    assert (long.side, long.quantity, long.gross_pnl) == ("long", Decimal(1), Decimal(10))
    assert long.fees == Decimal(2)  # 1 + a third of the flip fill's 3
    assert long.exit_ts_ns == 1 * S
    assert (short.side, short.quantity, short.gross_pnl) == ("short", Decimal(2), Decimal(20))
    assert short.fees == Decimal("2.5")  # two thirds of 3, plus 0.5
    assert short.entry_ts_ns == 1 * S
    assert short.avg_entry == Decimal(110)
    assert long.fills == 2
    assert short.fills == 2


def test_flip_then_left_open() -> None:
    trips, still_open = match_fills([fill(0, "sell", "1", "100"), fill(1, "buy", "1.5", "90")])
    [trip] = trips
    assert trip.side == "short"
    assert trip.gross_pnl == Decimal(10)
    [pos] = still_open
    assert (pos.side, pos.quantity, pos.avg_entry) == ("long", Decimal("0.5"), Decimal(90))


def test_exits_match_entry_lots_first_in_first_out() -> None:
    # Average cost would leave 1 @ 110 open; FIFO leaves the later lot, 1 @ 120.
    [pos] = open_positions(
        [fill(0, "buy", "1", "100"), fill(1, "buy", "1", "120"), fill(2, "sell", "1", "130")]
    )
    assert pos.quantity == Decimal(1)
    assert pos.avg_entry == Decimal(120)


def test_strategies_and_symbols_are_matched_separately() -> None:
    trips, still_open = match_fills(
        [
            fill(0, "buy", "1", "100", strategy="a"),
            fill(1, "sell", "1", "100", strategy="b"),
            fill(2, "sell", "1", "100", strategy="a", symbol="ETHUSDT"),
        ]
    )
    assert trips == []
    assert [(p.strategy_id, p.symbol, p.side) for p in still_open] == [
        ("a", "BTCUSDT", "long"),
        ("a", "ETHUSDT", "short"),
        ("b", "BTCUSDT", "short"),
    ]


def test_fills_are_taken_in_time_order() -> None:
    trips = round_trips([fill(5, "sell", "1", "110"), fill(0, "buy", "1", "100")])
    [trip] = trips
    assert trip.side == "long"
    assert trip.gross_pnl == Decimal(10)


def test_round_trips_are_ordered_by_exit_time() -> None:
    trips = round_trips(
        [
            fill(0, "buy", "1", "100", strategy="slow"),
            fill(1, "buy", "1", "100", strategy="fast"),
            fill(2, "sell", "1", "101", strategy="fast"),
            fill(3, "sell", "1", "101", strategy="slow"),
        ]
    )
    assert [t.strategy_id for t in trips] == ["fast", "slow"]


def test_non_positive_quantity_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-positive"):
        round_trips([fill(0, "buy", "0", "100")])


# An independent count: walk the net position per key and count every return to zero and
# every crossing of zero; compare money with plain cash-flow arithmetic.
_moves = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(-4, 4).filter(bool)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(moves=_moves, prices=st.lists(st.integers(90, 110), min_size=40, max_size=40))
def test_count_and_money_match_an_independent_walk(
    moves: list[tuple[str, int]], prices: list[int]
) -> None:
    fills = []
    net = {"a": 0, "b": 0}
    closes = 0
    cash = Decimal(0)
    for i, (key, qty) in enumerate(moves):
        before = net[key]
        after = before + qty
        if before != 0 and (after == 0 or (before > 0) != (after > 0)):
            closes += 1
        net[key] = after
        price = Decimal(prices[i])
        fills.append(
            fill(i, "buy" if qty > 0 else "sell", str(abs(qty)), str(price), "0.1", strategy=key)
        )
        cash -= qty * price
    # Flatten whatever is left so every lot gets matched.
    t = len(moves)
    for key, left in net.items():
        if left:
            closes += 1
            fills.append(
                fill(t, "sell" if left > 0 else "buy", str(abs(left)), "100", "0.1", strategy=key)
            )
            cash += left * 100
            t += 1
    trips, still_open = match_fills(fills)
    assert still_open == []
    assert len(trips) == closes
    assert sum(tr.gross_pnl for tr in trips) == cash
    assert sum(tr.fees for tr in trips) == pytest.approx(
        Decimal("0.1") * len(fills), abs=Decimal("1e-20")
    )
    for tr in trips:
        assert tr.quantity > 0
        assert tr.exit_ts_ns >= tr.entry_ts_ns
