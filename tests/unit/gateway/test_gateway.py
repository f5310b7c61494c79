import re
from decimal import Decimal as D

from botd.model import (
    ExecutionReport,
    Liquidity,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tests.rig import Rig
from tests.rig import make_intent as intent


async def test_market_buy_fills_and_reports_in_order() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.2)
        cid = rig.gateway.submit(intent())
        await rig.settle()
    assert rig.statuses(cid)[:2] == ["submitted", "accepted"]
    assert rig.statuses(cid)[-1] == "filled"
    fills = [f for f in rig.fills if f.client_order_id == cid]
    assert sum(f.qty for f in fills) == D("0.01")
    assert all(f.liquidity is Liquidity.TAKER and f.fee_asset == "BTC" for f in fills)
    assert all(f.fee == f.qty * D("0.002") for f in fills)
    order = rig.gateway.order(cid)
    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == D("0.01")
    # Balances follow the fills.
    assert rig.gateway.balance("paper", "BTC").free == D("1") + D("0.01") - sum(
        f.fee for f in fills
    )


async def test_client_ids_are_unique_and_venue_safe() -> None:
    rig = Rig()
    async with rig.running(feed=False):
        ids = [rig.gateway.submit(intent(qty=D("0.001"))) for _ in range(50)]
        await rig.settle(200)
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,36}", i) for i in ids)


async def test_resting_limit_then_cancel_releases_funds() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.2)
        price = rig.resting_buy_price()
        cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=price))
        await rig.settle()
        assert rig.gateway.order(cid).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
        assert rig.gateway.balance("paper", "USDT").locked == price * D("0.01")
        assert [o.client_order_id for o in rig.gateway.open_orders("s1")] == [cid]
        rig.gateway.cancel(cid)
        await rig.settle()
        await rig.gateway.drain()
        await rig.settle()
    assert rig.statuses(cid) == ["submitted", "accepted", "pending_cancel", "canceled"]
    assert rig.gateway.open_orders() == []


async def test_invalid_order_is_denied_locally_with_reason() -> None:
    rig = Rig()
    async with rig.running(feed=False):
        cid = rig.gateway.submit(intent(qty=D("0.000001")))  # rounds to zero
        bad_symbol = rig.gateway.submit(intent(symbol="DOGEUSDT"))
        await rig.settle()
    (update,) = [u for u in rig.updates if u.client_order_id == cid]
    assert update.status is OrderStatus.REJECTED
    assert update.reason.startswith("BELOW_MINIMUM: quantity 0.000001 rounds down to 0")
    bad = rig.gateway.order(bad_symbol)
    assert bad is not None
    assert bad.reason == "UNKNOWN_INSTRUMENT: venue 'paper' has no symbol 'DOGEUSDT'"


async def test_quantity_and_price_are_rounded_onto_the_grid() -> None:
    rig = Rig()
    async with rig.running(feed=False):
        cid = rig.gateway.submit(
            intent(type=OrderType.LIMIT, price=D("1000.019"), qty=D("0.0123456"))
        )
        sell = rig.gateway.submit(
            intent(side=Side.SELL, type=OrderType.LIMIT, price=D("200000.011"), qty=D("0.0123456"))
        )
        await rig.settle()
    buy_order, sell_order = rig.gateway.order(cid), rig.gateway.order(sell)
    assert buy_order is not None and sell_order is not None
    assert (buy_order.price, buy_order.qty) == (D("1000.01"), D("0.01234"))
    assert (sell_order.price, sell_order.qty) == (D("200000.02"), D("0.01234"))


async def test_venue_rejection_reaches_the_strategy() -> None:
    rig = Rig(balances={"USDT": D("10")})
    async with rig.running():
        await rig.advance(0.2)
        cid = rig.gateway.submit(intent(qty=D("1")))
        await rig.settle()
    assert rig.statuses(cid) == ["submitted", "rejected"]
    order = rig.gateway.order(cid)
    assert order is not None
    assert order.reason.startswith("INSUFFICIENT_BALANCE: ")


async def test_post_only_that_would_cross_is_rejected() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.2)
        quote = rig.gateway.last_quote("paper", "BTCUSDT")
        assert quote is not None
        cid = rig.gateway.submit(
            intent(type=OrderType.LIMIT, price=quote.ask + D("10"), post_only=True)
        )
        await rig.settle()
    assert rig.statuses(cid)[-1] == "rejected"


async def test_duplicate_and_unknown_reports_change_nothing() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.2)
        cid = rig.gateway.submit(intent())
        await rig.settle()
        fill = next(f for f in rig.fills if f.client_order_id == cid)
        before = (len(rig.fills), len(rig.updates), rig.gateway.order(cid))
        replay = ExecutionReport(
            venue="paper",
            symbol="BTCUSDT",
            client_order_id=cid,
            venue_order_id=fill.venue_order_id,
            status=OrderStatus.PARTIALLY_FILLED,
            ts_event=fill.ts_event,
            last_qty=fill.qty,
            last_price=fill.price,
            fee=fill.fee,
            fee_asset=fill.fee_asset,
            trade_id=fill.trade_id,
        )
        await rig.gateway.apply(replay)
        await rig.gateway.apply(replay)
        await rig.gateway.apply(
            ExecutionReport("paper", "BTCUSDT", "not-ours", "1", OrderStatus.ACCEPTED, 0)
        )
        after = (len(rig.fills), len(rig.updates), rig.gateway.order(cid))
    assert before == after
    assert rig.gateway.duplicate_fills == 2
    assert rig.gateway.unknown_reports == 1


async def test_cancel_before_send_never_reaches_the_venue() -> None:
    rig = Rig()
    async with rig.running(feed=False):
        cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=D("1000")))
        rig.gateway.cancel(cid)  # same tick: the worker has not sent it yet
        await rig.settle()
    assert rig.statuses(cid) == ["canceled"]
    assert rig.gateway.order(cid).reason == "cancelled before it was sent"  # type: ignore[union-attr]
    assert await rig.paper.open_orders() == []


async def test_cancels_jump_ahead_of_new_orders() -> None:
    rig = Rig()
    async with rig.running(feed=False):
        resting = rig.gateway.submit(intent(type=OrderType.LIMIT, price=D("1000")))
        await rig.settle()
        queued = [
            rig.gateway.submit(intent(type=OrderType.LIMIT, price=D("1000"))) for _ in range(3)
        ]
        rig.gateway.cancel(resting)
        await rig.settle(100)
    order_of_events = [
        (u.client_order_id, u.status.value) for u in rig.updates if u.status.value != "accepted"
    ]
    first_send_of_queued = order_of_events.index((queued[0], "submitted"))
    assert order_of_events.index((resting, "pending_cancel")) < first_send_of_queued


async def test_ioc_limit_expires_unfilled_remainder() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.2)
        far = rig.resting_buy_price(fraction="0.5")
        cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=far, tif=TimeInForce.IOC))
        await rig.settle()
    assert rig.statuses(cid)[-1] == "expired"
