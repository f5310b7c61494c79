"""The Binance simulator's aggTrade and kline streams and its connection rules, over loopback.

Every timer (pings, lifetimes, kline pushes, rate windows) runs on the fake clock, so the tests
move time explicitly; a real ``asyncio.sleep`` only lets frames cross the socket.
"""

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

D = Decimal
KEY, SECRET = "rules-key", "rules-secret"
KEY2, SECRET2 = "maker-key", "maker-secret"
MINUTE_MS = 60_000
# Three seconds before a minute starts, so a 1m kline closes early in a test.
START_NS = (1_700_000_040 - 3) * 1_000_000_000


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

    async def get(self, path: str, **params: Any) -> Any:
        async with self.session.get(f"{self.base}{path}?{urlencode(params)}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def signed(self, method: str, path: str, key: str = KEY, **params: Any) -> Any:
        secret = SECRET if key == KEY else SECRET2
        params["timestamp"] = self.now_ms()
        query = urlencode(params)
        sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        url = f"{self.base}{path}?{query}&signature={sig}"
        async with self.session.request(method, url, headers={"X-MBX-APIKEY": key}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


@asynccontextmanager
async def make_env(
    config: StreamConfig | None = None, step_rate: float = 10.0
) -> AsyncIterator[Env]:
    clock = FakeClock(START_NS)
    sim = BinanceSimulator(
        clock=clock,
        seed=5,
        symbols=["BTCUSDT", "ETHUSDT"],
        api_keys={KEY: SECRET, KEY2: SECRET2},
        balances={
            KEY: {"USDT": D("100000"), "BTC": D("1")},
            KEY2: {"USDT": D("100000"), "BTC": D("1")},
        },
        streams=config,
        step_rate=step_rate,
    )
    port = await sim.start()
    session = aiohttp.ClientSession()
    try:
        yield Env(sim, clock, session, f"http://127.0.0.1:{port}")
    finally:
        await sim.stop()
        await session.close()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with make_env() as e:
        yield e


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.3) -> list[Any]:
    out: list[Any] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet)
        except TimeoutError:
            return out
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))


async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """Read until the server ends the connection; that last message."""
    while True:
        msg = await ws.receive(timeout=2)
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING):
            return msg


# -- aggTrade ---------------------------------------------------------------------------------


async def test_agg_trade_groups_one_taker_order_per_price(env: Env) -> None:
    url = f"{env.ws}/stream?streams=btcusdt@trade/btcusdt@aggTrade"
    async with env.session.ws_connect(url) as ws:
        book = await env.get("/api/v3/depth", symbol="BTCUSDT", limit=5)
        (ask1, lp_qty), (ask2, _) = [(D(p), D(q)) for p, q in book["asks"][:2]]
        # A second account joins the best ask behind the liquidity provider's order.
        await env.signed(
            "POST", "/api/v3/order", key=KEY2, symbol="BTCUSDT", side="SELL", type="LIMIT",
            timeInForce="GTC", quantity="0.001", price=str(ask1),
        )  # fmt: skip
        qty = lp_qty + D("0.002")  # the whole first level, then 0.001 of the second
        body = await env.signed(
            "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
            quantity=str(qty),
        )  # fmt: skip
        events = await drain(ws)
    trades = [e["data"] for e in events if e["stream"] == "btcusdt@trade"]
    aggs = [e["data"] for e in events if e["stream"] == "btcusdt@aggTrade"]
    assert [t["t"] for t in trades] == [f["tradeId"] for f in body["fills"]]
    assert [D(t["p"]) for t in trades] == [ask1, ask1, ask2]
    assert len(aggs) == 2
    first, second = aggs
    for a in aggs:
        assert set(a) == {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
        assert a["e"] == "aggTrade" and a["s"] == "BTCUSDT" and a["m"] is False
    assert second["a"] == first["a"] + 1
    assert (D(first["p"]), first["f"], first["l"]) == (ask1, trades[0]["t"], trades[1]["t"])
    assert D(first["q"]) == lp_qty + D("0.001")
    assert (D(second["p"]), second["f"], second["l"]) == (ask2, trades[2]["t"], trades[2]["t"])
    assert D(second["q"]) == D("0.001")


async def test_agg_trades_partition_the_market_trades(env: Env) -> None:
    url = f"{env.ws}/stream?streams=ethusdt@trade/ethusdt@aggTrade"
    async with env.session.ws_connect(url) as ws:
        for _ in range(60):
            await env.clock.advance(0.1)
        events = await drain(ws)
    trades = [e["data"] for e in events if e["stream"] == "ethusdt@trade"]
    aggs = [e["data"] for e in events if e["stream"] == "ethusdt@aggTrade"]
    assert trades and aggs
    covered = [t for a in aggs for t in range(a["f"], a["l"] + 1)]
    assert covered == [t["t"] for t in trades]  # each trade in exactly one aggregate, in order
    by_id = {t["t"]: t for t in trades}
    for a in aggs:
        group = [by_id[i] for i in range(a["f"], a["l"] + 1)]
        assert {(g["p"], g["m"], g["T"]) for g in group} == {(a["p"], a["m"], a["T"])}
        assert D(a["q"]) == sum(D(g["q"]) for g in group)
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))


