"""The gateway against injected venue faults: unknown outcomes, refusals, lost and repeated
reports. Real components throughout; the FaultyVenue wraps the real paper venue."""

from decimal import Decimal as D

import structlog

from botd.gateway import Alert
from botd.model import OrderStatus, OrderType
from botd.venues.sim.faulty import Fault, FaultKind, FaultPlan
from tests.rig import Rig
from tests.rig import make_intent as intent


async def venue_orders(rig: Rig) -> list[str]:
    """Every order of ours the venue ever executed or holds, by client id."""
    ids = {o.client_order_id for o in await rig.paper.open_orders()}
    ids |= {r.client_order_id for r in await rig.paper.fills("BTCUSDT", 0)}
    return sorted(ids)


async def test_timeout_after_accept_is_resolved_by_query_not_resent() -> None:
    plan = FaultPlan([Fault(FaultKind.TIMEOUT_AFTER_ACCEPT, on="submit", nth=1)])
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        cid = rig.gateway.submit(intent())
        await rig.settle()
        assert rig.gateway.order(cid).status in (OrderStatus.UNKNOWN, OrderStatus.FILLED)  # type: ignore[union-attr]
        await rig.advance(3.0)
        order = rig.gateway.order(cid)
        on_venue = await venue_orders(rig)
    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == D("0.01")
    assert on_venue == [cid]  # exactly one venue order for one intent
    assert rig.venue.calls("submit") == 1  # type: ignore[attr-defined]
    assert "unknown" in rig.statuses(cid)
    assert sum(f.qty for f in rig.fills if f.client_order_id == cid) == D("0.01")


async def test_timeout_before_accept_ends_rejected_after_queries_find_nothing() -> None:
    plan = FaultPlan([Fault(FaultKind.TIMEOUT_BEFORE_ACCEPT, on="submit", nth=1)])
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        cid = rig.gateway.submit(intent())
        await rig.advance(5.0)
        order = rig.gateway.order(cid)
        on_venue = await venue_orders(rig)
    assert order is not None
    assert order.status is OrderStatus.REJECTED
    assert "not received by the venue" in order.reason
    assert on_venue == []
    assert rig.venue.calls("submit") == 1  # type: ignore[attr-defined]
    assert rig.venue.calls("query") >= 3  # type: ignore[attr-defined]


async def test_server_error_is_unknown_until_the_venue_answers() -> None:
    plan = FaultPlan(
        [
            Fault(FaultKind.SERVER_ERROR, on="submit", nth=1),
            # The first two queries fail too: the gateway keeps asking with backoff.
            Fault(FaultKind.SERVER_ERROR, on="query", times=2),
        ]
    )
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        cid = rig.gateway.submit(intent())
        await rig.advance(8.0)
        assert rig.gateway.order(cid).status is OrderStatus.UNKNOWN  # type: ignore[union-attr]
        await rig.advance(10.0)  # backoff 0.5, 1, 2, 4, 8 s: two failures, three misses
    assert rig.gateway.order(cid).status is OrderStatus.REJECTED  # type: ignore[union-attr]
    assert rig.venue.calls("query") == 5  # type: ignore[attr-defined]


async def test_cancel_for_an_unknown_order_waits_for_resolution() -> None:
    plan = FaultPlan([Fault(FaultKind.TIMEOUT_BEFORE_ACCEPT, on="submit", nth=1)])
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        price = rig.resting_buy_price()
        cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=price))
        await rig.settle()
        assert rig.gateway.order(cid).status is OrderStatus.UNKNOWN  # type: ignore[union-attr]
        rig.gateway.cancel(cid)  # must not be sent before we know the order exists
        await rig.advance(1.0)
        assert rig.venue.calls("cancel") == 0  # type: ignore[attr-defined]
        await rig.advance(8.0)
    # The venue never had it: resolved as rejected, and no cancel was ever needed.
    assert rig.gateway.order(cid).status is OrderStatus.REJECTED  # type: ignore[union-attr]
    assert rig.venue.calls("cancel") == 0  # type: ignore[attr-defined]


async def test_cancel_requested_while_unknown_is_sent_once_the_order_is_found() -> None:
    plan = FaultPlan(
        [
            Fault(FaultKind.TIMEOUT_AFTER_ACCEPT, on="submit", nth=1),
            # Lose the stream too, so only a query can tell us the order is live.
            Fault(FaultKind.DROP_STREAM, on="executions", nth=1),
        ]
    )
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        price = rig.resting_buy_price()
        cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=price))
        await rig.settle()
        if rig.gateway.order(cid).status is OrderStatus.UNKNOWN:  # type: ignore[union-attr]
            rig.gateway.cancel(cid)
            assert rig.venue.calls("cancel") == 0  # type: ignore[attr-defined]
        else:
            rig.gateway.cancel(cid)
        await rig.advance(5.0)
    assert rig.gateway.order(cid).status is OrderStatus.CANCELED  # type: ignore[union-attr]
    assert rig.venue.calls("cancel") == 1  # type: ignore[attr-defined]
    assert await rig.paper.open_orders() == []


