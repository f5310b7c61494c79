"""The engine's memory: closed orders and executions, changes, export and restore."""

from __future__ import annotations

from decimal import Decimal

import pytest

from botd.model import Instrument, OrderStatus, OrderType, Side, TimeInForce
from botd.venues.sim import EngineResult, MatchingEngine

D = Decimal
S = OrderStatus
BUY, SELL = Side.BUY, Side.SELL
SYM = "BTCUSDT"
INST = Instrument("test", SYM, "BTC", "USDT", D("0.01"), D("0.001"), D("0.001"), D("5"))
OTHER = Instrument("test", "ETHUSDT", "ETH", "USDT", D("0.01"), D("0.01"), D("0.01"), D("5"))
FUNDS = {"USDT": D("100000"), "BTC": D("10"), "ETH": D("10")}


def engine(**kw: int) -> MatchingEngine:
    eng = MatchingEngine("test", [INST, OTHER], maker_fee=D("0.001"), taker_fee=D("0.002"), **kw)
    for name in ("a", "b"):
        eng.open_account(name, FUNDS)
    return eng


def submit(
    eng: MatchingEngine,
    account: str,
    cid: str,
    side: Side,
    qty: str,
    price: str | None = None,
    *,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = SYM,
    ts: int = 1,
) -> EngineResult:
    return eng.submit(
        account,
        client_order_id=cid,
        symbol=symbol,
        side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        qty=D(qty),
        price=None if price is None else D(price),
        tif=TimeInForce.IOC if price is None else tif,
        post_only=False,
        ts=ts,
    )


def test_query_answers_for_open_and_closed_orders_but_not_rejected_ones() -> None:
    eng = engine()
    submit(eng, "a", "rest", BUY, "2", "100", ts=5)
    submit(eng, "b", "hit", SELL, "0.5", ts=6)  # partially fills "rest" at 100
    open_view = eng.order_state("a", "rest")
    assert open_view is not None
    assert (open_view.status, open_view.filled_qty, open_view.avg_price) == (
        S.PARTIALLY_FILLED,
        D("0.5"),
        D("100"),
    )
    assert open_view.ts_event == 6
    submit(eng, "a", "gone", BUY, "1", "90")
    eng.cancel("a", SYM, "gone", ts=9)
    submit(eng, "a", "fok", BUY, "100", "101", tif=TimeInForce.FOK)  # cannot fill: expires
    submit(eng, "a", "bad", BUY, "1", "100.001")  # rejected: bad tick
    gone, fok = eng.order_state("a", "gone"), eng.order_state("a", "fok")
    assert gone is not None and gone.status is S.CANCELED and gone.ts_event == 9
    assert fok is not None and fok.status is S.EXPIRED and fok.venue_order_id
    assert eng.order_state("a", "bad") is None
    assert eng.order_state("a", "never") is None
    hit = eng.order_state("b", "hit")
    assert hit is not None and hit.status is S.FILLED and hit.price is None


def test_a_reused_client_id_answers_with_the_newest_order() -> None:
    eng = engine()
    submit(eng, "a", "x", BUY, "1", "90")
    eng.cancel("a", SYM, "x", ts=2)
    submit(eng, "a", "x", BUY, "1", "80")
    view = eng.order_state("a", "x")
    assert view is not None and view.status is S.ACCEPTED and view.price == D("80")


def test_executions_by_symbol_and_time_oldest_first() -> None:
    eng = engine()
    submit(eng, "b", "m1", SELL, "1", "100")
    submit(eng, "b", "m2", SELL, "1", "10", symbol="ETHUSDT")
    submit(eng, "a", "t1", BUY, "0.4", ts=10)
    submit(eng, "a", "t2", BUY, "0.4", ts=20)
    submit(eng, "a", "t3", BUY, "1", ts=30, symbol="ETHUSDT")
    got = eng.executions("a", SYM, 0)
    assert [(r.client_order_id, r.last_qty, r.ts_event) for r in got] == [
        ("t1", D("0.4"), 10),
        ("t2", D("0.4"), 20),
    ]
    assert all(r.trade_id and r.fee_asset == "BTC" for r in got)
    assert [r.client_order_id for r in eng.executions("a", SYM, 20)] == ["t2"]
    maker = eng.executions("b", SYM, 0)
    assert [(r.status, r.trade_id) for r in maker] == [
        (S.PARTIALLY_FILLED, got[0].trade_id),
        (S.PARTIALLY_FILLED, got[1].trade_id),
    ]


