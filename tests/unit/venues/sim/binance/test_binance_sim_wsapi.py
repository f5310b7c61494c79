"""The Binance simulator's WebSocket API (``/ws-api/v3``) and user data stream, spoken to with
a real aiohttp websocket client over loopback.

The signers here are written from the wire facts (WIRE_FACTS §1.2), on purpose not shared with
the server: parameters sorted by name, ``k=v`` joined by ``&``, HMAC hex or Ed25519 base64.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from yarl import URL

from botd.clock import FakeClock
from botd.venues.sim.binance import ApiKey, BinanceSimulator, RateLimitConfig, StreamConfig
from botd.venues.sim.binance.auth import ws_payload

D = Decimal
KEY, SECRET = "hmac-key-1", "hmac-secret-1"
ED_KEY = "ed-key-1"
OTHER_KEY, OTHER_SECRET = "hmac-key-2", "hmac-secret-2"
# Binance's published Ed25519 test key (fix-api.md, WIRE_FACTS §1.2).
ED_PRIVATE_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u
-----END PRIVATE KEY-----
"""
_loaded = load_pem_private_key(ED_PRIVATE_PEM, password=None)
assert isinstance(_loaded, Ed25519PrivateKey)
ED_PRIVATE: Ed25519PrivateKey = _loaded
ED_PUBLIC_PEM = ED_PRIVATE.public_key().public_bytes(
    Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
)
VEC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
VEC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
# Every field an executionReport always carries (WIRE_FACTS §1.6).
EXEC_FIELDS = frozenset("esScSofqpPFgCxXrilzLnNTtIwmMOZYQV") | {"E"}


