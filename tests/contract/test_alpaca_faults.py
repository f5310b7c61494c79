"""The Alpaca adapter under faults: the venue contract through a (quiet) FaultyVenue, and the
gateway trading BTC/USD through the adapter against the Alpaca simulator while a FaultyVenue
times out accepted orders, answers 5xx, and drops the ``trade_updates`` stream.

Whatever is injected, each intent ends as at most one order at the venue, the fills the
gateway books are the venue's own, each once, and nothing is left unresolved."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from botd.bus import Bus
from botd.clock import FakeClock
from botd.errors import BotdError
from botd.feeds.runner import FeedRunner
from botd.gateway import Gateway
from botd.gateway.reconcile import Reconciler
from botd.model import Fill, Instrument, Order, OrderIntent, OrderStatus, Position, Quote, Side
from botd.risk import RiskEngine, RiskLimits
from botd.store import Journal, JournalError
from botd.venues.alpaca.adapter import AlpacaAdapter
from botd.venues.base import VenueAdapter
from botd.venues.sim.alpaca import AlpacaSimulator
from botd.venues.sim.faulty import Fault, FaultKind, FaultPlan, FaultyVenue
from tests.contract import test_alpaca_contract as base

KEY, SECRET = "faults-key", "faults-secret"
VENUE, SYMBOL = "alpaca", "BTC/USD"
QTY = Decimal("0.01")


class TestFaultyAlpacaContract(base.TestAlpacaContract):
    """A FaultyVenue with an empty plan around the Alpaca adapter is still a venue."""

    async def make_venue(self, tmp_path: Path) -> VenueAdapter:
        self.plan = FaultPlan()
        return FaultyVenue(await super().make_venue(tmp_path), self.plan)

    async def test_nothing_was_injected(self, venue: VenueAdapter) -> None:
        await venue.balances()
        assert self.plan.log == []


class _View:
    gateway: Gateway

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self.gateway.last_quote(venue, symbol)

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self.gateway.instrument(venue, symbol)

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position:
        return Position(venue, symbol)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        return self.gateway.open_orders(strategy_id)


@dataclass
class Stack:
    clock: FakeClock
    adapter: AlpacaAdapter
    venue: FaultyVenue
    gateway: Gateway
    journal: Journal
    fills: list[Fill] = field(default_factory=list)

    async def advance(self, seconds: float, step: float = 0.1) -> None:
        """Fake time for the simulator and the gateway, real time for the sockets between."""
        for _ in range(round(seconds / step)):
            await self.clock.advance(step)
            await asyncio.sleep(0.005)

    async def until(self, done: object, seconds: float = 30.0) -> None:
        assert callable(done)
        for _ in range(round(seconds / 0.1)):
            if done():
                return
            await self.advance(0.1)

    async def reconcile(self) -> None:
        """The daemon's periodic reconciliation (every 60 s there), until nothing is open:
        what the gateway's own recovery could not resolve while faults still hit."""
        reconciler = Reconciler(self.gateway, self.journal, self.clock)
        for _ in range(10):
            with contextlib.suppress(BotdError):
                await reconciler.reconcile(VENUE)
            if not self.gateway.open_orders():
                return
            await self.advance(1.0)

    async def at_venue(self, client_order_id: str) -> tuple[int, Decimal]:
        """How many venue orders carry this client id (0 or 1), and their filled quantity
        according to the venue's own FILL activities."""
        found = await self.adapter.query_order(SYMBOL, client_order_id)
        filled = sum(
            (
                r.last_qty
                for r in await self.adapter.fills(SYMBOL, 0)
                if r.client_order_id == client_order_id
            ),
            Decimal(0),
        )
        return (0 if found is None else 1), filled


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, plan: FaultPlan) -> AsyncIterator[Stack]:
    clock = FakeClock()
    sim = AlpacaSimulator(clock=clock, seed=5, api_keys={KEY: SECRET})
    port = await sim.start(port=0)
    adapter = AlpacaAdapter(
        base_url=f"http://127.0.0.1:{port}",
        key_id=SecretStr(KEY),
        secret_key=SecretStr(SECRET),
        clock=clock,
        symbols=(SYMBOL,),
        name=VENUE,
    )
    venue = FaultyVenue(adapter, plan)
    bus = Bus()
    view = _View()
    risk = RiskEngine(
        clock=clock, view=view, limits=RiskLimits(price_band=None, max_quote_age_s=None)
    )
    gateway = Gateway(bus=bus, clock=clock, venues={VENUE: venue}, risk=risk)
    view.gateway = gateway
    journal = await Journal.open(tmp_path / "botd.db", clock=clock)
    gateway.attach_journal(journal)
    st = Stack(clock, adapter, venue, gateway, journal)
    bus.subscribe(Fill, st.fills.append)
    tasks: list[asyncio.Task[None]] = []
    try:
        await gateway.start()
        await venue.connect()
        feed = FeedRunner(
            adapter=venue, symbols=(SYMBOL,), bus=bus, clock=clock, rng=random.Random(3)
        )
        tasks = [asyncio.create_task(gateway.run()), asyncio.create_task(feed.run())]
        await st.until(lambda: gateway.last_quote(VENUE, SYMBOL) is not None)
        yield st
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await venue.close()
        with contextlib.suppress(JournalError):
            await journal.close()
        await sim.stop()


