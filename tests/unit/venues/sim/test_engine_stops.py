"""Stop and stop-limit orders in the matching engine: held off the book, triggered by the last
trade price reaching the stop (>= for a buy stop, <= for a sell stop), then a market or limit
order with the same ids."""

from __future__ import annotations

from decimal import Decimal

from botd.model import Balance, Instrument, OrderStatus, OrderType, Side, TimeInForce
from botd.venues.sim import EngineResult, MatchingEngine

D = Decimal
S = OrderStatus
BUY, SELL = Side.BUY, Side.SELL
GTC = TimeInForce.GTC
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
)


def new_engine() -> MatchingEngine:
    eng = MatchingEngine("test", [INST], maker_fee=D("0.001"), taker_fee=D("0.002"))
    eng.open_account("me", {"USDT": D("100000"), "BTC": D("10")})
    eng.open_account("mm", unlimited=True)
    return eng


def order(
    eng: MatchingEngine,
    account: str,
    cid: str,
    side: Side,
    qty: str,
    *,
    type: OrderType = OrderType.LIMIT,
    price: str | None = None,
    stop: str | None = None,
    tif: TimeInForce = GTC,
) -> EngineResult:
    result = eng.submit(
        account,
        client_order_id=cid,
        symbol=SYM,
        side=side,
        type=type,
        qty=D(qty),
        price=None if price is None else D(price),
        tif=tif,
        post_only=False,
        ts=1,
        stop_price=None if stop is None else D(stop),
    )
    return eng.trigger_stops(result, 2)


def print_at(eng: MatchingEngine, price: str, qty: str = "1") -> EngineResult:
    """The market trades at ``price``: the maker rests, the taker takes it."""
    order(eng, "mm", f"mk{price}", SELL, qty, price=price)
    return order(eng, "mm", f"tk{price}", BUY, qty, price=price)


def mine(result: EngineResult, account: str = "me") -> list[tuple[OrderStatus, Decimal, str]]:
    return [
        (r.report.status, r.report.last_qty, r.report.client_order_id)
        for r in result.reports
        if r.account == account
    ]


def test_a_sell_stop_waits_off_the_book_with_its_funds_reserved() -> None:
    eng = new_engine()
    print_at(eng, "100")
    res = order(eng, "me", "s1", SELL, "1", type=OrderType.STOP, stop="95")
    assert mine(res) == [(S.ACCEPTED, D(0), "s1")]
    assert eng.top_of_book(SYM) == (None, None)  # not in the book
    assert eng.waiting_stops(SYM) == 1
    assert eng.balances("me")["BTC"].locked == D("1")
    view = eng.order_state("me", "s1")
    assert view is not None
    assert (view.type, view.stop_price, view.price, view.status) == (
        OrderType.STOP,
        D("95"),
        None,
        S.ACCEPTED,
    )
    eng._check_invariants()


def test_a_print_above_the_stop_does_not_trigger_it_reaching_it_does() -> None:
    eng = new_engine()
    print_at(eng, "100")
    order(eng, "me", "s1", SELL, "1", type=OrderType.STOP, stop="95")
    order(eng, "mm", "bid", BUY, "5", price="94.50")  # liquidity for the triggered sell
    assert mine(print_at(eng, "95.01")) == []
    assert eng.waiting_stops() == 1
    res = print_at(eng, "95")  # exactly at the stop: a touch is enough
    assert mine(res) == [(S.FILLED, D("1"), "s1")]
    fill = next(r.report for r in res.reports if r.account == "me")
    assert fill.last_price == D("94.50")  # a stop-market takes what the book offers
    assert eng.waiting_stops() == 0
    assert eng.balances("me")["BTC"] == Balance("BTC", D("9"), D(0))
    closed = eng.order_state("me", "s1")
    assert closed is not None
    assert (closed.type, closed.status, closed.stop_price) == (OrderType.STOP, S.FILLED, D("95"))
    eng._check_invariants()


def test_a_buy_stop_triggers_at_or_above_and_a_cascade_triggers_the_next() -> None:
    eng = new_engine()
    print_at(eng, "100")
    order(eng, "me", "b1", BUY, "1", type=OrderType.STOP, stop="101")
    order(eng, "me", "b2", BUY, "1", type=OrderType.STOP, stop="102")
    assert eng.balances("me")["USDT"].locked == D("203")  # qty x stop, while waiting
    order(eng, "mm", "ask1", SELL, "1", price="102.50")
    order(eng, "mm", "ask2", SELL, "1", price="103")
    res = print_at(eng, "101.20")
    # b1 triggers at 101.20, buys at 102.50; that print reaches b2, which buys at 103.
    assert mine(res) == [(S.FILLED, D("1"), "b1"), (S.FILLED, D("1"), "b2")]
    assert [t.price for t in res.trades] == [D("101.20"), D("102.50"), D("103")]
    assert eng.balances("me")["USDT"].locked == 0
    eng._check_invariants()


