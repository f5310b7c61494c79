"""Wire faults of the Binance simulator, each observed from a real client over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from botd.clock import FakeClock
from botd.venues.sim.binance import BinanceSimulator, StreamConfig
from botd.venues.sim.binance.faults import (
    Fault,
    FaultKind,
    FaultSpecError,
    Trigger,
    UserEventReorderer,
    WireFaultPlan,
)

D = Decimal
KEY, SECRET = "fault-key", "fault-secret"


@dataclass
class Env:
    sim: BinanceSimulator
    clock: FakeClock
    session: aiohttp.ClientSession
    base: str

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://")

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    async def request(
        self, method: str, path: str, *, signed: bool = False, wait: float = 2.0, **params: Any
    ) -> tuple[int, Any]:
        headers = {}
        if signed:
            params["timestamp"] = self.now_ms()
        query = urlencode(params)
        if signed:
            sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
            query += f"&signature={sig}"
            headers["X-MBX-APIKEY"] = KEY
        url = f"{self.base}{path}?{query}"
        timeout = aiohttp.ClientTimeout(total=wait)
        async with self.session.request(method, url, headers=headers, timeout=timeout) as resp:
            return resp.status, await resp.json()


@asynccontextmanager
async def make_env(
    faults: WireFaultPlan | str | None, config: StreamConfig | None = None
) -> AsyncIterator[Env]:
    plan = WireFaultPlan.parse(faults) if isinstance(faults, str) else faults
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=3,
        symbols=["BTCUSDT", "ETHUSDT"],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": D("100000"), "BTC": D("1")}},
        streams=config,
        faults=plan,
    )
    port = await sim.start()
    session = aiohttp.ClientSession()
    try:
        yield Env(sim, clock, session, f"http://127.0.0.1:{port}")
    finally:
        await sim.stop()
        await session.close()


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.3) -> list[Any]:
    out: list[Any] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet)
        except TimeoutError:
            return out
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return out
        out.append(json.loads(msg.data))


async def depth_events(env: Env, steps: int = 12) -> list[dict[str, Any]]:
    async with env.session.ws_connect(f"{env.ws}/ws/btcusdt@depth@100ms") as ws:
        for _ in range(steps):
            await env.clock.advance(0.1)
        return await drain(ws)


def gaps(events: list[dict[str, Any]]) -> list[int]:
    """Indexes ``i`` where event ``i`` does not continue event ``i - 1``."""
    return [i + 1 for i, (a, b) in enumerate(itertools.pairwise(events)) if b["U"] != a["u"] + 1]


# -- stream faults ----------------------------------------------------------------------------


async def test_depth_gap_is_detectable_from_u_and_U() -> None:
    async with make_env("depth_gap@n=3") as env:
        events = await depth_events(env)
        assert gaps(events) == [2]  # the third event never came
        assert events[2]["U"] > events[1]["u"] + 1
        assert env.sim.faults is not None
        assert [f.kind for f in env.sim.faults.fired] == [FaultKind.DEPTH_GAP]


async def test_depth_duplicate_arrives_twice() -> None:
    async with make_env("depth_dup@n=2") as env:
        events = await depth_events(env)
    assert events[1] == events[2]
    rest = [events[0], *events[2:]]
    assert gaps(rest) == []  # once the copy is dropped (u <= book id), the chain is whole
    assert events[3]["U"] == events[2]["u"] + 1


async def test_no_fault_plan_no_gap() -> None:
    async with make_env(None) as env:
        events = await depth_events(env)
    assert len(events) >= 10 and gaps(events) == []


async def test_drop_cuts_the_connection_without_a_close_frame() -> None:
    async with make_env("drop@n=3") as env:
        ws = await env.session.ws_connect(f"{env.ws}/ws/btcusdt@bookTicker")
        for _ in range(2):
            env.sim.step()
        got = await drain(ws)
        assert len(got) == 2
        for _ in range(3):
            env.sim.step()  # the first of these is the third message: it cuts the socket
        msg = await ws.receive(timeout=2)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)  # no CLOSE frame
        assert env.sim.streams.connections == 0
        await ws.close()


async def test_stall_keeps_the_socket_open_but_silent() -> None:
    cfg = StreamConfig(ping_interval=1.0, pong_timeout=3.0)
    async with (
        make_env("stall=5@n=3", cfg) as env,
        env.session.ws_connect(f"{env.ws}/ws/btcusdt@bookTicker", autoping=False) as ws,
    ):
        for _ in range(2):
            env.sim.step()
        first = await drain(ws)
        assert len(first) == 2
        for _ in range(8):  # 4 s: market steps, pings due every second, pong deadline 3 s
            await env.clock.advance(0.5)
            await asyncio.sleep(0.005)
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.2)  # nothing at all: no data, no ping, no close
        assert not ws.closed
        await env.clock.advance(1.5)  # the stall is over
        env.sim.step()
        msg = await ws.receive(timeout=2)
        while msg.type is aiohttp.WSMsgType.PING:
            msg = await ws.receive(timeout=2)
        after = json.loads(msg.data)
        assert after["u"] > first[-1]["u"] + 1  # what the stall swallowed is lost


async def test_shutdown_fault_announces_server_shutdown() -> None:
    async with (
        make_env("shutdown@n=2") as env,
        env.session.ws_connect(f"{env.ws}/stream?streams=btcusdt@bookTicker") as ws,
    ):
        env.sim.step()
        env.sim.step()
        events = await drain(ws)
        assert {
            "stream": "!serverShutdown",
            "data": {"e": "serverShutdown", "E": env.now_ms()},
        } in (events)
        await env.clock.advance(1.0)
        msg = await ws.receive(timeout=2)
        while msg.type is aiohttp.WSMsgType.TEXT:
            msg = await ws.receive(timeout=2)
        assert msg.type is aiohttp.WSMsgType.CLOSE


# -- REST faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "code", "msg"),
    [
        ("http500@n=1", 500, -1001, "Internal error; unable to process your request."),
        ("http503@n=1", 503, -1016, "This service is no longer available."),
    ],
)
async def test_http_5xx_has_binance_error_body(spec: str, status: int, code: int, msg: str) -> None:
    async with make_env(spec) as env:
        got, body = await env.request("GET", "/api/v3/time")
        assert (got, body["code"]) == (status, code)
        assert body["msg"].startswith(msg)
        assert (await env.request("GET", "/api/v3/time"))[0] == 200


async def test_5xx_after_processing_leaves_the_order_placed() -> None:
    async with make_env("http503=after@n=1&method=POST&path=/api/v3/order") as env:
        (status, _), _ = await asyncio.gather(env.request("GET", "/api/v3/ping"), asyncio.sleep(0))
        assert status == 200  # not the order path: untouched
        _, book = await env.request("GET", "/api/v3/depth", symbol="BTCUSDT", limit=5)
        price = str(D(book["bids"][0][0]) - D("50"))
        status, body = await env.request(
            "POST", "/api/v3/order", signed=True, symbol="BTCUSDT", side="BUY", type="LIMIT",
            timeInForce="GTC", quantity="0.001", price=price, newClientOrderId="after-503",
        )  # fmt: skip
        assert (status, body["code"]) == (503, -1016)
        status, order = await env.request(
            "GET", "/api/v3/order", signed=True, symbol="BTCUSDT", origClientOrderId="after-503"
        )
        assert status == 200 and order["status"] == "NEW"


@pytest.mark.parametrize("variant", ["timeout@n=1", "timeout=hang@n=1"])
async def test_timeout_after_accept_leaves_an_open_order(variant: str) -> None:
    async with make_env(variant) as env:
        _, book = await env.request("GET", "/api/v3/depth", symbol="BTCUSDT", limit=5)
        price = str(D(book["bids"][0][0]) - D("50"))
        expected = (aiohttp.ServerDisconnectedError, TimeoutError)
        with pytest.raises(expected):
            await env.request(
                "POST", "/api/v3/order", signed=True, wait=0.5, symbol="BTCUSDT", side="BUY",
                type="LIMIT", timeInForce="GTC", quantity="0.001", price=price,
                newClientOrderId="lost-answer",
            )  # fmt: skip
        status, order = await env.request(
            "GET", "/api/v3/order", signed=True, symbol="BTCUSDT", origClientOrderId="lost-answer"
        )
        assert status == 200 and order["status"] == "NEW" and D(order["price"]) == D(price)
        status, opened = await env.request(
            "GET", "/api/v3/openOrders", signed=True, symbol="BTCUSDT"
        )
        assert [o["clientOrderId"] for o in opened] == ["lost-answer"]
    # (stop() returned although a request was hanging)


async def test_timeout_only_once_and_only_on_orders() -> None:
    async with make_env("timeout@n=1") as env:
        assert (await env.request("GET", "/api/v3/time"))[0] == 200
        _, book = await env.request("GET", "/api/v3/depth", symbol="BTCUSDT", limit=5)
        price = str(D(book["bids"][0][0]) - D("50"))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await env.request(
                "POST", "/api/v3/order", signed=True, symbol="BTCUSDT", side="BUY",
                type="LIMIT", timeInForce="GTC", quantity="0.001", price=price,
            )  # fmt: skip
        status, _ = await env.request(
            "POST", "/api/v3/order", signed=True, symbol="BTCUSDT", side="BUY",
            type="LIMIT", timeInForce="GTC", quantity="0.001", price=price,
        )  # fmt: skip
        assert status == 200


async def test_skew_moves_server_time() -> None:
    async with make_env("skew=2500@t=0,skew=-3000@t=10") as env:
        _, body = await env.request("GET", "/api/v3/time")
        assert body["serverTime"] == env.now_ms() + 2500
        await env.clock.advance(10.0)
        _, body = await env.request("GET", "/api/v3/time")
        assert body["serverTime"] == env.now_ms() - 3000
        # A client on the true clock is now 3 s ahead of the server.
        status, err = await env.request("GET", "/api/v3/account", signed=True)
        assert (status, err["code"]) == (400, -1021)


# -- user data ----------------------------------------------------------------------------------


async def _user_events(spec: str | None) -> list[str]:
    """Event types a WS API user-data subscriber sees for one resting order placed over REST."""
    async with make_env(spec) as env:
        ws = await env.session.ws_connect(f"{env.ws}/ws-api/v3")
        params = {"apiKey": KEY, "timestamp": env.now_ms()}
        payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        sig = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        method = "userDataStream.subscribe.signature"
        await ws.send_json({"id": 1, "method": method, "params": {**params, "signature": sig}})
        assert json.loads(await ws.receive_str(timeout=2))["status"] == 200
        _, book = await env.request("GET", "/api/v3/depth", symbol="BTCUSDT", limit=5)
        for n in (1, 2):
            status, _ = await env.request(
                "POST", "/api/v3/order", signed=True, symbol="BTCUSDT", side="BUY",
                type="LIMIT", timeInForce="GTC", quantity="0.001",
                price=str(D(book["bids"][0][0]) - 10 * n),
            )  # fmt: skip
            assert status == 200
        kinds = []
        for _ in range(4):  # NEW + position, twice
            msg = json.loads(await ws.receive_str(timeout=2))
            kinds.append(f"{msg['event']['e']}:{msg['event'].get('x', '')}")
        await ws.close()
        return kinds


async def test_reorder_delivers_a_user_event_after_the_next_one() -> None:
    report, position = "executionReport:NEW", "outboundAccountPosition:"
    assert await _user_events(None) == [report, position, report, position]
    # The first order's NEW report comes after its position update; the last event of the
    # second order, held, still arrives (late, not lost).
    assert await _user_events("reorder@n=1") == [position, report, report, position]
    assert await _user_events("reorder@n=4") == [report, position, report, position]


# -- plans --------------------------------------------------------------------------------------


def _drive(plan: WireFaultPlan, events: int = 400) -> list[tuple[str, int]]:
    """Consult every site ``events`` times; what fired."""
    plan.bind(0)
    for i in range(events):
        plan.on_depth(i)
        plan.on_stream(i)
        plan.on_rest("POST" if i % 3 else "GET", "/api/v3/order", i)
        plan.on_user_event(i)
    return [(f.kind.value, f.event) for f in plan.fired]


def test_seeded_plans_are_deterministic() -> None:
    spec = "depth_gap~0.05,depth_dup~0.05,drop~0.01,http503~0.05,timeout~0.05,reorder~0.1"
    a = _drive(WireFaultPlan.parse(f"{spec},seed=11"))
    b = _drive(WireFaultPlan.parse(f"{spec},seed=11"))
    c = _drive(WireFaultPlan.parse(f"{spec},seed=12"))
    assert a == b
    assert a != c
    assert {k for k, _ in a} == {"depth_gap", "depth_dup", "drop", "http503", "timeout", "reorder"}


def test_one_sites_draws_do_not_depend_on_another() -> None:
    lone = WireFaultPlan.parse("depth_gap~0.1,seed=3")
    lone.bind(0)
    hits = [i for i in range(300) if lone.on_depth(i) is not None]
    busy = WireFaultPlan.parse("depth_gap~0.1,http500~0.5,seed=3")
    busy.bind(0)
    got = []
    for i in range(300):
        busy.on_rest("GET", "/api/v3/time", i)
        if busy.on_depth(i) is not None:
            got.append(i)
    assert hits == got and hits


async def test_seeded_plan_replays_identically_end_to_end() -> None:
    runs = []
    for _ in range(2):
        async with make_env("depth_gap~0.2,depth_dup~0.2,seed=9") as env:
            events = await depth_events(env, steps=30)
            runs.append([(e["U"], e["u"]) for e in events])
    assert runs[0] == runs[1]
    assert gaps([{"U": u0, "u": u1} for u0, u1 in runs[0]])  # some faults did fire


def test_scripted_triggers() -> None:
    plan = WireFaultPlan(
        [
            (Trigger(nth=2), Fault(FaultKind.DEPTH_GAP)),
            (Trigger(at_s=5.0), Fault(FaultKind.DEPTH_DUP)),
            (Trigger(nth=1, method="DELETE"), Fault(FaultKind.HTTP_500)),
        ]
    )
    plan.bind(1_000_000)
    assert plan.on_depth(1_000_000) is None
    assert plan.on_depth(1_000_100) == Fault(FaultKind.DEPTH_GAP)
    assert plan.on_depth(1_004_999) is None
    assert plan.on_depth(1_005_000) == Fault(FaultKind.DEPTH_DUP)
    assert plan.on_depth(1_006_000) is None  # each fires once
    assert plan.on_rest("GET", "/api/v3/order", 0) is None
    assert plan.on_rest("DELETE", "/api/v3/order", 0) == Fault(FaultKind.HTTP_500)
    # A timeout matches accepted-order paths only, unless told otherwise.
    t = WireFaultPlan([(Trigger(nth=1), Fault(FaultKind.TIMEOUT))])
    assert t.on_rest("GET", "/api/v3/time", 0) is None
    assert t.on_rest("POST", "/api/v3/order", 0) == Fault(FaultKind.TIMEOUT)


def test_reorder_swaps_an_event_with_the_next() -> None:
    plan = WireFaultPlan.parse("reorder@n=2")
    assert plan.reorder(["a", "b", "c", "d"], 0) == ["a", "c", "b", "d"]
    assert plan.reorder(["e", "f"], 0) == ["e", "f"]  # fired once only
    one = UserEventReorderer[str](WireFaultPlan.parse("reorder@n=1"), lambda: 0)
    assert one.push("x") == []
    assert one.push("y") == ["y", "x"]
    assert one.push("z") == ["z"]
    held = UserEventReorderer[str](WireFaultPlan.parse("reorder@n=1"), lambda: 0)
    assert held.push("only") == [] and held.flush() == ["only"] and held.flush() == []
    assert UserEventReorderer[str](None, lambda: 0).push("q") == ["q"]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nosuch@n=1", "unknown fault"),
        ("depth_gap@n=0", "bad trigger"),
        ("depth_gap@x=1", "bad trigger"),
        ("skew=abc", "milliseconds"),
        ("skew=100@n=2", "time trigger"),
        ("skew=5~0.5", "probability"),
        ("drop~2", "probability"),
        ("timeout=forever", "hang"),
        ("depth_dup=3", "takes no argument"),
        ("seed=x", "seed"),
    ],
)
def test_bad_specs_are_refused(spec: str, needle: str) -> None:
    with pytest.raises(FaultSpecError, match=needle):
        WireFaultPlan.parse(spec)


def test_spec_round_trip() -> None:
    plan = WireFaultPlan.parse(
        "seed=4, stall=2.5@t=30, timeout=hang@n=2&path=/api/v3/order&method=post, http500~0.25"
    )
    assert plan.seed == 4
    plan.bind(0)
    assert plan.on_stream(29_999) is None
    assert plan.on_stream(30_000) == Fault(FaultKind.STALL, seconds=2.5)
