"""A 429 or 418 answered to a query, a fill recovery or a balance read holds back every request
to the venue, as one answered to a submit or cancel does. Before, only submits and cancels
paused the venue's throttle: recovery, which walks every open order, went on querying after a
429, and Binance bans an IP that sends over the limit after a 429 (the long fault campaign's
418s). Real components: the paper venue behind FaultyVenue, the journal, FakeClock."""

from __future__ import annotations

from botd.clock import NS_PER_SECOND
from botd.gateway import Alert
from botd.model import OrderStatus, OrderType
from botd.venues.sim.faulty import Fault, FaultKind, FaultPlan
from tests.rig import Rig
from tests.rig import make_intent as intent


async def test_a_429_on_a_recovery_query_holds_back_every_request() -> None:
    limited = Fault(FaultKind.RATE_LIMITED, on="query", retry_after=5.0)
    rig = Rig(faults=FaultPlan([limited]))
    async with rig.running():
        await rig.advance(0.5)
        cid = rig.gateway.submit(
            intent(type=OrderType.LIMIT, price=rig.resting_buy_price(fraction="0.5"))
        )
        await rig.settle()
        order = rig.gateway.order(cid)
        assert order is not None and order.status is OrderStatus.ACCEPTED
        throttle = rig.gateway.throttle("paper")
        start = rig.clock.time_ns()
        await rig.gateway.recover("paper")
        assert limited.fired == 1
        state = throttle.state
        # Any request, not just queries, now waits out the Retry-After on the clock.
        submit_at = throttle.available_at("order.submit")
    assert state == "paused"
    assert throttle.pauses == 1
    assert submit_at - start >= 5 * NS_PER_SECOND


async def test_a_418_on_a_recovery_query_bans_the_venue() -> None:
    banned = Fault(FaultKind.BANNED, on="query", retry_after=120.0)
    rig = Rig(faults=FaultPlan([banned]))
    alerts: list[Alert] = []
    rig.bus.subscribe(Alert, alerts.append)
    async with rig.running():
        await rig.advance(0.5)
        cid = rig.gateway.submit(
            intent(type=OrderType.LIMIT, price=rig.resting_buy_price(fraction="0.5"))
        )
        await rig.settle()
        order = rig.gateway.order(cid)
        assert order is not None and order.status is OrderStatus.ACCEPTED
        await rig.gateway.recover("paper")
        throttle = rig.gateway.throttle("paper")
        assert banned.fired == 1
        assert throttle.state == "banned"
    assert throttle.bans == 1
    assert any(a.kind == "banned" for a in alerts)
