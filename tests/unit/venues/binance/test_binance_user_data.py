"""The Binance adapter's WebSocket API side against the protocol simulator on loopback: trading
over the WS API, the user-data stream (fills of resting orders), deduplication against the
replies, reconnect signalling and the connection handover."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Literal

import pytest
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.errors import TransientVenueError
from botd.model import ExecutionReport, OrderStatus, OrderType, Side, TimeInForce
from botd.model.orders import Order
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.auth import Ed25519Signer, HmacSigner, Signer
from botd.venues.sim.binance import ApiKey, BinanceSimulator

D = Decimal
KEY, SECRET = "ud-key", "ud-secret"
OTHER, OTHER_SECRET = "ud-other", "ud-other-secret"
ED_KEY = "ud-ed-key"
# Binance's published Ed25519 test key (WIRE_FACTS §1.2).
ED_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u
-----END PRIVATE KEY-----
"""
_ids = iter(range(1, 1_000_000))


class Env:
    def __init__(self, sim: BinanceSimulator, clock: FakeClock, url: str) -> None:
        self.sim, self.clock, self.url = sim, clock, url
        self.usage: list[dict[str, int]] = []
        self.adapters: list[BinanceAdapter] = []

    async def adapter(
        self,
        signer: Signer | None = None,
        trade_over: Literal["ws", "rest"] = "ws",
        **kw: object,
    ) -> BinanceAdapter:
        v = BinanceAdapter(
            base_url=self.url,
            signer=signer or HmacSigner(SecretStr(KEY), SecretStr(SECRET)),
            clock=self.clock,
            symbols=("BTCUSDT",),
            on_usage=lambda usage, _sent: self.usage.append(usage),
            trade_over=trade_over,
            **kw,  # type: ignore[arg-type]
        )
        self.adapters.append(v)
        await v.connect()
        return v


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=5,
        symbols=["BTCUSDT"],
        api_keys={KEY: SECRET, OTHER: OTHER_SECRET, ED_KEY: ApiKey.ed25519(ED_PEM)},
        balances={
            KEY: {"USDT": D("100000"), "BTC": D("1")},
            OTHER: {"USDT": D("100000"), "BTC": D("1000")},
            ED_KEY: {"USDT": D("100000"), "BTC": D("1")},
        },
    )
    port = await sim.start(port=0)
    e = Env(sim, clock, f"http://127.0.0.1:{port}")
    try:
        yield e
    finally:
        for v in e.adapters:
            await v.close()
        await sim.stop()


class Reports:
    """Consumes executions() as the gateway does, counting the gap signals."""

    def __init__(self, venue: BinanceAdapter) -> None:
        self.items: list[ExecutionReport] = []
        self.gaps: list[str] = []
        self._task = asyncio.create_task(self._run(venue))

    async def _run(self, venue: BinanceAdapter) -> None:
        while True:
            try:
                async for r in venue.executions():
                    self.items.append(r)
            except TransientVenueError as exc:
                self.gaps.append(str(exc))

    def of(self, cid: str) -> list[ExecutionReport]:
        return [r for r in self.items if r.client_order_id == cid]

    async def wait(self, done: Callable[[], bool], clock: FakeClock | None = None) -> None:
        for _ in range(400):
            if done():
                return
            if clock is not None:
                await clock.advance(0.05)
            await asyncio.sleep(0.005)
        raise AssertionError(f"timed out; reports: {self.items}, gaps: {self.gaps}")

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def order(side: Side, qty: str, price: Decimal | None = None) -> Order:
    return Order(
        client_order_id=f"ud{next(_ids)}",
        strategy_id="test",
        venue="binance",
        symbol="BTCUSDT",
        side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        qty=D(qty),
        price=price,
        tif=TimeInForce.IOC if price is None else TimeInForce.GTC,
    )


async def best_bid(v: BinanceAdapter) -> tuple[Decimal, Decimal]:
    """The best bid's price and size."""
    body = await v.http.get("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5"}, False, "x")
    bids = json.loads(body)["bids"]
    return D(bids[0][0]), D(bids[0][1])


async def fill_resting_buy(env: Env, v: BinanceAdapter, reports: Reports) -> Order:
    """Our limit buy joins the best bid; another account sells the whole level, ours last."""
    price, size = await best_bid(v)
    mine = order(Side.BUY, "0.002", price)
    await v.submit(mine)
    other = BinanceAdapter(
        base_url=env.url,
        signer=HmacSigner(SecretStr(OTHER), SecretStr(OTHER_SECRET)),
        clock=env.clock,
        symbols=("BTCUSDT",),
        user_data=False,
        trade_over="rest",
    )
    env.adapters.append(other)
    await other.connect()
    sell = Order(**{**_fields(order(Side.SELL, "0", price)), "qty": size + D("0.002")})
    sell = Order(**{**_fields(sell), "tif": TimeInForce.IOC})
    await other.submit(sell)
    cid = mine.client_order_id
    await reports.wait(lambda: any(r.status is OrderStatus.FILLED for r in reports.of(cid)))
    return mine


def _fields(o: Order) -> dict[str, object]:
    return {f: getattr(o, f) for f in o.__dataclass_fields__}


