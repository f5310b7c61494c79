"""Seeded fault campaigns: the gateway trading through the Binance adapter against the protocol
simulator while the simulator's wire misbehaves (dropped and stalled sockets, skipped and
duplicated depth updates, reordered user-data events, requests answered 5xx or never after the
order was accepted, clock skew, a planned server shutdown).

Whatever happens, at the end (journal/gateway level against the venue's own records):

* every intent is at most one venue order, and exactly one when the gateway says the venue
  accepted it; no venue order is ours without an intent;
* the fills the gateway journaled are the venue's myTrades for our orders, each once;
* no order is left in an unresolved state;
* every injected depth gap is detected and resynchronised (in the depth-only campaign, exactly
  as many as injected).

The campaigns in ``make test`` are short; the longer ones are marked ``soak``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from botd.bus import Bus
from botd.clock import FakeClock
from botd.errors import BotdError, TransientVenueError
from botd.feeds.runner import FeedRunner
from botd.gateway import Gateway
from botd.gateway.reconcile import Reconciler
from botd.model import (
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
    TimeInForce,
)
from botd.risk import RiskEngine, RiskLimits
from botd.store import Journal, JournalError
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.auth import HmacSigner
from botd.venues.sim.binance import BinanceSimulator
from botd.venues.sim.binance.faults import FaultKind, WireFaultPlan

D = Decimal
KEY, SECRET = "campaign-key", "campaign-secret"
VENUE = "binance"
SYMBOL = "BTCUSDT"
_OPEN = (OrderStatus.PENDING, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)


class _View:
    """What risk reads: quotes and instruments from the gateway; flat positions."""

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
    sim: BinanceSimulator
    adapter: BinanceAdapter
    gateway: Gateway
    journal: Journal
    fills: list[Fill] = field(default_factory=list)

    async def advance(self, seconds: float, step: float = 0.1) -> None:
        t = 0.0
        while t < seconds:
            await self.clock.advance(step)
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(0.002)
            t += step

    async def rest(self, path: str, params: dict[str, str]) -> Any:
        """A signed REST read that retries through injected 5xx answers."""
        for _ in range(40):
            try:
                return json.loads(await self.adapter.http.get(path, params, True, "check"))
            except TransientVenueError:
                await asyncio.sleep(0.01)
        raise AssertionError(f"{path} kept failing")


@contextlib.asynccontextmanager
async def stack(
    tmp_path: Path, plan: WireFaultPlan, trade_over: Literal["ws", "rest"], seed: int
) -> AsyncIterator[Stack]:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=seed,
        symbols=[SYMBOL],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": D("1000000"), "BTC": D("10")}},
        faults=plan,
    )
    port = await sim.start(port=0)
    adapter = BinanceAdapter(
        base_url=f"http://127.0.0.1:{port}",
        signer=HmacSigner(SecretStr(KEY), SecretStr(SECRET)),
        clock=clock,
        symbols=(SYMBOL,),
        trade_over=trade_over,
        book_depth=True,
        timeout_s=2.0,
        stale_after_s=3.0,
    )
    bus = Bus()
    view = _View()
    risk = RiskEngine(
        clock=clock, view=view, limits=RiskLimits(price_band=None, max_quote_age_s=None)
    )
    gateway = Gateway(bus=bus, clock=clock, venues={VENUE: adapter}, risk=risk)
    view.gateway = gateway
    journal = await Journal.open(tmp_path / "botd.db", clock=clock)
    gateway.attach_journal(journal)
    st = Stack(clock, sim, adapter, gateway, journal)
    bus.subscribe(Fill, st.fills.append)
    tasks: list[asyncio.Task[None]] = []
    try:
        await gateway.start()
        for _ in range(20):  # the start-up requests may meet injected faults too
            try:
                await adapter.connect()
                break
            except TransientVenueError:
                await adapter.close()
        feed = FeedRunner(
            adapter=adapter, symbols=(SYMBOL,), bus=bus, clock=clock, rng=random.Random(seed)
        )
        tasks = [asyncio.create_task(gateway.run()), asyncio.create_task(feed.run())]
        yield st
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await adapter.close()
        with contextlib.suppress(JournalError):
            await journal.close()
        await sim.stop()


async def run_campaign(st: Stack, *, seed: int, intents: int) -> list[str]:
    rng = random.Random(seed)
    for _ in range(100):
        if st.gateway.last_quote(VENUE, SYMBOL) is not None:
            break
        await st.advance(0.2)
    cids: list[str] = []
    for _ in range(intents):
        quote = st.gateway.last_quote(VENUE, SYMBOL)
        assert quote is not None
        # Buys only: a sell of ours could trade against a resting buy of ours, and the
        # gateway keys fills by trade id alone, which both sides of a self-trade share.
        side = Side.BUY
        kind = rng.random()
        if kind < 0.4:
            intent = OrderIntent("camp", VENUE, SYMBOL, side, D("0.002"))
        else:
            # At the bid (fills soon), a little below (may fill), far below (rests).
            price = quote.bid - D("0.01") * rng.choice((0, 0, 30, 200_000))
            intent = OrderIntent(
                "camp",
                VENUE,
                SYMBOL,
                side,
                D("0.002"),
                type=OrderType.LIMIT,
                price=price,
                tif=TimeInForce.GTC,
                post_only=kind < 0.7,
            )
        cids.append(st.gateway.submit(intent))
        if len(cids) % 12 == 0:
            drop_ws_api(st)
        await st.advance(rng.choice((0.1, 0.3, 0.6)))
        if rng.random() < 0.2:
            victim = rng.choice(cids)
            order = st.gateway.order(victim)
            if order is not None and not order.status.is_terminal:
                st.gateway.cancel(victim)
    await st.advance(5.0)  # resting orders meet the market
    st.gateway.cancel_all()
    await settle(st, lambda: not st.gateway.busy and not st.gateway.open_orders())
    await reconcile(st)
    return cids


def drop_ws_api(st: Stack) -> None:
    """Cut the WS API connection under whatever is in flight (the simulator's wire faults do
    not reach the WS API): the adapter reconnects, resubscribes and has the gateway
    reconcile; requests in flight are unknown outcomes the gateway resolves by query."""
    ws_api = st.adapter.ws_api
    conn = ws_api._conn if ws_api is not None else None
    if conn is not None and conn.ws._response.connection is not None:
        transport = conn.ws._response.connection.transport
        if transport is not None:
            transport.abort()


async def settle(st: Stack, done: Callable[[], bool], seconds: float = 120.0) -> None:
    t = 0.0
    while not done() and t < seconds:
        await st.advance(0.5)
        t += 0.5


async def reconcile(st: Stack) -> None:
    """The daemon's periodic reconciliation, run until it finds nothing open: with faults
    still being injected, one pass may itself fail to recover a fill (the gateway then
    leaves it to the next pass, as it would in production)."""
    reconciler = Reconciler(st.gateway, st.journal, st.clock)
    for _ in range(30):
        with contextlib.suppress(BotdError):
            await reconciler.reconcile(VENUE)
        await settle(st, lambda: not st.gateway.busy, 10.0)
        if not st.gateway.open_orders():
            return
        await st.advance(0.5)
    raise AssertionError(f"could not reconcile: {st.gateway.open_orders()}")


async def check_books(st: Stack, cids: list[str]) -> None:
    ours = set(cids)
    venue_orders = await st.rest("/api/v3/allOrders", {"symbol": SYMBOL, "limit": "1000"})
    by_cid: dict[str, list[dict[str, Any]]] = {}
    for o in venue_orders:
        by_cid.setdefault(o["clientOrderId"], []).append(o)
    assert set(by_cid) <= ours, "a venue order without an intent"
    for cid in cids:
        found = by_cid.get(cid, [])
        assert len(found) <= 1, f"{cid} placed {len(found)} times"
        order = st.gateway.order(cid)
        assert order is not None
        assert order.status not in _OPEN, f"{cid} left {order.status}"
        if order.venue_order_id is not None or order.filled_qty > 0:
            assert len(found) == 1, f"{cid}: the gateway saw it at the venue, the venue did not"
        if found:
            assert D(found[0]["executedQty"]) == order.filled_qty, (cid, found, order)
            assert found[0]["status"] not in ("NEW", "PARTIALLY_FILLED"), cid
    trades = await st.rest("/api/v3/myTrades", {"symbol": SYMBOL, "limit": "1000"})
    venue_trades = {str(t["id"]): D(t["qty"]) for t in trades}
    journaled = [f.trade_id for f in st.fills]
    assert len(journaled) == len(set(journaled)), "a fill journaled twice"
    assert set(journaled) == set(venue_trades)
    assert all(f.qty == venue_trades[f.trade_id] for f in st.fills)


# REST faults hit what goes over REST: everything with trade_over="rest"; fills, balances,
# exchangeInfo and depth snapshots with "ws". ``timeout`` and the scripted ones hit order
# placement (POST /api/v3/order, or order.place on the WS API): accepted, then unanswered or
# answered 5xx. WS API faults hit trading with "ws", and the user-data connection in both.
FAULTS = {
    "rest": (
        "seed={seed},http500~0.03,http503=after~0.03,timeout~0.05,timeout@n=2,"
        "http500=after@n=4&method=POST&path=/api/v3/order,skew=-2500@t=6"
    ),
    "ws": (
        "seed={seed},http500~0.03,http503~0.02,skew=-2500@t=6,"
        "http500~0.02@path=/ws-api/v3,http503=after~0.02@path=/ws-api/v3,"
        "timeout@n=3&method=order.place,timeout~0.03@method=order.place"
    ),
}
STREAM_FAULTS = (
    ",drop~0.002,stall=2~0.001,depth_gap~0.02,depth_dup~0.02,reorder~0.2,shutdown@t=8,"
    "drop~0.005@path=/ws-api/v3,stall=3~0.003@path=/ws-api/v3,shutdown@t=12&path=/ws-api/v3"
)


@pytest.mark.parametrize("trade_over", ["ws", "rest"])
async def test_short_seeded_campaign_loses_and_duplicates_nothing(
    tmp_path: Path, trade_over: Literal["ws", "rest"]
) -> None:
    seed = 3
    plan = WireFaultPlan.parse(FAULTS[trade_over].format(seed=seed) + STREAM_FAULTS)
    async with stack(tmp_path, plan, trade_over, seed) as st:
        cids = await run_campaign(st, seed=seed, intents=30)
        await check_books(st, cids)
        fired = {f.kind for f in plan.fired}
        expected = {FaultKind.DEPTH_GAP, FaultKind.REORDER, FaultKind.SKEW, FaultKind.SHUTDOWN}
        if trade_over == "rest":
            expected |= {FaultKind.TIMEOUT, FaultKind.HTTP_500}
        assert expected <= fired
        if trade_over == "ws":
            on_ws_api = {f.kind for f in plan.fired if f.site == "wsapi"}
            assert {FaultKind.TIMEOUT, FaultKind.DROP, FaultKind.SHUTDOWN} <= on_ws_api
            assert st.adapter.ws_api is not None and st.adapter.ws_api.handovers >= 1
        assert st.adapter.book_gaps >= 1
        assert sum(m.handovers for m in st.adapter._markets) >= 1  # the shutdown's
        assert st.gateway.illegal_transitions == 0
        assert st.adapter.ws_api is not None and st.adapter.ws_api.reconnects >= 2
        # The venue's clock fell 2.5 s behind ours: -1021, re-synced, resent.
        assert -3000 < st.adapter.http.offset_ms < -2000


async def test_every_injected_depth_gap_is_detected(tmp_path: Path) -> None:
    seed = 9
    plan = WireFaultPlan.parse(f"seed={seed},depth_gap~0.05,depth_dup~0.05")
    async with stack(tmp_path, plan, "ws", seed) as st:
        await st.advance(30.0)
        injected = sum(1 for f in plan.fired if f.kind is FaultKind.DEPTH_GAP)
        assert injected >= 5
        # Consecutive skipped updates show as one jump: count the update ids each jump skipped
        # (the simulator's diffs each carry one update id).
        assert st.adapter.book_updates_missed == injected
        assert 0 < st.adapter.book_gaps <= injected


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2, 4, 5])
@pytest.mark.parametrize("trade_over", ["ws", "rest"])
async def test_long_seeded_campaign(
    tmp_path: Path, trade_over: Literal["ws", "rest"], seed: int
) -> None:
    plan = WireFaultPlan.parse(FAULTS[trade_over].format(seed=seed) + STREAM_FAULTS)
    async with stack(tmp_path, plan, trade_over, seed) as st:
        cids = await run_campaign(st, seed=seed, intents=200)
        await check_books(st, cids)
