"""ccxt (4.5.90), unchanged, trades on the Binance simulator: proof that the wire matches.

ccxt's binance class is written against the real exchange by people who never saw this
simulator, so every call below that parses, signs and maps errors correctly is evidence that
the simulator speaks Binance. Only what a user pointing ccxt at Binance's spot testnet would
change is changed:

- ``urls['api']``: every REST base is moved to the simulator, keeping its path, so
  ``public``/``private`` land on ``/api/v3`` and anything unexpected (``sapi``, ``fapi`` …)
  gets the simulator's 404 instead of leaving the host; ``urls['api']['ws']`` likewise;
- ``options['fetchMarkets']['types'] = ['spot']``: the simulator is a spot venue, so no
  futures/options exchangeInfo (the testnet has no such endpoints either);
- ``options['fetchCurrencies'] = False`` and ``options['fetchMargins'] = False``: both read
  ``/sapi`` wallet and margin endpoints, which neither the simulator nor the spot testnet
  serve (ccxt itself skips them in sandbox mode).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from botd.venues.sim.binance import RateLimitConfig
from botd.venues.sim.market import default_instruments
from tests.fidelity.conftest import NetworkGuard
from tests.fidelity.simthread import SimThread

D = Decimal
KEY = "ccxt-fidelity-key"
SECRET = "ccxt-fidelity-secret"
POOR_KEY = "ccxt-poor-key"
POOR_SECRET = "ccxt-poor-secret"
SYMBOL = "BTC/USDT"
OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
}


def point_at(ex: Any, sim: SimThread) -> Any:
    """Move every REST and websocket base URL of ``ex`` to the simulator, paths kept."""
    for name, url in list(ex.urls["api"].items()):
        if isinstance(url, str):
            ex.urls["api"][name] = sim.http + urlsplit(url).path
    ws = ex.urls["api"].get("ws")
    if isinstance(ws, dict):
        for name, url in list(ws.items()):
            if isinstance(url, str):
                ws[name] = sim.ws + urlsplit(url).path
            elif isinstance(url, dict):
                for sub, u in list(url.items()):
                    url[sub] = sim.ws + urlsplit(u).path
    return ex


@pytest.fixture(scope="module")
def sim(no_internet: NetworkGuard) -> Iterator[SimThread]:
    s = SimThread(
        api_keys={KEY: SECRET, POOR_KEY: POOR_SECRET},
        balances={KEY: {"USDT": D(100000), "BTC": D(1)}},
    ).start()
    try:
        yield s
    finally:
        s.stop()


def make(sim: SimThread, key: str = KEY, secret: str = SECRET, pro: bool = False) -> Any:
    cls = ccxt_pro.binance if pro else ccxt_async.binance
    return point_at(cls({"apiKey": key, "secret": secret, "options": dict(OPTIONS)}), sim)


@pytest.fixture
async def ex(sim: SimThread) -> AsyncIterator[Any]:
    exchange = make(sim)
    await exchange.load_markets()
    try:
        yield exchange
    finally:
        await exchange.close()


def dec(x: object) -> Decimal:
    return D(str(x))


# -- markets and market data ----------------------------------------------------------------


async def test_load_markets_carries_our_filters(ex: Any) -> None:
    specs = default_instruments("binance")
    assert {"BTC/USDT", "ETH/USDT"} <= set(ex.markets)
    for symbol in ("BTC/USDT", "ETH/USDT"):
        m = ex.markets[symbol]
        inst = specs[m["id"]].instrument("binance")
        assert (m["base"], m["quote"]) == (inst.base, inst.quote)
        assert m["spot"] and m["active"]
        assert dec(m["precision"]["price"]) == inst.tick_size
        assert dec(m["precision"]["amount"]) == inst.step_size
        assert dec(m["limits"]["amount"]["min"]) == inst.min_qty
        assert dec(m["limits"]["price"]["min"]) == inst.tick_size
        assert dec(m["limits"]["cost"]["min"]) == inst.min_notional
        assert dec(m["limits"]["market"]["min"]) == inst.min_qty
        assert m["maker"] == m["taker"] == 0.001


async def test_fetch_time_and_time_difference(ex: Any) -> None:
    server = await ex.fetch_time()
    assert abs(server - ex.milliseconds()) < 5000
    # adjustForTimeDifference users call this at start-up; it reads GET /api/v3/time.
    assert abs(await ex.load_time_difference()) < 5000


async def _rest_depth(sim: SimThread, limit: int = 1000) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim.http}/api/v3/depth?symbol=BTCUSDT&limit={limit}") as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return body


def _levels(raw: list[list[str]]) -> list[list[float]]:
    return [[float(p), float(q)] for p, q in raw]


async def test_fetch_order_book_is_the_simulators_book(ex: Any, sim: SimThread) -> None:
    for _ in range(50):  # the market moves; compare a pair taken at the same update id
        ob = await ex.fetch_order_book(SYMBOL, 100)
        raw = await _rest_depth(sim, 100)
        if raw["lastUpdateId"] == ob["nonce"]:
            break
    else:
        pytest.fail("never caught the book twice at the same update id")
    assert ob["bids"] == _levels(raw["bids"]) and ob["asks"] == _levels(raw["asks"])
    assert ob["bids"][0][0] < ob["asks"][0][0]
    assert ob["bids"] == sorted(ob["bids"], reverse=True) and ob["asks"] == sorted(ob["asks"])


async def test_fetch_ticker_and_ohlcv_follow_our_trades(ex: Any) -> None:
    order = await ex.create_order(SYMBOL, "market", "buy", 0.002)
    fill = D(order["info"]["fills"][0]["price"])
    t = await ex.fetch_ticker(SYMBOL)
    assert dec(t["low"]) <= fill <= dec(t["high"])
    assert dec(t["baseVolume"]) >= D("0.002")
    assert t["bid"] < t["ask"]
    assert t["info"]["count"] >= 1 and t["info"]["lastId"] >= t["info"]["firstId"] >= 0

    bars = await ex.fetch_ohlcv(SYMBOL, "1m", limit=3)
    ts, o, h, lo, c, v = bars[-1]
    assert ts % 60_000 == 0 and ts <= order["timestamp"] < ts + 60_000
    assert lo <= min(o, c) and h >= max(o, c) and v >= 0.002
    assert dec(lo) <= fill <= dec(h)
    secs = await ex.fetch_ohlcv(SYMBOL, "1s", since=order["timestamp"] - 1000, limit=5)
    assert secs and all(b[0] % 1000 == 0 for b in secs)
    assert [b[0] for b in secs] == sorted({b[0] for b in secs})
    assert sum(b[5] for b in secs) >= 0.002


# -- orders ---------------------------------------------------------------------------------


async def test_limit_order_lifecycle(ex: Any, sim: SimThread) -> None:
    order = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 50000)
    assert order["status"] == "open" and order["type"] == "limit" and order["side"] == "buy"
    assert (order["price"], order["amount"], order["filled"]) == (50000.0, 0.001, 0.0)
    assert order["clientOrderId"].startswith("x-")  # ccxt's broker prefix, accepted as sent

    on_book = sim.call(lambda s: [v.venue_order_id for v in s.engine.open_venue_orders(KEY)])
    assert order["id"] in on_book

    fetched = await ex.fetch_order(order["id"], SYMBOL)
    assert fetched["status"] == "open" and fetched["clientOrderId"] == order["clientOrderId"]
    assert order["id"] in [o["id"] for o in await ex.fetch_open_orders(SYMBOL)]
    by_cid = await ex.fetch_order(None, SYMBOL, {"clientOrderId": order["clientOrderId"]})
    assert by_cid["id"] == order["id"]

    canceled = await ex.cancel_order(order["id"], SYMBOL)
    assert canceled["status"] == "canceled" and canceled["id"] == order["id"]
    assert order["id"] not in [o["id"] for o in await ex.fetch_open_orders(SYMBOL)]
    assert (await ex.fetch_order(order["id"], SYMBOL))["status"] == "canceled"
    locked = sim.call(lambda s: s.engine.balances(KEY)["USDT"].locked)
    assert locked == 0


async def test_market_order_fills_and_shows_in_balance_and_my_trades(
    ex: Any, sim: SimThread
) -> None:
    before = await ex.fetch_balance()
    order = await ex.create_order(SYMBOL, "market", "buy", 0.003)
    assert order["status"] == "closed" and order["filled"] == 0.003
    assert order["average"] and order["cost"] == pytest.approx(order["average"] * 0.003)
    after = await ex.fetch_balance()
    fee = sum(D(f["commission"]) for f in order["info"]["fills"])
    assert dec(after["BTC"]["total"]) - dec(before["BTC"]["total"]) == D("0.003") - fee
    engine = sim.call(lambda s: s.engine.balances(KEY))
    for asset in ("BTC", "USDT"):
        assert dec(after[asset]["free"]) == engine[asset].free
        assert dec(after[asset]["used"]) == engine[asset].locked

    mine = [t for t in await ex.fetch_my_trades(SYMBOL) if t["order"] == order["id"]]
    assert sum(dec(t["amount"]) for t in mine) == D("0.003")
    assert all(t["side"] == "buy" and t["takerOrMaker"] == "taker" for t in mine)
    assert sum(dec(t["fee"]["cost"]) for t in mine) == fee

    # Spending a quote amount: ccxt sends quoteOrderQty.
    spent = await ex.create_market_buy_order_with_cost(SYMBOL, 100)
    assert spent["status"] == "closed" and 0 < spent["cost"] <= 100
    assert spent["info"]["origQuoteOrderQty"] == "100.00000000"


async def test_open_orders_without_symbol_once_acknowledged(ex: Any) -> None:
    order = await ex.create_order("ETH/USDT", "limit", "buy", 0.01, 1000)
    ex.options["warnOnFetchOpenOrdersWithoutSymbol"] = False  # ccxt's own warning, not ours
    try:
        assert order["id"] in [o["id"] for o in await ex.fetch_open_orders()]
    finally:
        await ex.cancel_order(order["id"], "ETH/USDT")


async def test_post_only_ioc_cancel_all_and_order_history(ex: Any) -> None:
    maker = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 50000, {"postOnly": True})
    assert maker["status"] == "open" and maker["postOnly"] is True
    assert maker["info"]["type"] == "LIMIT_MAKER"
    with pytest.raises(ccxt_async.OrderImmediatelyFillable):  # -2010 "would immediately match"
        await ex.create_order(SYMBOL, "limit", "buy", 0.001, 90000, {"postOnly": True})
    ioc = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 50000, {"timeInForce": "IOC"})
    assert (ioc["status"], ioc["timeInForce"], ioc["filled"]) == ("expired", "IOC", 0.0)
    rest = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 50001)

    canceled = await ex.cancel_all_orders(SYMBOL)
    assert {o["id"] for o in canceled} >= {maker["id"], rest["id"]}
    assert await ex.fetch_open_orders(SYMBOL) == []

    history = {o["id"]: o for o in await ex.fetch_orders(SYMBOL)}  # GET /api/v3/allOrders
    assert history[maker["id"]]["status"] == "canceled"
    assert history[ioc["id"]]["status"] == "expired"
    assert list(history) == sorted(history, key=int)
    since = await ex.fetch_orders(SYMBOL, since=ioc["timestamp"])
    assert [o["id"] for o in since][:2] == [ioc["id"], rest["id"]]
    closed = await ex.fetch_closed_orders(SYMBOL)
    assert all(o["status"] == "closed" for o in closed)
    assert maker["id"] not in {o["id"] for o in closed}


async def test_bid_ask_and_last_price_tickers(ex: Any) -> None:
    tops = await ex.fetch_bids_asks([SYMBOL, "ETH/USDT"])  # GET /api/v3/ticker/bookTicker
    assert set(tops) == {SYMBOL, "ETH/USDT"}
    assert all(t["bid"] < t["ask"] for t in tops.values())
    last = await ex.fetch_last_prices([SYMBOL])  # GET /api/v3/ticker/price
    assert last[SYMBOL]["price"] > 0


# -- errors: the exception classes ccxt maps Binance's codes to ------------------------------


async def test_filter_failures_map_to_invalid_order(ex: Any) -> None:
    with pytest.raises(ccxt_async.InvalidOrder, match="PRICE_FILTER"):
        await ex.create_order(SYMBOL, "limit", "buy", 0.001, 2_000_000)  # above maxPrice
    with pytest.raises(ccxt_async.InvalidOrder, match="LOT_SIZE"):
        await ex.create_order(SYMBOL, "limit", "sell", 9001, 70000)  # above maxQty
    # ccxt maps -1013 by code to BadRequest unless the text names LOT_SIZE or PRICE_FILTER.
    with pytest.raises(ccxt_async.BadRequest, match=r'"code":-1013.*NOTIONAL'):
        await ex.create_order(SYMBOL, "limit", "buy", 0.00002, 60000)


async def test_insufficient_balance_maps_to_insufficient_funds(sim: SimThread) -> None:
    poor = make(sim, POOR_KEY, POOR_SECRET)
    try:
        with pytest.raises(ccxt_async.InsufficientFunds):
            await poor.create_order(SYMBOL, "limit", "buy", 0.001, 50000)
    finally:
        await poor.close()


async def test_unknown_orders_map_to_order_not_found(ex: Any) -> None:
    with pytest.raises(ccxt_async.OrderNotFound, match="-2013"):
        await ex.fetch_order("987654321", SYMBOL)
    with pytest.raises(ccxt_async.OrderNotFound, match="-2011"):
        await ex.cancel_order("987654321", SYMBOL)


async def test_bad_credentials_map_to_authentication_error(sim: SimThread) -> None:
    for key, secret, code in ((KEY, "not-the-secret", "-1022"), ("nobody", "x", "-2015")):
        client = make(sim, key, secret)
        try:
            with pytest.raises(ccxt_async.AuthenticationError, match=code):
                await client.fetch_balance()
        finally:
            await client.close()


async def test_stale_timestamp_maps_to_invalid_nonce(sim: SimThread) -> None:
    client = make(sim)
    client.options["timeDifference"] = 30_000  # our clock 30 s behind, recvWindow 10 s
    try:
        with pytest.raises(ccxt_async.InvalidNonce, match="-1021"):
            await client.fetch_balance()
    finally:
        await client.close()


async def test_rate_limit_maps_to_ddos_protection(no_internet: NetworkGuard) -> None:
    tight = SimThread(
        api_keys={KEY: SECRET},
        balances={},
        limits=RateLimitConfig(request_weight_per_minute=1),
    ).start()
    client = make(tight)
    client.enableRateLimit = False  # ccxt's own throttle would hide the venue's answer
    try:
        if time.time() % 60 > 58:  # the weight window is the clock's minute: stay inside one
            await asyncio.sleep(2.5)
        await client.fetch_time()  # weight 1: the whole allowance
        with pytest.raises(ccxt_async.DDoSProtection, match="429"):
            await client.fetch_time()
        assert int(client.last_response_headers["Retry-After"]) > 0
        with pytest.raises(ccxt_async.DDoSProtection, match="418"):  # banned after a 429
            await client.fetch_time()
    finally:
        await client.close()
        tight.stop()


async def test_guard_keeps_ccxt_off_the_internet(no_internet: NetworkGuard) -> None:
    """Unpointed, ccxt goes for api.binance.com; the guard refuses before any packet."""
    client = ccxt_async.binance()
    try:
        with pytest.raises(ccxt_async.NetworkError):
            await client.fetch_time()
    finally:
        await client.close()
    assert no_internet.refused and "binance.com" in no_internet.refused[0]
    no_internet.refused.clear()


# -- ccxt.pro websocket ---------------------------------------------------------------------


async def test_watch_trades_sees_our_own_fill(sim: SimThread) -> None:
    client = make(sim, pro=True)
    rest = make(sim)
    try:
        await client.load_markets()
        await rest.load_markets()
        await asyncio.wait_for(client.watch_trades(SYMBOL), 10)  # subscribed
        order = await rest.create_order(SYMBOL, "market", "sell", 0.004)
        ids = {str(f["tradeId"]) for f in order["info"]["fills"]}
        seen: dict[str, Any] = {}
        for _ in range(100):
            for t in await asyncio.wait_for(client.watch_trades(SYMBOL), 10):
                seen[t["id"]] = t
            if ids <= set(seen):
                break
        assert ids <= set(seen)
        mine = [seen[i] for i in ids]
        assert sum(dec(t["amount"]) for t in mine) == D("0.004")
        assert all(t["side"] == "sell" and t["symbol"] == SYMBOL for t in mine)
    finally:
        await client.close()
        await rest.close()


async def test_watch_order_book_converges_to_the_simulators_book(sim: SimThread) -> None:
    """ccxt buffers the diff stream, fetches a REST snapshot and applies the diffs with the
    documented U/u checks; its book must equal the simulator's at the same update id."""
    client = make(sim, pro=True)
    try:
        await client.load_markets()
        await asyncio.wait_for(client.watch_order_book(SYMBOL), 10)
        matched = 0
        for _ in range(200):
            raw = await _rest_depth(sim)
            uid = raw["lastUpdateId"]
            ob = client.orderbooks[SYMBOL]
            for _ in range(100):  # let the stream catch up with the snapshot
                if ob["nonce"] >= uid:
                    break
                await asyncio.sleep(0.01)
            if ob["nonce"] != uid:
                continue
            bids = [list(x) for x in ob["bids"]]
            asks = [list(x) for x in ob["asks"]]
            assert bids == _levels(raw["bids"])
            assert asks == _levels(raw["asks"])
            matched += 1
            if matched == 3:
                break
            await asyncio.sleep(0.3)  # a few market steps later, again
        assert matched == 3
    finally:
        await client.close()