def _payload(params: dict[str, Any]) -> str:
    def text(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return "&".join(f"{k}={text(params[k])}" for k in sorted(params))


def hmac_sign(params: dict[str, Any], key: str = KEY, secret: str = SECRET) -> dict[str, Any]:
    out = {**params, "apiKey": key}
    sig = hmac.new(secret.encode(), _payload(out).encode(), hashlib.sha256).hexdigest()
    return {**out, "signature": sig}


def ed_sign(params: dict[str, Any], key: str = ED_KEY) -> dict[str, Any]:
    out = {**params, "apiKey": key}
    sig = base64.b64encode(ED_PRIVATE.sign(_payload(out).encode())).decode()
    return {**out, "signature": sig}


@dataclass
class Conn:
    ws: aiohttp.ClientWebSocketResponse
    clock: FakeClock
    events: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0

    def ts(self) -> int:
        return self.clock.time_ns() // 1_000_000

    async def raw(self, text: str) -> dict[str, Any]:
        await self.ws.send_str(text)
        return await self._reply()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.seq += 1
        req: dict[str, Any] = {"id": self.seq, "method": method}
        if params is not None:
            req["params"] = params
        await self.ws.send_str(json.dumps(req))
        reply = await self._reply()
        assert reply["id"] == self.seq
        return reply

    async def signed(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.call(method, hmac_sign({**params, "timestamp": self.ts()}))

    async def _reply(self) -> dict[str, Any]:
        while True:
            msg: dict[str, Any] = json.loads(await self.ws.receive_str(timeout=5))
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    async def event(self, wait: float = 5) -> dict[str, Any]:
        """The next user data message (``{"subscriptionId","event"}``)."""
        if self.events:
            return self.events.pop(0)
        msg: dict[str, Any] = json.loads(await self.ws.receive_str(timeout=wait))
        assert "event" in msg, msg
        return msg

    async def no_event(self) -> None:
        await asyncio.sleep(0.05)
        assert not self.events
        with pytest.raises(TimeoutError):
            await self.ws.receive_str(timeout=0.05)


@dataclass
class Env:
    sim: BinanceSimulator
    clock: FakeClock
    session: aiohttp.ClientSession
    base: str

    async def connect(self, query: str = "") -> Conn:
        ws = await self.session.ws_connect(f"{self.base}/ws-api/v3{query}")
        return Conn(ws, self.clock)

    async def rest(self, method: str, path: str, **params: Any) -> tuple[int, Any]:
        params["timestamp"] = self.clock.time_ns() // 1_000_000
        query = urlencode(params)
        sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        url = URL(f"{self.base}{path}?{query}&signature={sig}", encoded=True)
        async with self.session.request(method, url, headers={"X-MBX-APIKEY": KEY}) as r:
            return r.status, await r.json()

    def best(self) -> tuple[D, D]:
        bid, ask = self.sim.engine.top_of_book("BTCUSDT")
        assert bid is not None and ask is not None
        return bid.price, ask.price


async def _env(limits: RateLimitConfig | None = None, heartbeat: float = 20.0) -> Env:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=7,
        symbols=["BTCUSDT", "ETHUSDT"],
        api_keys={
            KEY: SECRET,
            ED_KEY: ApiKey.ed25519(ED_PUBLIC_PEM),
            OTHER_KEY: ApiKey.hmac(OTHER_SECRET),
        },
        balances={
            KEY: {"USDT": D("100000"), "BTC": D("1")},
            ED_KEY: {"USDT": D("100000"), "BTC": D("1")},
        },
        limits=limits,
        streams=StreamConfig(heartbeat=heartbeat),
    )
    port = await sim.start()
    return Env(sim, clock, aiohttp.ClientSession(), f"http://127.0.0.1:{port}")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = await _env()
    try:
        yield e
    finally:
        await e.session.close()
        await e.sim.stop()


# -- signing ----------------------------------------------------------------------------------


def test_ed25519_official_vector_and_derived_ws_vector() -> None:
    key = ApiKey.ed25519(ED_PRIVATE_PEM)  # a private key PEM: its public half is used
    b64_der = base64.b64encode(
        ED_PRIVATE.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    assert b64_der.decode() == "MCowBQYDK2VwAyEAGUIKv9dSpWXBViXp2m6vAIb8QMFJYBgyFEQsFJlqgA0="
    fix = b"A\x01EXAMPLE\x01SPOT\x011\x0120240627-11:17:25.223"
    official = (
        "4MHXelVVcpkdwuLbl6n73HQUXUf1dse2PCgT1DYqW9w8AVZ1RACFGM+5UdlGPrQHrgtS3CvsRURC1oj73j8gCA=="
    )
    assert key.verify(fix, official)
    assert ApiKey.ed25519(ED_PUBLIC_PEM).verify(fix, official)
    assert not key.verify(fix + b"x", official)
    assert not key.verify(fix, "not base64!")
    # REST carries the base64 signature percent-encoded.
    assert key.verify(fix, quote(official, safe=""))
    ws_params = {
        "symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.01000000", "price": "52000.00", "recvWindow": "100",
        "timestamp": "1645423376532",
        "apiKey": "4yNzx3yWC5bS6YTwEkSRaC0nRmSQIIStAUOh1b6kqaBrTLIhjCpI5lJH8q8R8WNO",
    }  # fmt: skip
    derived = (
        "82wlF5RobwT7JZehRQgOaupNEm5GrAqJj5tqZeCCE6ZxkhlUbWBThOx00q3FVnCKn882P+9p85phztjk4bOMAQ=="
    )
    assert key.verify(ws_payload(ws_params), derived)


def test_ws_payload_matches_the_official_hmac_vector() -> None:
    params = {
        "symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.01000000", "price": "52000.00", "recvWindow": "100",
        "timestamp": "1645423376532", "apiKey": VEC_KEY, "signature": "ignored",
    }  # fmt: skip
    payload = ws_payload(params)
    assert payload.startswith(b"apiKey=" + VEC_KEY.encode() + b"&price=52000.00&")
    assert hmac.new(VEC_SECRET.encode(), payload, hashlib.sha256).hexdigest() == (
        "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    )
    assert ApiKey.hmac(VEC_SECRET).verify(
        payload, "AA1B5712C094BC4E57C05A1A5C1FD8D88DCD628338EA863FEC7B88E59FE2DB24"
    )


def test_api_key_rejects_bad_material_and_hides_secrets() -> None:
    with pytest.raises(ValueError, match="not a PEM Ed25519"):
        ApiKey.ed25519(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match="non-empty secret"):
        ApiKey.hmac("")
    assert SECRET not in repr(ApiKey.hmac(SECRET))


async def test_rest_accepts_an_ed25519_signature(env: Env) -> None:
    query = urlencode({"omitZeroBalances": "true", "timestamp": env.clock.time_ns() // 1_000_000})
    sig = base64.b64encode(ED_PRIVATE.sign(query.encode())).decode()

    async def account(signature: str) -> tuple[int, Any]:
        url = URL(f"{env.base}/api/v3/account?{query}&signature={signature}", encoded=True)
        async with env.session.get(url, headers={"X-MBX-APIKEY": ED_KEY}) as r:
            return r.status, await r.json()

    status, body = await account(quote(sig, safe=""))  # base64, percent-encoded in the URL
    assert status == 200
    assert {b["asset"] for b in body["balances"]} == {"BTC", "USDT"}
    zeros = quote(base64.b64encode(bytes(64)).decode(), safe="")
    assert await account(zeros) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )


# -- requests ---------------------------------------------------------------------------------


async def test_place_status_cancel_over_ws_api(env: Env) -> None:
    c = await env.connect()
    bid, _ = env.best()
    price = str(bid - D("100"))
    placed = await c.signed(
        "order.place", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
        quantity="0.01", price=price, newClientOrderId="ws-1",
    )  # fmt: skip
    assert placed["status"] == 200
    result = placed["result"]
    assert (result["status"], result["clientOrderId"], result["price"]) == (
        "NEW", "ws-1", f"{D(price):.8f}"
    )  # fmt: skip
    kinds = [(r["rateLimitType"], r["interval"], r["intervalNum"]) for r in placed["rateLimits"]]
    assert kinds == [
        ("ORDERS", "SECOND", 10),
        ("ORDERS", "DAY", 1),
        ("REQUEST_WEIGHT", "MINUTE", 1),
    ]
    assert placed["rateLimits"][0]["count"] == 1
    weight = placed["rateLimits"][2]["count"]
    assert weight >= 3  # 2 for connecting, 1 for the order

    status = await c.signed("order.status", symbol="BTCUSDT", orderId=result["orderId"])
    assert status["result"]["status"] == "NEW"
    assert status["rateLimits"] == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": 6000, "count": weight + 4},
    ]  # fmt: skip
    opened = await c.signed("openOrders.status", symbol="BTCUSDT")
    assert [o["clientOrderId"] for o in opened["result"]] == ["ws-1"]

    canceled = await c.signed("order.cancel", symbol="BTCUSDT", origClientOrderId="ws-1")
    assert canceled["result"]["status"] == "CANCELED"
    assert canceled["result"]["origClientOrderId"] == "ws-1"
    assert (await c.signed("openOrders.status", symbol="BTCUSDT"))["result"] == []
    again = await c.signed("order.cancel", symbol="BTCUSDT", origClientOrderId="ws-1")
    assert (again["status"], again["error"]) == (400, {"code": -2011, "msg": "Unknown order sent."})
    assert (await c.call("ping"))["result"] == {}
    assert (await c.call("v3/time"))["result"] == {"serverTime": c.ts()}
    await c.ws.close()


async def test_signature_key_and_timestamp_failures(env: Env) -> None:
    c = await env.connect()
    good = hmac_sign({"timestamp": c.ts()})
    bad_sig = {**good, "signature": "0" * 64}
    r = await c.call("account.status", bad_sig)
    assert (r["status"], r["error"]) == (
        400, {"code": -1022, "msg": "Signature for this request is not valid."}
    )  # fmt: skip
    assert r["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    # Signed with the right secret, but a parameter changed afterwards.
    r = await c.call("account.status", {**good, "omitZeroBalances": "true"})
    assert r["error"]["code"] == -1022
    r = await c.call("account.status", hmac_sign({"timestamp": c.ts()}, key="nobody"))
    assert (r["status"], r["error"]) == (
        401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
    )  # fmt: skip
    r = await c.call("account.status", hmac_sign({"timestamp": c.ts() - 6000}))
    assert r["error"] == {
        "code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."
    }  # fmt: skip
    r = await c.call("account.status", hmac_sign({"timestamp": c.ts() - 6000, "recvWindow": 10000}))
    assert r["status"] == 200
    r = await c.call("account.status", hmac_sign({"timestamp": c.ts() + 1500}))
    assert r["error"]["code"] == -1021
    r = await c.call("account.status", {"timestamp": c.ts()})
    assert r["error"] == {
        "code": -1102,
        "msg": "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.",
    }
    unsigned = {"apiKey": KEY, "timestamp": c.ts()}
    assert (await c.call("account.status", unsigned))["error"]["code"] == -1102
    ok = await c.call("account.status", hmac_sign({"timestamp": c.ts()}))
    assert ok["status"] == 200
    assert {b["asset"] for b in ok["result"]["balances"]} >= {"BTC", "USDT"}
    await c.ws.close()


async def test_envelope_errors_and_rate_limit_display(env: Env) -> None:
    c = await env.connect()
    r = await c.raw("{not json")
    assert r == {
        "id": None,
        "status": 400,
        "error": {"code": -1135, "msg": "Invalid JSON Request"},
        "rateLimits": r["rateLimits"],
    }
    r = await c.raw('{"id":"abc-1","method":"order.teleport","params":{}}')
    assert (r["id"], r["status"], r["error"]["code"]) == ("abc-1", 400, -1020)
    r = await c.raw('{"id":7,"params":{}}')
    assert (r["id"], r["error"]["code"]) == (7, -1102)
    r = await c.raw('{"id":8,"method":"time","params":[1]}')
    assert r["error"]["code"] == -1102
    r = await c.signed("order.place", side="BUY", type="LIMIT")
    assert r["error"] == {
        "code": -1102,
        "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
    }
    r = await c.call("time", {"returnRateLimits": False})
    assert "rateLimits" not in r and "serverTime" in r["result"]
    quiet = await env.connect("?returnRateLimits=false")
    assert "rateLimits" not in await quiet.call("ping")
    assert "rateLimits" in await quiet.call("ping", {"returnRateLimits": True})
    # Numbers may be JSON numbers; the signature covers their text as sent.
    bid, _ = env.best()
    params = hmac_sign(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": 0.01, "price": float(bid - 100), "timestamp": c.ts()}
    )  # fmt: skip
    r = await c.call("order.place", params)
    assert (r["status"], r["result"]["origQty"]) == (200, "0.01000000")
    await c.ws.close()
    await quiet.ws.close()


async def test_weight_limit_answers_429_with_retry_after() -> None:
    e = await _env(RateLimitConfig(request_weight_per_minute=10))
    try:
        c = await e.connect()  # 2
        for _ in range(8):
            assert (await c.call("ping"))["status"] == 200
        r = await c.call("ping")
        assert (r["status"], r["error"]["code"]) == (429, -1003)
        now = c.ts()
        assert r["error"]["data"] == {"serverTime": now, "retryAfter": (now // 60_000 + 1) * 60_000}
        await c.ws.close()
    finally:
        await e.session.close()
        await e.sim.stop()


# -- sessions and subscriptions ---------------------------------------------------------------


async def test_ed25519_logon_then_subscribe(env: Env) -> None:
    c = await env.connect()
    r = await c.call("userDataStream.subscribe")
    assert (r["status"], r["error"]["code"]) == (401, -1002)
    # session.logon takes Ed25519 keys only.
    r = await c.call("session.logon", hmac_sign({"timestamp": c.ts()}))
    assert (r["status"], r["error"]["code"]) == (401, -2015)
    bad = {**ed_sign({"timestamp": c.ts()}), "timestamp": c.ts() - 1}
    assert (await c.call("session.logon", bad))["error"]["code"] == -1022
    r = await c.call("session.logon", ed_sign({"timestamp": c.ts()}))
    assert r["status"] == 200
    assert r["result"] == {
        "apiKey": ED_KEY,
        "authorizedSince": c.ts(),
        "connectedSince": c.ts(),
        "returnRateLimits": True,
        "serverTime": c.ts(),
        "userDataStream": False,
    }
    assert r["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    sub = await c.call("userDataStream.subscribe")
    assert sub["result"] == {"subscriptionId": 0}
    assert (await c.call("userDataStream.subscribe"))["error"]["code"] == -1020
    assert (await c.call("session.status"))["result"]["userDataStream"] is True
    assert (await c.call("session.subscriptions"))["result"] == [{"subscriptionId": 0}]

    # Logged on: a signed request needs its timestamp, not apiKey or signature.
    bid, _ = env.best()
    r = await c.call(
        "order.place",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.01", "price": str(bid - D("50")), "timestamp": c.ts()},
    )  # fmt: skip
    assert r["status"] == 200, r
    new = await c.event()
    assert new["subscriptionId"] == 0
    assert (new["event"]["e"], new["event"]["x"], new["event"]["i"]) == (
        "executionReport", "NEW", r["result"]["orderId"]
    )  # fmt: skip
    pos = await c.event()
    assert pos["event"]["e"] == "outboundAccountPosition"
    balances = {b["a"]: b for b in pos["event"]["B"]}
    assert balances["USDT"]["l"] == f"{D('0.01') * (bid - D('50')):.8f}"
    assert (await c.call("order.status", {"symbol": "BTCUSDT"}))["error"]["code"] == -1102

    r = await c.call("session.logout")
    assert (r["result"]["apiKey"], r["result"]["userDataStream"]) == (None, False)
    r = await c.call("account.status", {"timestamp": c.ts()})
    assert r["error"]["code"] == -1102  # logged out: apiKey is mandatory again
    await c.ws.close()


async def test_order_placed_by_rest_reaches_a_signature_subscription(env: Env) -> None:
    c = await env.connect()
    sub = await c.call("userDataStream.subscribe.signature", hmac_sign({"timestamp": c.ts()}))
    assert sub["result"] == {"subscriptionId": 0}
    other = await c.call(
        "userDataStream.subscribe.signature",
        hmac_sign({"timestamp": c.ts()}, key=OTHER_KEY, secret=OTHER_SECRET),
    )
    assert other["result"] == {"subscriptionId": 1}
    status, body = await env.rest(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
        quantity="0.001", newClientOrderId="rest-mkt",
    )  # fmt: skip
    assert status == 200 and body["status"] == "FILLED"
    events = [await c.event() for _ in range(2 + len(body["fills"]))]
    assert {m["subscriptionId"] for m in events} == {0}  # not the other account's
    reports = [m["event"] for m in events if m["event"]["e"] == "executionReport"]
    assert [(e["x"], e["X"]) for e in reports] == [("NEW", "NEW")] + [
        ("TRADE", "PARTIALLY_FILLED")
    ] * (len(body["fills"]) - 1) + [("TRADE", "FILLED")]
    assert all(set(e) >= EXEC_FIELDS for e in reports)
    assert reports[0]["w"] is False and "W" not in reports[0]  # a MARKET order never rests
    assert [e["t"] for e in reports[1:]] == [f["tradeId"] for f in body["fills"]]
    assert reports[-1]["z"] == body["executedQty"]
    assert reports[-1]["Z"] == body["cummulativeQuoteQty"]
    assert all(e["m"] is False and e["N"] == "BTC" for e in reports[1:])
    assert events[-1]["event"]["e"] == "outboundAccountPosition"
    # Unsubscribing one subscription leaves the other; the ended one is told so.
    assert (await c.call("userDataStream.unsubscribe", {"subscriptionId": 0}))["result"] == {}
    assert await c.event() == {
        "subscriptionId": 0,
        "event": {"e": "eventStreamTerminated", "E": c.ts()},
    }
    assert (await c.call("session.subscriptions"))["result"] == [{"subscriptionId": 1}]
    await env.rest(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001"
    )
    await c.no_event()
    await c.ws.close()


async def test_execution_reports_of_a_resting_order_partly_filled_by_the_market(env: Env) -> None:
    c = await env.connect()
    await c.call("userDataStream.subscribe.signature", hmac_sign({"timestamp": c.ts()}))
    bid, _ = env.best()
    placed = await c.signed(
        "order.place", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
        quantity="0.5", price=str(bid), newClientOrderId="rest-on-book",
    )  # fmt: skip
    order_id = placed["result"]["orderId"]
    new = (await c.event())["event"]
    assert EXEC_FIELDS | {"W"} <= set(new)
    assert (new["x"], new["X"], new["c"], new["C"], new["w"], new["z"]) == (
        "NEW", "NEW", "rest-on-book", "", True, "0.00000000"
    )  # fmt: skip
    assert (new["n"], new["N"], new["t"], new["W"]) == ("0", None, -1, new["O"])
    assert (await c.event())["event"]["e"] == "outboundAccountPosition"

    trades: list[dict[str, Any]] = []
    for _ in range(300):  # the synthetic market's sellers reach the order within a few steps
        env.sim.step()
        await asyncio.sleep(0)
        try:
            msg = await c.event(wait=0.05)
        except TimeoutError:
            continue
        if msg["event"]["e"] == "executionReport":
            trades.append(msg["event"])
            break
    assert trades, "the market never traded with the resting order"
    trade = trades[0]
    assert (trade["x"], trade["X"], trade["i"], trade["w"], trade["m"]) == (
        "TRADE", "PARTIALLY_FILLED", order_id, True, True
    )  # fmt: skip
    assert D(trade["l"]) > 0 and trade["z"] == trade["l"] and trade["L"] == f"{bid:.8f}"
    assert trade["Y"] == f"{D(trade['l']) * bid:.8f}"
    assert trade["n"] == f"{D(trade['l']) * D('0.001'):.8f}"
    assert trade["t"] > 0 and trade["I"] > new["I"]
    # Drain what the steps printed; every remaining execution of this order is a TRADE.
    while True:
        try:
            ev = (await c.event(wait=0.05))["event"]
        except TimeoutError:
            break
        if ev["e"] == "executionReport":
            assert ev["x"] == "TRADE"
            trades.append(ev)
    filled = sum(D(t["l"]) for t in trades)
    assert trades[-1]["z"] == f"{filled:.8f}"

    canceled = await c.signed(
        "order.cancel", symbol="BTCUSDT", orderId=order_id, newClientOrderId="cxl-1"
    )
    assert canceled["result"]["clientOrderId"] == "cxl-1"
    cancel = (await c.event())["event"]
    assert (cancel["x"], cancel["X"], cancel["c"], cancel["C"], cancel["w"]) == (
        "CANCELED", "CANCELED", "cxl-1", "rest-on-book", False
    )  # fmt: skip
    assert cancel["z"] == f"{filled:.8f}" and cancel["l"] == "0.00000000"
    pos = (await c.event())["event"]
    assert pos["e"] == "outboundAccountPosition"
    usdt = next(b for b in pos["B"] if b["a"] == "USDT")
    assert usdt["l"] == "0.00000000"  # nothing locked once the order is gone
    await c.ws.close()


async def test_cancel_all_and_deposit_events(env: Env) -> None:
    c = await env.connect()
    await c.call("userDataStream.subscribe.signature", hmac_sign({"timestamp": c.ts()}))
    bid, _ = env.best()
    for n in (1, 2):
        await c.signed(
            "order.place", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
            quantity="0.01", price=str(bid - n * 10), newClientOrderId=f"grid-{n}",
        )  # fmt: skip
        await c.event()
        await c.event()
    r = await c.signed("openOrders.cancelAll", symbol="BTCUSDT")
    ids = {o["origClientOrderId"]: o["clientOrderId"] for o in r["result"]}
    events = [(await c.event())["event"] for _ in range(3)]
    assert [(e["x"], e["C"], e["c"]) for e in events[:2]] == [
        ("CANCELED", "grid-1", ids["grid-1"]),
        ("CANCELED", "grid-2", ids["grid-2"]),
    ]
    assert events[2]["e"] == "outboundAccountPosition"
    env.sim.deposit(KEY, "ETH", D("2.5"))
    upd = await c.event()
    assert upd["event"] == {
        "e": "balanceUpdate", "E": c.ts(), "a": "ETH", "d": "2.50000000", "T": c.ts()
    }  # fmt: skip
    pos = (await c.event())["event"]
    assert pos["B"] == [{"a": "ETH", "f": "2.50000000", "l": "0.00000000"}]
    await c.ws.close()


async def test_ban_answers_418_then_disconnects() -> None:
    e = await _env(RateLimitConfig(request_weight_per_minute=5, ban_after_429s=1))
    try:
        c = await e.connect()  # 2
        for _ in range(3):
            assert (await c.call("ping"))["status"] == 200
        assert (await c.call("ping"))["status"] == 429
        r = await c.call("ping")
        assert (r["status"], r["error"]["code"]) == (418, -1003)
        assert r["error"]["data"]["retryAfter"] == c.ts() + 120_000  # the first ban: 2 min
        msg = await c.ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (1008, "IP banned")
    finally:
        await e.session.close()
        await e.sim.stop()


async def test_a_subscriber_that_falls_behind_is_cut_off() -> None:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock, seed=7, symbols=["BTCUSDT"], api_keys={KEY: SECRET},
        streams=StreamConfig(queue_size=4),
    )  # fmt: skip
    port = await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws-api/v3")
            c = Conn(ws, clock)
            await c.call("userDataStream.subscribe.signature", hmac_sign({"timestamp": c.ts()}))
            for _ in range(10):  # 20 events at once: more than the queue holds
                sim.deposit(KEY, "USDT", D("1"))
            frames = []
            while True:
                msg = await ws.receive(timeout=5)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                frames.append(msg.data)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE, 1008, "slow consumer"
            )  # fmt: skip
            assert frames == []  # the burst is dropped whole; the client resyncs after the close
    finally:
        await sim.stop()


async def test_server_sends_ping_frames() -> None:
    e = await _env(heartbeat=0.2)  # on the injected clock (more in test_..._wsapi_rules.py)
    try:
        ws = await e.session.ws_connect(f"{e.base}/ws-api/v3", autoping=False)
        await asyncio.sleep(0.05)
        await e.clock.advance(0.2)
        msg = await ws.receive(timeout=3)
        assert msg.type is aiohttp.WSMsgType.PING
        await ws.pong(msg.data)
        await ws.close()
    finally:
        await e.session.close()
        await e.sim.stop()


# -- REST and WS API agree --------------------------------------------------------------------

_PARITY: list[tuple[str, str, str, dict[str, str]]] = [
    ("order.place", "POST", "/api/v3/order",
     {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
      "quantity": "0.01", "price": "60000", "newClientOrderId": "p-1"}),
    ("order.place", "POST", "/api/v3/order",
     {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.002"}),
    ("order.place", "POST", "/api/v3/order",
     {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
      "quantity": "0.01", "price": "60000.001"}),
    ("order.place", "POST", "/api/v3/order",
     {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
      "quantity": "50", "price": "60000"}),
    ("order.test", "POST", "/api/v3/order/test",
     {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
      "computeCommissionRates": "true"}),
    ("order.status", "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": "424242"}),
    ("order.cancel", "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "x"}),
    ("openOrders.status", "GET", "/api/v3/openOrders", {}),
    ("openOrders.cancelAll", "DELETE", "/api/v3/openOrders", {"symbol": "ETHUSDT"}),
    ("account.status", "GET", "/api/v3/account", {"omitZeroBalances": "true"}),
    ("account.rateLimits.orders", "GET", "/api/v3/rateLimit/order", {}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "verb", "path", "params"), _PARITY)
async def test_rest_and_ws_api_answer_alike(
    method: str, verb: str, path: str, params: dict[str, str]
) -> None:
    """Two simulators in the same state get the same request, one over REST, one over the
    WS API: same result or same error, same HTTP-like status."""
    rest_env, ws_env = await _env(), await _env()
    try:
        status, body = await rest_env.rest(verb, path, **params)
        c = await ws_env.connect()
        reply = await c.signed(method, **params)
        assert reply["status"] == status
        assert reply.get("result", reply.get("error")) == body
        await c.ws.close()
    finally:
        for e in (rest_env, ws_env):
            await e.session.close()
            await e.sim.stop()
