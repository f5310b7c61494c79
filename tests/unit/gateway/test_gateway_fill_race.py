"""Two fills of one order applied side by side (the report stream and a recovery query both
apply reports, and each fill awaits its journal write): both count. Before the fix the second
fill was computed from the order as it was before the first one's write finished and stored
over it, leaving the order short of its fills for good; a cancel then met "unknown order" at
the venue and reconciliation could not recover the lost quantity (its trades were seen)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from botd.model import ExecutionReport, Liquidity, OrderStatus, OrderType
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