# -- klines -----------------------------------------------------------------------------------


def _fold(trades: list[dict[str, Any]]) -> dict[str, Any]:
    """What a kline says about ``trades`` (non-empty, in order)."""
    prices = [D(t["p"]) for t in trades]
    qtys = [D(t["q"]) for t in trades]
    taker_buys = [(D(t["p"]), D(t["q"])) for t in trades if not t["m"]]
    return {
        "o": prices[0],
        "c": prices[-1],
        "h": max(prices),
        "l": min(prices),
        "v": sum(qtys),
        "q": sum(p * q for p, q in zip(prices, qtys, strict=True)),
        "V": sum((q for _, q in taker_buys), D(0)),
        "Q": sum((p * q for p, q in taker_buys), D(0)),
        "n": len(trades),
        "f": trades[0]["t"],
        "L": trades[-1]["t"],
    }


def _kline_view(k: dict[str, Any]) -> dict[str, Any]:
    return {key: (D(k[key]) if key in "ochlvqVQ" else k[key]) for key in "ochlvqVQnfL"}


async def test_kline_stream_matches_trades_and_closes_with_a_final_bar(env: Env) -> None:
    url = f"{env.ws}/stream?streams=btcusdt@trade/btcusdt@kline_1m"
    async with env.session.ws_connect(url) as ws:
        for _ in range(60):  # 6 s, across the minute boundary 3 s in
            await env.clock.advance(0.1)
        events = await drain(ws)
        rest = await env.get("/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=2)
    boundary = (START_NS // 1_000_000 // MINUTE_MS + 1) * MINUTE_MS
    seen: list[dict[str, Any]] = []
    klines = []
    full_checks = 0
    for ev in events:
        data = ev["data"]
        if ev["stream"] == "btcusdt@trade":
            seen.append(data)
            continue
        k = data["k"]
        assert data["e"] == "kline" and data["s"] == k["s"] == "BTCUSDT" and k["i"] == "1m"
        assert set(k) == set("tTsifLochlvnxqVQB")
        assert k["T"] == k["t"] + MINUTE_MS - 1
        mine = [t for t in seen if k["t"] <= t["T"] <= k["T"]]
        view = _kline_view(k)
        if k["t"] >= boundary and not mine:
            # No trade yet in the new bar: it stands at the previous close.
            last = D(seen[-1]["p"])
            assert view == {**dict.fromkeys("ochl", last), **dict.fromkeys("vqVQ", D(0))} | {
                "n": 0,
                "f": -1,
                "L": -1,
            }
        elif k["t"] >= boundary:
            # A bar opened while subscribed is every trade of its minute sent before it.
            assert view == _fold(mine)
            full_checks += 1
        elif mine:
            # The first bar also holds trades from before the subscription.
            fold = _fold(mine)
            assert (view["c"], view["L"]) == (fold["c"], fold["L"])
            assert view["n"] >= fold["n"] and view["v"] >= fold["v"]
            assert view["h"] >= fold["h"] and view["l"] <= fold["l"]
        klines.append(data)
    assert full_checks >= 1
    finals = [d for d in klines if d["k"]["x"]]
    assert len(finals) == 1
    final = finals[0]
    assert final["k"]["T"] == boundary - 1 and final["E"] >= boundary
    opens = [d for d in klines if not d["k"]["x"]]
    assert all(d["E"] % 1000 == 0 for d in klines)  # pushed on the server's second ticks
    before = [d["E"] for d in opens if d["k"]["t"] < boundary]
    after = [d for d in opens if d["k"]["t"] == boundary]
    assert all(b - a >= 2000 for a, b in itertools.pairwise(before))
    assert after and after[0]["E"] == final["E"]  # the new bar follows the final one
    assert len(after) >= 2 and after[1]["E"] - after[0]["E"] == 2000
    # REST serves the same bars.
    closed_row, open_row = rest
    assert closed_row[0] == final["k"]["t"] and closed_row[6] == final["k"]["T"]
    fk = final["k"]
    assert closed_row[1:6] == [fk["o"], fk["h"], fk["l"], fk["c"], fk["v"]]
    assert closed_row[7:11] == [fk["q"], fk["n"], fk["V"], fk["Q"]]
    assert open_row[0] == boundary
    assert env.sim.klines.klines("BTCUSDT", "1m", now_ms=env.now_ms(), limit=2)[0].row() == (
        closed_row
    )


async def test_one_second_klines_push_every_second(env: Env) -> None:
    async with env.session.ws_connect(f"{env.ws}/ws/ethusdt@kline_1s") as ws:
        for _ in range(40):
            await env.clock.advance(0.1)
        events = await drain(ws)
    opens = [e for e in events if not e["k"]["x"]]
    finals = [e for e in events if e["k"]["x"]]
    assert [b["E"] - a["E"] for a, b in itertools.pairwise(opens)] == [1000] * (len(opens) - 1)
    assert len(opens) >= 3 and len(finals) >= 2
    for f in finals:
        assert f["k"]["T"] - f["k"]["t"] == 999 and f["E"] == f["k"]["T"] + 1


# -- connection rules -------------------------------------------------------------------------


async def test_connection_is_closed_at_24_hours() -> None:
    # Pings far apart and no pong deadline within the day; the lifetime is the real one.
    cfg = StreamConfig(ping_interval=3600.0, pong_timeout=200_000.0)
    async with make_env(cfg, step_rate=0.001) as env:
        async with env.session.ws_connect(f"{env.ws}/ws") as ws:
            reader = asyncio.create_task(until_closed(ws))
            for _ in range(23):
                await env.clock.advance(3600.0)
                await asyncio.sleep(0.01)
            await env.clock.advance(3599.0)
            await asyncio.sleep(0.05)
            assert not reader.done() and not ws.closed
            await env.clock.advance(1.0)
            msg = await asyncio.wait_for(reader, 2)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
        assert msg.extra == "connection lifetime exceeded"


async def _advance_in_steps(env: Env, seconds: float, step: float = 5.0) -> None:
    for _ in range(int(seconds / step)):
        await env.clock.advance(step)
        await asyncio.sleep(0.02)  # let pings and pongs cross the socket


@pytest.mark.parametrize("client", ["silent", "unsolicited_pongs"])
async def test_no_pong_for_a_minute_closes_the_connection(client: str) -> None:
    async with (
        make_env(step_rate=0.01) as env,
        env.session.ws_connect(f"{env.ws}/ws", autoping=False) as ws,
    ):
        pings = 0
        closed: aiohttp.WSMessage | None = None
        for _ in range(12):  # 60 s in 5 s steps
            if client == "unsolicited_pongs":
                await ws.pong(b"")  # allowed, but does not keep the connection
            await env.clock.advance(5.0)
            while True:
                try:
                    msg = await ws.receive(timeout=0.05)
                except TimeoutError:
                    break
                if msg.type is aiohttp.WSMsgType.PING:
                    pings += 1
                else:
                    closed = msg
                    break
            if closed is not None:
                break
        assert pings == 2  # at 20 s and 40 s; at 60 s the deadline came first
        assert closed is not None and closed.type is aiohttp.WSMsgType.CLOSE
        assert closed.extra == "pong timeout"
        assert env.now_ms() - START_NS // 1_000_000 == 60_000


async def test_a_client_answering_pings_stays_connected() -> None:
    async with (
        make_env(step_rate=0.01) as env,
        env.session.ws_connect(f"{env.ws}/ws") as ws,  # aiohttp answers pings
    ):
        reader = asyncio.create_task(until_closed(ws))
        await _advance_in_steps(env, 180.0)
        assert not reader.done()
        reader.cancel()


async def test_more_than_five_messages_a_second_disconnects(env: Env) -> None:
    async with env.session.ws_connect(f"{env.ws}/ws") as ws:
        for i in range(5):
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
        assert [m["id"] for m in await drain(ws)] == [0, 1, 2, 3, 4]
        await env.clock.advance(1.0)  # the window moves on
        for i in range(5, 10):
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 10})
        replies = []
        while (msg := await ws.receive(timeout=2)).type is aiohttp.WSMsgType.TEXT:
            replies.append(json.loads(msg.data)["id"])
        assert replies == [5, 6, 7, 8, 9]
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (aiohttp.WSCloseCode.POLICY_VIOLATION, "too many messages")


