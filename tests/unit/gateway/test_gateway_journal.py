"""Write-ahead: an order the journal could not record is never sent, and the venue goes
cancel-only."""

import sqlite3

from botd.gateway import Alert
from botd.model import OrderStatus, OrderType
from botd.risk import TradingState
from tests.rig import Rig
from tests.rig import make_intent as intent


async def test_failed_journal_write_sends_nothing_and_leaves_cancel_only() -> None:
    rig = Rig(journal_busy_timeout=0.2)
    alerts: list[Alert] = []
    rig.bus.subscribe(Alert, alerts.append)
    async with rig.running():
        await rig.advance(0.2)
        resting = rig.gateway.submit(intent(type=OrderType.LIMIT, price=rig.resting_buy_price()))
        await rig.settle()
        assert rig.gateway.order(resting).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]

        # Another process takes the database: our next commit cannot happen.
        blocker = sqlite3.connect(rig.data_dir / "botd.db", timeout=0.1)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            doomed = rig.gateway.submit(intent())
            await rig.settle()
        finally:
            blocker.rollback()
            blocker.close()
        after = rig.gateway.submit(intent())
        rig.gateway.cancel(resting)  # reducing exposure must still work
        await rig.settle()
        venue_orders = {o.client_order_id for o in await rig.paper.open_orders()}
        fills = await rig.paper.fills("BTCUSDT", 0)

    order = rig.gateway.order(doomed)
    assert order is not None
    assert order.status is OrderStatus.REJECTED
    assert order.reason.startswith("JOURNAL:")
    assert doomed not in {f.client_order_id for f in fills}  # never reached the venue
    assert rig.risk.state_of(venue="paper") is TradingState.HALTED
    assert [a.kind for a in alerts] == ["journal_failed"]
    assert rig.gateway.order(after).reason.startswith("HALTED")  # type: ignore[union-attr]
    assert rig.gateway.order(resting).status is OrderStatus.CANCELED  # type: ignore[union-attr]
    assert venue_orders == set()
