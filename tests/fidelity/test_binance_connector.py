"""Binance's official Python SDK (binance-connector 3.13), unchanged, on the simulator.

``Spot(base_url=...)`` is the SDK's documented way to reach the testnet; here it reaches the
simulator on loopback over plain HTTP. Its websocket stream client takes ``stream_url`` and
appends ``/ws`` or ``/stream``, so a ``ws://127.0.0.1:PORT`` base works as it is. Ed25519
keys go through the SDK's ``private_key`` (a PKCS#8 PEM, signed with pycryptodome), checked
by the simulator against the registered public key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from binance.error import ClientError
from binance.spot import Spot
from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from botd.venues.sim.binance.auth import ApiKey
from botd.venues.sim.market import default_instruments
from tests.fidelity.conftest import NetworkGuard
from tests.fidelity.simthread import SimThread

D = Decimal
KEY = "connector-key"
SECRET = "connector-secret"
ED_KEY = "connector-ed25519-key"
_ED_PRIVATE = Ed25519PrivateKey.generate()
ED_PRIVATE_PEM = _ED_PRIVATE.private_bytes(
    Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
).decode()
ED_PUBLIC_PEM = _ED_PRIVATE.public_key().public_bytes(
    Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
)


@pytest.fixture(scope="module")
def sim(no_internet: NetworkGuard) -> Iterator[SimThread]:
    s = SimThread(
        api_keys={KEY: SECRET, ED_KEY: ApiKey.ed25519(ED_PUBLIC_PEM)},
        balances={
            KEY: {"USDT": D(100000), "BTC": D(1)},
            ED_KEY: {"USDT": D(1000)},
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def spot(sim: SimThread) -> Spot:
    return Spot(api_key=KEY, api_secret=SECRET, base_url=sim.http, timeout=10)


# -- public ---------------------------------------------------------------------------------


def test_time_and_exchange_info(spot: Spot) -> None:
    assert abs(spot.time()["serverTime"] - time.time() * 1000) < 5000
    info = spot.exchange_info(symbol="BTCUSDT")
    (sym,) = info["symbols"]
    inst = default_instruments("binance")["BTCUSDT"].instrument("binance")
    filters = {f["filterType"]: f for f in sym["filters"]}
    assert D(filters["PRICE_FILTER"]["tickSize"]) == inst.tick_size
    assert D(filters["LOT_SIZE"]["stepSize"]) == inst.step_size
    assert D(filters["LOT_SIZE"]["minQty"]) == inst.min_qty
    assert D(filters["NOTIONAL"]["minNotional"]) == inst.min_notional
    both = spot.exchange_info(symbols=["BTCUSDT", "ETHUSDT"])
    assert [s["symbol"] for s in both["symbols"]] == ["BTCUSDT", "ETHUSDT"]


def test_depth_and_tickers(spot: Spot) -> None:
    book = spot.depth("BTCUSDT", limit=5)
    assert isinstance(book["lastUpdateId"], int)
    assert 0 < len(book["bids"]) <= 5 and 0 < len(book["asks"]) <= 5
    assert D(book["bids"][0][0]) < D(book["asks"][0][0])
    top = spot.book_ticker("BTCUSDT")
    assert D(top["bidPrice"]) < D(top["askPrice"])

    spot.new_order("BTCUSDT", "BUY", "MARKET", quantity="0.001")  # at least one trade
    price = spot.ticker_price("BTCUSDT")
    assert price["symbol"] == "BTCUSDT" and D(price["price"]) > 0
    day = spot.ticker_24hr("BTCUSDT")
    assert D(day["lowPrice"]) <= D(day["lastPrice"]) <= D(day["highPrice"])
    assert day["count"] >= 1 and D(day["volume"]) >= D("0.001")
    assert [t["symbol"] for t in spot.ticker_24hr(symbols=["BTCUSDT", "ETHUSDT"])] == [
        "BTCUSDT",
        "ETHUSDT",
    ]
    mini = spot.ticker_24hr("BTCUSDT", type="MINI")
    assert "priceChange" not in mini and mini["lastPrice"] == mini["lastPrice"]
    avg = spot.avg_price("BTCUSDT")
    assert avg["mins"] == 5 and D(day["lowPrice"]) <= D(avg["price"]) <= D(day["highPrice"])


def test_klines(spot: Spot) -> None:
    order = spot.new_order("BTCUSDT", "SELL", "MARKET", quantity="0.002")
    bars = spot.klines("BTCUSDT", "1m", limit=2)
    assert 1 <= len(bars) <= 2
    row = bars[-1]
    assert len(row) == 12 and row[11] == "0"
    open_ms, o, h, lo, c, v, close_ms = row[:7]
    assert close_ms == open_ms + 59_999 and open_ms <= order["transactTime"] <= close_ms
    assert D(lo) <= min(D(o), D(c)) and D(h) >= max(D(o), D(c)) and D(v) >= D("0.002")
    assert row[8] >= 1 and D(row[7]) > 0  # trades, quote volume
    since = spot.klines("BTCUSDT", "1s", startTime=order["transactTime"] - 2000, limit=3)
    assert [r[0] for r in since] == sorted(r[0] for r in since) and len(since) <= 3
    assert since[0][0] >= order["transactTime"] - 2000
    assert spot.ui_klines("BTCUSDT", "1m", limit=1)[0][0] == bars[-1][0]
    with pytest.raises(ClientError) as info:
        spot.klines("BTCUSDT", "7m")
    assert (info.value.status_code, info.value.error_code) == (400, -1120)


# -- trading --------------------------------------------------------------------------------


def test_order_lifecycle(spot: Spot) -> None:
    placed = spot.new_order(
        "BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity="0.001", price="50000"
    )
    assert placed["status"] == "NEW" and placed["fills"] == []
    oid = placed["orderId"]
    got = spot.get_order("BTCUSDT", orderId=oid)
    assert (got["status"], got["price"], got["origQty"]) == ("NEW", "50000.00000000", "0.00100000")
    assert spot.get_order("BTCUSDT", origClientOrderId=placed["clientOrderId"])["orderId"] == oid
    assert oid in [o["orderId"] for o in spot.get_open_orders("BTCUSDT")]
    locked = {b["asset"]: D(b["locked"]) for b in spot.account()["balances"]}
    assert locked["USDT"] >= D("50")

    canceled = spot.cancel_order("BTCUSDT", orderId=oid)
    assert (
        canceled["status"] == "CANCELED"
        and canceled["origClientOrderId"] == (placed["clientOrderId"])
    )
    assert oid not in [o["orderId"] for o in spot.get_open_orders("BTCUSDT")]


def test_market_order_account_and_my_trades(spot: Spot) -> None:
    before = {b["asset"]: D(b["free"]) for b in spot.account()["balances"]}
    placed = spot.new_order("BTCUSDT", "BUY", "MARKET", quantity="0.004")
    assert placed["status"] == "FILLED" and D(placed["executedQty"]) == D("0.004")
    fee = sum(D(f["commission"]) for f in placed["fills"])
    after = {b["asset"]: D(b["free"]) for b in spot.account()["balances"]}
    assert after["BTC"] - before["BTC"] == D("0.004") - fee
    assert before["USDT"] - after["USDT"] == D(placed["cummulativeQuoteQty"])
    trades = spot.my_trades("BTCUSDT", orderId=placed["orderId"])
    assert sum(D(t["qty"]) for t in trades) == D("0.004")
    assert {t["id"] for t in trades} == {f["tradeId"] for f in placed["fills"]}
    assert all(t["isBuyer"] and not t["isMaker"] for t in trades)


def test_limit_usage_headers(sim: SimThread) -> None:
    client = Spot(api_key=KEY, api_secret=SECRET, base_url=sim.http, show_limit_usage=True)
    reply = client.account()
    assert int(reply["limit_usage"]["x-mbx-used-weight-1m"]) >= 20
    assert reply["data"]["accountType"] == "SPOT"


# -- errors as the SDK raises them ----------------------------------------------------------


def _client_error(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    return info.value


def _limit_buy(spot: Spot, price: str) -> Any:
    return spot.new_order(
        "BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity="0.001", price=price
    )


def test_errors_become_client_errors(spot: Spot, sim: SimThread) -> None:
    e = _client_error(lambda: _limit_buy(spot, "50000.000000001"))
    assert (e.status_code, e.error_code, e.error_message) == (
        400,
        -1111,
        "Parameter 'price' has too much precision.",
    )
    e = _client_error(lambda: _limit_buy(spot, "50000.001"))
    assert (e.error_code, e.error_message) == (-1013, "Filter failure: PRICE_FILTER")
    e = _client_error(lambda: spot.get_order("BTCUSDT", orderId=987654321))
    assert (e.error_code, e.error_message) == (-2013, "Order does not exist.")
    e = _client_error(lambda: spot.cancel_order("BTCUSDT", orderId=987654321))
    assert (e.error_code, e.error_message) == (-2011, "Unknown order sent.")
    e = _client_error(lambda: spot.depth("NOSUCH"))
    assert (e.error_code, e.error_message) == (-1121, "Invalid symbol.")
    wrong = Spot(api_key=KEY, api_secret="wrong", base_url=sim.http)
    e = _client_error(wrong.account)
    assert (e.status_code, e.error_code) == (400, -1022)
    stranger = Spot(api_key="stranger", api_secret="x", base_url=sim.http)
    e = _client_error(stranger.account)
    assert (e.status_code, e.error_code) == (401, -2015)


# -- Ed25519 --------------------------------------------------------------------------------


def test_ed25519_key_signs_requests(sim: SimThread) -> None:
    ed = Spot(api_key=ED_KEY, private_key=ED_PRIVATE_PEM, base_url=sim.http)
    balances = {b["asset"]: D(b["free"]) for b in ed.account()["balances"]}
    assert balances["USDT"] == D(1000)
    placed = ed.new_order(
        "ETHUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity="0.01", price="1000"
    )
    assert ed.cancel_order("ETHUSDT", orderId=placed["orderId"])["status"] == "CANCELED"
    other = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    forged = Spot(api_key=ED_KEY, private_key=other.decode(), base_url=sim.http)
    assert _client_error(forged.account).error_code == -1022


# -- websocket streams ----------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def on_message(self, _manager: object, text: str) -> None:
        with self._lock:
            self.messages.append(json.loads(text))

    def on_error(self, _manager: object, error: BaseException) -> None:
        self.errors.append(error)

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for m in self.messages:
                    if pred(m):
                        return m
            time.sleep(0.02)
        raise AssertionError(f"nothing matched in {len(self.messages)} messages")


@pytest.mark.parametrize("combined", [False, True])
def test_websocket_stream_client(sim: SimThread, spot: Spot, combined: bool) -> None:
    inbox = _Inbox()
    client = SpotWebsocketStreamClient(
        stream_url=sim.ws,
        on_message=inbox.on_message,
        on_error=inbox.on_error,
        is_combined=combined,
        timeout=10,
    )
    try:
        client.trade(symbol="btcusdt", id=1)
        client.book_ticker(symbol="btcusdt", id=2)
        assert inbox.wait_for(lambda m: m.get("id") == 1) == {"result": None, "id": 1}
        inbox.wait_for(lambda m: m.get("id") == 2)
        placed = spot.new_order("BTCUSDT", "SELL", "MARKET", quantity="0.001")
        trade_ids = {f["tradeId"] for f in placed["fills"]}

        def is_ours(m: Any) -> bool:
            data = m.get("data", {}) if combined else m
            return data.get("e") == "trade" and data.get("t") in trade_ids

        event = inbox.wait_for(is_ours)
        if combined:
            assert event["stream"] == "btcusdt@trade"
            event = event["data"]
        assert event["s"] == "BTCUSDT" and event["m"] is True  # the buyer made the market
        ticker = inbox.wait_for(lambda m: (m.get("data", m)).get("u") is not None)
        ticker = ticker.get("data", ticker)
        assert D(ticker["b"]) < D(ticker["a"])
        client.list_subscribe(id=3)
        listed = inbox.wait_for(lambda m: m.get("id") == 3)
        assert sorted(listed["result"]) == ["btcusdt@bookTicker", "btcusdt@trade"]
    finally:
        client.stop()
    assert not inbox.errors
