"""The Binance Spot REST simulator, spoken to over loopback with a plain aiohttp client.

The signer below is written here from the wire facts, on purpose not shared with the server.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from botd.clock import NS_PER_SECOND, FakeClock
from botd.venues.sim.binance import BinanceSimulator, RateLimitConfig
from botd.venues.sim.market import SymbolSpec

D = Decimal
KEY = "test-key-1"
SECRET = "test-secret-1"
OTHER_KEY = "test-key-2"
OTHER_SECRET = "test-secret-2"
# The official example key pair of Binance's docs (WIRE_FACTS §1.2).
VEC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
VEC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
VEC_TS = 1499827319559


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, clock: FakeClock) -> None:
        self.session = session
        self.base = base
        self.clock = clock

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    async def raw(
        self,
        method: str,
        path: str,
        query: str = "",
        body: str = "",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        url = self.base + path + (f"?{query}" if query else "")
        hdrs = dict(headers or {})
        if body:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        async with self.session.request(
            method, URL(url, encoded=True), data=body or None, headers=hdrs
        ) as resp:
            return Reply(resp.status, await resp.json(), dict(resp.headers))

    async def public(self, path: str, **params: Any) -> Reply:
        return await self.raw("GET", path, urlencode(params))

    async def signed(
        self,
        method: str,
        path: str,
        key: str = KEY,
        secret: str = SECRET,
        timestamp: int | None = None,
        **params: Any,
    ) -> Reply:
        params["timestamp"] = self.now_ms() if timestamp is None else timestamp
        query = urlencode(params)
        sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        return await self.raw(
            method, path, f"{query}&signature={sig}", headers={"X-MBX-APIKEY": key}
        )


def _specs() -> list[str | SymbolSpec]:
    ltc = SymbolSpec(
        "LTCBTC", "LTC", "BTC", D("0.2"), D("0.000001"), D("0.001"), D("0.001"), D("0.0001"),
        D("1"),
    )  # fmt: skip
    return ["BTCUSDT", "ETHUSDT", ltc]


async def _open(
    limits: RateLimitConfig | None = None, start_ns: int = 1_700_000_000 * NS_PER_SECOND
) -> tuple[BinanceSimulator, Client, aiohttp.ClientSession]:
    clock = FakeClock(start_ns)
    sim = BinanceSimulator(
        clock=clock,
        seed=7,
        symbols=_specs(),
        api_keys={KEY: SECRET, OTHER_KEY: OTHER_SECRET, VEC_KEY: VEC_SECRET},
        balances={
            KEY: {"USDT": D("100000"), "BTC": D("1")},
            VEC_KEY: {"BTC": D("1")},
        },
        limits=limits,
    )
    port = await sim.start()
    session = aiohttp.ClientSession()
    return sim, Client(session, f"http://127.0.0.1:{port}", clock), session


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    sim, c, session = await _open()
    try:
        yield c
    finally:
        await session.close()
        await sim.stop()


async def _best(c: Client, symbol: str = "BTCUSDT") -> tuple[D, D]:
    r = await c.public("/api/v3/ticker/bookTicker", symbol=symbol)
    return D(r.body["bidPrice"]), D(r.body["askPrice"])


# -- public -----------------------------------------------------------------------------------


async def test_ping_time_and_exchange_info(client: Client) -> None:
    assert (await client.public("/api/v3/ping")).body == {}
    t = await client.public("/api/v3/time")
    assert t.body == {"serverTime": client.now_ms()}
    r = await client.public("/api/v3/exchangeInfo", symbol="BTCUSDT")
    assert r.status == 200
    assert r.body["rateLimits"] == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
    ]
    [sym] = r.body["symbols"]
    assert sym["symbol"] == "BTCUSDT"
    assert (sym["baseAsset"], sym["quoteAsset"], sym["status"]) == ("BTC", "USDT", "TRADING")
    filters = {f["filterType"]: f for f in sym["filters"]}
    assert filters["PRICE_FILTER"] == {
        "filterType": "PRICE_FILTER",
        "minPrice": "0.01000000",
        "maxPrice": "1000000.00000000",
        "tickSize": "0.01000000",
    }
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["LOT_SIZE"]["minQty"] == "0.00001000"
    assert filters["MARKET_LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert filters["NOTIONAL"]["applyMinToMarket"] is True
    for field in ("orderTypes", "permissionSets", "quotePrecision", "isSpotTradingAllowed"):
        assert field in sym
    every = await client.public("/api/v3/exchangeInfo")
    assert [s["symbol"] for s in every.body["symbols"]] == ["BTCUSDT", "ETHUSDT", "LTCBTC"]
    bad = await client.public("/api/v3/exchangeInfo", symbol="NOPE")
    assert (bad.status, bad.body) == (400, {"code": -1121, "msg": "Invalid symbol."})


async def test_depth_and_book_ticker(client: Client) -> None:
    r = await client.public("/api/v3/depth", symbol="BTCUSDT", limit=3)
    assert r.status == 200
    assert set(r.body) == {"lastUpdateId", "bids", "asks"}
    assert len(r.body["bids"]) == 3
    assert len(r.body["asks"]) == 3
    bids = [D(p) for p, _ in r.body["bids"]]
    asks = [D(p) for p, _ in r.body["asks"]]
    assert bids == sorted(bids, reverse=True)
    assert asks == sorted(asks)
    assert bids[0] < asks[0]
    assert all(isinstance(x, str) for level in r.body["bids"] for x in level)
    first_id = r.body["lastUpdateId"]
    await client.clock.advance(1.0)  # the market task steps the book
    again = await client.public("/api/v3/depth", symbol="BTCUSDT")
    assert again.body["lastUpdateId"] > first_id
    bt = await client.public("/api/v3/ticker/bookTicker", symbol="BTCUSDT")
    assert set(bt.body) == {"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}
    assert D(bt.body["bidPrice"]) == D(again.body["bids"][0][0])
    every = await client.public("/api/v3/ticker/bookTicker")
    assert [t["symbol"] for t in every.body] == ["BTCUSDT", "ETHUSDT", "LTCBTC"]


# -- orders -----------------------------------------------------------------------------------


async def test_limit_order_lifecycle(client: Client) -> None:
    bid, _ = await _best(client)
    price = bid - D("100")
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
        timeInForce="GTC", quantity="0.01", price=str(price), newClientOrderId="my-1",
    )  # fmt: skip
    assert r.status == 200, r.body
    assert r.body["status"] == "NEW"
    assert r.body["clientOrderId"] == "my-1"
    assert r.body["fills"] == []
    assert r.body["price"] == f"{price:.8f}"
    assert r.body["origQty"] == "0.01000000"
    assert r.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert r.headers["X-MBX-ORDER-COUNT-1D"] == "1"
    order_id = r.body["orderId"]
    assert isinstance(order_id, int)

    q = await client.signed("GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="my-1")
    assert q.status == 200
    assert q.body["orderId"] == order_id
    assert q.body["status"] == "NEW"
    assert q.body["isWorking"] is True
    q2 = await client.signed("GET", "/api/v3/order", symbol="BTCUSDT", orderId=order_id)
    assert q2.body == q.body

    acct = await client.signed("GET", "/api/v3/account")
    usdt = next(b for b in acct.body["balances"] if b["asset"] == "USDT")
    assert D(usdt["locked"]) == price * D("0.01")

    oo = await client.signed("GET", "/api/v3/openOrders", symbol="BTCUSDT")
    assert [o["clientOrderId"] for o in oo.body] == ["my-1"]

    d = await client.signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=order_id)
    assert d.status == 200, d.body
    assert d.body["status"] == "CANCELED"
    assert d.body["origClientOrderId"] == "my-1"
    assert d.body["orderId"] == order_id
    d2 = await client.signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=order_id)
    assert (d2.status, d2.body) == (400, {"code": -2011, "msg": "Unknown order sent."})
    assert (await client.signed("GET", "/api/v3/openOrders")).body == []
    q3 = await client.signed("GET", "/api/v3/order", symbol="BTCUSDT", orderId=order_id)
    assert q3.body["status"] == "CANCELED"
    gone = await client.signed("GET", "/api/v3/order", symbol="BTCUSDT", orderId=999999)
    assert (gone.status, gone.body) == (400, {"code": -2013, "msg": "Order does not exist."})


async def test_market_full_response_and_my_trades(client: Client) -> None:
    _, ask = await _best(client)
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002"
    )
    assert r.status == 200, r.body
    body = r.body
    assert body["status"] == "FILLED"
    assert body["type"] == "MARKET"
    assert body["executedQty"] == "0.00200000"
    assert len(body["clientOrderId"]) == 22
    fills = body["fills"]
    assert fills
    assert sum(D(f["qty"]) for f in fills) == D("0.002")
    assert D(fills[0]["price"]) == ask
    for f in fills:
        assert f["commissionAsset"] == "BTC"
        assert D(f["commission"]) == D(f["qty"]) * D("0.001")
        assert isinstance(f["tradeId"], int)
    quote = sum(D(f["price"]) * D(f["qty"]) for f in fills)
    assert D(body["cummulativeQuoteQty"]) == quote

    trades = await client.signed("GET", "/api/v3/myTrades", symbol="BTCUSDT")
    assert [t["id"] for t in trades.body] == [f["tradeId"] for f in fills]
    assert trades.body[0]["isBuyer"] is True
    assert trades.body[0]["isMaker"] is False
    acct = await client.signed("GET", "/api/v3/account", omitZeroBalances="true")
    btc = next(b for b in acct.body["balances"] if b["asset"] == "BTC")
    assert D(btc["free"]) == D("1") + D("0.002") * D("0.999")
    ack = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="MARKET",
        quantity="0.001", newOrderRespType="ACK",
    )  # fmt: skip
    assert set(ack.body) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


async def test_filter_failures(client: Client) -> None:
    async def place(**kw: Any) -> Reply:
        args: dict[str, Any] = {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.01", "price": "50000.00",
        }  # fmt: skip
        args.update(kw)
        return await client.signed("POST", "/api/v3/order", **args)

    for kw, name in (
        ({"price": "50000.005"}, "PRICE_FILTER"),
        ({"quantity": "0.000015"}, "LOT_SIZE"),
        ({"quantity": "0.000001"}, "LOT_SIZE"),
        ({"quantity": "0.00001"}, "NOTIONAL"),
    ):
        r = await place(**kw)
        assert (r.status, r.body) == (400, {"code": -1013, "msg": f"Filter failure: {name}"}), kw
    market = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.000015"
    )
    assert market.body == {"code": -1013, "msg": "Filter failure: MARKET_LOT_SIZE"}
    tiny = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.00001"
    )
    assert tiny.body == {"code": -1013, "msg": "Filter failure: NOTIONAL"}
    test = await client.signed(
        "POST", "/api/v3/order/test", symbol="BTCUSDT", side="BUY", type="LIMIT",
        timeInForce="GTC", quantity="0.01", price="50000.005",
    )  # fmt: skip
    assert test.body["msg"] == "Filter failure: PRICE_FILTER"
    ok = await client.signed(
        "POST", "/api/v3/order/test", symbol="BTCUSDT", side="BUY", type="LIMIT",
        timeInForce="GTC", quantity="0.01", price="50000.00",
    )  # fmt: skip
    assert (ok.status, ok.body) == (200, {})
    assert (await client.signed("GET", "/api/v3/openOrders")).body == []


async def test_insufficient_balance_and_duplicate_client_id(client: Client) -> None:
    bid, _ = await _best(client)
    price = str(bid - D("100"))
    rich = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
        timeInForce="GTC", quantity="5", price=price,
    )  # fmt: skip
    assert (rich.status, rich.body) == (
        400,
        {"code": -2010, "msg": "Account has insufficient balance for requested action."},
    )
    args: dict[str, Any] = {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.01", "price": price, "newClientOrderId": "dup",
    }  # fmt: skip
    first = await client.signed("POST", "/api/v3/order", **args)
    assert first.status == 200
    second = await client.signed("POST", "/api/v3/order", **args)
    assert (second.status, second.body) == (400, {"code": -2010, "msg": "Duplicate order sent."})
    # Once the first is closed the id may be used again.
    await client.signed("DELETE", "/api/v3/openOrders", symbol="BTCUSDT")
    third = await client.signed("POST", "/api/v3/order", **args)
    assert third.status == 200
    assert third.body["orderId"] != first.body["orderId"]
    none = await client.signed("DELETE", "/api/v3/openOrders", symbol="ETHUSDT")
    assert none.body == {"code": -2011, "msg": "Unknown order sent."}


async def test_limit_maker_that_would_cross(client: Client) -> None:
    _, ask = await _best(client)
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER",
        quantity="0.001", price=str(ask),
    )  # fmt: skip
    assert r.body == {"code": -2010, "msg": "Order would immediately match and take."}


# -- auth and parameters ------------------------------------------------------------------------


async def test_auth_failures(client: Client) -> None:
    bad = await client.signed("GET", "/api/v3/account", secret="wrong")
    assert (bad.status, bad.body) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )
    unknown = await client.signed("GET", "/api/v3/account", key="nobody")
    assert (unknown.status, unknown.body) == (
        401,
        {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
    )
    nokey = await client.raw("GET", "/api/v3/account", f"timestamp={client.now_ms()}")
    assert (nokey.status, nokey.body["code"]) == (401, -2014)
    stale = await client.signed("GET", "/api/v3/account", timestamp=client.now_ms() - 5001)
    assert (stale.status, stale.body) == (
        400,
        {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
    )
    widened = await client.signed(
        "GET", "/api/v3/account", timestamp=client.now_ms() - 5001, recvWindow=10000
    )
    assert widened.status == 200
    ahead = await client.signed("GET", "/api/v3/account", timestamp=client.now_ms() + 1000)
    assert ahead.body["code"] == -1021
    # Upper-case hex is the same HMAC.
    query = f"timestamp={client.now_ms()}"
    sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest().upper()
    upper = await client.raw(
        "GET", "/api/v3/account", f"{query}&signature={sig}", headers={"X-MBX-APIKEY": KEY}
    )
    assert upper.status == 200


async def test_missing_and_malformed_params(client: Client) -> None:
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.01",
        price="50000",
    )  # fmt: skip
    assert r.body == {
        "code": -1102,
        "msg": "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
    }
    r = await client.signed("POST", "/api/v3/order", side="BUY", type="MARKET", quantity="1")
    assert r.body["msg"] == (
        "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
    )
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="1e3"
    )
    assert r.body == {
        "code": -1100,
        "msg": "Illegal characters found in parameter 'quantity'; legal range is "
        "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
    }
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01",
        price="1",
    )  # fmt: skip
    assert r.body == {"code": -1106, "msg": "Parameter 'price' sent when not required."}
    r = await client.signed("GET", "/api/v3/order", symbol="BTCUSDT")
    assert r.body["code"] == -1102
    raw = await client.raw(
        "GET", "/api/v3/account", "recvWindow=5000", headers={"X-MBX-APIKEY": KEY}
    )
    assert raw.body["msg"] == (
        "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
    )


async def test_official_hmac_vectors_are_accepted() -> None:
    """Requests signed exactly as in the Binance docs' examples pass authentication."""
    sim, c, session = await _open(start_ns=(VEC_TS + 1000) * 1_000_000)
    try:
        query = (
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
            "&recvWindow=5000&timestamp=1499827319559"
        )
        sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        r = await c.raw(
            "POST", "/api/v3/order", f"{query}&signature={sig}", headers={"X-MBX-APIKEY": VEC_KEY}
        )
        assert r.status == 200, r.body
        assert r.body["status"] == "NEW"
        assert r.body["price"] == "0.10000000"
        # Query string and body: the payload is their concatenation with no separator.
        body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
        sig3 = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
        r3 = await c.raw(
            "POST",
            "/api/v3/order/test",
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
            f"{body}&signature={sig3}",
            headers={"X-MBX-APIKEY": VEC_KEY},
        )
        assert (r3.status, r3.body) == (200, {})
        tampered = await c.raw(
            "POST",
            "/api/v3/order/test",
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
            f"{body.replace('quantity=1', 'quantity=2')}&signature={sig3}",
            headers={"X-MBX-APIKEY": VEC_KEY},
        )
        assert tampered.body["code"] == -1022
    finally:
        await session.close()
        await sim.stop()


