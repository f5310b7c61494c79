"""The matching engine: priority, order types, rejections, fees and balances."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botd.model import (
    Balance,
    BookLevel,
    Instrument,
    Liquidity,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from botd.venues.sim import AccountReport, EngineResult, MatchingEngine

D = Decimal
S = OrderStatus
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
SYM = "BTCUSDT"
INST = Instrument(
    venue="test",
    symbol=SYM,
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.001"),
    min_qty=D("0.001"),
    min_notional=D("5"),
    max_qty=D("1000"),
)
OTHER = Instrument("test", "ETHUSDT", "ETH", "USDT", D("0.01"), D("0.01"), D("0.01"), D("5"))
MAKER_FEE = D("0.001")
TAKER_FEE = D("0.002")


def new_engine(*, funded: tuple[str, ...] = ("a", "b", "c")) -> MatchingEngine:
    eng = MatchingEngine("test", [INST, OTHER], maker_fee=MAKER_FEE, taker_fee=TAKER_FEE)
    for name in funded:
        eng.open_account(name, {"USDT": D("100000"), "BTC": D("10"), "ETH": D("10")})
    return eng


def limit(
    eng: MatchingEngine,
    account: str,
    cid: str,
    side: Side,
    qty: str,
    price: str | None,
    *,
    tif: TimeInForce = GTC,
    post_only: bool = False,
    symbol: str = SYM,
    ts: int = 1,
) -> EngineResult:
    return eng.submit(
        account,
        client_order_id=cid,
        symbol=symbol,
        side=side,
        type=OrderType.LIMIT,
        qty=D(qty),
        price=None if price is None else D(price),
        tif=tif,
        post_only=post_only,
        ts=ts,
    )


def market(
    eng: MatchingEngine, account: str, cid: str, side: Side, qty: str, *, ts: int = 1
) -> EngineResult:
    return eng.submit(
        account,
        client_order_id=cid,
        symbol=SYM,
        side=side,
        type=OrderType.MARKET,
        qty=D(qty),
        price=None,
        tif=IOC,
        post_only=False,
        ts=ts,
    )


def summary(result: EngineResult) -> list[tuple[str, str, OrderStatus, D]]:
    return [
        (r.account, r.report.client_order_id, r.report.status, r.report.last_qty)
        for r in result.reports
    ]


def only(result: EngineResult) -> AccountReport:
    assert len(result.reports) == 1, summary(result)
    return result.reports[0]


def code(result: EngineResult) -> str:
    rep = only(result).report
    assert rep.status is S.REJECTED
    assert rep.reason
    assert rep.venue_order_id == ""
    return rep.extra["code"]


def bal(eng: MatchingEngine, account: str, asset: str) -> Balance:
    return eng.balances(account).get(asset, Balance(asset, D(0), D(0)))


# -- priority and matching ----------------------------------------------------------------------


def test_resting_order_is_accepted_with_engine_ids() -> None:
    eng = new_engine()
    r1 = only(limit(eng, "a", "o1", BUY, "1", "100", ts=7))
    r2 = only(limit(eng, "a", "o2", BUY, "1", "99", ts=8))
    assert r1.account == "a"
    assert r1.report.status is S.ACCEPTED
    assert r1.report.ts_event == 7
    assert r1.report.venue == "test"
    assert int(r2.report.venue_order_id) > int(r1.report.venue_order_id)
    eng._check_invariants()


def test_same_price_earlier_order_fills_first() -> None:
    eng = new_engine()
    limit(eng, "a", "first", SELL, "1", "100")
    limit(eng, "b", "second", SELL, "1", "100")
    res = market(eng, "c", "t", BUY, "1.5")
    assert summary(res) == [
        ("c", "t", S.PARTIALLY_FILLED, D("1")),
        ("a", "first", S.FILLED, D("1")),
        ("c", "t", S.FILLED, D("0.5")),
        ("b", "second", S.PARTIALLY_FILLED, D("0.5")),
    ]
    eng._check_invariants()


def test_better_price_fills_before_earlier_worse_price() -> None:
    eng = new_engine()
    limit(eng, "a", "worse", BUY, "1", "99")
    limit(eng, "b", "better", BUY, "1", "100")
    res = market(eng, "c", "t", SELL, "1")
    assert [(r.account, r.report.client_order_id) for r in res.reports] == [
        ("c", "t"),
        ("b", "better"),
    ]
    assert res.trades[0].price == D("100")


def test_partial_fills_across_levels_share_trade_ids_with_prints() -> None:
    eng = new_engine()
    limit(eng, "a", "m1", SELL, "1", "100")
    limit(eng, "b", "m2", SELL, "2", "101")
    res = limit(eng, "c", "t", BUY, "2", "102", ts=55)
    taker = [r.report for r in res.reports if r.account == "c"]
    makers = [r.report for r in res.reports if r.account != "c"]
    assert [(t.status, t.last_qty, t.last_price) for t in taker] == [
        (S.PARTIALLY_FILLED, D("1"), D("100")),
        (S.FILLED, D("1"), D("101")),
    ]
    assert [(m.status, m.liquidity) for m in makers] == [
        (S.FILLED, Liquidity.MAKER),
        (S.PARTIALLY_FILLED, Liquidity.MAKER),
    ]
    assert all(t.liquidity is Liquidity.TAKER for t in taker)
    assert [t.trade_id for t in taker] == [m.trade_id for m in makers]
    assert [t.trade_id for t in res.trades] == [t.trade_id for t in taker]
    assert len({t.trade_id for t in taker}) == 2
    tr = res.trades[1]
    assert (tr.venue, tr.symbol, tr.price, tr.size, tr.side) == ("test", SYM, D("101"), D("1"), BUY)
    assert tr.ts_event == tr.ts_recv == 55
    assert eng.top_of_book(SYM) == (None, BookLevel(D("101"), D("1")))


def test_order_that_partially_fills_then_rests_reports_accepted_first() -> None:
    eng = new_engine()
    limit(eng, "a", "m", SELL, "1", "100")
    res = limit(eng, "b", "t", BUY, "3", "100")
    assert summary(res) == [
        ("b", "t", S.ACCEPTED, D("0")),
        ("b", "t", S.PARTIALLY_FILLED, D("1")),
        ("a", "m", S.FILLED, D("1")),
    ]
    assert eng.top_of_book(SYM) == (BookLevel(D("100"), D("2")), None)
    [state] = eng.open_orders("b")
    assert state.status is S.PARTIALLY_FILLED
    assert state.extra["filled_qty"] == "1"
    assert state.extra["qty"] == "3"
    assert state.extra["side"] == "buy"


def test_fully_filled_order_has_no_accepted_report() -> None:
    eng = new_engine()
    limit(eng, "a", "m", SELL, "1", "100")
    res = limit(eng, "b", "t", BUY, "1", "100")
    assert [s for _, _, s, _ in summary(res)] == [S.FILLED, S.FILLED]
    assert eng.open_orders("a") == eng.open_orders("b") == []


def test_ioc_remainder_expires_and_does_not_rest() -> None:
    eng = new_engine()
    limit(eng, "a", "m", SELL, "1", "100")
    limit(eng, "a", "far", SELL, "1", "105")
    res = limit(eng, "b", "t", BUY, "3", "101", tif=IOC)
    assert summary(res) == [
        ("b", "t", S.PARTIALLY_FILLED, D("1")),
        ("a", "m", S.FILLED, D("1")),
        ("b", "t", S.EXPIRED, D("0")),
    ]
    assert eng.top_of_book(SYM) == (None, BookLevel(D("105"), D("1")))
    assert eng.open_orders("b") == []
    assert bal(eng, "b", "USDT").locked == 0
    eng._check_invariants()


def test_fok_that_cannot_fill_fully_expires_without_touching_the_book() -> None:
    eng = new_engine()
    limit(eng, "a", "m1", SELL, "1", "100")
    limit(eng, "a", "m2", SELL, "1", "101")
    limit(eng, "a", "m3", SELL, "5", "110")  # beyond the limit: must not count
    before = eng.depth(SYM, 10)
    res = limit(eng, "b", "t", BUY, "2.5", "101", tif=FOK)
    assert summary(res) == [("b", "t", S.EXPIRED, D("0"))]
    assert res.trades == []
    assert eng.depth(SYM, 10) == before
    assert bal(eng, "b", "USDT") == Balance("USDT", D("100000"), D("0"))


def test_fok_that_can_fill_fills_completely() -> None:
    eng = new_engine()
    limit(eng, "a", "m1", SELL, "1", "100")
    limit(eng, "a", "m2", SELL, "1", "101")
    res = limit(eng, "b", "t", BUY, "2", "101", tif=FOK)
    assert [s for a, _, s, _ in summary(res) if a == "b"] == [S.PARTIALLY_FILLED, S.FILLED]
    assert eng.top_of_book(SYM) == (None, None)


def test_market_order_on_empty_side_expires() -> None:
    eng = new_engine()
    limit(eng, "a", "bid", BUY, "1", "100")  # the other side is not empty
    res = market(eng, "b", "t", BUY, "1")
    rep = only(res)
    assert (rep.report.status, rep.report.last_qty) == (S.EXPIRED, D(0))
    assert rep.report.venue_order_id != ""
    assert res.trades == []


def test_market_order_remainder_expires_after_sweeping_the_book() -> None:
    eng = new_engine()
    limit(eng, "a", "m1", BUY, "1", "100")
    limit(eng, "a", "m2", BUY, "1", "99")
    res = market(eng, "b", "t", SELL, "5")
    taker = [r.report for r in res.reports if r.account == "b"]
    assert [(t.status, t.last_qty) for t in taker] == [
        (S.PARTIALLY_FILLED, D("1")),
        (S.PARTIALLY_FILLED, D("1")),
        (S.EXPIRED, D("0")),
    ]
    assert eng.top_of_book(SYM) == (None, None)
    assert bal(eng, "b", "BTC") == Balance("BTC", D("8"), D("0"))


def test_post_only_rests_when_it_does_not_cross_and_is_rejected_when_it_would() -> None:
    eng = new_engine()
    limit(eng, "a", "ask", SELL, "1", "100")
    assert only(limit(eng, "b", "ok", BUY, "1", "99.99", post_only=True)).report.status is (
        S.ACCEPTED
    )
    assert code(limit(eng, "b", "x", BUY, "1", "100", post_only=True)) == "POST_ONLY_WOULD_CROSS"
    assert code(limit(eng, "a", "y", SELL, "1", "99.99", post_only=True)) == (
        "POST_ONLY_WOULD_CROSS"
    )
    assert eng.depth(SYM, 5) == ([BookLevel(D("99.99"), D("1"))], [BookLevel(D("100"), D("1"))])


def test_same_account_may_match_itself() -> None:
    eng = new_engine()
    limit(eng, "a", "s", SELL, "1", "100")
    res = limit(eng, "a", "b", BUY, "1", "100")
    assert {r.account for r in res.reports} == {"a"}
    assert len(res.trades) == 1
    eng._check_invariants()


def test_top_of_book_and_depth_aggregate_levels() -> None:
    eng = new_engine()
    limit(eng, "a", "b1", BUY, "1", "99")
    limit(eng, "b", "b2", BUY, "2", "99")
    limit(eng, "a", "b3", BUY, "1", "98")
    limit(eng, "a", "a1", SELL, "0.5", "101")
    limit(eng, "a", "a2", SELL, "0.5", "102")
    assert eng.top_of_book(SYM) == (BookLevel(D("99"), D("3")), BookLevel(D("101"), D("0.5")))
    bids, asks = eng.depth(SYM, 1)
    assert (bids, asks) == ([BookLevel(D("99"), D("3"))], [BookLevel(D("101"), D("0.5"))])
    bids, asks = eng.depth(SYM, 10)
    assert [b.price for b in bids] == [D("99"), D("98")]
    assert [a.price for a in asks] == [D("101"), D("102")]
    eng.cancel("b", SYM, "b2", 2)
    assert eng.top_of_book(SYM)[0] == BookLevel(D("99"), D("1"))
    assert eng.instrument(SYM) is INST


def test_cancelled_order_at_the_front_is_skipped_by_matching() -> None:
    eng = new_engine()
    limit(eng, "a", "gone", SELL, "1", "100")
    limit(eng, "b", "stays", SELL, "1", "100")
    eng.cancel("a", SYM, "gone", 2)
    res = market(eng, "c", "t", BUY, "1")
    assert [r.account for r in res.reports] == ["c", "b"]
    eng._check_invariants()


def test_cancel_all_respects_symbol_filter() -> None:
    eng = new_engine()
    limit(eng, "a", "x1", BUY, "1", "99")
    limit(eng, "a", "x2", SELL, "1", "100", symbol="ETHUSDT")
    limit(eng, "a", "x3", SELL, "1", "101")
    res = eng.cancel_all("a", SYM, 3)
    assert summary(res) == [("a", "x1", S.CANCELED, D(0)), ("a", "x3", S.CANCELED, D(0))]
    assert [o.client_order_id for o in eng.open_orders("a")] == ["x2"]
    assert summary(eng.cancel_all("a", None, 4)) == [("a", "x2", S.CANCELED, D(0))]
    assert eng.cancel_all("a", None, 5).reports == []
    assert eng.balances("a")["USDT"] == Balance("USDT", D("100000"), D("0"))
    eng._check_invariants()


# -- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "qty", "price", "expected"),
    [
        (BUY, "1", "100.001", "TICK_SIZE"),
        (BUY, "1.0005", "100", "STEP_SIZE"),
        (BUY, "0", "100", "BAD_QTY"),
        (BUY, "-1", "100", "BAD_QTY"),
        (BUY, "NaN", "100", "BAD_QTY"),
        (BUY, "2000", "1", "MAX_QTY"),
        (SELL, "0.04", "100", "MIN_NOTIONAL"),
        (BUY, "1", None, "BAD_PRICE"),
        (BUY, "1", "0", "BAD_PRICE"),
        (SELL, "1", "-5", "BAD_PRICE"),
        (BUY, "1", "Infinity", "BAD_PRICE"),
        (BUY, "1000", "101", "INSUFFICIENT_BALANCE"),
        (SELL, "10.001", "100", "INSUFFICIENT_BALANCE"),
    ],
)
def test_limit_rejections(side: Side, qty: str, price: str | None, expected: str) -> None:
    eng = new_engine()
    assert code(limit(eng, "a", "x", side, qty, price)) == expected
    assert eng.open_orders("a") == []
    eng._check_invariants()


def test_min_qty_rejection() -> None:
    inst = Instrument("test", "X", "X", "USDT", D("0.01"), D("0.001"), D("0.01"), D("0"))
    eng = MatchingEngine("test", [inst], maker_fee=D(0), taker_fee=D(0))
    eng.open_account("a", {"USDT": D("1000")})
    res = eng.submit(
        "a", client_order_id="x", symbol="X", side=BUY, type=OrderType.LIMIT,
        qty=D("0.005"), price=D("1"), tif=GTC, post_only=False, ts=1,
    )  # fmt: skip
    assert code(res) == "MIN_QTY"


def test_unknown_symbol_rejected_and_reported_against_it() -> None:
    eng = new_engine()
    res = limit(eng, "a", "x", BUY, "1", "100", symbol="NOPE")
    assert code(res) == "UNKNOWN_SYMBOL"
    assert only(res).report.symbol == "NOPE"
    assert code(eng.cancel("a", "NOPE", "x", 1)) == "UNKNOWN_SYMBOL"


def test_market_order_min_notional_uses_opposite_best_price() -> None:
    eng = new_engine()
    limit(eng, "a", "ask", SELL, "1", "100")
    assert code(market(eng, "b", "small", BUY, "0.049")) == "MIN_NOTIONAL"  # 4.9 at 100
    assert only(limit(eng, "a", "cheap", SELL, "1", "99")).report.status is S.ACCEPTED
    assert code(market(eng, "b", "small2", BUY, "0.05")) == "MIN_NOTIONAL"  # 4.95 at 99
    assert [s for _, _, s, _ in summary(market(eng, "b", "ok", BUY, "0.051"))] == [
        S.FILLED,
        S.PARTIALLY_FILLED,
    ]


def test_market_orders_reject_insufficient_balance_instead_of_partial_fills() -> None:
    eng = new_engine()
    eng.open_account("poor", {"USDT": D("150"), "BTC": D("0.5")})
    limit(eng, "a", "m1", SELL, "1", "100")
    limit(eng, "a", "m2", SELL, "1", "101")
    # 1 @ 100 is affordable, the whole walk (201) is not.
    assert code(market(eng, "poor", "t", BUY, "2")) == "INSUFFICIENT_BALANCE"
    assert eng.depth(SYM, 5)[1] == [BookLevel(D("100"), D("1")), BookLevel(D("101"), D("1"))]
    limit(eng, "a", "bid", BUY, "1", "90")
    assert code(market(eng, "poor", "s", SELL, "0.6")) == "INSUFFICIENT_BALANCE"
    assert bal(eng, "poor", "USDT") == Balance("USDT", D("150"), D("0"))
    # The walk cost is what matters: 1 @ 100 + 0.49 @ 101 = 149.49 fits.
    res = market(eng, "poor", "t2", BUY, "1.49")
    assert [s for a, _, s, _ in summary(res) if a == "poor"] == [S.PARTIALLY_FILLED, S.FILLED]
    assert bal(eng, "poor", "USDT") == Balance("USDT", D("0.51"), D("0"))
    eng._check_invariants()


def test_post_only_market_order_is_rejected() -> None:
    eng = new_engine()
    res = eng.submit(
        "a", client_order_id="x", symbol=SYM, side=BUY, type=OrderType.MARKET,
        qty=D("1"), price=None, tif=IOC, post_only=True, ts=1,
    )  # fmt: skip
    assert code(res) == "BAD_ORDER"


def test_duplicate_client_id_among_open_orders_is_rejected() -> None:
    eng = new_engine()
    limit(eng, "a", "dup", BUY, "1", "99")
    assert code(limit(eng, "a", "dup", SELL, "1", "200")) == "DUPLICATE_CLIENT_ID"
    assert code(limit(eng, "a", "dup", SELL, "1", "200", symbol="ETHUSDT")) == (
        "DUPLICATE_CLIENT_ID"
    )
    # Another account may use the same id, and so may this one once the order is closed.
    assert only(limit(eng, "b", "dup", BUY, "1", "98")).report.status is S.ACCEPTED
    eng.cancel("a", SYM, "dup", 2)
    assert only(limit(eng, "a", "dup", BUY, "1", "97")).report.status is S.ACCEPTED
    eng._check_invariants()


def test_cancel_unknown_or_closed_order_is_rejected_not_raised() -> None:
    eng = new_engine()
    assert code(eng.cancel("a", SYM, "never", 1)) == "UNKNOWN_ORDER"
    limit(eng, "a", "o", BUY, "1", "99")
    assert code(eng.cancel("a", "ETHUSDT", "o", 1)) == "UNKNOWN_ORDER"  # wrong symbol
    assert code(eng.cancel("b", SYM, "o", 1)) == "UNKNOWN_ORDER"  # someone else's
    ok = only(eng.cancel("a", SYM, "o", 2)).report
    assert (ok.status, ok.client_order_id, ok.ts_event) == (S.CANCELED, "o", 2)
    assert code(eng.cancel("a", SYM, "o", 3)) == "UNKNOWN_ORDER"
    limit(eng, "a", "f", SELL, "1", "100")
    market(eng, "b", "t", BUY, "1")
    assert code(eng.cancel("a", SYM, "f", 4)) == "UNKNOWN_ORDER"  # already filled


def test_unknown_account_raises() -> None:
    eng = new_engine()
    with pytest.raises(KeyError):
        limit(eng, "ghost", "x", BUY, "1", "100")
    with pytest.raises(ValueError, match="already exists"):
        eng.open_account("a")


# -- fees and balances --------------------------------------------------------------------------


def test_fees_are_charged_in_the_received_asset_at_the_liquidity_rate() -> None:
    eng = new_engine()
    limit(eng, "a", "maker_buy", BUY, "2", "100")
    res = limit(eng, "b", "taker_sell", SELL, "2", "99")
    by_account = {r.account: r.report for r in res.reports}
    maker, taker = by_account["a"], by_account["b"]
    assert (maker.fee, maker.fee_asset, maker.liquidity) == (D("0.002"), "BTC", Liquidity.MAKER)
    assert (taker.fee, taker.fee_asset, taker.liquidity) == (D("0.4"), "USDT", Liquidity.TAKER)
    assert maker.last_price == taker.last_price == D("100")
    assert eng.balances("a") == {
        "USDT": Balance("USDT", D("99800"), D("0")),
        "BTC": Balance("BTC", D("11.998"), D("0")),
        "ETH": Balance("ETH", D("10"), D("0")),
    }
    assert bal(eng, "b", "USDT") == Balance("USDT", D("100199.6"), D("0"))
    assert bal(eng, "b", "BTC") == Balance("BTC", D("8"), D("0"))
    assert eng.fees_collected == {"BTC": D("0.002"), "USDT": D("0.4")}
    # Taker buy / maker sell: the other way round.
    limit(eng, "a", "maker_sell", SELL, "1", "150")
    res = market(eng, "b", "taker_buy", BUY, "1")
    by_account = {r.account: r.report for r in res.reports}
    assert (by_account["b"].fee, by_account["b"].fee_asset) == (D("0.002"), "BTC")
    assert (by_account["a"].fee, by_account["a"].fee_asset) == (D("0.150"), "USDT")


def test_resting_orders_lock_funds_and_cancel_releases_them() -> None:
    eng = new_engine()
    limit(eng, "a", "buy", BUY, "2", "100.5")
    limit(eng, "a", "sell", SELL, "3", "200")
    assert bal(eng, "a", "USDT") == Balance("USDT", D("99799"), D("201"))
    assert bal(eng, "a", "BTC") == Balance("BTC", D("7"), D("3"))
    eng._check_invariants()
    eng.cancel("a", SYM, "buy", 2)
    eng.cancel("a", SYM, "sell", 2)
    assert bal(eng, "a", "USDT") == Balance("USDT", D("100000"), D("0"))
    assert bal(eng, "a", "BTC") == Balance("BTC", D("10"), D("0"))


def test_buy_filling_below_its_limit_releases_the_difference() -> None:
    eng = new_engine()
    eng.open_account("t", {"USDT": D("1000")})
    limit(eng, "a", "m", SELL, "1", "95")
    res = limit(eng, "t", "buy", BUY, "3", "100")
    assert [s for a, _, s, _ in summary(res) if a == "t"] == [S.ACCEPTED, S.PARTIALLY_FILLED]
    # Paid 95 for one; the two left rest at 100, and the 5 saved is free again.
    assert bal(eng, "t", "USDT") == Balance("USDT", D("705"), D("200"))
    assert bal(eng, "t", "BTC").free == D("1") - D("1") * TAKER_FEE
    eng._check_invariants()
    market(eng, "b", "hit", SELL, "2")
    assert bal(eng, "t", "USDT") == Balance("USDT", D("705"), D("0"))
    eng._check_invariants()


def test_expired_ioc_and_exact_spend_release_everything() -> None:
    eng = new_engine()
    eng.open_account("t", {"USDT": D("500")})
    limit(eng, "a", "m", SELL, "1", "99")
    limit(eng, "t", "ioc", BUY, "5", "100", tif=IOC)
    assert bal(eng, "t", "USDT") == Balance("USDT", D("401"), D("0"))
    eng.open_account("u", {"USDT": D("99")})
    limit(eng, "a", "m2", SELL, "1", "99")
    res = market(eng, "u", "all_in", BUY, "1")
    assert [s for a, _, s, _ in summary(res) if a == "u"] == [S.FILLED]
    assert bal(eng, "u", "USDT") == Balance("USDT", D("0"), D("0"))
    eng._check_invariants()


def test_unlimited_accounts_skip_checks_and_never_lock() -> None:
    eng = new_engine()
    eng.open_account("lp", unlimited=True)
    assert only(limit(eng, "lp", "bid", BUY, "500", "100")).report.status is S.ACCEPTED
    assert only(limit(eng, "lp", "ask", SELL, "500", "200")).report.status is S.ACCEPTED
    assert all(b.locked == 0 for b in eng.balances("lp").values())
    market(eng, "a", "t", SELL, "1")
    assert bal(eng, "lp", "USDT").free == D("-100")
    assert bal(eng, "lp", "BTC").free == D("1") - D("1") * MAKER_FEE
    eng._check_invariants()


def test_deposit_and_withdraw() -> None:
    eng = new_engine(funded=())
    eng.open_account("a")
    assert eng.balances("a") == {}
    eng.deposit("a", "USDT", D("10"))
    eng.deposit("a", "USDT", D("-4"))
    assert eng.balances("a") == {"USDT": Balance("USDT", D("6"), D("0"))}
    with pytest.raises(ValueError, match="would become"):
        eng.deposit("a", "USDT", D("-7"))


def test_same_calls_give_the_same_results() -> None:
    def run() -> list[object]:
        eng = new_engine()
        out: list[object] = []
        for i in range(30):
            side = BUY if i % 3 else SELL
            price = str(100 + (i * 7) % 5)
            out.append(limit(eng, "a" if i % 2 else "b", f"o{i}", side, "0.5", price, ts=i))
        out.append(eng.balances("a"))
        return out

    assert run() == run()


# -- conservation (property) --------------------------------------------------------------------

_order = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from(["limit"] * 5 + ["market", "market", "cancel", "cancel_all"]),
    st.sampled_from([BUY, SELL]),
    st.integers(min_value=1, max_value=400).map(lambda n: D(n) / 100),  # qty, step 0.01
    st.integers(min_value=9_995, max_value=10_005).map(lambda n: D(n) / 100),  # tick 0.01
    st.sampled_from([GTC, GTC, GTC, IOC, FOK]),
    st.booleans(),
    st.integers(min_value=0, max_value=15),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_order, min_size=5, max_size=80))
def test_random_orders_conserve_assets_and_never_go_negative(
    orders: list[tuple[str, str, Side, D, D, TimeInForce, bool, int]],
) -> None:
    inst = Instrument("test", "XY", "X", "Y", D("0.01"), D("0.01"), D("0.01"), D("1"))
    eng = MatchingEngine("test", [inst], maker_fee=D("0.001"), taker_fee=D("0.0025"))
    start = {"X": D("5"), "Y": D("700")}
    eng.open_account("a", start)
    eng.open_account("b", start)
    for ts, (acct, kind, side, qty, price, tif, post_only, ref) in enumerate(orders):
        if kind == "cancel":
            res = eng.cancel(acct, "XY", f"o{ref}", ts)
        elif kind == "cancel_all":
            res = eng.cancel_all(acct, "XY", ts)
        else:
            market_order = kind == "market"
            res = eng.submit(
                acct,
                client_order_id=f"o{ref}",
                symbol="XY",
                side=side,
                type=OrderType.MARKET if market_order else OrderType.LIMIT,
                qty=qty,
                price=None if market_order else price,
                tif=tif,
                post_only=post_only and not market_order,
                ts=ts,
            )
        assert all(r.report.ts_event == ts for r in res.reports)
        eng._check_invariants()
        fees = eng.fees_collected
        for asset in ("X", "Y"):
            held = sum((eng.balances(a).get(asset, Balance(asset, D(0))).total for a in "ab"), D(0))
            assert held + fees.get(asset, D(0)) == 2 * start[asset]
            for a in "ab":
                b = eng.balances(a)[asset]
                assert b.free >= 0
                assert b.locked >= 0


def test_one_asset_balance_accessors_agree_with_balances() -> None:
    eng = new_engine()
    limit(eng, "a", "rest_buy", BUY, "2", "100")  # locks 200 USDT
    every = eng.balances("a")
    for asset in ("USDT", "BTC", "ETH"):
        assert eng.free_balance("a", asset) == every[asset].free
        assert eng.total_balance("a", asset) == every[asset].total
    assert eng.free_balance("a", "USDT") == D("99800")
    assert eng.total_balance("a", "USDT") == D("100000")
    assert eng.free_balance("a", "DOGE") == 0 == eng.total_balance("a", "DOGE")
    with pytest.raises(KeyError, match="unknown account"):
        eng.free_balance("nobody", "USDT")
