"""The simulator's trade-derived REST endpoints: klines, tickers, avgPrice, and allOrders.

The bodies are checked exactly against a hand-fed kline book; the endpoints are checked over
loopback for parameters, weights and agreement with the simulator's own fills.
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

from botd.clock import NS_PER_SECOND, FakeClock
from botd.venues.sim.binance import BinanceSimulator
from botd.venues.sim.binance.errors import BinanceError
from botd.venues.sim.binance.klines import KlineBook
from botd.venues.sim.binance.marketdata import (
    LastTrade,
    avg_price_json,
    klines_json,
    price_json,
    ticker_24hr_json,
)

D = Decimal
KEY = "md-key"
SECRET = "md-secret"
OTHER = "md-other"
T0 = 1_700_000_100_000  # on a five-minute boundary
DAY = 86_400_000


def _book() -> KlineBook:
    book = KlineBook()
    for i, (dt_ms, price, qty, buy) in enumerate(
        [(0, "100", "1", True), (30_000, "110", "2", False), (120_000, "90", "1", True)]
    ):
        book.add_trade(
            "BTCUSDT",
            trade_id=10 + i,
            price=D(price),
            qty=D(qty),
            buyer_is_taker=buy,
            time_ms=T0 + dt_ms,
        )
    return book


# -- bodies ---------------------------------------------------------------------------------


def test_klines_rows_fill_quiet_minutes_and_follow_limit_rules() -> None:
    book = _book()
    now = T0 + 150_000
    rows = klines_json(book, "BTCUSDT", {"interval": "1m"}, now)
    assert [r[0] for r in rows] == [T0, T0 + 60_000, T0 + 120_000]
    assert rows[0] == [
        T0, "100.00000000", "110.00000000", "100.00000000", "110.00000000", "3.00000000",
        T0 + 59_999, "320.00000000", 2, "1.00000000", "100.00000000", "0",
    ]  # fmt: skip
    assert rows[1][1:6] == ["110.00000000"] * 4 + ["0.00000000"] and rows[1][8] == 0
    assert klines_json(book, "BTCUSDT", {"interval": "1m", "limit": "1"}, now) == rows[-1:]
    first = klines_json(book, "BTCUSDT", {"interval": "1m", "startTime": "0", "limit": "1"}, now)
    assert first == rows[:1]
    five = klines_json(book, "BTCUSDT", {"interval": "5m"}, now)
    assert len(five) == 1 and five[0][5] == "4.00000000" and five[0][8] == 3
    assert five[0][1:5] == ["100.00000000", "110.00000000", "90.00000000", "90.00000000"]
    assert (
        klines_json(book, "BTCUSDT", {"interval": "1m", "startTime": "9", "endTime": "1"}, now)
        == []
    )
    assert klines_json(book, "ETHUSDT", {"interval": "1m"}, now) == []
    assert klines_json(book, "BTCUSDT", {"interval": "1m", "timeZone": "0"}, now) == rows


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, -1102),
        ({"interval": "7m"}, -1120),
        ({"interval": "1m", "timeZone": "8"}, -1130),
        ({"interval": "1m", "limit": "-1"}, -1100),
    ],
)
def test_klines_parameter_errors(params: dict[str, str], code: int) -> None:
    with pytest.raises(BinanceError) as info:
        klines_json(_book(), "BTCUSDT", params, T0)
    assert info.value.code == code


def test_ticker_24hr_over_a_rolling_day() -> None:
    book = _book()
    last = LastTrade(D(90), D(1), T0 + 120_000)
    t = ticker_24hr_json(
        book, "BTCUSDT", last=last, bid=(D(89), D(2)), ask=(D(91), D(3)),
        now_ms=T0 + 180_000, mini=False,
    )  # fmt: skip
    assert t == {
        "symbol": "BTCUSDT",
        "priceChange": "-10.00000000",
        "priceChangePercent": "-10.000",
        "weightedAvgPrice": "102.50000000",
        "prevClosePrice": "100.00000000",
        "lastPrice": "90.00000000",
        "lastQty": "1.00000000",
        "bidPrice": "89.00000000",
        "bidQty": "2.00000000",
        "askPrice": "91.00000000",
        "askQty": "3.00000000",
        "openPrice": "100.00000000",
        "highPrice": "110.00000000",
        "lowPrice": "90.00000000",
        "volume": "4.00000000",
        "quoteVolume": "410.00000000",
        "openTime": T0 + 180_000 - DAY,
        "closeTime": T0 + 180_000,
        "firstId": 10,
        "lastId": 12,
        "count": 3,
    }
    later = ticker_24hr_json(
        book, "BTCUSDT", last=last, bid=None, ask=None, now_ms=T0 + DAY + 600_000, mini=True
    )
    assert (later["volume"], later["count"], later["firstId"]) == ("0.00000000", 0, -1)
    assert later["lastPrice"] == later["highPrice"] == "90.00000000"
    assert "priceChange" not in later


def test_avg_price_and_price() -> None:
    book = _book()
    last = LastTrade(D(90), D(1), T0 + 120_000)
    # All three trades lie in the last five minutes: (100 + 220 + 90) / 4.
    assert avg_price_json(book, "BTCUSDT", last, T0 + 150_000) == {
        "mins": 5,
        "price": "102.50000000",
        "closeTime": T0 + 120_000,
    }
    # Only the last one (the minute bars from 2 min on) lies in the window.
    assert avg_price_json(book, "BTCUSDT", last, T0 + 400_000)["price"] == "90.00000000"
    assert price_json("BTCUSDT", last) == {"symbol": "BTCUSDT", "price": "90.00000000"}
    assert price_json("ETHUSDT", None) == {"symbol": "ETHUSDT", "price": "0.00000000"}


# -- over loopback --------------------------------------------------------------------------


@dataclass
class Env:
    sim: BinanceSimulator
    clock: FakeClock
    session: aiohttp.ClientSession
    base: str

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    async def get(self, path: str, **params: Any) -> tuple[int, Any, int]:
        async with self.session.get(f"{self.base}{path}?{urlencode(params)}") as r:
            return r.status, await r.json(), int(r.headers["X-MBX-USED-WEIGHT-1M"])

    async def signed(
        self, method: str, path: str, key: str = KEY, secret: str = SECRET, **params: Any
    ) -> tuple[int, Any]:
        params["timestamp"] = self.now_ms()
        query = urlencode(params)
        sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        async with self.session.request(
            method, f"{self.base}{path}?{query}&signature={sig}", headers={"X-MBX-APIKEY": key}
        ) as r:
            return r.status, await r.json()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock(T0 * 1_000_000 + 5 * NS_PER_SECOND)
    sim = BinanceSimulator(
        clock=clock,
        seed=3,
        symbols=["BTCUSDT", "ETHUSDT"],
        api_keys={KEY: SECRET, OTHER: "other-secret"},
        balances={KEY: {"USDT": D(100000), "BTC": D(1)}},
    )
    port = await sim.start()
    session = aiohttp.ClientSession()
    try:
        yield Env(sim, clock, session, f"http://127.0.0.1:{port}")
    finally:
        await session.close()
        await sim.stop()


async def test_rest_klines_and_tickers_agree_with_our_fills(env: Env) -> None:
    status, order = await env.signed(
        "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01"
    )
    assert status == 200
    prices = [D(f["price"]) for f in order["fills"]]
    await env.clock.advance(3)  # a few market steps in other seconds of the same minute

    status, minute, used = await env.get("/api/v3/klines", symbol="BTCUSDT", interval="1m")
    assert status == 200 and used == 1 + 2  # the order's 1, then 2
    [bar] = minute
    assert bar[0] == T0 and D(bar[3]) <= min(prices) and max(prices) <= D(bar[2])
    assert D(bar[5]) >= D("0.01")
    _, seconds, _ = await env.get(
        "/api/v3/klines", symbol="BTCUSDT", interval="1s", startTime=T0, limit=1000
    )
    assert sum(D(s[5]) for s in seconds) == D(bar[5])
    assert sum(s[8] for s in seconds) == bar[8]
    assert max(D(s[2]) for s in seconds) == D(bar[2])
    _, ui, used = await env.get("/api/v3/uiKlines", symbol="BTCUSDT", interval="1m")
    assert ui == minute and used == 7

    _, day, used = await env.get("/api/v3/ticker/24hr", symbol="BTCUSDT")
    assert used == 9
    assert (day["volume"], day["count"], day["highPrice"]) == (bar[5], bar[8], bar[2])
    assert day["lastId"] >= day["firstId"] >= 0
    _, both, used = await env.get("/api/v3/ticker/24hr")
    assert [t["symbol"] for t in both] == ["BTCUSDT", "ETHUSDT"] and used == 89
    _, listed, used = await env.get("/api/v3/ticker/24hr", symbols='["ETHUSDT"]')
    assert [t["symbol"] for t in listed] == ["ETHUSDT"] and used == 91
    _, price, used = await env.get("/api/v3/ticker/price", symbol="BTCUSDT")
    assert price["price"] == day["lastPrice"] and used == 93
    _, avg, used = await env.get("/api/v3/avgPrice", symbol="BTCUSDT")
    assert D(bar[3]) <= D(avg["price"]) <= D(bar[2]) and used == 95
    status, err, _ = await env.get("/api/v3/klines", symbol="BTCUSDT", interval="2d")
    assert (status, err) == (400, {"code": -1120, "msg": "Invalid interval."})
    status, err, _ = await env.get("/api/v3/ticker/24hr", symbol="BTCUSDT", type="TINY")
    assert (status, err["code"]) == (400, -1130)


async def test_all_orders(env: Env) -> None:
    ids = []
    for price in ("50000", "50001", "50002"):
        _, o = await env.signed(
            "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
            timeInForce="GTC", quantity="0.001", price=price,
        )  # fmt: skip
        ids.append(o["orderId"])
        await env.clock.advance(1)
    await env.signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=ids[0])

    status, every = await env.signed("GET", "/api/v3/allOrders", symbol="BTCUSDT")
    assert status == 200
    assert [o["orderId"] for o in every] == ids
    assert [o["status"] for o in every] == ["CANCELED", "NEW", "NEW"]
    _, recent = await env.signed("GET", "/api/v3/allOrders", symbol="BTCUSDT", limit=2)
    assert [o["orderId"] for o in recent] == ids[1:]
    _, later = await env.signed(
        "GET", "/api/v3/allOrders", symbol="BTCUSDT", orderId=ids[1], limit=1
    )
    assert [o["orderId"] for o in later] == [ids[1]]
    _, since = await env.signed(
        "GET", "/api/v3/allOrders", symbol="BTCUSDT", startTime=every[2]["time"]
    )
    assert [o["orderId"] for o in since] == ids[2:]
    _, none = await env.signed("GET", "/api/v3/allOrders", symbol="ETHUSDT")
    assert none == []
    _, theirs = await env.signed(
        "GET", "/api/v3/allOrders", key=OTHER, secret="other-secret", symbol="BTCUSDT"
    )
    assert theirs == []
    status, err = await env.signed(
        "GET", "/api/v3/allOrders", symbol="BTCUSDT", startTime=0, endTime=DAY + 1
    )
    assert (status, err["code"]) == (400, -1127)
    status, err = await env.signed("GET", "/api/v3/allOrders")
    assert (status, err["code"]) == (400, -1102)
