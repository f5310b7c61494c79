"""Two fills of one order applied side by side (the report stream and a recovery query both
apply reports, and each fill awaits its journal write): both count. Before the fix the second
fill was computed from the order as it was before the first one's write finished and stored
over it, leaving the order short of its fills for good; a cancel then met "unknown order" at
the venue and reconciliation could not recover the lost quantity (its trades were seen)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from botd.model import ExecutionReport, Liquidity, OrderStatus, OrderType, VenueOrder
from tests.rig import Rig
from tests.rig import make_intent as intent


def _fill(cid: str, trade_id: str, qty: str, status: OrderStatus, ts: int) -> ExecutionReport:
    return ExecutionReport(
        venue="paper",
        symbol="BTCUSDT",
        client_order_id=cid,
        venue_order_id="v-1",
        status=status,
        ts_event=ts,
        last_qty=D(qty),
        last_price=D("100"),
        fee=D("0"),
        fee_asset="USDT",
        trade_id=trade_id,
        liquidity=Liquidity.MAKER,
    )


async def test_two_fills_applied_concurrently_both_count() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.5)
        cid = rig.gateway.submit(
            intent(type=OrderType.LIMIT, price=rig.resting_buy_price(fraction="0.5"))
        )
        await rig.settle()
        order = rig.gateway.order(cid)
        assert order is not None and order.status is OrderStatus.ACCEPTED
        third = order.qty / 4
        ts = rig.clock.time_ns()
        first = _fill(cid, "t-1", str(third), OrderStatus.PARTIALLY_FILLED, ts)
        rest = _fill(cid, "t-2", str(order.qty - third), OrderStatus.FILLED, ts)
        # As the stream and a recovery would: both enter before either's write completes.
        await asyncio.gather(rig.gateway.apply(first), rig.gateway.apply(rest))
        await rig.settle()
        done = rig.gateway.order(cid)
        stored = [f for f in await rig.journal.fills() if f.client_order_id == cid]
    assert done is not None
    assert done.filled_qty == order.qty
    assert done.status is OrderStatus.FILLED
    assert not rig.gateway.open_orders()
    assert sorted(f.trade_id for f in stored) == ["t-1", "t-2"]
    assert sorted(f.trade_id for f in rig.fills if f.client_order_id == cid) == ["t-1", "t-2"]


async def test_a_venue_view_read_while_a_fill_is_journaled_does_not_close_the_order_under_it() -> (
    None
):
    """The stream's fill is being written when recovery reads the venue's view, which already
    counts it and says canceled. Closing the order then would make the fill not fit when its
    write returns: journaled, but missing from the order, the position and the bus."""
    rig = Rig()
    async with rig.running():
        await rig.advance(0.5)
        cid = rig.gateway.submit(
            intent(type=OrderType.LIMIT, price=rig.resting_buy_price(fraction="0.5"))
        )
        await rig.settle()
        order = rig.gateway.order(cid)
        assert order is not None and order.status is OrderStatus.ACCEPTED
        part = order.qty / 4
        ts = rig.clock.time_ns()
        fill = _fill(cid, "t-9", str(part), OrderStatus.PARTIALLY_FILLED, ts)
        writing = asyncio.create_task(rig.gateway.apply(fill))
        for _ in range(3):
            await asyncio.sleep(0)  # the fill is now waiting on its journal write
        assert not writing.done()
        view = VenueOrder(
            venue="paper", symbol="BTCUSDT", client_order_id=cid, venue_order_id="v-1",
            side=order.side, type=order.type, qty=order.qty, price=order.price,
            status=OrderStatus.CANCELED, filled_qty=part, avg_price=D("100"), ts_event=ts,
        )  # fmt: skip
        await rig.gateway._adopt_venue_view(rig.gateway._venues["paper"], view)
        await writing
        await rig.settle()
        done = rig.gateway.order(cid)
    assert done is not None and done.filled_qty == part
    assert rig.gateway.illegal_transitions == 0
    assert [f.trade_id for f in rig.fills if f.client_order_id == cid] == ["t-9"]
