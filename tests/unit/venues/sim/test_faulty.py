"""Every scripted fault of the FaultyVenue, on top of a real paper venue."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from botd.clock import FakeClock
from botd.errors import Banned, RateLimited, TransientVenueError
from botd.model import ExecutionReport, Order, OrderStatus, OrderType, Side, TimeInForce
from botd.venues.sim.faulty import ALWAYS, Fault, FaultKind, FaultPlan, FaultyVenue
from botd.venues.sim.paper import PaperVenue

D = Decimal
K = FaultKind
SYM = "BTCUSDT"
REPO = Path(__file__).resolve().parents[4]


class Crashed(Exception):
    pass


def paper(clock: FakeClock, state_path: Path | None = None) -> PaperVenue:
    return PaperVenue(
        clock=clock, symbols=(SYM,), seed=1, event_rate=20.0, maker_fee=D("0.001"),
        taker_fee=D("0.002"), balances={"USDT": D("100000"), "BTC": D("1")},
        state_path=state_path,
    )  # fmt: skip


_n = 0


def order(side: Side = Side.BUY, price: str | None = None, cid: str | None = None) -> Order:
    global _n
    _n += 1
    return Order(
        client_order_id=cid or f"c{_n}",
        strategy_id="t",
        venue="paper",
        symbol=SYM,
        side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        qty=D("0.01"),
        price=None if price is None else D(price),
        tif=TimeInForce.IOC if price is None else TimeInForce.GTC,
    )


@pytest.fixture
async def inner() -> AsyncIterator[PaperVenue]:
    v = paper(FakeClock())
    await v.connect()
    yield v
    await v.close()


async def faulty(inner: PaperVenue, *faults: Fault, **kw: object) -> FaultyVenue:
    v = FaultyVenue(inner, FaultPlan(list(faults)), **kw)  # type: ignore[arg-type]
    await v.connect()
    return v


class Consumer:
    """Reads the execution stream like the gateway: reconnects when it drops."""

    def __init__(self, venue: FaultyVenue) -> None:
        self.venue = venue
        self.reports: list[ExecutionReport] = []
        self.drops = 0
        self.resubscribe = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async for report in self.venue.executions():
                    self.reports.append(report)
            except TransientVenueError:
                self.drops += 1
                await self.resubscribe.wait()
                self.resubscribe.clear()

    def ids(self) -> list[tuple[str, OrderStatus]]:
        return [(r.client_order_id, r.status) for r in self.reports]

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_timeout_after_accept_leaves_a_live_order(inner: PaperVenue) -> None:
    v = await faulty(inner, Fault(K.TIMEOUT_AFTER_ACCEPT))
    o = order(price="1000")
    with pytest.raises(TransientVenueError, match="timed out"):
        await v.submit(o)
    found = await v.query_order(SYM, o.client_order_id)
    assert found is not None and found.status is OrderStatus.ACCEPTED
    assert [(e.kind, e.on, e.call) for e in v.plan.log] == [(K.TIMEOUT_AFTER_ACCEPT, "submit", 1)]
    await v.submit(order(price="1000"))  # fired once: the next call goes through


@pytest.mark.parametrize(
    ("kind", "error", "text"),
    [
        (K.TIMEOUT_BEFORE_ACCEPT, TransientVenueError, "timed out"),
        (K.SERVER_ERROR, TransientVenueError, "HTTP 503"),
        (K.RATE_LIMITED, RateLimited, "HTTP 429"),
        (K.BANNED, Banned, "HTTP 418"),
    ],
)
async def test_refusals_never_reach_the_venue(
    inner: PaperVenue, kind: FaultKind, error: type[Exception], text: str
) -> None:
    v = await faulty(inner, Fault(kind, retry_after=7.0))
    o = order(price="1000")
    with pytest.raises(error, match=text) as err:
        await v.submit(o)
    assert type(err.value) is error
    if isinstance(err.value, RateLimited):
        assert err.value.retry_after == 7.0
    assert await v.query_order(SYM, o.client_order_id) is None
    assert await inner.open_orders() == []


async def test_nth_times_and_predicate_select_the_calls(inner: PaperVenue) -> None:
    v = await faulty(
        inner,
        Fault(K.SERVER_ERROR, on="query", nth=2, times=2),
        Fault(K.RATE_LIMITED, on="cancel", predicate=lambda cid: cid == "victim", times=ALWAYS),
    )
    outcomes = []
    for _ in range(5):
        try:
            await v.query_order(SYM, "x")
            outcomes.append("ok")
        except TransientVenueError:
            outcomes.append("503")
    assert outcomes == ["ok", "503", "503", "ok", "ok"]
    await v.submit(order(price="1000", cid="victim"))
    await v.submit(order(price="1000", cid="spared"))
    await v.cancel(SYM, "spared")
    for _ in range(3):
        with pytest.raises(RateLimited):
            await v.cancel(SYM, "victim")
    assert v.calls("cancel") == 4
    assert [e.call for e in v.plan.fired(K.RATE_LIMITED)] == [2, 3, 4]


async def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        Fault(K.SERVER_ERROR, on="withdraw")
    with pytest.raises(ValueError, match="execution stream"):
        Fault(K.SERVER_ERROR, on="executions")
    with pytest.raises(ValueError, match="duplicate_reports"):
        Fault(K.DUPLICATE_REPORTS, on="submit")
    with pytest.raises(ValueError, match="needs an order"):
        Fault(K.FOREIGN_ORDER, on="query")
    with pytest.raises(ValueError, match="nth"):
        Fault(K.SERVER_ERROR, nth=0)


async def test_drop_stream_loses_reports_until_resubscribed(inner: PaperVenue) -> None:
    v = await faulty(inner, Fault(K.DROP_STREAM, on="submit", nth=2))
    c = Consumer(v)
    await c.settle()
    first = order()
    await v.submit(first)
    await c.settle()
    assert (first.client_order_id, OrderStatus.FILLED) in c.ids()
    lost = order()
    ack = await v.submit(lost)  # the stream drops before this one is sent
    await c.settle()
    assert c.drops == 1
    assert lost.client_order_id not in {cid for cid, _ in c.ids()}
    assert {r.client_order_id for r in v.lost} == {lost.client_order_id}
    # Recoverable: the venue remembers what the stream lost.
    recovered = await v.fills(SYM, ack.ts_event)
    mine = {r.trade_id for r in recovered if r.client_order_id == lost.client_order_id}
    assert mine == {r.trade_id for r in v.lost if r.last_qty}
    assert mine
    c.resubscribe.set()
    await c.settle()
    after = order()
    await v.submit(after)
    await c.settle()
    assert (after.client_order_id, OrderStatus.FILLED) in c.ids()
    await c.stop()


async def test_drop_stream_at_the_nth_report(inner: PaperVenue) -> None:
    v = await faulty(inner, Fault(K.DROP_STREAM, on="executions", nth=2))
    c = Consumer(v)
    await c.settle()
    o = order(price="1000")
    await v.submit(o)
    await v.cancel(SYM, o.client_order_id)
    await c.settle()
    assert c.ids() == [(o.client_order_id, OrderStatus.ACCEPTED)]
    assert [(r.client_order_id, r.status) for r in v.lost] == [
        (o.client_order_id, OrderStatus.CANCELED)
    ]
    assert [(e.on, e.call) for e in v.plan.log] == [("executions", 2)]
    await c.stop()


async def test_duplicate_reports(inner: PaperVenue) -> None:
    v = await faulty(inner, Fault(K.DUPLICATE_REPORTS, on="executions", times=ALWAYS))
    c = Consumer(v)
    await c.settle()
    o = order(price="1000")
    await v.submit(o)
    await v.cancel(SYM, o.client_order_id)
    await c.settle()
    cid = o.client_order_id
    assert c.ids() == [(cid, OrderStatus.ACCEPTED)] * 2 + [(cid, OrderStatus.CANCELED)] * 2
    assert c.reports[0] is c.reports[1]
    await c.stop()


async def test_reports_before_ack(inner: PaperVenue) -> None:
    v = await faulty(inner, Fault(K.REPORTS_BEFORE_ACK, nth=2))
    c = Consumer(v)
    await c.settle()
    plain, early = order(), order()
    await v.submit(plain)
    assert c.reports == []  # normally the ack comes first
    await c.settle()
    seen = len(c.reports)
    await v.submit(early)
    new = [r.client_order_id for r in c.reports[seen:]]
    assert new and set(new) == {early.client_order_id}
    assert c.reports[-1].status is OrderStatus.FILLED
    await c.stop()


async def test_foreign_order_is_a_real_order_under_an_id_we_never_sent(
    inner: PaperVenue,
) -> None:
    template = order(price="1000")
    v = await faulty(
        inner,
        Fault(K.FOREIGN_ORDER, on="submit"),
        Fault(K.FOREIGN_ORDER, on="balances", order=template),
    )
    c = Consumer(v)
    await c.settle()
    mine = order(price="1001")
    await v.submit(mine)
    await v.balances()
    await c.settle()
    open_ids = [o.client_order_id for o in await v.open_orders()]
    assert open_ids == ["web-1", mine.client_order_id, "web-2"]
    prices = {o.client_order_id: o.price for o in await v.open_orders()}
    assert prices["web-1"] == D("1001") and prices["web-2"] == D("1000")
    assert ("web-1", OrderStatus.ACCEPTED) in c.ids()
    assert [e.detail for e in v.plan.fired(K.FOREIGN_ORDER)] == ["web-1", "web-2"]
    await c.stop()


async def test_crash_points(inner: PaperVenue) -> None:
    crashes: list[str] = []

    def crash() -> None:
        crashes.append("crash")
        raise Crashed

    v = await faulty(
        inner,
        Fault(K.CRASH, nth=1, when="before_forward"),
        Fault(K.CRASH, nth=2, when="after_forward"),
        crash=crash,
    )
    before, after = order(price="1000"), order(price="1000")
    with pytest.raises(Crashed):
        await v.submit(before)
    assert await inner.query_order(SYM, before.client_order_id) is None
    with pytest.raises(Crashed):
        await v.submit(after)
    assert await inner.query_order(SYM, after.client_order_id) is not None
    assert crashes == ["crash", "crash"]


async def test_crash_after_return_runs_right_after_the_ack(inner: PaperVenue) -> None:
    events: list[str] = []
    v = await faulty(
        inner,
        Fault(K.CRASH, when="after_return"),
        crash=lambda: events.append("crash"),
    )
    ack = await v.submit(order(price="1000"))
    events.append(f"ack {ack.client_order_id}")
    await asyncio.sleep(0)
    assert events == [f"ack {ack.client_order_id}", "crash"]


CHILD = """
import asyncio, sys
from decimal import Decimal as D
from pathlib import Path
from botd.clock import LiveClock
from botd.model import Order, OrderType, Side, TimeInForce
from botd.venues.sim.faulty import Fault, FaultKind, FaultPlan, FaultyVenue
from botd.venues.sim.paper import PaperVenue