async def test_429_pauses_the_venue_and_rejects_the_order() -> None:
    plan = FaultPlan([Fault(FaultKind.RATE_LIMITED, on="submit", nth=1, retry_after=2.0)])
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        cid = rig.gateway.submit(intent())
        await rig.settle()
        throttle_state = rig.gateway.throttle("paper").state
        second = rig.gateway.submit(intent())
        await rig.advance(3.0)
    order = rig.gateway.order(cid)
    assert order is not None
    assert order.status is OrderStatus.REJECTED
    assert order.reason.startswith("RATE_LIMITED")
    assert throttle_state == "paused"
    assert rig.gateway.order(second).status is OrderStatus.FILLED  # type: ignore[union-attr]


async def test_418_bans_the_venue_and_alerts() -> None:
    plan = FaultPlan([Fault(FaultKind.BANNED, on="submit", nth=1, retry_after=60.0)])
    rig = Rig(faults=plan)
    alerts: list[Alert] = []
    rig.bus.subscribe(Alert, alerts.append)
    async with rig.running():
        await rig.advance(0.2)
        rig.gateway.submit(intent())
        await rig.settle()
        during = rig.gateway.submit(intent())
        await rig.settle()
    assert [a.kind for a in alerts] == ["banned"]
    assert rig.gateway.throttle("paper").state == "banned"
    order = rig.gateway.order(during)
    assert order is not None
    assert order.reason.startswith("BANNED")
    assert rig.venue.calls("submit") == 1  # type: ignore[attr-defined]


async def test_dropped_stream_is_recovered_from_the_venue() -> None:
    plan = FaultPlan([Fault(FaultKind.DROP_STREAM, on="executions", nth=1)])
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        price = rig.resting_buy_price()
        cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=price))
        with structlog.testing.capture_logs() as logs:
            await rig.advance(5.0)
    assert rig.gateway.order(cid).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
    assert any(e["event"].startswith("execution stream lost") for e in logs)
    assert plan.fired(FaultKind.DROP_STREAM)


async def test_duplicate_reports_and_reports_before_ack_count_once() -> None:
    plan = FaultPlan(
        [
            Fault(FaultKind.DUPLICATE_REPORTS, on="executions", times=1000),
            Fault(FaultKind.REPORTS_BEFORE_ACK, on="submit", times=10),
        ]
    )
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        ids = [rig.gateway.submit(intent(qty=D("0.003"))) for _ in range(3)]
        await rig.advance(1.0)
    for cid in ids:
        assert rig.gateway.order(cid).status is OrderStatus.FILLED  # type: ignore[union-attr]
        assert sum(f.qty for f in rig.fills if f.client_order_id == cid) == D("0.003")
    assert rig.gateway.duplicate_fills > 0
    assert rig.gateway.illegal_transitions == 0


async def test_foreign_orders_are_reported_not_adopted() -> None:
    plan = FaultPlan([Fault(FaultKind.FOREIGN_ORDER, on="submit", nth=1)])
    rig = Rig(faults=plan)
    async with rig.running():
        await rig.advance(0.2)
        mine = rig.gateway.submit(intent())
        await rig.advance(1.0)
    assert rig.gateway.order(mine).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert rig.gateway.unknown_reports >= 1
    # The foreign order was never taken into our books.
    assert [o.client_order_id for o in rig.gateway.open_orders()] == []


async def test_kill_switch_cancels_a_symbol_in_one_request_and_logs_events() -> None:
    rig = Rig(faults=FaultPlan([]))
    async with rig.running():
        await rig.advance(0.2)
        ids = [
            rig.gateway.submit(
                intent(type=OrderType.LIMIT, price=rig.resting_buy_price(fraction=f"0.9{i}"))
            )
            for i in range(3)
        ]
        await rig.settle()
        assert rig.gateway.kill("drill") == 3
        await rig.settle()
        after_kill = rig.gateway.submit(intent())
        await rig.settle()
        events = await rig.journal.events(kinds=["order", "alert.kill_switch"])
    assert rig.venue.calls("cancel_all") == 1  # type: ignore[attr-defined]
    assert rig.venue.calls("cancel") == 0  # type: ignore[attr-defined]
    assert all(rig.gateway.order(cid).status is OrderStatus.CANCELED for cid in ids)  # type: ignore[union-attr]
    assert rig.gateway.order(after_kill).reason.startswith("HALTED")  # type: ignore[union-attr]
    assert rig.risk.killed
    steps = [
        e.data["status"]
        for e in events
        if e.kind == "order" and e.data["client_order_id"] == ids[0]
    ]
    assert steps == ["submitted", "accepted", "pending_cancel", "canceled"]
    assert any(e.kind == "alert.kill_switch" for e in events)
