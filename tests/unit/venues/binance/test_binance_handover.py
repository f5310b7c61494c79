"""Market data across a connection handover (age limit, ``serverShutdown``) against the
simulator, and the periodic exchangeInfo refresh against a scripted REST server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.model import BookDelta, BookSnapshot, MarketEvent, Trade
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.auth import HmacSigner
from botd.venues.binance.market import HandoverMarketStream
from botd.venues.sim.binance import BinanceSimulator

D = Decimal
KEY, SECRET = "ho-key", "ho-secret"


@pytest.fixture
async def sim_url() -> AsyncIterator[tuple[BinanceSimulator, FakeClock, str]]:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=3,
        symbols=["BTCUSDT"],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": D("1000")}},
    )
    port = await sim.start(port=0)
    try:
        yield sim, clock, f"http://127.0.0.1:{port}"
    finally:
        await sim.stop()


async def collect(
    adapter: BinanceAdapter, clock: FakeClock, seconds: float, poke: Any = None
) -> tuple[list[MarketEvent], HandoverMarketStream]:
    events: list[MarketEvent] = []
    stream = adapter.market_data(["BTCUSDT"])

    async def run() -> None:
        async for e in stream:
            events.append(e)

    task = asyncio.create_task(run())
    t = 0.0
    while t < seconds:
        await clock.advance(0.1)
        await asyncio.sleep(0.003)
        t += 0.1
        if poke is not None and abs(t - seconds / 2) < 0.05:
            poke()
    assert not task.done(), task  # it never ended: the handover is invisible to the caller
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return events, adapter._markets[-1]


async def test_market_data_hands_over_before_the_age_limit(
    sim_url: tuple[BinanceSimulator, FakeClock, str],
) -> None:
    sim, clock, url = sim_url
    adapter = BinanceAdapter(
        base_url=url,
        signer=HmacSigner(SecretStr(KEY), SecretStr(SECRET)),
        clock=clock,
        symbols=("BTCUSDT",),
        book_depth=True,
        user_data=False,
        trade_over="rest",
        max_connection_age_s=20.0,
    )
    await adapter.connect()
    try:
        events, stream = await collect(adapter, clock, 50.0)
    finally:
        await adapter.close()
    assert stream.handovers == 2
    trades = [e.trade_id for e in events if isinstance(e, Trade)]
    assert trades and len(trades) == len(set(trades))
    assert stream.gaps == 0
    # After each switch the book restarts from the new connection's image, then its deltas.
    kinds = [type(e) for e in events if isinstance(e, BookSnapshot | BookDelta)]
    assert kinds.count(BookSnapshot) >= 3
    assert sim.streams.connections == 0  # every old connection was closed


async def test_server_shutdown_hands_over_without_ending_the_stream(
    sim_url: tuple[BinanceSimulator, FakeClock, str],
) -> None:
    sim, clock, url = sim_url
    adapter = BinanceAdapter(
        base_url=url,
        signer=HmacSigner(SecretStr(KEY), SecretStr(SECRET)),
        clock=clock,
        symbols=("BTCUSDT",),
        user_data=False,
        trade_over="rest",
    )
    await adapter.connect()
    try:
        events, stream = await collect(adapter, clock, 10.0, poke=sim.streams.announce_shutdown)
    finally:
        await adapter.close()
    assert stream.handovers == 1
    trades = [e.trade_id for e in events if isinstance(e, Trade)]
    assert len(trades) == len(set(trades))


class Venue:
    """Just enough REST for connect() and the instruments refresh."""

    def __init__(self) -> None:
        self.status = "TRADING"
        self.tick = "0.01"
        self.exchange_info_calls = 0

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._info)
        app.router.add_get("/api/v3/account", self._account)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def _time(self, _r: web.Request) -> web.Response:
        return web.json_response({"serverTime": 1_700_000_000_000})

    async def _account(self, _r: web.Request) -> web.Response:
        return web.json_response({"balances": [{"asset": "USDT", "free": "1", "locked": "0"}]})

    async def _info(self, _r: web.Request) -> web.Response:
        self.exchange_info_calls += 1
        symbol = {
            "symbol": "BTCUSDT",
            "status": self.status,
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01",
                    "maxPrice": "1000000",
                    "tickSize": self.tick,
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001",
                    "maxQty": "9000",
                    "stepSize": "0.00001",
                },
            ],
        }
        return web.Response(text=json.dumps({"symbols": [symbol]}), content_type="application/json")


async def test_instruments_are_refreshed_and_a_halt_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    venue = Venue()
    runner, url = await venue.start()

    async def wait_until(done: Any) -> None:
        for _ in range(400):
            if done():
                return
            await clock.advance(1.0)
            await asyncio.sleep(0.002)
        raise AssertionError("not refreshed")

    clock = FakeClock()
    adapter = BinanceAdapter(
        base_url=url,
        signer=HmacSigner(SecretStr(KEY), SecretStr(SECRET)),
        clock=clock,
        symbols=("BTCUSDT",),
        user_data=False,
        trade_over="rest",
        instruments_refresh_s=60.0,
    )
    try:
        await adapter.connect()
        assert adapter.instruments()["BTCUSDT"].tick_size == D("0.01")
        venue.tick = "0.10"
        await wait_until(lambda: adapter.instruments()["BTCUSDT"].tick_size == D("0.10"))
        assert 59 <= clock.monotonic_ns() / 1e9 <= 62
        venue.status = "HALT"
        await wait_until(lambda: adapter.not_trading)
        assert adapter.not_trading == {"BTCUSDT"}
        assert "BTCUSDT stopped trading (status HALT)" in caplog.text
        assert "BTCUSDT" in adapter.instruments()  # kept: its orders still need settling
        venue.status = "TRADING"
        await wait_until(lambda: not adapter.not_trading)
        assert venue.exchange_info_calls == 4
    finally:
        await adapter.close()
        await runner.cleanup()