# -- rate limits --------------------------------------------------------------------------------


async def test_weight_headers_follow_documented_weights(client: Client) -> None:
    async def used(reply: Reply) -> int:
        return int(reply.headers["X-MBX-USED-WEIGHT-1M"])

    base = await used(await client.public("/api/v3/ping"))
    assert base == 1
    steps: list[tuple[int, Reply]] = [
        (1, await client.public("/api/v3/time")),
        (20, await client.public("/api/v3/exchangeInfo")),
        (5, await client.public("/api/v3/depth", symbol="BTCUSDT", limit=100)),
        (25, await client.public("/api/v3/depth", symbol="BTCUSDT", limit=500)),
        (2, await client.public("/api/v3/ticker/bookTicker", symbol="BTCUSDT")),
        (20, await client.signed("GET", "/api/v3/account")),
        (6, await client.signed("GET", "/api/v3/openOrders", symbol="BTCUSDT")),
        (80, await client.signed("GET", "/api/v3/openOrders")),
        (4, await client.signed("GET", "/api/v3/order", symbol="BTCUSDT", orderId=1)),
    ]
    total = base
    for weight, reply in steps:
        total += weight
        assert await used(reply) == total
    # The window is aligned to the minute: the next minute starts from zero.
    now_s = client.clock.time_ns() / NS_PER_SECOND
    await client.clock.advance(60 - now_s % 60)
    assert await used(await client.public("/api/v3/ping")) == 1


