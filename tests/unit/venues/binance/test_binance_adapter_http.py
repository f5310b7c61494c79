"""BinanceHttp error paths against a scripted aiohttp server (the simulator never fails)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.errors import Banned, OrderRejected, RateLimited, TransientVenueError
from botd.venues.binance.auth import HmacSigner
from botd.venues.binance.constants import ClockSkew
from botd.venues.binance.http import BinanceHttp


class Script:
    def __init__(self) -> None:
        self.replies: list[web.Response] = []
        self.queries: list[str] = []
        self.hang = False
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(request.rel_url.raw_query_string)
        if self.hang:
            await self.release.wait()
        if request.path == "/api/v3/time":
            return web.json_response({"serverTime": 1_700_000_000_000})
        return self.replies.pop(0)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Script, str]]:
    script = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield script, f"http://127.0.0.1:{port}"
    finally:
        script.release.set()
        await runner.cleanup()


def http(url: str, timeout_s: float = 10.0) -> BinanceHttp:
    signer = HmacSigner(SecretStr("k"), SecretStr("s"))
    return BinanceHttp(url, signer, FakeClock(), None, timeout_s=timeout_s)


def err(status: int, code: int, msg: str, **headers: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


async def test_5xx_is_transient_with_unknown_outcome(served: tuple[Script, str]) -> None:
    script, url = served
    script.replies.append(web.Response(status=503, text="<html>busy</html>"))
    h = http(url)
    try:
        with pytest.raises(TransientVenueError, match="outcome unknown"):
            await h.post("/api/v3/order", {"symbol": "BTCUSDT"}, True, "order.submit")
    finally:
        await h.close()


async def test_429_and_418_carry_retry_after(served: tuple[Script, str]) -> None:
    script, url = served
    script.replies.append(err(429, -1003, "Too many requests", **{"Retry-After": "7"}))
    script.replies.append(err(418, -1003, "banned", **{"Retry-After": "120"}))
    h = http(url)
    try:
        with pytest.raises(RateLimited) as limited:
            await h.get("/api/v3/account", {}, True, "account.balances")
        assert limited.value.retry_after == 7.0
        with pytest.raises(Banned) as banned:
            await h.get("/api/v3/account", {}, True, "account.balances")
        assert banned.value.retry_after == 120.0
    finally:
        await h.close()


async def test_clock_skew_retries_once_only(served: tuple[Script, str]) -> None:
    script, url = served
    skew = "Timestamp for this request is outside of the recvWindow."
    script.replies += [err(400, -1021, skew), err(400, -1021, skew)]
    h = http(url)
    try:
        with pytest.raises(ClockSkew):
            await h.delete("/api/v3/order", {"symbol": "X"}, True, "order.cancel")
        # request, time sync, request again: then it gives up.
        assert len(script.queries) == 3
        assert script.queries[1] == ""
    finally:
        await h.close()


async def test_rejection_keeps_the_binance_code(served: tuple[Script, str]) -> None:
    script, url = served
    script.replies.append(err(400, -1013, "Filter failure: LOT_SIZE"))
    h = http(url)
    try:
        with pytest.raises(OrderRejected) as rejected:
            await h.post("/api/v3/order", {"symbol": "BTCUSDT"}, True, "order.submit")
        assert rejected.value.code == "-1013"
        assert "signature=" in script.queries[0]
        assert script.queries[0].index("recvWindow=5000") < script.queries[0].index("timestamp=")
    finally:
        await h.close()


async def test_timeout_is_transient_with_unknown_outcome(served: tuple[Script, str]) -> None:
    script, url = served
    script.hang = True
    h = http(url, timeout_s=0.1)
    try:
        with pytest.raises(TransientVenueError, match=r"timed out \(outcome unknown\)"):
            await h.post("/api/v3/order", {"symbol": "BTCUSDT"}, True, "order.submit")
    finally:
        await h.close()


async def test_unsigned_request_sends_no_signature_or_key(served: tuple[Script, str]) -> None:
    script, url = served
    script.replies.append(web.json_response([]))
    h = http(url)
    try:
        body = await h.get("/api/v3/ticker/bookTicker", {"symbols": '["A"]'}, False, "x")
        assert body == b"[]"
        assert script.queries == ["symbols=%5B%22A%22%5D"]
    finally:
        await h.close()