async def test_client_pings_count_towards_the_message_limit(env: Env) -> None:
    async with env.session.ws_connect(f"{env.ws}/ws", autoping=False) as ws:
        for _ in range(5):
            await ws.ping(b"x")
        kinds = [(await ws.receive(timeout=2)).type for _ in range(5)]
        assert kinds == [aiohttp.WSMsgType.PONG] * 5  # answered with the same payload
        await ws.ping(b"x")
        msg = await ws.receive(timeout=2)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.extra == "too many messages"


async def test_connection_attempts_are_limited_per_ip() -> None:
    async with make_env(StreamConfig(max_connects=3, connect_window=300.0), 0.01) as env:
        conns = [await env.session.ws_connect(f"{env.ws}/ws") for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await env.session.ws_connect(f"{env.ws}/ws")
        assert info.value.status == 429
        assert info.value.headers is not None and info.value.headers["Retry-After"] == "300"
        await env.clock.advance(299.0)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await env.session.ws_connect(f"{env.ws}/stream?streams=btcusdt@trade")
        await env.clock.advance(1.0)
        again = await env.session.ws_connect(f"{env.ws}/ws")
        for ws in [*conns, again]:
            await ws.close()


async def test_stream_count_per_connection_is_limited() -> None:
    async with make_env(StreamConfig(max_streams=2)) as env:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await env.session.ws_connect(
                f"{env.ws}/stream?streams=btcusdt@trade/btcusdt@aggTrade/btcusdt@kline_1m"
            )
        assert info.value.status == 400
        url = f"{env.ws}/stream?streams=btcusdt@trade/btcusdt@aggTrade"
        async with env.session.ws_connect(url) as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 1})
            reply = json.loads((await ws.receive(timeout=2)).data)
            assert reply["id"] == 1 and reply["error"]["code"] == 2


async def test_announced_shutdown_then_close_after_grace(env: Env) -> None:
    raw = await env.session.ws_connect(f"{env.ws}/ws")
    combined = await env.session.ws_connect(f"{env.ws}/stream?streams=ethusdt@depth5")
    await drain(combined)
    env.sim.streams.announce_shutdown()
    now = env.now_ms()
    assert json.loads((await raw.receive(timeout=2)).data) == {"e": "serverShutdown", "E": now}
    assert json.loads((await combined.receive(timeout=2)).data) == {
        "stream": "!serverShutdown",
        "data": {"e": "serverShutdown", "E": now},
    }
    await asyncio.sleep(0.05)
    assert not raw.closed  # the grace period runs on the clock
    await env.clock.advance(1.0)
    for ws in (raw, combined):
        msg = await until_closed(ws)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
    async with env.session.ws_connect(f"{env.ws}/ws/btcusdt@bookTicker") as fresh:
        env.sim.step()
        assert json.loads((await fresh.receive(timeout=2)).data)["s"] == "BTCUSDT"