async def test_429_then_418_with_escalating_bans() -> None:
    limits = RateLimitConfig(request_weight_per_minute=10)
    start = 1_700_000_020 * NS_PER_SECOND  # 40 s into a minute
    sim, c, session = await _open(limits=limits, start_ns=start)
    try:
        for _ in range(10):
            assert (await c.public("/api/v3/ping")).status == 200
        r429 = await c.public("/api/v3/ping")
        assert r429.status == 429
        assert r429.body["code"] == -1003
        assert r429.headers["Retry-After"] == "20"
        assert r429.headers["X-MBX-USED-WEIGHT-1M"] == "10"
        r418 = await c.public("/api/v3/ping")
        assert r418.status == 418
        assert r418.body["code"] == -1003
        assert "IP banned until" in r418.body["msg"]
        assert r418.headers["Retry-After"] == "120"
        await c.clock.advance(60)
        still = await c.public("/api/v3/time")
        assert (still.status, still.headers["Retry-After"]) == (418, "60")
        await c.clock.advance(60)
        assert (await c.public("/api/v3/ping")).status == 200
        for _ in range(9):
            await c.public("/api/v3/ping")
        assert (await c.public("/api/v3/ping")).status == 429
        again = await c.public("/api/v3/ping")
        assert (again.status, again.headers["Retry-After"]) == (418, "240")
    finally:
        await session.close()
        await sim.stop()


