"""The Alpaca adapter against the Alpaca simulator, beyond the shared venue contract."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from botd.clock import NS_PER_SECOND, FakeClock
from botd.errors import AuthError, ConfigError, OrderRejected, RateLimited, TransientVenueError
from botd.model import Order, OrderStatus, OrderType, Quote, Side, TimeInForce, Trade
from botd.venues.alpaca.adapter import AlpacaAdapter
from botd.venues.alpaca.streams import report_from_update
from botd.venues.alpaca.wire import WireError, parse_ns
from botd.venues.sim.alpaca import AlpacaSimulator

KEY = "adapter-key"
SECRET = "adapter-secret-do-not-print"
TUESDAY_10_ET = int(
    dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
)


class Rig:
    def __init__(self, clock: FakeClock, sim: AlpacaSimulator, port: int) -> None:
        self.clock = clock
        self.sim = sim
        self.port = port
        self.venues: list[AlpacaAdapter] = []

    def adapter(
        self, secret: str = SECRET, symbols: tuple[str, ...] = ("BTC/USD", "AAPL")
    ) -> AlpacaAdapter:
        venue = AlpacaAdapter(
            base_url=f"http://127.0.0.1:{self.port}",
            key_id=SecretStr(KEY),
            secret_key=SecretStr(secret),
            clock=self.clock,
            symbols=symbols,
        )
        self.venues.append(venue)
        return venue

    async def until(self, done: Callable[[], bool]) -> None:
        for _ in range(400):
            if done():
                return
            await self.clock.advance(0.05)
            for _ in range(5):
                await asyncio.sleep(0)
        raise AssertionError("timed out")


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    made: list[Rig] = []

    async def make(**kwargs: Any) -> Rig:
        clock = FakeClock(TUESDAY_10_ET * NS_PER_SECOND)
        sim = AlpacaSimulator(clock=clock, seed=5, api_keys={KEY: SECRET}, **kwargs)
        r = Rig(clock, sim, await sim.start())
        made.append(r)
        return r

    yield make
    for r in made:
        for v in r.venues:
            await v.close()
        await r.sim.stop()


def order(cid: str, symbol: str, side: Side, qty: str, price: str | None = None) -> Order:
    return Order(
        client_order_id=cid,
        strategy_id="t",
        venue="alpaca",
        symbol=symbol,
        side=side,
        type=OrderType.LIMIT if price else OrderType.MARKET,
        qty=Decimal(qty),
        price=None if price is None else Decimal(price),
        tif=TimeInForce.GTC if price else TimeInForce.IOC,
    )


async def test_instruments_for_equities_and_crypto(rig: Callable[..., Awaitable[Rig]]) -> None:
    r = await rig()
    venue = r.adapter(symbols=("BTC/USD", "AAPL", "FAKEPACA"))
    await venue.connect()
    inst = venue.instruments()
    assert (inst["BTC/USD"].base, inst["BTC/USD"].quote) == ("BTC", "USD")
    assert inst["BTC/USD"].min_qty == Decimal("0.0001")
    assert (inst["AAPL"].base, inst["AAPL"].quote) == ("AAPL", "USD")
    assert inst["AAPL"].step_size == Decimal("0.000000001")
    assert inst["FAKEPACA"].step_size == 1


async def test_bad_key_is_an_auth_error_without_the_secret(
    rig: Callable[..., Awaitable[Rig]],
) -> None:
    r = await rig()
    venue = r.adapter(secret="wrong-secret-value")
    with pytest.raises(AuthError) as err:
        await venue.connect()
    assert "wrong-secret-value" not in str(err.value)
    assert "wrong-secret-value" not in repr(venue.__dict__)


async def test_unlisted_symbol_is_a_config_error(rig: Callable[..., Awaitable[Rig]]) -> None:
    r = await rig()
    with pytest.raises(ConfigError, match="NOPE"):
        await r.adapter(symbols=("NOPE",)).connect()


async def test_equity_and_crypto_market_data_in_one_iterator(
    rig: Callable[..., Awaitable[Rig]],
) -> None:
    r = await rig()
    venue = r.adapter()
    await venue.connect()
    seen: dict[tuple[str, type], object] = {}
    events = venue.market_data(["AAPL", "BTC/USD"])

    async def collect() -> None:
        async for event in events:
            seen.setdefault((event.symbol, type(event)), event)
            if len(seen) == 4:
                return

    task = asyncio.create_task(collect())
    await r.until(task.done)
    await task
    await events.aclose()  # type: ignore[attr-defined]
    assert set(seen) == {(s, t) for s in ("AAPL", "BTC/USD") for t in (Quote, Trade)}
    quote = seen[("AAPL", Quote)]
    assert isinstance(quote, Quote)
    assert quote.bid < quote.ask
    assert quote.ts_event <= r.clock.time_ns()


async def test_rate_limit_is_rate_limited_with_the_reset(
    rig: Callable[..., Awaitable[Rig]],
) -> None:
    r = await rig(requests_per_minute=4)
    venue = r.adapter(symbols=("BTC/USD",))
    await venue.connect()  # the asset, the account and the positions: 3 requests
    await venue.open_orders()
    with pytest.raises(RateLimited) as err:
        await venue.open_orders()
    assert err.value.retry_after is not None
    assert 0 < err.value.retry_after <= 60


async def test_lost_trade_updates_raise_once_then_reconnect(
    rig: Callable[..., Awaitable[Rig]],
) -> None:
    r = await rig()
    venue = r.adapter()
    await venue.connect()
    reports: list[Any] = []

    async def consume() -> None:
        async for report in venue.executions():
            reports.append(report)

    first = asyncio.create_task(consume())
    await venue.submit(order("a1", "BTC/USD", Side.BUY, "0.01"))
    await r.until(lambda: any(x.status is OrderStatus.FILLED for x in reports))
    # The venue drops every trade_updates connection.
    await r.sim.drop_stream_connections()
    await r.until(first.done)
    with pytest.raises(TransientVenueError):
        first.result()
    second = asyncio.create_task(consume())
    await r.until(lambda: r.sim.stream_clients["trade_updates"] == 1)
    await venue.submit(order("a2", "BTC/USD", Side.BUY, "0.01"))
    await r.until(lambda: any(x.client_order_id == "a2" and x.last_qty > 0 for x in reports))
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)


async def test_equity_order_outside_hours_is_accepted_and_fills_at_the_open(
    rig: Callable[..., Awaitable[Rig]],
) -> None:
    r = await rig()
    await r.clock.advance(7 * 3600)  # 17:00 ET: closed
    venue = r.adapter()
    await venue.connect()
    ack = await venue.submit(
        Order(
            client_order_id="eq1",
            strategy_id="t",
            venue="alpaca",
            symbol="AAPL",
            side=Side.BUY,
            type=OrderType.LIMIT,
            qty=Decimal("1"),
            price=Decimal("500.00"),
            tif=TimeInForce.GTC,
        )
    )
    assert ack.status is OrderStatus.ACCEPTED
    found = await venue.query_order("AAPL", "eq1")
    assert found is not None
    assert found.status is OrderStatus.ACCEPTED
    assert [o.client_order_id for o in await venue.open_orders()] == ["eq1"]


async def test_rejections_carry_alpacas_codes(rig: Callable[..., Awaitable[Rig]]) -> None:
    r = await rig()
    venue = r.adapter()
    await venue.connect()
    with pytest.raises(OrderRejected) as poor:
        await venue.submit(order("p1", "AAPL", Side.SELL, "5"))
    assert poor.value.code == "40310000"
    await venue.submit(order("d1", "BTC/USD", Side.BUY, "0.01"))
    with pytest.raises(OrderRejected) as dup:
        await venue.submit(order("d1", "BTC/USD", Side.BUY, "0.01"))
    assert dup.value.code == "40010001"
    with pytest.raises(OrderRejected) as gone:
        await venue.cancel("BTC/USD", "d1")
    assert gone.value.code == "UNKNOWN_ORDER"
    with pytest.raises(OrderRejected) as post:
        await venue.submit(
            Order(
                client_order_id="po",
                strategy_id="t",
                venue="alpaca",
                symbol="BTC/USD",
                side=Side.BUY,
                type=OrderType.LIMIT,
                qty=Decimal("0.01"),
                price=Decimal("100"),
                tif=TimeInForce.GTC,
                post_only=True,
            )
        )
    assert post.value.code == "UNSUPPORTED"


def test_trade_update_parsing() -> None:
    data = {
        "event": "partial_fill",
        "execution_id": "e-1",
        "price": Decimal("101.5"),
        "qty": "2",
        "timestamp": "2026-11-24T15:00:00.123456789Z",
        "order": {"id": "o-1", "client_order_id": "c-1", "symbol": "AAPL"},
    }
    report = report_from_update("alpaca", data, lambda _s: "USD")
    assert report is not None
    assert report.status is OrderStatus.PARTIALLY_FILLED
    assert (report.last_qty, report.last_price, report.trade_id) == (2, Decimal("101.5"), "e-1")
    assert report.ts_event == parse_ns("2026-11-24T15:00:00Z") + 123456789
    assert report_from_update("alpaca", {**data, "event": "pending_new"}, str) is None
    with pytest.raises(WireError):
        report_from_update("alpaca", {**data, "timestamp": "yesterday"}, str)
    assert parse_ns("2026-11-24T10:00:00-05:00") == parse_ns("2026-11-24T15:00:00Z")


async def test_lost_market_data_raises_transient(rig: Callable[..., Awaitable[Rig]]) -> None:
    r = await rig()
    venue = r.adapter(symbols=("BTC/USD",))
    await venue.connect()
    got: list[object] = []

    async def consume() -> None:
        async for event in venue.market_data(["BTC/USD"]):
            got.append(event)

    task = asyncio.create_task(consume())
    await r.until(lambda: len(got) > 3)
    await r.sim.drop_stream_connections()
    await r.until(task.done)
    with pytest.raises(TransientVenueError):
        task.result()