@pytest.mark.parametrize("trade_over", ["ws", "rest"])
async def test_a_resting_order_filled_later_arrives_through_the_user_data_stream(
    env: Env, trade_over: Literal["ws", "rest"]
) -> None:
    v = await env.adapter(trade_over=trade_over)
    reports = Reports(v)
    try:
        mine = await fill_resting_buy(env, v, reports)
        got = reports.of(mine.client_order_id)
        statuses = [r.status for r in got]
        assert statuses[0] is OrderStatus.ACCEPTED
        assert statuses.count(OrderStatus.ACCEPTED) == 1  # reply and stream: said once
        fills = [r for r in got if r.trade_id]
        assert sum(r.last_qty for r in fills) == D("0.002")
        assert len({r.trade_id for r in fills}) == len(fills)
        assert all(r.fee > 0 and r.fee_asset == "BTC" for r in fills)
        assert fills[-1].status is OrderStatus.FILLED
        assert reports.gaps == []
        # The venue's own record agrees.
        venue_fills = await v.fills("BTCUSDT", 0)
        assert {r.trade_id for r in venue_fills} == {r.trade_id for r in fills}
    finally:
        await reports.stop()


async def test_market_order_fills_are_reported_once_from_reply_and_stream(env: Env) -> None:
    v = await env.adapter()
    reports = Reports(v)
    try:
        o = order(Side.BUY, "0.05")
        await v.submit(o)
        # Let the stream's copies arrive; they must be dropped.
        await asyncio.sleep(0.1)
        got = reports.of(o.client_order_id)
        fills = [r for r in got if r.trade_id]
        assert fills and len({r.trade_id for r in fills}) == len(fills)
        assert sum(r.last_qty for r in fills) == D("0.05")
        assert [r.status for r in got if not r.trade_id] == [OrderStatus.ACCEPTED]
        assert v.sequencer.duplicates >= len(fills)  # the stream's copies were seen, and dropped
        assert v.user_events > 0
    finally:
        await reports.stop()


async def test_trading_over_the_ws_api_feeds_the_usage_sink(env: Env) -> None:
    v = await env.adapter()
    env.usage.clear()
    await v.submit(order(Side.BUY, "0.001"))
    pools = set().union(*env.usage)
    assert {"REQUEST_WEIGHT", "ORDERS_10S", "ORDERS_1D"} <= pools
    ws = v.ws_api
    assert ws is not None and ws.connects == 1


async def test_ed25519_keys_log_on_and_subscribe(env: Env) -> None:
    v = await env.adapter(signer=Ed25519Signer(SecretStr(ED_KEY), ED_PEM))
    reports = Reports(v)
    try:
        o = order(Side.BUY, "0.001")
        await v.submit(o)
        await reports.wait(lambda: any(r.trade_id for r in reports.of(o.client_order_id)))
        # Events arrived on the logged-on subscription (the copies of the reply's fills).
        await reports.wait(lambda: v.user_events > 0)
    finally:
        await reports.stop()


async def test_a_lost_connection_is_replaced_and_reconciliation_is_asked_for(env: Env) -> None:
    v = await env.adapter()
    reports = Reports(v)
    ws = v.ws_api
    assert ws is not None
    try:
        conn = ws._conn
        assert conn is not None
        await conn.ws.close()  # the connection drops
        await reports.wait(lambda: bool(reports.gaps), env.clock)
        assert "missed" in reports.gaps[0]
        assert ws.connection_number == 2 and ws.reconnects == 1
        # Still trading and streaming afterwards, nothing reported twice.
        mine = await fill_resting_buy(env, v, reports)
        assert [r.status for r in reports.of(mine.client_order_id)].count(OrderStatus.FILLED) == 1
        assert len(reports.gaps) == 1
    finally:
        await reports.stop()


async def test_handover_before_the_24h_cut_opens_the_new_connection_first(env: Env) -> None:
    v = await env.adapter(max_connection_age_s=600.0)
    reports = Reports(v)
    ws = v.ws_api
    assert ws is not None
    try:
        await env.clock.advance(601.0)
        await reports.wait(lambda: ws.handovers == 1)
        await reports.wait(lambda: env.sim.ws_api.connections == 1)  # the old one closed
        assert ws.connection_number == 2 and ws.reconnects == 0
        mine = await fill_resting_buy(env, v, reports)
        assert reports.gaps == []  # a handover loses nothing: no reconciliation needed
        assert [r.status for r in reports.of(mine.client_order_id)].count(OrderStatus.FILLED) == 1
    finally:
        await reports.stop()


async def test_outbound_account_position_keeps_balances_without_rest(env: Env) -> None:
    v = await env.adapter()
    reports = Reports(v)
    try:
        before = await v.balances()  # REST, seeds the cache
        await v.submit(order(Side.BUY, "0.01"))
        await reports.wait(lambda: not v._positions_due)
        env.usage.clear()
        after = await v.balances()
        assert env.usage == []  # served from the stream's positions
        assert after["BTC"].free > before["BTC"].free
        rest = await v.http.get("/api/v3/account", {}, True, "account.balances")
        free = {b["asset"]: D(b["free"]) for b in json.loads(rest)["balances"]}
        assert after["BTC"].free == free["BTC"] and after["USDT"].free == free["USDT"]
    finally:
        await reports.stop()


async def test_server_shutdown_on_the_ws_api_hands_over_without_a_gap(env: Env) -> None:
    v = await env.adapter()
    reports = Reports(v)
    ws = v.ws_api
    assert ws is not None
    try:
        env.sim.ws_api.announce_shutdown()
        await reports.wait(lambda: ws.handovers == 1, env.clock)
        assert ws.connection_number == 2 and ws.reconnects == 0
        mine = await fill_resting_buy(env, v, reports)
        assert reports.gaps == []
        assert [r.status for r in reports.of(mine.client_order_id)].count(OrderStatus.FILLED) == 1
    finally:
        await reports.stop()
