"""Market-data streams and trade_updates of the Alpaca simulator, over real WebSockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgpack  # type: ignore[import-untyped]
import pytest

from botd.venues.sim.alpaca import DataStreamConfig

Make = Callable[..., Awaitable[Any]]
WEEKDAY = "2026-11-24T10:00:00"
SATURDAY = "2026-11-21T12:00:00"
AUTH = {"action": "auth", "key": "test-key-1", "secret": "test-secret-1"}


async def recv_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def recv_pack(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.BINARY, msg
    return msgpack.unpackb(msg.data)


async def open_stream(h: Any, path: str, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
    ws: aiohttp.ClientWebSocketResponse = await h.ws(path, **kwargs)
    assert await recv_json(ws) == [{"T": "success", "msg": "connected"}]
    return ws


async def until(ws: aiohttp.ClientWebSocketResponse, h: Any, wanted: set[str]) -> dict[str, Any]:
    """Step the market until a message of each type in ``wanted`` arrived; the first of each."""
    seen: dict[str, Any] = {}
    for _ in range(400):
        await h.advance(0.1)
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.01)
            except TimeoutError:
                break
            batch = (
                json.loads(msg.data)
                if msg.type is aiohttp.WSMsgType.TEXT
                else msgpack.unpackb(msg.data, timestamp=3)
            )
            for item in batch:
                seen.setdefault(item["T"], item)
        if wanted <= set(seen):
            return seen
    raise AssertionError(f"only saw {sorted(seen)}")


async def test_auth_errors_and_subscriptions_list_the_full_set(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    ws = await open_stream(h, "/v2/iex")
    await ws.send_json({"action": "subscribe", "trades": ["AAPL"]})
    assert await recv_json(ws) == [{"T": "error", "code": 401, "msg": "not authenticated"}]
    await ws.send_str("{oops")
    assert await recv_json(ws) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
    await ws.send_json(AUTH)
    assert await recv_json(ws) == [{"T": "success", "msg": "authenticated"}]
    await ws.send_json(AUTH)
    assert await recv_json(ws) == [{"T": "error", "code": 403, "msg": "already authenticated"}]
    await ws.send_json({"action": "subscribe", "trades": ["AAPL"], "quotes": ["MSFT"]})
    first = (await recv_json(ws))[0]
    assert first["T"] == "subscription"
    assert first["trades"] == ["AAPL"]
    assert first["quotes"] == ["MSFT"]
    await ws.send_json({"action": "subscribe", "bars": ["*"], "trades": ["SPY"]})
    second = (await recv_json(ws))[0]
    assert second["trades"] == ["AAPL", "SPY"]
    assert second["quotes"] == ["MSFT"]
    assert second["bars"] == ["*"]
    await ws.send_json({"action": "unsubscribe", "trades": ["AAPL"]})
    third = (await recv_json(ws))[0]
    assert third["trades"] == ["SPY"]
    assert third["bars"] == ["*"]


async def test_bad_keys_get_402_and_the_socket_closes(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    ws = await open_stream(h, "/v2/iex")
    await ws.send_json({"action": "auth", "key": "test-key-1", "secret": "nope"})
    assert await recv_json(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_auth_timeout_on_the_injected_clock(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    ws = await open_stream(h, "/v2/sip")
    await h.clock.advance(9)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.receive(), 0.05)
    await h.clock.advance(2)
    assert await recv_json(ws) == [{"T": "error", "code": 404, "msg": "auth timeout"}]


async def test_one_connection_per_feed_and_sip_entitlement(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY, streams=DataStreamConfig(sip_keys=frozenset({"test-key-2"})))
    first = await open_stream(h, "/v2/iex")
    await first.send_json(AUTH)
    assert (await recv_json(first))[0]["msg"] == "authenticated"
    second = await open_stream(h, "/v2/iex")
    await second.send_json(AUTH)
    assert await recv_json(second) == [
        {"T": "error", "code": 406, "msg": "connection limit exceeded"}
    ]
    sip = await open_stream(h, "/v2/sip")
    await sip.send_json(AUTH)
    assert await recv_json(sip) == [{"T": "error", "code": 409, "msg": "insufficient subscription"}]
    # Another feed is another connection slot.
    crypto = await open_stream(h, "/v1beta3/crypto/us")
    await crypto.send_json(AUTH)
    assert (await recv_json(crypto))[0]["msg"] == "authenticated"


async def test_symbol_limit(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY, streams=DataStreamConfig(symbol_limit=2))
    ws = await open_stream(h, "/v2/iex")
    await ws.send_json(AUTH)
    await recv_json(ws)
    await ws.send_json({"action": "subscribe", "trades": ["AAPL", "MSFT", "SPY"]})
    assert await recv_json(ws) == [{"T": "error", "code": 405, "msg": "symbol limit exceeded"}]


async def test_stock_trades_quotes_and_bars_in_json(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T10:00:50")
    ws = await open_stream(h, "/v2/iex")
    await ws.send_json(AUTH)
    await recv_json(ws)
    await ws.send_json(
        {"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL"], "bars": ["AAPL"]}
    )
    await recv_json(ws)
    seen = await until(ws, h, {"t", "q", "b"})
    trade, quote, bar = seen["t"], seen["q"], seen["b"]
    assert trade["S"] == "AAPL"
    assert isinstance(trade["p"], float)
    assert isinstance(trade["i"], int)
    assert trade["t"].startswith("2026-11-24T15:0")
    assert trade["t"].endswith("Z")
    assert quote["bp"] < quote["ap"]
    assert bar["t"] == "2026-11-24T15:00:00.000000000Z"
    assert bar["l"] <= bar["o"] <= bar["h"]
    assert bar["n"] >= 1


async def test_msgpack_when_the_client_asks_for_it(alpaca: Make) -> None:
    h = await alpaca(SATURDAY)
    ws = await h.ws("/v2/test", headers={"Content-Type": "application/msgpack"})
    assert await recv_pack(ws) == [{"T": "success", "msg": "connected"}]
    await ws.send_bytes(msgpack.packb(AUTH))
    assert await recv_pack(ws) == [{"T": "success", "msg": "authenticated"}]
    await ws.send_bytes(msgpack.packb({"action": "subscribe", "trades": ["FAKEPACA"]}))
    assert (await recv_pack(ws))[0]["trades"] == ["FAKEPACA"]
    # The test feed is always on, even on a Saturday.
    for _ in range(200):
        await h.advance(0.1)
        try:
            msg = await asyncio.wait_for(ws.receive(), 0.01)
        except TimeoutError:
            continue
        trade = msgpack.unpackb(msg.data)[0]
        assert trade["T"] == "t"
        assert trade["S"] == "FAKEPACA"
        assert isinstance(trade["t"], msgpack.Timestamp)
        assert trade["t"].to_unix_nano() == h.clock.time_ns()
        return
    raise AssertionError("no FAKEPACA trade")


async def test_crypto_order_book_snapshot_then_updates(alpaca: Make) -> None:
    h = await alpaca(SATURDAY)
    ws = await open_stream(h, "/v1beta3/crypto/us")
    await ws.send_json(AUTH)
    await recv_json(ws)
    await ws.send_json({"action": "subscribe", "orderbooks": ["BTC/USD"], "trades": ["BTC/USD"]})
    sub = (await recv_json(ws))[0]
    assert sub["orderbooks"] == ["BTC/USD"]
    assert "corrections" not in sub
    snapshot = (await recv_json(ws))[0]
    assert snapshot["T"] == "o"
    assert snapshot["r"] is True
    assert snapshot["b"][0]["p"] > snapshot["b"][-1]["p"]  # best first
    assert snapshot["a"][0]["p"] < snapshot["a"][-1]["p"]
    book = {
        "b": {lv["p"]: lv["s"] for lv in snapshot["b"]},
        "a": {lv["p"]: lv["s"] for lv in snapshot["a"]},
    }
    for _ in range(5):
        await h.advance(0.1)
        for item in await recv_json(ws):
            if item["T"] != "o":
                continue
            assert item.get("r", False) is False
            for side in ("b", "a"):
                for lv in item[side]:
                    if lv["s"] == 0:
                        book[side].pop(lv["p"], None)
                    else:
                        book[side][lv["p"]] = lv["s"]
    bids, asks = h.sim.engine.depth("BTC/USD", 10)
    assert book["b"] == {float(lv.price): float(lv.size) for lv in bids}
    assert book["a"] == {float(lv.price): float(lv.size) for lv in asks}


async def test_trade_updates_new_fill_cancel_replace(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    ws = await h.ws("/stream")
    await ws.send_json({"action": "listen", "data": {"streams": ["trade_updates"]}})
    refused = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert refused["data"]["status"] == "unauthorized"
    await ws.send_json(
        {"action": "authenticate", "data": {"key_id": "test-key-1", "secret_key": "test-secret-1"}}
    )
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.BINARY
    assert json.loads(msg.data) == {
        "stream": "authorization",
        "data": {"action": "authenticate", "status": "authorized"},
    }
    await ws.send_json({"action": "listen", "data": {"streams": ["trade_updates", "other"]}})
    assert json.loads((await asyncio.wait_for(ws.receive(), 5)).data) == {
        "stream": "listening",
        "data": {"streams": ["trade_updates"]},
    }

    async def events(n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            frame = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            assert frame["stream"] == "trade_updates"
            out.append(frame["data"])
        return out

    filled = (await h.order(symbol="AAPL", qty="2")).body
    new, fill = await events(2)
    assert (new["event"], new["order"]["id"], new["order"]["status"]) == (
        "new",
        filled["id"],
        "new",
    )
    assert fill["event"] == "fill"
    assert fill["qty"] == "2"
    assert fill["position_qty"] == "2"
    assert fill["price"] == filled["filled_avg_price"]
    assert fill["order"]["status"] == "filled"
    assert len(fill["execution_id"]) == 36

    resting = (await h.order(symbol="AAPL", qty="1", type="limit", limit_price="100.00")).body
    assert [e["event"] for e in await events(1)] == ["new"]
    replaced = await h.req("PATCH", f"/v2/orders/{resting['id']}", {"limit_price": "101.00"})
    old, new2 = await events(2)
    assert (old["event"], old["order"]["id"]) == ("replaced", resting["id"])
    assert old["order"]["replaced_by"] == replaced.body["id"]
    assert (new2["event"], new2["order"]["id"]) == ("new", replaced.body["id"])
    await h.req("DELETE", f"/v2/orders/{replaced.body['id']}")
    (canceled,) = await events(1)
    assert canceled["event"] == "canceled"
    assert canceled["order"]["status"] == "canceled"


async def test_trade_updates_alternate_auth_and_refusal(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    ws = await h.ws("/stream")
    await ws.send_json({"action": "auth", "key": "test-key-1", "secret": "test-secret-1"})
    reply = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert reply["data"]["status"] == "authorized"
    bad = await h.ws("/stream")
    await bad.send_json({"action": "auth", "key": "test-key-1", "secret": "x"})
    reply = json.loads((await asyncio.wait_for(bad.receive(), 5)).data)
    assert reply["data"]["status"] == "unauthorized"
    closing = await asyncio.wait_for(bad.receive(), 5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def listen(h: Any) -> aiohttp.ClientWebSocketResponse:
    ws: aiohttp.ClientWebSocketResponse = await h.ws("/stream")
    await ws.send_json({"action": "auth", "key": "test-key-1", "secret": "test-secret-1"})
    await asyncio.wait_for(ws.receive(), 5)
    await ws.send_json({"action": "listen", "data": {"streams": ["trade_updates"]}})
    await asyncio.wait_for(ws.receive(), 5)
    return ws


async def next_update(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["data"]
    return data


async def test_partial_fill_then_rest(alpaca: Make) -> None:
    from decimal import Decimal

    h = await alpaca(SATURDAY, cash={"test-key-1": Decimal("10000000")})
    ws = await listen(h)
    ask = h.sim.engine.top_of_book("BTC/USD")[1].price
    body = {"symbol": "BTC/USD", "qty": "5", "side": "buy", "type": "limit",
            "limit_price": str(ask + 5), "time_in_force": "gtc"}  # fmt: skip
    order = (await h.req("POST", "/v2/orders", body)).body
    assert order["status"] == "partially_filled"
    first = await next_update(ws)
    assert first["event"] == "new"
    part = await next_update(ws)
    assert part["event"] == "partial_fill"
    assert part["order"]["status"] == "partially_filled"
    assert Decimal(part["qty"]) < 5
    assert part["position_qty"] == part["qty"]


async def test_queued_order_rejected_at_the_open_when_the_cash_is_gone(alpaca: Make) -> None:
    h = await alpaca(SATURDAY)
    ws = await listen(h)
    queued = (await h.order(symbol="AAPL", qty="10")).body
    assert queued["status"] == "accepted"
    assert (await next_update(ws))["event"] == "accepted"
    # The cash leaves the account over the weekend (a transfer out, say).
    free = h.sim.engine.balances("test-key-1")["USD"].free
    h.sim.engine.deposit("test-key-1", "USD", -(free - 10))
    await h.goto("2026-11-23T09:30:00")
    assert (await next_update(ws))["event"] == "new"
    rejected = await next_update(ws)
    assert rejected["event"] == "rejected"
    assert rejected["order"]["status"] == "rejected"
    assert rejected["order"]["failed_at"] is not None


async def test_a_client_that_cannot_keep_up_gets_407_and_is_closed(alpaca: Make) -> None:
    h = await alpaca(SATURDAY, streams=DataStreamConfig(queue_size=3))
    ws = await open_stream(h, "/v1beta3/crypto/us")
    await ws.send_json(AUTH)
    await recv_json(ws)
    await ws.send_json({"action": "subscribe", "quotes": ["*"], "orderbooks": ["*"]})
    await recv_json(ws)
    for _ in range(20):  # no await between steps: the writer gets no chance to drain
        h.sim.step()
    frames = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), 5)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        frames.append(json.loads(msg.data))
    assert frames[-1] == [{"T": "error", "code": 407, "msg": "slow client"}]
    assert len(frames) <= 4  # what was queued, then the error