async def test_order_count_limit() -> None:
    sim, c, session = await _open(limits=RateLimitConfig(orders_per_10s=2))
    try:
        bid, _ = await _best(c)
        args: dict[str, Any] = {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.001", "price": str(bid - D("500")),
        }  # fmt: skip
        for n in (1, 2):
            r = await c.signed("POST", "/api/v3/order", **args)
            assert r.headers["X-MBX-ORDER-COUNT-10S"] == str(n)
        over = await c.signed("POST", "/api/v3/order", **args)
        assert (over.status, over.body) == (
            429,
            {"code": -1015, "msg": "Too many new orders; current limit is 2 orders per 10 SECOND."},
        )
        await c.clock.advance(10)
        ok = await c.signed("POST", "/api/v3/order", **args)
        assert ok.status == 200
        assert ok.headers["X-MBX-ORDER-COUNT-10S"] == "1"
        assert ok.headers["X-MBX-ORDER-COUNT-1D"] == "3"
    finally:
        await session.close()
        await sim.stop()


async def test_only_loopback() -> None:
    sim = BinanceSimulator(clock=FakeClock(), seed=1, symbols=["BTCUSDT"], api_keys={})
    with pytest.raises(ValueError, match="loopback"):
        await sim.start(host="0.0.0.0")


