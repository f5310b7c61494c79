"""A wire fault must not hide a rate-limit refusal. An ``after`` 5xx fault means "processed,
then answered 5xx"; a request the rate limiter refused (429) was never processed, and the
limiter counts that 429 toward a ban (418 on the next request over the limit). Answering the
429 with a 503 instead left a well-behaved client banned without ever being told to slow down,
which the long fault campaign hit as 418s on the adapter's WS API reconnects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import aiohttp

from botd.clock import NS_PER_SECOND, FakeClock
from botd.venues.sim.binance import BinanceSimulator, RateLimitConfig
from botd.venues.sim.binance.faults import WireFaultPlan

KEY, SECRET = "limit-key", "limit-secret"
START_NS = 1_700_000_020 * NS_PER_SECOND  # 40 s into a minute: the window does not roll


@asynccontextmanager
async def _sim(spec: str) -> AsyncIterator[str]:
    sim = BinanceSimulator(
        clock=FakeClock(START_NS),
        seed=1,
        symbols=["BTCUSDT"],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": Decimal("1000")}},
        limits=RateLimitConfig(request_weight_per_minute=10),
        faults=WireFaultPlan.parse(spec),
    )
    port = await sim.start(port=0)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await sim.stop()


async def test_rest_429_is_not_masked_by_an_after_5xx_fault() -> None:
    spec = "http503=after@n=11&path=/api/v3/ping"
    async with _sim(spec) as host, aiohttp.ClientSession() as session:
        url = f"http://{host}/api/v3/ping"
        for _ in range(10):
            async with session.get(url) as resp:
                assert resp.status == 200
        async with session.get(url) as resp:  # over the limit, and the fault's target
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "20"
            assert (await resp.json())["code"] == -1003


async def test_ws_api_429_is_not_masked_by_an_after_5xx_fault() -> None:
    # The connection costs 2 weight, each ``ping`` 1: the 9th ping is the first over 10.
    async with (
        _sim("http503=after@n=9&method=ping") as host,
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{host}/ws-api/v3") as ws,
    ):
        for i in range(8):
            await ws.send_str(json.dumps({"id": i, "method": "ping"}))
            assert json.loads(await ws.receive_str(timeout=5))["status"] == 200
        await ws.send_str(json.dumps({"id": "over", "method": "ping"}))
        reply = json.loads(await ws.receive_str(timeout=5))
    assert reply["status"] == 429
    assert reply["error"]["code"] == -1003
