"""The Binance adapter's REST side against the Binance protocol simulator on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr

from botd.clock import NS_PER_SECOND, FakeClock
from botd.errors import AuthError, ConfigError, OrderRejected, TransientVenueError
from botd.model import ExecutionReport, OrderStatus, OrderType, Quote, Side, TimeInForce
from botd.model.orders import Order
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.auth import HmacSigner
from botd.venues.binance.constants import BINANCE_CAPABILITIES
from botd.venues.sim.binance import BinanceSimulator

D = Decimal
KEY = "adapter-key"
SECRET = "adapter-secret"
START_NS = 1_700_000_000 * NS_PER_SECOND


def signer(key: str = KEY, secret: str = SECRET) -> HmacSigner:
    return HmacSigner(SecretStr(key), SecretStr(secret))


class Env:
    def __init__(self, sim: BinanceSimulator, clock: FakeClock, url: str) -> None:
        self.sim = sim
        self.clock = clock
        self.url = url
        self.usage: list[tuple[dict[str, int], int]] = []
        self._ids = 0

    def adapter(
        self,
        *,
        sign: HmacSigner | None = None,
        clock: FakeClock | None = None,
        symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
    ) -> BinanceAdapter:
        return BinanceAdapter(
            base_url=self.url,
            signer=sign or signer(),
            clock=clock or self.clock,
            symbols=symbols,
            on_usage=lambda usage, sent: self.usage.append((usage, sent)),
        )

    def order(
        self,
        side: Side,
        qty: Decimal,
        *,
        price: Decimal | None = None,
        post_only: bool = False,
        symbol: str = "BTCUSDT",
        tif: TimeInForce = TimeInForce.GTC,
    ) -> Order:
        self._ids += 1
        return Order(
            client_order_id=f"t{self._ids}",
            strategy_id="test",
            venue="binance",
            symbol=symbol,
            side=side,
            type=OrderType.MARKET if price is None else OrderType.LIMIT,
            qty=qty,
            price=price,
            tif=TimeInForce.IOC if price is None else tif,
            post_only=post_only,
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock(START_NS)
    sim = BinanceSimulator(
        clock=clock,
        seed=5,
        symbols=["BTCUSDT", "ETHUSDT"],
        api_keys={KEY: SECRET, "poor-key": "poor-secret"},
        balances={KEY: {"USDT": D("100000"), "BTC": D("1")}},
    )
    port = await sim.start(port=0)
    try:
        yield Env(sim, clock, f"http://127.0.0.1:{port}")
    finally:
        await sim.stop()


@pytest.fixture
async def venue(env: Env) -> AsyncIterator[BinanceAdapter]:
    v = env.adapter()
    await v.connect()
    try:
        yield v
    finally:
        await v.close()


def drain(venue: BinanceAdapter) -> list[ExecutionReport]:
    """Everything queued on the executions stream so far (REST-derived reports are queued
    before the call that caused them returns)."""
    out: list[ExecutionReport] = []
    queue = venue._reports
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def best(venue: BinanceAdapter) -> Quote:
    stream = venue.market_data(["BTCUSDT"])
    try:
        event = await anext(stream)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert isinstance(event, Quote)
    return event


# -- connect / instruments / auth -------------------------------------------------------------


async def test_connect_loads_instruments_and_capabilities(venue: BinanceAdapter) -> None:
    inst = venue.instruments()
    assert set(inst) == {"BTCUSDT", "ETHUSDT"}
    btc = inst["BTCUSDT"]
    assert (btc.venue, btc.base, btc.quote) == ("binance", "BTC", "USDT")
    assert btc.tick_size == D("0.01")
    assert btc.step_size == D("0.00001")
    assert btc.min_notional == D("5")
    assert venue.capabilities is BINANCE_CAPABILITIES
    assert venue.name == "binance"


async def test_unknown_symbol_is_a_config_error(env: Env) -> None:
    v = env.adapter(symbols=("BTCUSDT", "DOGEUSDT"))
    try:
        with pytest.raises(ConfigError):
            await v.connect()
    finally:
        await v.close()


async def test_bad_key_is_an_auth_error(env: Env) -> None:
    v = env.adapter(sign=signer("no-such-key", "whatever"))
    try:
        with pytest.raises(AuthError):
            await v.connect()
    finally:
        await v.close()


async def test_bad_secret_is_an_auth_error(env: Env) -> None:
    v = env.adapter(sign=signer(KEY, "wrong-secret"))
    try:
        with pytest.raises(AuthError):
            await v.connect()
    finally:
        await v.close()


async def test_usage_headers_reach_the_callback(env: Env, venue: BinanceAdapter) -> None:
    assert env.usage
    usage, sent_ns = env.usage[-1]
    assert usage["REQUEST_WEIGHT"] > 0
    assert sent_ns == env.clock.time_ns()
    env.usage.clear()
    await venue.submit(env.order(Side.BUY, D("0.001")))
    assert env.usage[-1][0].keys() >= {"REQUEST_WEIGHT", "ORDERS_10S", "ORDERS_1D"}
    assert env.usage[-1][0]["ORDERS_10S"] == 1


async def test_balances(venue: BinanceAdapter) -> None:
    bal = await venue.balances()
    assert bal["USDT"].free == D("100000")
    assert bal["BTC"].free == D("1")
    assert bal["BTC"].locked == 0


# -- orders -----------------------------------------------------------------------------------


async def test_market_buy_acks_and_reports_fills_with_trade_ids_and_fees(
    env: Env, venue: BinanceAdapter
) -> None:
    before = await venue.balances()
    order = env.order(Side.BUY, D("0.05"))
    ack = await venue.submit(order)
    assert ack.client_order_id == order.client_order_id
    assert ack.venue_order_id
    assert ack.status is OrderStatus.FILLED
    assert ack.ts_event == env.clock.time_ns() // 1_000_000 * 1_000_000
    reports = drain(venue)
    assert reports[0].status is OrderStatus.ACCEPTED and reports[0].last_qty == 0
    fills = reports[1:]
    assert fills and all(r.trade_id for r in fills)
    assert len({r.trade_id for r in fills}) == len(fills)
    assert sum(r.last_qty for r in fills) == order.qty
    assert fills[-1].status is OrderStatus.FILLED
    assert all(r.status is OrderStatus.PARTIALLY_FILLED for r in fills[:-1])
    assert all(r.fee > 0 and r.fee_asset == "BTC" for r in fills)
    assert all(r.venue_order_id == ack.venue_order_id for r in fills)
    after = await venue.balances()
    spent = sum((r.last_qty * r.last_price for r in fills), D(0))
    fee = sum((r.fee for r in fills), D(0))
    assert after["USDT"].total == before["USDT"].total - spent
    assert after["BTC"].total == before["BTC"].total + order.qty - fee
    # Recovery: the same trades, the same ids, statuses, client id.
    recovered = await venue.fills("BTCUSDT", ack.ts_event)
    assert [(r.trade_id, r.last_qty, r.last_price, r.fee) for r in recovered] == [
        (r.trade_id, r.last_qty, r.last_price, r.fee) for r in fills
    ]
    assert [r.status for r in recovered] == [r.status for r in fills]
    assert {r.client_order_id for r in recovered} == {order.client_order_id}
    found = await venue.query_order("BTCUSDT", order.client_order_id)
    assert found is not None and found.status is OrderStatus.FILLED
    assert found.filled_qty == order.qty


async def test_fills_since_excludes_older_and_resolves_unknown_client_ids(
    env: Env, venue: BinanceAdapter
) -> None:
    first = env.order(Side.BUY, D("0.01"))
    await venue.submit(first)
    await env.clock.advance(1.0)
    second = env.order(Side.SELL, D("0.01"))
    ack = await venue.submit(second)
    streamed = {r.trade_id for r in drain(venue) if r.client_order_id == second.client_order_id}
    streamed.discard("")
    # A fresh adapter (no orderId cache) still names our client ids.
    other = env.adapter()
    await other.connect()
    try:
        recovered = await other.fills("BTCUSDT", ack.ts_event)
    finally:
        await other.close()
    assert {r.client_order_id for r in recovered} == {second.client_order_id}
    assert {r.trade_id for r in recovered} == streamed
    assert recovered[-1].status is OrderStatus.FILLED
    both = await venue.fills("BTCUSDT", START_NS)
    assert {r.client_order_id for r in both} == {first.client_order_id, second.client_order_id}
    assert all(a.ts_event <= b.ts_event for a, b in itertools.pairwise(both))


async def test_resting_limit_is_listed_queried_cancelled_once(
    env: Env, venue: BinanceAdapter
) -> None:
    q = await best(venue)
    price = (q.bid * D("0.8")).quantize(D("0.01"))
    order = env.order(Side.BUY, D("0.01"), price=price)
    ack = await venue.submit(order)
    assert ack.status is OrderStatus.ACCEPTED
    assert [r.status for r in drain(venue)] == [OrderStatus.ACCEPTED]
    listed = {o.client_order_id: o for o in await venue.open_orders()}
    found = await venue.query_order("BTCUSDT", order.client_order_id)
    assert found is not None
    for view in (listed[order.client_order_id], found):
        assert view.status is OrderStatus.ACCEPTED
        assert view.price == price
        assert view.qty == D("0.01")
        assert view.side is Side.BUY
        assert view.type is OrderType.LIMIT
        assert view.venue_order_id == ack.venue_order_id
    assert (await venue.balances())["USDT"].locked == price * D("0.01")

    await venue.cancel("BTCUSDT", order.client_order_id)
    reports = drain(venue)
    assert [(r.client_order_id, r.status) for r in reports] == [
        (order.client_order_id, OrderStatus.CANCELED)
    ]
    assert reports[0].venue_order_id == ack.venue_order_id
    assert await venue.open_orders() == []
    found = await venue.query_order("BTCUSDT", order.client_order_id)
    assert found is not None and found.status is OrderStatus.CANCELED
    with pytest.raises(OrderRejected) as err:
        await venue.cancel("BTCUSDT", order.client_order_id)
    assert err.value.code == "UNKNOWN_ORDER"
    with pytest.raises(OrderRejected) as err:
        await venue.cancel("BTCUSDT", "never-sent")
    assert err.value.code == "UNKNOWN_ORDER"


async def test_post_only_is_limit_maker(env: Env, venue: BinanceAdapter) -> None:
    q = await best(venue)
    resting = env.order(Side.BUY, D("0.01"), price=q.bid - D("1"), post_only=True)
    await venue.submit(resting)
    found = await venue.query_order("BTCUSDT", resting.client_order_id)
    assert found is not None and found.status is OrderStatus.ACCEPTED
    crossing = env.order(Side.BUY, D("0.01"), price=q.ask + D("1"), post_only=True)
    with pytest.raises(OrderRejected) as err:
        await venue.submit(crossing)
    assert err.value.code == "-2010"
    assert await venue.query_order("BTCUSDT", crossing.client_order_id) is None


async def test_ioc_limit_that_cannot_fill_expires(env: Env, venue: BinanceAdapter) -> None:
    q = await best(venue)
    price = (q.bid * D("0.9")).quantize(D("0.01"))
    order = env.order(Side.BUY, D("0.01"), price=price, tif=TimeInForce.IOC)
    ack = await venue.submit(order)
    assert ack.status is OrderStatus.EXPIRED
    assert [r.status for r in drain(venue)] == [OrderStatus.ACCEPTED, OrderStatus.EXPIRED]


async def test_cancel_all_cancels_that_symbol_only(env: Env, venue: BinanceAdapter) -> None:
    q = await best(venue)
    price = (q.bid * D("0.8")).quantize(D("0.01"))
    a = env.order(Side.BUY, D("0.01"), price=price)
    b = env.order(Side.BUY, D("0.01"), price=price)
    eth = env.order(Side.BUY, D("0.01"), price=D("1000.00"), symbol="ETHUSDT")
    for o in (a, b, eth):
        await venue.submit(o)
    drain(venue)
    await venue.cancel_all("BTCUSDT")
    reports = drain(venue)
    assert {r.client_order_id for r in reports} == {a.client_order_id, b.client_order_id}
    assert all(r.status is OrderStatus.CANCELED for r in reports)
    assert [o.client_order_id for o in await venue.open_orders()] == [eth.client_order_id]
    await venue.cancel_all("BTCUSDT")  # nothing left: not an error
    assert drain(venue) == []


async def test_filter_failures_are_rejected_with_the_venue_code(
    env: Env, venue: BinanceAdapter
) -> None:
    q = await best(venue)
    off_tick = (q.bid * D("0.8")).quantize(D("0.01")) + D("0.005")
    bad_tick = env.order(Side.BUY, D("0.01"), price=off_tick)
    with pytest.raises(OrderRejected) as err:
        await venue.submit(bad_tick)
    assert err.value.code == "-1013"
    assert "PRICE_FILTER" in err.value.reason
    bad_step = env.order(Side.BUY, D("0.000015"))
    with pytest.raises(OrderRejected) as err:
        await venue.submit(bad_step)
    assert err.value.code == "-1013"
    assert await venue.query_order("BTCUSDT", bad_tick.client_order_id) is None
    assert drain(venue) == []


async def test_insufficient_balance_is_rejected(env: Env, venue: BinanceAdapter) -> None:
    q = await best(venue)
    price = (q.bid * D("0.9")).quantize(D("0.01"))
    order = env.order(Side.BUY, D("5"), price=price)  # ~290k USDT against 100k
    with pytest.raises(OrderRejected) as err:
        await venue.submit(order)
    assert err.value.code == "-2010"
    assert "insufficient balance" in err.value.reason
    assert await venue.query_order("BTCUSDT", order.client_order_id) is None
    assert await venue.open_orders() == []


# -- transport --------------------------------------------------------------------------------


async def test_clock_skew_resyncs_and_retries_once(env: Env) -> None:
    # The adapter's clock runs 30 s behind the venue's: connect measures the offset.
    local = FakeClock(START_NS - 30 * NS_PER_SECOND)
    v = env.adapter(clock=local)
    try:
        await v.connect()
        assert v.http.offset_ms == 30_000
        # The venue's clock jumps 20 s more: the next signed request gets -1021, the adapter
        # re-syncs and the retried request succeeds.
        await env.clock.advance(20.0)
        assert (await v.balances())["BTC"].free == D("1")
        assert v.http.offset_ms == 50_000
    finally:
        await v.close()


async def test_unreachable_venue_is_transient_with_unknown_outcome(env: Env) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    v = BinanceAdapter(
        base_url=f"http://127.0.0.1:{port}",
        signer=signer(),
        clock=env.clock,
        symbols=("BTCUSDT",),
        trade_over="rest",
    )
    try:
        with pytest.raises(TransientVenueError, match="outcome unknown") as err:
            await v.submit(env.order(Side.BUY, D("0.001")))
        assert SECRET not in str(err.value)
    finally:
        await v.close()


# -- market data (websocket stream) -----------------------------------------------------------


async def test_market_data_yields_changed_quotes_on_the_clock(
    env: Env, venue: BinanceAdapter
) -> None:
    stream = venue.market_data(["BTCUSDT", "NOTLISTED"])
    got: list[Quote] = []

    async def collect() -> None:
        async for event in stream:
            if not isinstance(event, Quote):
                continue  # trades too, since the websocket stream
            got.append(event)
            if len(got) == 3:
                return

    task = asyncio.create_task(collect())
    for _ in range(200):
        if task.done():
            break
        await env.clock.advance(0.5)
        await asyncio.sleep(0.005)
    await task
    await stream.aclose()  # type: ignore[attr-defined]
    assert all(q.symbol == "BTCUSDT" and 0 < q.bid < q.ask for q in got)
    assert all(q.bid_size > 0 and q.ask_size > 0 for q in got)
    tops = [(q.bid, q.ask, q.bid_size, q.ask_size) for q in got]
    assert all(a != b for a, b in itertools.pairwise(tops))  # changes only


@pytest.mark.parametrize("kind", [OrderType.STOP, OrderType.STOP_LIMIT])
async def test_stop_orders_are_refused_never_sent_as_something_else(
    env: Env, venue: BinanceAdapter, kind: OrderType
) -> None:
    # The gateway refuses undeclared types first; the adapter must not rely on it.
    assert kind not in BINANCE_CAPABILITIES.order_types
    q = await best(venue)
    order = dataclasses.replace(
        env.order(Side.BUY, D("0.01"), price=q.ask + D("1")),
        type=kind,
        stop_price=q.ask + D("5"),
        price=q.ask + D("6") if kind is OrderType.STOP_LIMIT else None,
    )
    with pytest.raises(OrderRejected) as err:
        await venue.submit(order)
    assert err.value.code == "UNSUPPORTED"
    assert await venue.query_order("BTCUSDT", order.client_order_id) is None


async def test_order_id_memory_is_bounded_and_relearnt_by_query(
    env: Env, venue: BinanceAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botd.venues.binance.adapter as adapter_mod

    monkeypatch.setattr(adapter_mod, "_MAX_CLIENT_IDS", 3)
    q = await best(venue)
    orders = [env.order(Side.BUY, D("0.01"), price=q.bid - D(10 + i)) for i in range(5)]
    for o in orders:
        await venue.submit(o)
    assert len(venue._client_ids) == 3  # only the most recent are kept
    assert orders[0].client_order_id not in venue._client_ids.values()
    # A query for a forgotten order still answers by our client id, and remembers it again.
    found = await venue.query_order("BTCUSDT", orders[0].client_order_id)
    assert found is not None and found.client_order_id == orders[0].client_order_id
    assert orders[0].client_order_id in venue._client_ids.values()
    assert len(venue._client_ids) == 3