async def test_non_ascii_vector_is_verified_over_percent_encoded_bytes() -> None:
    """Vector 2: the signature covers the percent-encoded query; it verifies, so the request
    gets as far as the symbol check."""
    sim, c, session = await _open(start_ns=(VEC_TS + 1000) * 1_000_000)
    try:
        query = (
            "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
            "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
        )
        sig = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
        r = await c.raw(
            "POST", "/api/v3/order", f"{query}&signature={sig}", headers={"X-MBX-APIKEY": VEC_KEY}
        )
        assert r.body == {"code": -1121, "msg": "Invalid symbol."}
    finally:
        await session.close()
        await sim.stop()


async def test_ioc_and_fok_limits(client: Client) -> None:
    bid, ask = await _best(client)
    far = str(bid - D("1000"))
    ioc = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
        timeInForce="IOC", quantity="0.001", price=far,
    )  # fmt: skip
    assert ioc.body["status"] == "EXPIRED"
    assert ioc.body["executedQty"] == "0.00000000"
    fok = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
        timeInForce="FOK", quantity="0.001", price=str(ask),
    )  # fmt: skip
    assert fok.body["status"] == "FILLED"
    assert fok.body["timeInForce"] == "FOK"
    assert (await client.signed("GET", "/api/v3/openOrders")).body == []


