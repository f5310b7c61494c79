"""The Binance simulator's market-data WebSocket streams, over loopback with aiohttp.

The market only moves when a test steps it (``sim.step()`` or advancing the fake clock), so
every event a test waits for has already been queued when it starts reading.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from botd.clock import FakeClock
from botd.venues.sim.binance import BinanceSimulator, StreamConfig

D = Decimal
KEY = "stream-key"
SECRET = "stream-secret"


@dataclass
class Env:
    sim: BinanceSimulator
    clock: FakeClock
    session: aiohttp.ClientSession
    base: str

    @property
    def ws_base(self) -> str:
        return self.base.replace("http://", "ws://")

    async def get(self, path: str, **params: Any) -> Any:
        async with self.session.get(f"{self.base}{path}?{urlencode(params)}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def signed(self, method: str, path: str, **params: Any) -> Any:
        params["timestamp"] = self.clock.time_ns() // 1_000_000
        query = urlencode(params)
        sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        url = f"{self.base}{path}?{query}&signature={sig}"
        async with self.session.request(method, url, headers={"X-MBX-APIKEY": KEY}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def _env(config: StreamConfig | None = None) -> tuple[Env, aiohttp.ClientSession]:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=11,
        symbols=["BTCUSDT", "ETHUSDT"],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": D("100000"), "BTC": D("1")}},
        streams=config,
    )
    port = await sim.start()
    session = aiohttp.ClientSession()
    return Env(sim, clock, session, f"http://127.0.0.1:{port}"), session


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e, session = await _env()
    try:
        yield e
    finally:
        await e.sim.stop()
        await session.close()


@pytest.fixture
async def chatty_env() -> AsyncIterator[Env]:
    """The venue closes a connection sending over 5 messages a second; a test sending more
    than that within one instant of the fake clock gets a higher limit."""
    e, session = await _env(StreamConfig(max_messages_per_s=100))
    try:
        yield e
    finally:
        await e.sim.stop()
        await session.close()


async def _recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive(timeout=2.0)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def _drain(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.2) -> list[Any]:
    """Every message until none has come for ``quiet`` seconds."""
    out = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet)
        except TimeoutError:
            return out
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))


async def test_raw_book_ticker(env: Env) -> None:
    async with env.session.ws_connect(f"{env.ws_base}/ws/btcusdt@bookTicker") as ws:
        for _ in range(5):
            await env.clock.advance(0.1)  # one market step each
        events = [await _recv(ws) for _ in range(5)]
    last_u = 0
    for ev in events:
        assert set(ev) == {"u", "s", "b", "B", "a", "A"}  # no e/E on bookTicker
        assert ev["s"] == "BTCUSDT"
        assert D(ev["b"]) < D(ev["a"])
        assert D(ev["B"]) > 0 and D(ev["A"]) > 0
        assert ev["u"] > last_u
        last_u = ev["u"]
    book = await env.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT")
    assert (book["bidPrice"], book["askPrice"]) == (events[-1]["b"], events[-1]["a"])


async def test_combined_stream_envelope(env: Env) -> None:
    url = f"{env.ws_base}/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    async with env.session.ws_connect(url) as ws:
        env.sim.step()
        events = [await _recv(ws) for _ in range(2)]
    assert [set(ev) for ev in events] == [{"stream", "data"}] * 2
    by_stream = {ev["stream"]: ev["data"] for ev in events}
    assert by_stream["btcusdt@bookTicker"]["s"] == "BTCUSDT"
    assert by_stream["ethusdt@bookTicker"]["s"] == "ETHUSDT"


async def test_live_subscribe_list_unsubscribe_and_errors(chatty_env: Env) -> None:
    env = chatty_env
    async with env.session.ws_connect(f"{env.ws_base}/ws") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1})
        assert await _recv(ws) == {"result": None, "id": 1}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        assert await _recv(ws) == {"result": ["btcusdt@bookTicker"], "id": 2}
        env.sim.step()
        ev = await _recv(ws)
        assert ev["s"] == "BTCUSDT" and "u" in ev  # raw on /ws

        await ws.send_json({"method": "GET_PROPERTY", "params": ["combined"], "id": "abc"})
        assert await _recv(ws) == {"result": False, "id": "abc"}
        await ws.send_json({"method": "SET_PROPERTY", "params": ["combined", True], "id": 3})
        assert await _recv(ws) == {"result": None, "id": 3}
        env.sim.step()
        ev = await _recv(ws)
        assert ev["stream"] == "btcusdt@bookTicker"

        await ws.send_json({"method": "SUBSCRIBE", "params": ["xxxusdt@trade"], "id": 4})
        err = await _recv(ws)
        assert err["id"] == 4 and err["error"]["code"] == 2
        await ws.send_json({"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 5})
        assert (await _recv(ws))["error"]["code"] == 2  # stream names are lowercase
        await ws.send_json({"method": "FROB", "params": [], "id": 6})
        err = await _recv(ws)
        assert err["id"] == 6 and err["error"]["code"] == 2
        assert "unknown variant" in err["error"]["msg"]
        await ws.send_str("{not json")
        assert (await _recv(ws))["error"]["code"] == 3

        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 7})
        assert await _recv(ws) == {"result": None, "id": 7}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 8})
        assert await _recv(ws) == {"result": [], "id": 8}
        env.sim.step()
        assert await _drain(ws) == []


async def test_unknown_stream_in_url_is_refused(env: Env) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await env.session.ws_connect(f"{env.ws_base}/ws/nosuch@bookTicker")
    assert info.value.status == 400


def _apply(book: dict[D, D], levels: list[list[str]]) -> None:
    for price, qty in levels:
        if D(qty) == 0:
            book.pop(D(price), None)
        else:
            book[D(price)] = D(qty)


@pytest.mark.parametrize("stream", ["btcusdt@depth", "btcusdt@depth@100ms"])
async def test_depth_diff_sync_matches_rest(env: Env, stream: str) -> None:
    async with env.session.ws_connect(f"{env.ws_base}/ws/{stream}") as ws:
        for _ in range(3):
            await env.clock.advance(0.1)
        snap = await env.get("/api/v3/depth", symbol="BTCUSDT", limit=5000)
        for _ in range(3):
            await env.clock.advance(0.1)
        # A resting order and its cancel move the update id from REST requests too.
        bid = D(snap["bids"][0][0])
        placed = await env.signed(
            "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
            timeInForce="GTC", quantity="0.01", price=str(bid - D("5")),
        )  # fmt: skip
        await env.clock.advance(0.1)
        await env.signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=placed["orderId"])
        await env.clock.advance(0.1)
        final = await env.get("/api/v3/depth", symbol="BTCUSDT", limit=5000)
        events = await _drain(ws)

    assert all(ev["e"] == "depthUpdate" and ev["s"] == "BTCUSDT" for ev in events)
    first_u = events[0]["U"]
    assert snap["lastUpdateId"] >= first_u  # step 3 of the documented procedure
    for prev, nxt in itertools.pairwise(events):
        assert nxt["U"] == prev["u"] + 1  # no gaps
    bids = {D(p): D(q) for p, q in snap["bids"]}
    asks = {D(p): D(q) for p, q in snap["asks"]}
    book_id = snap["lastUpdateId"]
    pending = [ev for ev in events if ev["u"] > book_id]  # step 4
    assert pending[0]["U"] <= book_id + 1 <= pending[0]["u"]
    for ev in pending:
        assert ev["U"] <= book_id + 1, "missed events"
        _apply(bids, ev["b"])
        _apply(asks, ev["a"])
        book_id = ev["u"]
    assert book_id <= final["lastUpdateId"]
    assert sorted(bids.items(), reverse=True) == [(D(p), D(q)) for p, q in final["bids"]]
    assert sorted(asks.items()) == [(D(p), D(q)) for p, q in final["asks"]]
    assert max(bids) < min(asks)


async def test_partial_depth_stream(env: Env) -> None:
    async with env.session.ws_connect(f"{env.ws_base}/ws/btcusdt@depth5") as ws:
        env.sim.step()
        ev = await _recv(ws)
        rest = await env.get("/api/v3/depth", symbol="BTCUSDT", limit=5)
    assert ev == rest


async def test_trade_events_match_my_trades(env: Env) -> None:
    async with env.session.ws_connect(f"{env.ws_base}/ws/btcusdt@trade") as ws:
        body = await env.signed(
            "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
            quantity="0.003",
        )  # fmt: skip
        mine = await env.signed("GET", "/api/v3/myTrades", symbol="BTCUSDT")
        events = await _drain(ws)
    fills = body["fills"]
    assert fills
    assert [ev["t"] for ev in events] == [f["tradeId"] for f in fills]
    assert [ev["t"] for ev in events] == [t["id"] for t in mine]
    for ev, t in zip(events, mine, strict=True):
        assert set(ev) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
        assert ev["e"] == "trade" and ev["s"] == "BTCUSDT"
        assert (ev["p"], ev["q"]) == (t["price"], t["qty"])
        assert ev["T"] == t["time"]
        assert ev["m"] is False  # the buyer took liquidity


async def test_slow_consumer_is_disconnected() -> None:
    e, session = await _env(StreamConfig(queue_size=3))
    try:
        async with session.ws_connect(f"{e.ws_base}/ws/btcusdt@bookTicker") as ws:
            for _ in range(10):
                e.sim.step()  # no yield: the writer cannot drain the queue in between
            kinds = []
            while True:
                msg = await ws.receive(timeout=2)
                kinds.append(msg.type)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
            assert kinds[-1] is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert msg.extra == "slow consumer"
        # The engine kept going and a new connection is served.
        e.sim.step()
        async with session.ws_connect(f"{e.ws_base}/ws/btcusdt@bookTicker") as ws2:
            e.sim.step()
            assert (await _recv(ws2))["s"] == "BTCUSDT"
    finally:
        await e.sim.stop()
        await session.close()


async def test_server_sends_ping_frames() -> None:
    e, session = await _env(StreamConfig(ping_interval=20.0))
    try:
        async with session.ws_connect(f"{e.ws_base}/ws/ethusdt@depth5", autoping=False) as ws:
            await e.clock.advance(20.0)  # the clock the server pings on
            while (msg := await ws.receive(timeout=2)).type is aiohttp.WSMsgType.TEXT:
                pass
            assert msg.type is aiohttp.WSMsgType.PING
            await ws.pong(msg.data)
    finally:
        await e.sim.stop()
        await session.close()


async def test_stop_closes_open_streams() -> None:
    e, session = await _env()
    try:
        ws = await session.ws_connect(f"{e.ws_base}/ws/btcusdt@bookTicker")
        await asyncio.wait_for(e.sim.stop(), 5)
        notice = await _recv(ws)  # a planned shutdown is announced first
        assert notice == {"e": "serverShutdown", "E": e.clock.time_ns() // 1_000_000}
        msg = await ws.receive(timeout=2)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await ws.close()
    finally:
        await session.close()