async def test_watch_ohlcv_and_bids_asks(sim: SimThread) -> None:
    client = make(sim, pro=True)
    try:
        await client.load_markets()
        bars = await asyncio.wait_for(client.watch_ohlcv(SYMBOL, "1m"), 10)  # @kline_1m
        ts, o, h, lo, c, _v = bars[-1]
        assert ts % 60_000 == 0 and lo <= min(o, c) <= max(o, c) <= h
        tops = await asyncio.wait_for(client.watch_bids_asks([SYMBOL]), 10)  # @bookTicker
        assert tops[SYMBOL]["bid"] < tops[SYMBOL]["ask"]
    finally:
        await client.close()


async def test_orders_and_user_data_over_the_ws_api(sim: SimThread) -> None:
    """ccxt.pro trades over ``/ws-api/v3`` and follows its orders, fills and balances through
    ``userDataStream.subscribe.signature`` on the same connection."""
    client = make(sim, pro=True)
    try:
        await client.load_markets()
        watcher = asyncio.ensure_future(client.watch_orders(SYMBOL))
        await asyncio.sleep(0.3)  # the subscription goes out before the order below
        placed = await asyncio.wait_for(
            client.create_order_ws(SYMBOL, "limit", "buy", 0.001, 50000), 10
        )
        assert placed["status"] == "open"
        assert placed["id"] in [o["id"] for o in await client.fetch_open_orders_ws(SYMBOL)]
        # account.status; ccxt 4.5.90 parses its reply only for futures, so read the raw body.
        status = (await asyncio.wait_for(client.fetch_balance_ws(), 10))["info"]
        locked = {b["asset"]: D(b["locked"]) for b in status["balances"]}
        assert status["accountType"] == "SPOT" and locked["USDT"] >= 50
        await asyncio.wait_for(client.cancel_order_ws(placed["id"], SYMBOL), 10)

        seen: dict[str, Any] = {o["id"]: o for o in await asyncio.wait_for(watcher, 10)}
        for _ in range(20):
            if seen.get(placed["id"], {}).get("status") == "canceled":
                break
            for o in await asyncio.wait_for(client.watch_orders(SYMBOL), 10):
                seen[o["id"]] = o
        assert seen[placed["id"]]["status"] == "canceled"

        trades = asyncio.ensure_future(client.watch_my_trades(SYMBOL))
        balances = asyncio.ensure_future(client.watch_balance())
        await asyncio.sleep(0)
        sold = await asyncio.wait_for(client.create_order_ws(SYMBOL, "market", "sell", 0.002), 10)
        mine = await asyncio.wait_for(trades, 10)
        while sold["id"] not in {t["order"] for t in mine}:
            mine = await asyncio.wait_for(client.watch_my_trades(SYMBOL), 10)
        assert all(t["side"] == "sell" for t in mine if t["order"] == sold["id"])
        after = await asyncio.wait_for(balances, 10)
        assert after["BTC"]["free"] is not None and after["USDT"]["free"] > 0
    finally:
        await client.close()