async def test_resting_order_fills_as_maker_when_the_market_moves(client: Client) -> None:
    bid, _ = await _best(client)
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
        timeInForce="GTC", quantity="0.001", price=str(bid),
    )  # fmt: skip
    order_id = r.body["orderId"]
    status = r.body["status"]
    for _ in range(600):
        if status == "FILLED":
            break
        await client.clock.advance(0.5)
        q = await client.signed("GET", "/api/v3/order", symbol="BTCUSDT", orderId=order_id)
        status = q.body["status"]
    assert status == "FILLED"
    trades = await client.signed("GET", "/api/v3/myTrades", symbol="BTCUSDT", orderId=order_id)
    assert trades.body
    assert all(t["isMaker"] for t in trades.body)
    assert sum(D(t["qty"]) for t in trades.body) == D("0.001")


async def test_same_seed_same_market() -> None:
    books = []
    for _ in range(2):
        sim, c, session = await _open()
        try:
            await c.clock.advance(5)
            books.append((await c.public("/api/v3/depth", symbol="ETHUSDT", limit=5)).body)
        finally:
            await session.close()
            await sim.stop()
    assert books[0] == books[1]


async def test_market_buy_by_quote_order_qty(client: Client) -> None:
    r = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quoteOrderQty="100"
    )
    assert r.status == 200, r.body
    assert r.body["origQuoteOrderQty"] == "100.00000000"
    spent = D(r.body["cummulativeQuoteQty"])
    _, ask = await _best(client)
    assert D("100") - ask * D("0.00001") < spent <= D("100")  # within one step of the budget
    assert D(r.body["executedQty"]) % D("0.00001") == 0
    both = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
        quoteOrderQty="100", quantity="0.001",
    )  # fmt: skip
    assert both.body["code"] == -1106
    small = await client.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quoteOrderQty="1"
    )
    assert small.body == {"code": -1013, "msg": "Filter failure: NOTIONAL"}
