"""The Binance simulator's WS API connection rules and wire faults, seen from real aiohttp
websocket clients over loopback.

Every timer (pings, pong deadline, lifetime, shutdown grace, stalls, attempt windows) runs on the
fake clock, so the tests move time explicitly; a real ``asyncio.sleep`` only lets frames cross
the socket. The market steps rarely (``step_rate`` 0.01) so moving the clock stays cheap.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from botd.clock import FakeClock
from botd.venues.sim.binance import ApiKey, BinanceSimulator, StreamConfig
from botd.venues.sim.binance.faults import Fault, FaultKind, FaultSpecError, WireFaultPlan

D = Decimal
KEY, SECRET = "wsr-key", "wsr-secret"
KEY2, SECRET2 = "wsr-key-2", "wsr-secret-2"
ED_KEY = "wsr-ed"
ED_PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ED_PUBLIC_PEM = ED_PRIVATE.public_key().public_bytes(
    Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
)
START_NS = 1_700_000_000 * 1_000_000_000
WS = aiohttp.WSMsgType


def _payload(params: dict[str, Any]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


def hmac_sign(params: dict[str, Any], key: str = KEY, secret: str = SECRET) -> dict[str, Any]:
    out = {**params, "apiKey": key}
    sig = hmac.new(secret.encode(), _payload(out).encode(), hashlib.sha256).hexdigest()
    return {**out, "signature": sig}


def ed_sign(params: dict[str, Any]) -> dict[str, Any]:
    out = {**params, "apiKey": ED_KEY}
    return {**out, "signature": base64.b64encode(ED_PRIVATE.sign(_payload(out).encode())).decode()}


@dataclass
class Conn:
    ws: aiohttp.ClientWebSocketResponse
    clock: FakeClock
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def ts(self) -> int:
        return self.clock.time_ns() // 1_000_000

    async def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self.seq += 1
        req: dict[str, Any] = {"id": self.seq, "method": method}
        if params is not None:
            req["params"] = params
        await self.ws.send_str(json.dumps(req))
        return self.seq

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        req_id = await self.send(method, params)
        reply = await self.reply()
        assert reply["id"] == req_id, reply
        return reply

    async def signed(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.call(method, hmac_sign({**params, "timestamp": self.ts()}))

    async def reply(self, wait: float = 3.0) -> dict[str, Any]:
        """The next reply; events met on the way are kept in ``events``."""
        while True:
            msg: dict[str, Any] = json.loads(await self.ws.receive_str(timeout=wait))
            if "id" in msg:
                return msg
            self.events.append(msg)

    async def event(self, wait: float = 3.0) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        msg: dict[str, Any] = json.loads(await self.ws.receive_str(timeout=wait))
        assert "event" in msg, msg
        return msg

    async def silent(self, wait: float = 0.2) -> None:
        """Nothing at all arrives (no reply, event, ping or close) for ``wait`` real seconds."""
        try:
            msg = await self.ws.receive(timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"not silent: {msg}")


@dataclass
class Env:
    sim: BinanceSimulator
    clock: FakeClock
    session: aiohttp.ClientSession
    base: str

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://")

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    async def connect(self, *, autoping: bool = True) -> Conn:
        ws = await self.session.ws_connect(f"{self.ws_url}/ws-api/v3", autoping=autoping)
        await asyncio.sleep(0.02)  # the server has set the connection up (its clock starts)
        return Conn(ws, self.clock)

    async def rest(self, method: str, path: str, **params: Any) -> tuple[int, Any]:
        params["timestamp"] = self.now_ms()
        query = urlencode(params)
        sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        url = f"{self.base}{path}?{query}&signature={sig}"
        async with self.session.request(method, url, headers={"X-MBX-APIKEY": KEY}) as r:
            return r.status, await r.json()

    def order(self, cid: str) -> dict[str, Any]:
        """A resting BUY far enough below the market that it does not fill."""
        bid, _ = self.sim.engine.top_of_book("BTCUSDT")
        assert bid is not None
        return {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.001", "price": str(bid.price - D("50")), "newClientOrderId": cid,
        }  # fmt: skip

    async def open_ids(self) -> list[str]:
        status, body = await self.rest("GET", "/api/v3/openOrders", symbol="BTCUSDT")
        assert status == 200, body
        return [o["clientOrderId"] for o in body]


@asynccontextmanager
async def make_env(
    faults: str | None = None, config: StreamConfig | None = None
) -> AsyncIterator[Env]:
    clock = FakeClock(START_NS)
    sim = BinanceSimulator(
        clock=clock,
        seed=11,
        symbols=["BTCUSDT"],
        api_keys={KEY: SECRET, KEY2: SECRET2, ED_KEY: ApiKey.ed25519(ED_PUBLIC_PEM)},
        balances={KEY: {"USDT": D("100000"), "BTC": D("1")}},
        streams=config,
        step_rate=0.01,
        faults=WireFaultPlan.parse(faults) if faults is not None else None,
    )
    port = await sim.start()
    session = aiohttp.ClientSession()
    try:
        yield Env(sim, clock, session, f"http://127.0.0.1:{port}")
    finally:
        await sim.stop()
        await session.close()


async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """Read until the server ends the connection; that last message."""
    while True:
        msg = await ws.receive(timeout=3)
        if msg.type not in (WS.TEXT, WS.PING):
            return msg


# -- keepalive and lifetime -------------------------------------------------------------------


@pytest.mark.parametrize("client", ["silent", "unsolicited_pongs"])
async def test_no_pong_for_a_minute_closes_the_connection(client: str) -> None:
    async with make_env() as env:
        c = await env.connect(autoping=False)
        pings: list[int] = []
        closed: aiohttp.WSMessage | None = None
        for _ in range(12):  # 60 s in 5 s steps
            if client == "unsolicited_pongs":
                await c.ws.pong(b"")  # allowed, but it does not keep the connection
            await env.clock.advance(5.0)
            while closed is None:
                try:
                    msg = await c.ws.receive(timeout=0.05)
                except TimeoutError:
                    break
                if msg.type is WS.PING:
                    pings.append(int(msg.data))  # the payload: when it was sent (monotonic ms)
                else:
                    closed = msg
            if closed is not None:
                break
        assert pings == [20_000, 40_000]  # every 20 s; at 60 s the deadline came first
        assert closed is not None and closed.type is WS.CLOSE
        assert (closed.data, closed.extra) == (1008, "pong timeout")
        assert env.now_ms() - START_NS // 1_000_000 == 60_000
        assert env.sim.ws_api.connections == 0


async def test_a_client_answering_pings_stays_connected() -> None:
    async with make_env() as env:
        c = await env.connect(autoping=False)
        answered: list[int] = []

        async def answer(wait: float) -> None:
            while True:
                try:
                    msg = await c.ws.receive(timeout=wait)
                except TimeoutError:
                    return
                assert msg.type is WS.PING, msg
                await c.ws.pong(msg.data)
                answered.append(int(msg.data))

        for _ in range(36):  # 3 minutes in 5 s steps, answering each ping with its payload
            await env.clock.advance(5.0)
            await answer(0.03)
        await answer(0.3)
        assert answered == list(range(20_000, 180_001, 20_000))
        assert (await c.call("ping"))["status"] == 200  # still served
        assert env.sim.ws_api.connections == 1


async def test_connection_is_closed_at_24_hours() -> None:
    # Pings far apart and no pong deadline within the day; the lifetime is the real one.
    cfg = StreamConfig(heartbeat=3600.0, pong_timeout=200_000.0)
    async with make_env(config=cfg) as env:
        c = await env.connect()
        reader = asyncio.create_task(until_closed(c.ws))
        for _ in range(23):
            await env.clock.advance(3600.0)
            await asyncio.sleep(0.01)
        await env.clock.advance(3599.0)
        await asyncio.sleep(0.05)
        assert not reader.done() and not c.ws.closed
        await env.clock.advance(1.0)
        msg = await asyncio.wait_for(reader, 3)
        assert msg.type is WS.CLOSE
        assert (msg.data, msg.extra) == (1001, "connection lifetime exceeded")


async def test_client_pings_are_answered_and_not_rate_limited() -> None:
    # Binance documents no inbound message rate for the WS API (the streams' 5/s is theirs),
    # so a burst of frames is served in full; request weight is the only limit.
    async with make_env() as env:
        c = await env.connect(autoping=False)
        for _ in range(8):
            await c.ws.ping(b"p")
        kinds = [(await c.ws.receive(timeout=2)) for _ in range(8)]
        assert [(m.type, m.data) for m in kinds] == [(WS.PONG, b"p")] * 8
        ids = [await c.send("ping") for _ in range(12)]
        assert [(await c.reply())["id"] for _ in ids] == ids


async def test_connection_attempts_count_with_the_streams_per_ip() -> None:
    async with make_env(config=StreamConfig(max_connects=3, connect_window=300.0)) as env:
        stream = await env.session.ws_connect(f"{env.ws_url}/ws")
        apis = [await env.connect(), await env.connect()]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await env.connect()  # the fourth attempt of this IP, streams and WS API together
        assert info.value.status == 429
        assert info.value.headers is not None and info.value.headers["Retry-After"] == "300"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await env.session.ws_connect(f"{env.ws_url}/ws")
        await env.clock.advance(300.0)
        again = await env.connect()
        assert (await again.call("ping"))["status"] == 200
        for ws in (stream, again.ws, *(a.ws for a in apis)):
            await ws.close()


async def test_connecting_costs_two_weight() -> None:
    async with make_env() as env:
        c = await env.connect()
        reply = await c.call("time")
        used = reply["rateLimits"][-1]
        assert (used["rateLimitType"], used["count"]) == ("REQUEST_WEIGHT", 2 + 1)


# -- serverShutdown and eventStreamTerminated ------------------------------------------------


async def test_announced_shutdown_then_close_after_grace() -> None:
    async with make_env(config=StreamConfig(shutdown_grace=2.0)) as env:
        c = await env.connect()
        sub = await c.signed("userDataStream.subscribe.signature")
        assert sub["status"] == 200
        env.sim.ws_api.announce_shutdown()
        notice = json.loads(await c.ws.receive_str(timeout=2))
        assert notice == {"event": {"e": "serverShutdown", "E": env.now_ms()}}
        await env.clock.advance(1.0)
        assert (await c.call("ping"))["status"] == 200  # still served during the grace
        await env.clock.advance(1.0)
        msg = await until_closed(c.ws)
        assert (msg.type, msg.data, msg.extra) == (WS.CLOSE, 1001, "server shutdown")
        fresh = await env.connect()  # new connections are still accepted
        assert (await fresh.call("ping"))["status"] == 200
        await fresh.ws.close()


async def test_stopping_the_simulator_sends_server_shutdown() -> None:
    async with make_env() as env:
        c = await env.connect()
        assert (await c.call("ping"))["status"] == 200
        stopped_at = env.now_ms()
        stopping = asyncio.create_task(env.sim.stop())
        notice = json.loads(await c.ws.receive_str(timeout=3))
        assert notice == {"event": {"e": "serverShutdown", "E": stopped_at}}
        msg = await until_closed(c.ws)
        assert (msg.type, msg.data) == (WS.CLOSE, 1001)
        await stopping


async def test_logout_and_unsubscribe_end_subscriptions_with_event_stream_terminated() -> None:
    async with make_env() as env:
        c = await env.connect()
        assert (await c.call("session.logon", ed_sign({"timestamp": c.ts()})))["status"] == 200
        assert (await c.call("userDataStream.subscribe"))["result"] == {"subscriptionId": 0}
        other = await c.signed("userDataStream.subscribe.signature")
        assert other["result"] == {"subscriptionId": 1}
        r = await c.call("session.logout")
        assert r["result"]["userDataStream"] is True  # the signature subscription stays
        ended = await c.event()
        assert ended == {
            "subscriptionId": 0,
            "event": {"e": "eventStreamTerminated", "E": c.ts()},
        }
        assert (await c.call("session.subscriptions"))["result"] == [{"subscriptionId": 1}]
        assert c.events == []  # one subscription ended, one event
        await env.clock.advance(1.0)
        assert (await c.call("userDataStream.unsubscribe"))["result"] == {}
        assert await c.event() == {
            "subscriptionId": 1,
            "event": {"e": "eventStreamTerminated", "E": c.ts()},
        }
        # Nothing left to end: no event for unsubscribing an unknown subscription.
        assert (await c.call("userDataStream.unsubscribe", {"subscriptionId": 1}))["status"] == 200
        assert (await c.call("ping"))["status"] == 200
        assert c.events == []
        await c.ws.close()


# -- faults on WS API requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "code", "msg"),
    [
        ("http500@method=order.place", 500, -1001, "Internal error; unable to process"),
        ("http503@method=v3/order.place", 503, -1016, "This service is no longer available."),
    ],
)
async def test_5xx_reply_before_processing(spec: str, status: int, code: int, msg: str) -> None:
    async with make_env(spec) as env:
        # A REST order and other WS API methods do not count for a WS API trigger.
        assert (await env.rest("POST", "/api/v3/order", **env.order("rest-1")))[0] == 200
        c = await env.connect()
        assert (await c.call("ping"))["status"] == 200
        r = await c.signed("order.place", **env.order("ws-1"))
        assert (r["status"], r["error"]["code"]) == (status, code)
        assert r["error"]["msg"].startswith(msg)
        assert "result" not in r and r["rateLimits"]
        assert await env.open_ids() == ["rest-1"]  # refused before anything happened
        r = await c.signed("order.place", **env.order("ws-2"))
        assert r["status"] == 200  # fired once
        assert env.sim.faults is not None
        assert [(f.kind, f.site) for f in env.sim.faults.fired] == [
            (FaultKind(spec.partition("@")[0]), "wsapi")
        ]


async def test_5xx_after_processing_leaves_the_order_placed() -> None:
    async with make_env("http503=after@n=1&method=order.place") as env:
        c = await env.connect()
        await c.signed("userDataStream.subscribe.signature")
        r = await c.signed("order.place", **env.order("after-503"))
        assert (r["status"], r["error"]["code"]) == (503, -1016)
        assert await env.open_ids() == ["after-503"]
        new = await c.event()  # the event stream tells the truth the reply did not
        assert (new["event"]["e"], new["event"]["c"], new["event"]["X"]) == (
            "executionReport", "after-503", "NEW"
        )  # fmt: skip


async def test_timeout_places_the_order_then_cuts_the_connection() -> None:
    async with make_env("timeout@path=/ws-api/v3") as env:
        c = await env.connect()
        assert (await c.call("ping"))["status"] == 200  # timeout takes order.place only
        assert (await c.signed("order.status", symbol="BTCUSDT", orderId=1))["status"] == 400
        await c.send("order.place", hmac_sign({**env.order("lost"), "timestamp": c.ts()}))
        msg = await c.ws.receive(timeout=3)
        assert msg.type in (WS.CLOSED, WS.ERROR)  # no reply and no close frame
        assert await env.open_ids() == ["lost"]
        fresh = await env.connect()
        r = await fresh.signed("order.status", symbol="BTCUSDT", origClientOrderId="lost")
        assert r["result"]["status"] == "NEW"
        await fresh.ws.close()


async def test_timeout_hang_keeps_the_socket_open_without_a_reply() -> None:
    async with make_env("timeout=hang@n=1&method=order.place") as env:
        c = await env.connect()
        lost = await c.send("order.place", hmac_sign({**env.order("held"), "timestamp": c.ts()}))
        r = await c.call("ping")  # the next request is answered; the lost one never is
        assert r["status"] == 200 and r["id"] == lost + 1
        await c.silent()
        assert not c.ws.closed
        assert await env.open_ids() == ["held"]


async def test_timeout_on_a_named_method() -> None:
    async with make_env("timeout=hang@method=order.cancel") as env:
        c = await env.connect()
        assert (await c.signed("order.place", **env.order("c1")))["status"] == 200
        await c.send(
            "order.cancel",
            hmac_sign({"symbol": "BTCUSDT", "origClientOrderId": "c1", "timestamp": c.ts()}),
        )
        await c.silent()
        assert await env.open_ids() == []  # cancelled, though nobody was told


async def test_drop_cuts_the_connection_before_the_request_is_processed() -> None:
    async with make_env("drop@n=2&method=order.place") as env:
        c = await env.connect()
        assert (await c.signed("order.place", **env.order("first")))["status"] == 200
        await c.send("order.place", hmac_sign({**env.order("second"), "timestamp": c.ts()}))
        msg = await c.ws.receive(timeout=3)
        assert msg.type in (WS.CLOSED, WS.ERROR)  # cut: no close frame, no reply
        assert env.sim.ws_api.connections == 0
        assert await env.open_ids() == ["first"]  # the request never reached the venue


async def test_stall_leaves_the_connection_open_and_silent() -> None:
    cfg = StreamConfig(heartbeat=1.0, pong_timeout=3.0)
    async with make_env("stall=5@method=order.place", cfg) as env:
        c = await env.connect(autoping=False)
        await c.signed("userDataStream.subscribe.signature")
        await c.send("order.place", hmac_sign({**env.order("stalled"), "timestamp": c.ts()}))
        swallowed = await c.send("ping")  # ignored too: nothing moves
        await asyncio.sleep(0.05)  # both have reached the server
        env.sim.deposit(KEY, "USDT", D("5"))  # an event the stall swallows
        for _ in range(8):  # 4 s: pings would be due every second, the pong deadline is 3 s
            await env.clock.advance(0.5)
            await asyncio.sleep(0.005)
        await c.silent()  # no reply, no event, no ping, no close
        assert not c.ws.closed and env.sim.ws_api.connections == 1
        await env.clock.advance(1.0)  # the stall is over: pings resume
        msg = await c.ws.receive(timeout=2)
        assert msg.type is WS.PING
        await c.ws.pong(msg.data)
        r = await c.call("ping")
        assert r["id"] == swallowed + 1
        assert await env.open_ids() == []  # the stalled request was never processed
        assert c.events == []  # the deposit's events are lost, not late


async def test_shutdown_fault_on_a_request_announces_server_shutdown() -> None:
    async with make_env("shutdown@method=order.place") as env:
        c = await env.connect()
        r = await c.signed("order.place", **env.order("before-shutdown"))
        assert r["status"] == 200  # the request itself is served
        assert c.events == [{"event": {"e": "serverShutdown", "E": env.now_ms()}}]
        await env.clock.advance(1.0)
        msg = await until_closed(c.ws)
        assert (msg.type, msg.data) == (WS.CLOSE, 1001)


async def test_rest_faults_leave_the_ws_api_alone() -> None:
    async with make_env("http503@n=1,timeout@n=1") as env:
        c = await env.connect()
        assert (await c.call("ping"))["status"] == 200
        assert (await c.signed("order.place", **env.order("ws-ok")))["status"] == 200
        assert (await env.rest("GET", "/api/v3/openOrders", symbol="BTCUSDT"))[0] == 503


async def test_seeded_ws_api_faults_fire_on_their_method_only() -> None:
    async with make_env("http503~1@method=order.cancel") as env:
        c = await env.connect()
        assert (await c.signed("order.place", **env.order("s1")))["status"] == 200
        r = await c.signed("order.cancel", symbol="BTCUSDT", origClientOrderId="s1")
        assert (r["status"], r["error"]["code"]) == (503, -1016)
        assert (await env.rest("DELETE", "/api/v3/order", symbol="BTCUSDT",
                               origClientOrderId="s1"))[0] == 200  # fmt: skip


# -- reorder on WS API delivery ---------------------------------------------------------------


async def _ws_user_events(spec: str | None) -> list[str]:
    """Event kinds a WS API subscriber sees for two resting orders placed over the WS API."""
    async with make_env(spec) as env:
        c = await env.connect()
        await c.signed("userDataStream.subscribe.signature")
        for n in (1, 2):
            assert (await c.signed("order.place", **env.order(f"r{n}")))["status"] == 200
        kinds = []
        for _ in range(4):  # NEW + position, twice
            e = (await c.event())["event"]
            kinds.append(f"{e['e']}:{e.get('c', '')}")
        await c.silent(0.1)
        return kinds


async def test_reorder_applies_to_ws_api_delivery() -> None:
    new1, new2 = "executionReport:r1", "executionReport:r2"
    pos = "outboundAccountPosition:"
    assert await _ws_user_events(None) == [new1, pos, new2, pos]
    assert await _ws_user_events("reorder@n=1") == [pos, new1, new2, pos]
    # The second order's NEW is held back behind its position update.
    assert await _ws_user_events("reorder@n=3") == [new1, pos, pos, new2]
    # A held event with nothing after it in its operation goes out at the end of that turn:
    # late, never lost (and here, with nothing to overtake it, in its place).
    assert await _ws_user_events("reorder@n=2") == [new1, pos, new2, pos]


# -- spec syntax ------------------------------------------------------------------------------


def test_ws_api_triggers_go_to_their_own_site() -> None:
    plan = WireFaultPlan.parse("timeout@method=order.place,http500@n=2&method=post")
    plan.bind(0)
    assert plan.on_rest("POST", "/api/v3/order", 0) is None  # n=2 not yet; timeout is WS API
    assert plan.on_ws_api("order.place", 0) == Fault(FaultKind.TIMEOUT)
    assert plan.on_rest("POST", "/api/v3/order", 0) == Fault(FaultKind.HTTP_500)
    assert [f.site for f in plan.fired] == ["wsapi", "rest"]
    every = WireFaultPlan.parse("drop@n=2&path=/ws-api/v3")
    assert every.on_ws_api("time", 0) is None
    assert every.on_ws_api("depth", 0) == Fault(FaultKind.DROP)
    stream = WireFaultPlan.parse("drop@n=1")  # no WS API trigger: still a stream fault
    assert stream.on_ws_api("order.place", 0) is None
    assert stream.on_stream(0) == Fault(FaultKind.DROP)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("depth_gap@method=order.place", "cannot be triggered by a WS API request"),
        ("reorder@path=/ws-api/v3", "cannot be triggered by a WS API request"),
        ("http503~0.5@n=3", "filter takes method=M, path=P only"),
        ("http503~0.5@t=3", "filter takes method=M, path=P only"),
        ("http503~0.5@method=", "bad trigger"),
    ],
)
def test_bad_ws_api_specs_are_refused(spec: str, needle: str) -> None:
    with pytest.raises(FaultSpecError, match=needle):
        WireFaultPlan.parse(spec)
