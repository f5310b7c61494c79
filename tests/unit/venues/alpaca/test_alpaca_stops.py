"""Stop and stop-limit orders through the Alpaca adapter, against the Alpaca simulator: both
prices go on the wire and come back in the venue's view; a reached stop triggers and fills."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

from botd.model import ExecutionReport, Order, OrderStatus, OrderType, Side, TimeInForce
from botd.venues.alpaca.adapter import ALPACA_CAPABILITIES
from tests.unit.venues.alpaca.test_alpaca_adapter import Rig, rig  # noqa: F401

CENT = Decimal("0.01")


def stop_limit(cid: str, stop: Decimal, limit: Decimal) -> Order:
    return Order(
        client_order_id=cid,
        strategy_id="t",
        venue="alpaca",
        symbol="BTC/USD",
        side=Side.BUY,
        type=OrderType.STOP_LIMIT,
        qty=Decimal("0.01"),
        price=limit,
        tif=TimeInForce.GTC,
        stop_price=stop,
    )


def test_alpaca_declares_stop_orders() -> None:
    assert {OrderType.STOP, OrderType.STOP_LIMIT} <= ALPACA_CAPABILITIES.order_types


async def test_stop_limit_waits_then_a_reached_one_fills(
    rig: Callable[..., Awaitable[Rig]],  # noqa: F811
) -> None:
    r = await rig()
    venue = r.adapter(symbols=("BTC/USD",))
    await venue.connect()
    reports: list[ExecutionReport] = []

    async def collect() -> None:
        async for report in venue.executions():
            reports.append(report)

    task = asyncio.create_task(collect())
    try:
        bid, ask = r.sim.engine.top_of_book("BTC/USD")
        assert bid is not None and ask is not None
        price = (bid.price + ask.price) / 2
        far = (price * Decimal("1.5")).quantize(CENT)
        await venue.submit(stop_limit("far", far, far + 10))
        view = await venue.query_order("BTC/USD", "far")
        assert view is not None
        assert (view.type, view.status, view.stop_price, view.price) == (
            OrderType.STOP_LIMIT,
            OrderStatus.ACCEPTED,
            far,
            far + 10,
        )
        # A buy stop already under the last price triggers at once; its limit is marketable.
        low = (price * Decimal("0.9")).quantize(CENT)
        await venue.submit(stop_limit("hit", low, (price * Decimal("1.1")).quantize(CENT)))
        await r.until(lambda: any(x.client_order_id == "hit" and x.last_qty > 0 for x in reports))
        await r.until(
            lambda: any(
                x.client_order_id == "hit" and x.status is OrderStatus.FILLED for x in reports
            )
        )
        done = await venue.query_order("BTC/USD", "hit")
        assert done is not None and done.status is OrderStatus.FILLED
        assert done.type is OrderType.STOP_LIMIT and done.stop_price == low
        assert [o.client_order_id for o in await venue.open_orders()] == ["far"]
    finally:
        task.cancel()
