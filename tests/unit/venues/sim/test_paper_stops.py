"""Stop orders on the paper venue: accepted off the book, triggered by trades, cancellable, and
kept in the persisted account across a restart."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from botd.clock import FakeClock
from botd.errors import OrderRejected
from botd.model import ExecutionReport, Order, OrderStatus, OrderType, Side, TimeInForce
from botd.venues.sim.paper import PaperVenue

D = Decimal
SYM = "BTCUSDT"


def paper(clock: FakeClock, state_path: Path | None = None) -> PaperVenue:
    return PaperVenue(
        clock=clock,
        symbols=(SYM,),
        seed=3,
        event_rate=20.0,
        maker_fee=D("0.001"),
        taker_fee=D("0.002"),
        balances={"USDT": D("100000"), "BTC": D("1")},
        state_path=state_path,
    )


def stop_order(
    cid: str, side: Side, qty: str, stop: Decimal, limit: Decimal | None = None
) -> Order:
    return Order(
        client_order_id=cid,
        strategy_id="t",
        venue="paper",
        symbol=SYM,
        side=side,
        type=OrderType.STOP if limit is None else OrderType.STOP_LIMIT,
        qty=D(qty),
        price=limit,
        tif=TimeInForce.GTC,
        stop_price=stop,
    )


def market(cid: str, side: Side, qty: str) -> Order:
    return Order(cid, "t", "paper", SYM, side, OrderType.MARKET, D(qty), None, TimeInForce.IOC)


def drain(v: PaperVenue) -> list[ExecutionReport]:
    out = []
    while not v._reports.empty():
        out.append(v._reports.get_nowait())
    return out


async def test_paper_declares_stop_orders() -> None:
    v = paper(FakeClock())
    assert {OrderType.STOP, OrderType.STOP_LIMIT} <= v.capabilities.order_types


async def test_a_sell_stop_triggers_when_trades_reach_it() -> None:
    clock = FakeClock()
    v = paper(clock)
    await v.connect()
    bids, _ = v.engine.depth(SYM, 3)
    stop = bids[1].price  # the second level: a sell walking the book prints there
    ack = await v.submit(stop_order("s1", Side.SELL, "0.01", stop))
    assert ack.status is OrderStatus.ACCEPTED
    assert [(r.client_order_id, r.status) for r in drain(v)] == [("s1", OrderStatus.ACCEPTED)]
    waiting = await v.query_order(SYM, "s1")
    assert waiting is not None and waiting.stop_price == stop and waiting.type is OrderType.STOP
    # Our own market sell walks through the first level; its print at the stop triggers it.
    await v.submit(market("m1", Side.SELL, str(bids[0].size + D("0.001"))))
    reports = drain(v)
    stop_fills = [r for r in reports if r.client_order_id == "s1" and r.last_qty > 0]
    assert sum(r.last_qty for r in stop_fills) == D("0.01")
    assert stop_fills[-1].status is OrderStatus.FILLED
    assert all(r.last_price <= stop for r in stop_fills)  # sold at or below the trigger
    assert (await v.open_orders()) == []
    v.engine._check_invariants()


async def test_a_stop_at_the_market_is_refused() -> None:
    clock = FakeClock()
    v = paper(clock)
    await v.connect()
    await v.submit(market("m1", Side.BUY, "0.01"))  # a print, so there is a last price
    last = v.engine.last_price(SYM)
    assert last is not None
    with pytest.raises(OrderRejected) as err:
        await v.submit(stop_order("s1", Side.SELL, "0.01", last))
    assert err.value.code == "WOULD_TRIGGER"


async def test_waiting_stops_outlive_a_restart_and_cancel_after(tmp_path: Path) -> None:
    path = tmp_path / "account.json"
    clock = FakeClock()
    v = paper(clock, path)
    await v.connect()
    bid, ask = v.engine.top_of_book(SYM)
    assert bid is not None and ask is not None
    low = (bid.price * D("0.5")).quantize(D("0.01"))
    high = (ask.price * D("1.5")).quantize(D("0.01"))
    await v.submit(stop_order("s1", Side.SELL, "0.2", low))
    await v.submit(stop_order("b1", Side.BUY, "0.01", high, high + D(10)))
    balances = await v.balances()
    assert balances["BTC"].locked == D("0.2")
    await v.close()

    again = paper(clock, path)
    await again.connect()
    assert again.restarts == 1
    views = {o.client_order_id: o for o in await again.open_orders()}
    assert set(views) == {"s1", "b1"}
    assert (views["s1"].type, views["s1"].stop_price, views["s1"].price) == (
        OrderType.STOP,
        low,
        None,
    )
    assert (views["b1"].type, views["b1"].stop_price) == (OrderType.STOP_LIMIT, high)
    assert (await again.balances()) == balances
    assert again.engine.waiting_stops(SYM) == 2
    await again.cancel(SYM, "s1")
    assert [(r.client_order_id, r.status) for r in drain(again)] == [("s1", OrderStatus.CANCELED)]
    assert (await again.balances())["BTC"].locked == 0
    await again.close()

    third = paper(clock, path)
    await third.connect()
    assert [o.client_order_id for o in await third.open_orders()] == ["b1"]
    third.engine._check_invariants()
    await third.close()
