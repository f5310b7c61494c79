"""BinanceWsApi against a scripted WS API server on loopback, for what the simulator does not do
on demand: a reply that never comes, -1021, ``serverShutdown``, malformed frames, rate-limit
errors. Envelopes as documented (WIRE_FACTS §1.3, §1.6)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.errors import OrderRejected, RateLimited, TransientVenueError
from botd.venues.binance.auth import HmacSigner
from botd.venues.binance.schemas import ExecutionReportEvent, UserDataEvent
from botd.venues.binance.wsapi import BinanceWsApi, ConnectLimiter

SECRET = "client-secret-7f"
Reply = dict[str, Any] | None  # None: never answer


class Server:
    """Answers each request with ``script(method, params, connection_number)``."""

    def __init__(self, script: Callable[[str, dict[str, Any], int], Reply]) -> None:
        self.script = script
        self.requests: list[tuple[int, str, dict[str, Any]]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/ws-api/v3", self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"ws://127.0.0.1:{port}/ws-api/v3"

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def push(self, n: int, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.sockets[n - 1].send_str(text)

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        number = len(self.sockets)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            self.requests.append((number, req["method"], req["params"]))
            reply = self.script(req["method"], req["params"], number)
            if reply is not None:
                await ws.send_str(json.dumps({"id": req["id"], **reply}))
        return ws


def ok(result: object = None, limits: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": 200, "result": result if result is not None else {}}
    if limits is not None:
        out["rateLimits"] = limits
    return out


def default_script(method: str, params: dict[str, Any], n: int) -> Reply:
    if method == "userDataStream.subscribe.signature":
        return ok({"subscriptionId": 0})
    return ok({"echo": method})


class Client:
    def __init__(self, url: str, clock: FakeClock, **kw: Any) -> None:
        self.events: list[UserDataEvent] = []
        self.gaps: list[str] = []
        self.usage: list[dict[str, int]] = []
        self.resyncs = 0

        async def resync() -> int:
            self.resyncs += 1
            return 0

        self.api = BinanceWsApi(
            url=url,
            signer=HmacSigner(SecretStr("client-key"), SecretStr(SECRET)),
            clock=clock,
            offset_ms=lambda: 0,
            resync_time=resync,
            on_event=self.events.append,
            on_gap=self.gaps.append,
            on_usage=lambda usage, _sent: self.usage.append(usage),
            **kw,
        )


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[Server, Client]] = []

    async def make(
        script: Callable[[str, dict[str, Any], int], Reply] = default_script, **kw: Any
    ) -> tuple[Server, Client, FakeClock]:
        server = Server(script)
        url = await server.start()
        clock = FakeClock()
        client = Client(url, clock, **kw)
        made.append((server, client))
        await client.api.start()
        return server, client, clock

    yield make
    for server, client in made:
        await client.api.close()
        await server.stop()


async def until(done: Callable[[], bool], clock: FakeClock | None = None) -> None:
    for _ in range(300):
        if done():
            return
        if clock is not None:
            await clock.advance(0.1)
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_hmac_keys_subscribe_with_a_signed_request(rig: Any) -> None:
    server, _client, _ = await rig()
    (_n, method, params) = server.requests[0]
    assert method == "userDataStream.subscribe.signature"
    assert set(params) >= {"apiKey", "timestamp", "signature"}
    assert SECRET not in json.dumps(params)


async def test_replies_are_matched_by_id_and_rate_limits_go_to_the_usage_sink(rig: Any) -> None:
    limits = [
        {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": 6000,
            "count": 12,
        },
        {
            "rateLimitType": "ORDERS",
            "interval": "SECOND",
            "intervalNum": 10,
            "limit": 50,
            "count": 3,
        },
        {
            "rateLimitType": "RAW_REQUESTS",
            "interval": "MINUTE",
            "intervalNum": 5,
            "limit": 61000,
            "count": 9,
        },
    ]

    def script(method: str, params: dict[str, Any], n: int) -> Reply:
        if method.startswith("userDataStream"):
            return ok({"subscriptionId": 0})
        return ok({"m": method}, limits)

    _, client, _ = await rig(script)
    got = await asyncio.gather(
        *(client.api.request(f"m{i}", {}, signed=False, endpoint="x") for i in range(5))
    )
    assert [json.loads(g)["m"] for g in got] == [f"m{i}" for i in range(5)]
    assert client.usage[-1] == {"REQUEST_WEIGHT": 12, "ORDERS_10S": 3}


async def test_a_request_never_answered_is_an_unknown_outcome(rig: Any) -> None:
    def script(method: str, params: dict[str, Any], n: int) -> Reply:
        return None if method == "order.place" else default_script(method, params, n)

    _, client, clock = await rig(script)
    with pytest.raises(TransientVenueError, match="outcome unknown"):
        await client.api.request(
            "order.place",
            {"symbol": "BTCUSDT"},
            signed=True,
            endpoint="order.submit",
            timeout_s=0.2,
        )
    # A connection that lost a reply is not trusted with user data any more: replaced, and
    # the gateway told to reconcile.
    await until(lambda: client.api.connection_number == 2, clock)
    assert len(client.gaps) == 1


async def test_a_silent_connection_is_probed_and_replaced(rig: Any) -> None:
    silent = {"on": False}

    def script(method: str, params: dict[str, Any], n: int) -> Reply:
        if silent["on"] and n == 1:
            return None  # stalled: nothing comes back
        return default_script(method, params, n)

    server, client, clock = await rig(script, idle_probe_s=30.0, timeout_s=0.3)
    await clock.advance(29.0)
    await asyncio.sleep(0.05)
    assert not any(m == "ping" for _, m, _ in server.requests)
    silent["on"] = True
    await until(lambda: client.api.connection_number == 2, clock)
    assert [n for n, m, _ in server.requests if m == "ping"][:1] == [1]
    assert client.api.probes_failed == 1
    assert client.gaps  # events may have been lost while it was silent


async def test_clock_skew_resyncs_and_resends_once(rig: Any) -> None:
    calls = {"n": 0}

    def script(method: str, params: dict[str, Any], n: int) -> Reply:
        if method != "order.status":
            return default_script(method, params, n)
        calls["n"] += 1
        if calls["n"] == 1:
            return {"status": 400, "error": {"code": -1021, "msg": "Timestamp outside recvWindow"}}
        return ok({"orderId": 1})

    _, client, _ = await rig(script)
    body = await client.api.request("order.status", {}, signed=True, endpoint="order.query")
    assert json.loads(body) == {"orderId": 1}
    assert client.resyncs == 1 and calls["n"] == 2


async def test_errors_are_typed(rig: Any) -> None:
    def script(method: str, params: dict[str, Any], n: int) -> Reply:
        if method == "order.place":
            return {"status": 400, "error": {"code": -2010, "msg": "Duplicate order sent."}}
        if method == "order.status":
            return {
                "status": 429,
                "error": {
                    "code": -1003,
                    "msg": "Too much request weight used",
                    "data": {"serverTime": 0, "retryAfter": 5000},
                },
            }
        return default_script(method, params, n)

    _, client, _ = await rig(script)
    with pytest.raises(OrderRejected) as rejected:
        await client.api.request("order.place", {}, signed=True, endpoint="order.submit")
    assert rejected.value.code == "-2010"
    with pytest.raises(RateLimited):
        await client.api.request("order.status", {}, signed=True, endpoint="order.query")


async def test_server_shutdown_hands_over_to_a_new_connection_first(rig: Any) -> None:
    server, client, clock = await rig()
    await server.push(1, {"event": {"e": "serverShutdown", "E": 1}})
    await until(lambda: client.api.handovers == 1, clock)
    assert client.api.connection_number == 2
    subscribes = [r for r in server.requests if r[1] == "userDataStream.subscribe.signature"]
    assert [r[0] for r in subscribes] == [1, 2]  # the new one subscribed before taking over
    assert client.gaps == []
    body = await client.api.request("ping", {}, signed=False, endpoint="x")
    assert json.loads(body) == {"echo": "ping"}
    assert server.requests[-1][0] == 2


async def test_events_are_delivered_and_malformed_frames_counted(rig: Any) -> None:
    server, client, _ = await rig()
    await server.push(1, "not json")
    await server.push(1, {"subscriptionId": 0, "event": {"e": "executionReport"}})  # fields missing
    event = {
        "e": "executionReport",
        "E": 1,
        "s": "BTCUSDT",
        "c": "c1",
        "S": "BUY",
        "o": "LIMIT",
        "f": "GTC",
        "q": "1.00000000",
        "p": "10.00000000",
        "P": "0",
        "F": "0",
        "g": -1,
        "C": "",
        "x": "NEW",
        "X": "NEW",
        "r": "NONE",
        "i": 7,
        "l": "0",
        "z": "0",
        "L": "0",
        "n": "0",
        "N": None,
        "T": 1,
        "t": -1,
        "I": 1,
        "w": True,
        "m": False,
        "M": False,
        "O": 1,
        "Z": "0",
        "Y": "0",
        "Q": "0",
    }
    await server.push(1, {"subscriptionId": 0, "event": event})
    await until(lambda: bool(client.events))
    assert isinstance(client.events[0], ExecutionReportEvent)
    assert client.api.malformed == 2


async def test_the_connection_age_limit_replaces_the_connection(rig: Any) -> None:
    _server, client, clock = await rig(max_connection_age_s=100.0)
    await clock.advance(99.0)
    await asyncio.sleep(0.05)
    assert client.api.handovers == 0
    await until(lambda: client.api.handovers == 1, clock)
    assert client.gaps == []


async def test_connection_attempts_wait_within_the_limit() -> None:
    clock = FakeClock()
    limiter = ConnectLimiter(clock, limit=3, window_s=300.0)
    for _ in range(3):
        await limiter.acquire()
    fourth = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not fourth.done()
    await clock.advance(299.0)
    await asyncio.sleep(0.01)
    assert not fourth.done()
    await clock.advance(1.0)
    await asyncio.wait_for(fourth, 1)
    assert limiter.waited == 1