def test_a_stop_limit_becomes_a_resting_limit_when_it_cannot_fill() -> None:
    eng = new_engine()
    print_at(eng, "100")
    order(eng, "me", "sl", SELL, "1", type=OrderType.STOP_LIMIT, price="94", stop="95")
    res = print_at(eng, "94.90")  # triggers; nobody bids at 94 or above
    assert mine(res) == []
    bid, ask = eng.top_of_book(SYM)
    assert bid is None and ask is not None and ask.price == D("94")  # resting as a limit
    view = eng.order_state("me", "sl")
    assert view is not None and view.type is OrderType.STOP_LIMIT and view.price == D("94")
    eng._check_invariants()
    # Cancel works after the trigger as before it.
    cancelled = eng.cancel("me", SYM, "sl", 3)
    assert mine(cancelled) == [(S.CANCELED, D(0), "sl")]
    assert eng.balances("me")["BTC"].locked == 0
    eng._check_invariants()


def test_cancel_before_the_trigger_releases_the_reservation() -> None:
    eng = new_engine()
    order(eng, "me", "s1", BUY, "2", type=OrderType.STOP_LIMIT, price="111", stop="110")
    assert eng.balances("me")["USDT"].locked == D("222")  # at the limit price
    assert mine(eng.cancel("me", SYM, "s1", 3)) == [(S.CANCELED, D(0), "s1")]
    assert eng.balances("me")["USDT"] == Balance("USDT", D("100000"), D(0))
    assert eng.waiting_stops() == 0
    assert mine(print_at(eng, "120")) == []  # nothing left to trigger
    eng._check_invariants()


def test_a_stop_that_would_trigger_at_once_is_rejected() -> None:
    eng = new_engine()
    print_at(eng, "100")
    res = order(eng, "me", "s1", SELL, "1", type=OrderType.STOP, stop="100")
    assert res.reports[0].report.status is S.REJECTED
    assert res.reports[0].report.extra["code"] == "WOULD_TRIGGER"
    assert "would immediately trigger" in res.reports[0].report.reason
    res = order(eng, "me", "b1", BUY, "1", type=OrderType.STOP, stop="99.99")
    assert res.reports[0].report.extra["code"] == "WOULD_TRIGGER"


def test_bad_stops_are_rejected_with_a_code() -> None:
    eng = new_engine()
    cases = [
        ({"type": OrderType.STOP}, "BAD_ORDER"),  # no stop price
        ({"type": OrderType.STOP_LIMIT, "stop": "90"}, "BAD_ORDER"),  # no limit price
        ({"type": OrderType.LIMIT, "price": "90", "stop": "90"}, "BAD_ORDER"),
        ({"type": OrderType.STOP, "stop": "90.001"}, "TICK_SIZE"),
        ({"type": OrderType.STOP, "stop": "-1"}, "BAD_PRICE"),
    ]
    for i, (kwargs, code) in enumerate(cases):
        res = order(eng, "me", f"x{i}", SELL, "1", **kwargs)  # type: ignore[arg-type]
        assert res.reports[0].report.extra["code"] == code, kwargs
    # Funds: a sell stop reserves the base it would sell.
    res = order(eng, "me", "big", SELL, "11", type=OrderType.STOP, stop="90")
    assert res.reports[0].report.extra["code"] == "INSUFFICIENT_BALANCE"


def test_a_triggered_stop_market_with_no_liquidity_expires() -> None:
    eng = new_engine()
    print_at(eng, "100")
    order(eng, "me", "s1", SELL, "1", type=OrderType.STOP, stop="95")
    res = print_at(eng, "94")  # the print consumed all bids: nothing to sell into
    reports = [r.report for r in res.reports if r.account == "me"]
    assert [(r.status, r.client_order_id) for r in reports] == [(S.EXPIRED, "s1")]
    assert "no liquidity" in reports[0].reason
    assert eng.balances("me")["BTC"].locked == 0
    eng._check_invariants()


def test_waiting_stops_survive_export_and_restore() -> None:
    eng = new_engine()
    print_at(eng, "100")
    order(eng, "me", "s1", SELL, "1", type=OrderType.STOP, stop="95")
    order(eng, "me", "s2", SELL, "1", type=OrderType.STOP_LIMIT, price="89", stop="90")
    snap = eng.export_account("me")
    assert [(o.type, o.stop_price) for o in snap.open] == [
        (OrderType.STOP, D("95")),
        (OrderType.STOP_LIMIT, D("90")),
    ]
    again = MatchingEngine("test", [INST], maker_fee=D("0.001"), taker_fee=D("0.002"))
    again.open_account("mm", unlimited=True)
    again.restore_counters(*eng.counters)
    again.restore_account("me", snap)
    again._check_invariants()
    assert again.waiting_stops(SYM) == 2
    assert again.balances("me") == eng.balances("me")
    order(again, "mm", "bid", BUY, "5", price="94")
    res = print_at(again, "94.50")
    assert mine(res) == [(S.FILLED, D("1"), "s1")]
    assert again.waiting_stops(SYM) == 1
    again._check_invariants()