async def main() -> None:
    inner = PaperVenue(clock=LiveClock(), symbols=("BTCUSDT",), seed=5, event_rate=20.0,
                       maker_fee=D("0.001"), taker_fee=D("0.002"),
                       balances={"USDT": D("10000")}, state_path=Path(sys.argv[1]))
    v = FaultyVenue(inner, FaultPlan([Fault(FaultKind.CRASH, when="after_forward")]))
    await v.connect()
    print("ready", flush=True)
    await v.submit(Order("doomed", "t", "paper", "BTCUSDT", Side.BUY, OrderType.LIMIT,
                         D("0.001"), D("30000.00"), TimeInForce.GTC))
    print("survived", flush=True)

asyncio.run(main())
"""


def test_default_crash_kills_the_process_after_the_venue_accepted(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    # Sync subprocess: the exit status comes straight from the kernel.
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
        timeout=60,
    )
    assert child.returncode == 137, child.stderr
    assert child.stdout.split() == ["ready"]
    asyncio.run(_reopened_holds_the_order(path))
    assert json.loads(path.read_text())["restarts"] == 1


async def _reopened_holds_the_order(path: Path) -> None:
    v = paper(FakeClock(), path)
    await v.connect()
    found = await v.query_order(SYM, "doomed")
    assert found is not None and found.status is OrderStatus.ACCEPTED
    await v.close()