def buy() -> OrderIntent:
    return OrderIntent("s1", VENUE, SYMBOL, Side.BUY, QTY)


def booked(st: Stack, cid: str) -> Decimal:
    return sum((f.qty for f in st.fills if f.client_order_id == cid), Decimal(0))


async def test_timeout_after_accept_is_found_by_query_and_never_sent_twice(
    tmp_path: Path,
) -> None:
    plan = FaultPlan([Fault(FaultKind.TIMEOUT_AFTER_ACCEPT, on="submit", nth=1)])
    async with stack(tmp_path, plan) as st:
        cid = st.gateway.submit(buy())
        await st.until(lambda: st.gateway.order(cid).status is OrderStatus.FILLED)  # type: ignore[union-attr]
        await st.advance(1.0)  # late reports have their chance to double-count
        orders, filled = await st.at_venue(cid)
        assert st.venue.calls("submit") == 1
    assert [f.kind for f in plan.log] == [FaultKind.TIMEOUT_AFTER_ACCEPT]
    assert st.gateway.order(cid).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert (orders, filled) == (1, QTY)
    assert booked(st, cid) == QTY


async def test_a_5xx_on_submit_ends_rejected_when_the_venue_never_saw_the_order(
    tmp_path: Path,
) -> None:
    plan = FaultPlan([Fault(FaultKind.SERVER_ERROR, on="submit", nth=1)])
    async with stack(tmp_path, plan) as st:
        cid = st.gateway.submit(buy())
        await st.until(lambda: st.gateway.order(cid).status.is_terminal, seconds=40)  # type: ignore[union-attr]
        orders, filled = await st.at_venue(cid)
    assert st.gateway.order(cid).status is OrderStatus.REJECTED  # type: ignore[union-attr]
    assert (orders, filled) == (0, Decimal(0))
    assert booked(st, cid) == 0


async def test_fills_lost_with_the_trade_updates_stream_are_recovered_once(
    tmp_path: Path,
) -> None:
    # The stream drops at the first report of ours: the fill itself never arrives on it.
    plan = FaultPlan([Fault(FaultKind.DROP_STREAM, on="executions", nth=1)])
    async with stack(tmp_path, plan) as st:
        cid = st.gateway.submit(buy())
        await st.until(lambda: booked(st, cid) == QTY)
        second = st.gateway.submit(buy())  # the stream is back: no recovery needed
        await st.until(lambda: booked(st, second) == QTY)
        await st.advance(1.0)
        first_at_venue = await st.at_venue(cid)
    assert [f.kind for f in plan.log] == [FaultKind.DROP_STREAM]
    assert st.gateway.order(cid).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert first_at_venue == (1, QTY)
    assert booked(st, cid) == QTY
    assert booked(st, second) == QTY
    trade_ids = [f.trade_id for f in st.fills]
    assert len(trade_ids) == len(set(trade_ids))


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_burst_of_orders_under_mixed_faults_settles_consistently(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    plan = FaultPlan(
        [
            Fault(FaultKind.TIMEOUT_AFTER_ACCEPT, on="submit", nth=rng.randint(1, 3)),
            Fault(FaultKind.SERVER_ERROR, on="submit", nth=rng.randint(4, 6)),
            Fault(FaultKind.DROP_STREAM, on="executions", nth=rng.randint(2, 5)),
            Fault(FaultKind.SERVER_ERROR, on="query", times=2),
        ]
    )
    async with stack(tmp_path, plan) as st:
        cids = []
        for _ in range(8):
            cids.append(st.gateway.submit(buy()))
            await st.advance(rng.choice((0.1, 0.3)))
        await st.until(
            lambda: all(st.gateway.order(c).status.is_terminal for c in cids),  # type: ignore[union-attr]
            seconds=20,
        )
        await st.reconcile()
        await st.advance(1.0)
        at_venue = {c: await st.at_venue(c) for c in cids}
    assert len(plan.log) >= 3
    for cid in cids:
        order = st.gateway.order(cid)
        assert order is not None
        orders, filled = at_venue[cid]
        assert orders <= 1
        if order.status is OrderStatus.FILLED:
            assert (orders, filled) == (1, QTY)
        else:
            assert order.status is OrderStatus.REJECTED
            assert orders == 0
        assert booked(st, cid) == filled