def test_histories_are_bounded_oldest_evicted() -> None:
    eng = engine(closed_history=2, execution_history=3)
    for i in range(4):
        submit(eng, "a", f"c{i}", BUY, "1", "90")
        eng.cancel("a", SYM, f"c{i}", ts=2)
    assert eng.order_state("a", "c0") is None
    assert eng.order_state("a", "c1") is None
    assert eng.order_state("a", "c3") is not None
    submit(eng, "b", "m", SELL, "10", "100")
    for i in range(5):
        submit(eng, "a", f"t{i}", BUY, "0.1", ts=10 + i)
    assert [r.client_order_id for r in eng.executions("a", SYM, 0)] == ["t2", "t3", "t4"]


def test_generator_style_accounts_keep_no_history() -> None:
    eng = engine()
    eng.open_account("lp", unlimited=True)
    submit(eng, "lp", "q", SELL, "1", "100")
    eng.cancel_all("lp", SYM, 2)
    assert eng.order_state("lp", "q") is None
    with pytest.raises(ValueError, match="keeps no history"):
        eng.executions("lp", SYM, 0)


def test_changes_name_exactly_what_moved() -> None:
    eng = engine()
    eng.track_changes("a")
    assert not eng.has_changes("a")
    submit(eng, "a", "r1", BUY, "1", "100")
    submit(eng, "a", "r2", BUY, "1", "99")
    submit(eng, "a", "bad", BUY, "1", "100.001")  # rejected: no change
    ch = eng.take_changes("a")
    assert [o.client_order_id for o in ch.upserted] == ["r1", "r2"]
    assert ch.removed == [] and ch.closed == [] and ch.executions == []
    assert ch.locked == {"USDT": D("199")}
    assert not eng.has_changes("a")
    submit(eng, "b", "hit", SELL, "1.5", ts=3)  # fills r1, half of r2
    ch = eng.take_changes("a")
    assert [o.client_order_id for o in ch.upserted] == ["r2"]
    assert ch.upserted[0].filled == D("0.5")
    assert ch.removed == [eng.order_state("a", "r1").venue_order_id]  # type: ignore[union-attr]
    assert [c.client_order_id for c in ch.closed] == ["r1"]
    assert [r.client_order_id for r in ch.executions] == ["r1", "r2"]
    eng.deposit("a", "USDT", D("1"))
    assert eng.has_changes("a")


def test_export_restore_round_trip_keeps_priority_ids_and_funds() -> None:
    eng = engine()
    submit(eng, "a", "first", BUY, "1", "100", ts=1)
    submit(eng, "b", "between", BUY, "1", "100", ts=2)
    submit(eng, "a", "second", BUY, "1", "100", ts=3)
    submit(eng, "a", "partial", SELL, "2", "120", ts=4)
    submit(eng, "b", "lift", BUY, "0.5", ts=5)
    submit(eng, "a", "closed", BUY, "1", "50", ts=6)
    eng.cancel("a", SYM, "closed", ts=7)
    snap = eng.export_account("a")
    counters = eng.counters

    fresh = MatchingEngine("test", [INST, OTHER], maker_fee=D("0.001"), taker_fee=D("0.002"))
    fresh.restore_counters(*counters)
    fresh.restore_account("a", snap)
    fresh.open_account("b", FUNDS)
    assert fresh.balances("a") == eng.balances("a")
    assert fresh.open_venue_orders("a") == eng.open_venue_orders("a")
    assert fresh.order_state("a", "closed") == eng.order_state("a", "closed")
    assert fresh.executions("a", SYM, 0) == eng.executions("a", SYM, 0)
    fresh._check_invariants()
    # Still matchable, in time priority among themselves; ids continue.
    res = submit(fresh, "b", "hit", SELL, "1.5", ts=10)
    makers = [
        (r.report.client_order_id, r.report.last_qty) for r in res.reports if r.account == "a"
    ]
    assert makers == [("first", D("1")), ("second", D("0.5"))]
    assert int(res.reports[0].report.trade_id) > counters[1]
    assert int(res.reports[0].report.venue_order_id) > counters[0]
    fresh._check_invariants()


def test_restore_refuses_an_order_that_would_cross() -> None:
    eng = engine()
    submit(eng, "a", "bid", BUY, "1", "100")
    snap = eng.export_account("a")
    other = engine()
    submit(other, "b", "ask", SELL, "1", "99")
    with pytest.raises(ValueError, match="cross"):
        other.restore_account("c", snap)
