# alpaca-py types every reply as "model | raw data"; these tests use the models.
# mypy: disable-error-code="union-attr"
"""alpaca-py 0.44, unchanged except ``url_override``/``paper``, against the Alpaca simulator.

The simulator runs in its own thread and event loop on a fake clock that a driver task moves
50 times faster than real time from a Tuesday 10:00 New York time, so the market is open and
minute bars close every ~1.2 s. alpaca-py's streams run in their own threads (``run()``), as
an application would run them. Every test is bounded in time; a guard fails any attempt to
resolve or connect to anything but loopback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from botd.clock import NS_PER_SECOND, FakeClock
from botd.venues.sim.alpaca import AlpacaSimulator

# alpaca-py's streams use websockets' legacy client, which warns on import.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.common.exceptions import APIError
    from alpaca.data.live import CryptoDataStream, StockDataStream
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import (
        AssetClass,
        OrderSide,
        OrderStatus,
        QueryOrderStatus,
        TimeInForce,
    )
    from alpaca.trading.requests import (
        GetAssetsRequest,
        GetCalendarRequest,
        GetOrdersRequest,
        LimitOrderRequest,
        MarketOrderRequest,
        ReplaceOrderRequest,
    )
    from alpaca.trading.stream import TradingStream

KEY = "fidelity-key"
SECRET = "fidelity-secret"
START = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("America/New_York"))
WAIT_S = 20.0
T = TypeVar("T")


def _loopback(host: object) -> bool:
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            raise OSError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise OSError(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


class SimThread:
    def __init__(self) -> None:
        self.clock = FakeClock(int(START.timestamp()) * NS_PER_SECOND)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sim: AlpacaSimulator | None = None
        self.port = 0
        self._driver: asyncio.Task[None] | None = None

    def start(self) -> SimThread:
        self.thread.start()

        async def boot() -> int:
            self.sim = AlpacaSimulator(
                clock=self.clock, seed=3, api_keys={KEY: SECRET}, step_rate=5.0
            )
            port = await self.sim.start()
            self._driver = asyncio.create_task(self._drive())
            return port

        self.port = self._run(boot())
        return self

    async def _drive(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            await self.clock.advance(0.5)

    def stop(self) -> None:
        async def down() -> None:
            if self._driver is not None:
                self._driver.cancel()
            assert self.sim is not None
            await self.sim.stop()

        self._run(down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def call(self, fn: Callable[[AlpacaSimulator], T]) -> T:
        async def run() -> T:
            assert self.sim is not None
            return fn(self.sim)

        result: T = self._run(run())
        return result

    def _run(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=30)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimThread]:
    s = SimThread().start()
    yield s
    s.stop()


@pytest.fixture
def client(sim: SimThread) -> TradingClient:
    return TradingClient(KEY, SECRET, paper=True, url_override=sim.http)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class StreamThread:
    """An alpaca-py stream's blocking ``run()`` in a daemon thread."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.thread = threading.Thread(target=stream.run, daemon=True)

    def __enter__(self) -> StreamThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wait_for(lambda: self.stream._loop is not None, "the stream loop")
        self.stream.stop()
        self.thread.join(timeout=WAIT_S)
        assert not self.thread.is_alive()


def test_account_clock_and_assets(client: TradingClient) -> None:
    account = client.get_account()
    assert account.status == "ACTIVE"
    assert float(account.cash or 0) > 0
    clock = client.get_clock()
    assert clock.is_open is True
    assert clock.next_close.astimezone(START.tzinfo).hour == 16
    crypto = client.get_all_assets(GetAssetsRequest(asset_class=AssetClass.CRYPTO))
    assert {a.symbol for a in crypto} == {"BTC/USD", "ETH/USD"}
    assert client.get_asset("AAPL").fractionable is True
    assert client.get_asset("FAKEPACA").fractionable is False
    days = client.get_calendar(
        GetCalendarRequest(start=dt.date(2026, 11, 26), end=dt.date(2026, 11, 27))
    )
    assert [(d.date, d.close.hour) for d in days] == [(dt.date(2026, 11, 27), 13)]


def test_market_notional_and_client_id_lookup(client: TradingClient) -> None:
    order = client.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=2,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            client_order_id="fid-market-1",
        )
    )
    assert order.status is OrderStatus.FILLED
    assert float(order.filled_qty or 0) == 2
    found = client.get_order_by_client_id("fid-market-1")
    assert found.id == order.id
    closed = client.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.CLOSED, symbols=["AAPL"], limit=500)
    )
    assert order.id in {o.id for o in closed}
    assert all(o.symbol == "AAPL" for o in closed)
    notional = client.submit_order(
        MarketOrderRequest(
            symbol="AAPL", notional=250, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        )
    )
    assert notional.notional == "250"
    assert notional.qty is None
    assert 0 < float(notional.filled_qty or 0) < 2
    with pytest.raises(APIError) as dup:
        client.submit_order(
            MarketOrderRequest(
                symbol="AAPL",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                client_order_id="fid-market-1",
            )
        )
    assert dup.value.status_code == 422
    assert dup.value.code == 40010001


def test_limit_replace_cancel_and_cancel_again(client: TradingClient) -> None:
    limit = client.submit_order(
        LimitOrderRequest(
            symbol="MSFT",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=300,
        )
    )
    assert limit.status is OrderStatus.NEW
    new = client.replace_order_by_id(limit.id, ReplaceOrderRequest(limit_price=301))
    assert new.replaces == limit.id
    assert float(new.limit_price or 0) == 301
    assert client.get_order_by_id(limit.id).status is OrderStatus.REPLACED
    client.cancel_order_by_id(new.id)
    assert client.get_order_by_id(new.id).status is OrderStatus.CANCELED
    with pytest.raises(APIError) as again:
        client.cancel_order_by_id(new.id)
    assert again.value.status_code == 422
    assert again.value.code == 42210000


def test_cancel_all_and_buying_power_error(client: TradingClient) -> None:
    ids = set()
    for price in (100, 101):
        o = client.submit_order(
            LimitOrderRequest(
                symbol="SPY",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                limit_price=price,
            )
        )
        ids.add(o.id)
    cancelled = client.cancel_orders()
    assert ids <= {c.id for c in cancelled}
    assert {c.status for c in cancelled} == {200}
    with pytest.raises(APIError) as poor:
        client.submit_order(
            MarketOrderRequest(
                symbol="SPY", qty=100000, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
    assert poor.value.status_code == 403
    assert poor.value.code == 40310000


def test_positions_and_close_position(client: TradingClient) -> None:
    client.submit_order(
        MarketOrderRequest(
            symbol="ETH/USD", qty=0.5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC
        )
    )
    positions = {p.symbol: p for p in client.get_all_positions()}
    assert float(positions["ETHUSD"].qty) == 0.5
    assert client.get_open_position("ETHUSD").asset_class is AssetClass.CRYPTO
    closing = client.close_position("ETHUSD")
    assert closing.side is OrderSide.SELL
    assert "ETHUSD" not in {p.symbol for p in client.get_all_positions()}


def test_stock_data_stream_trades_quotes_bars(sim: SimThread) -> None:
    got: dict[str, list[Any]] = {"trade": [], "quote": [], "bar": []}
    stream = StockDataStream(KEY, SECRET, url_override=sim.ws + "/v2/iex")

    def collect(kind: str) -> Callable[[Any], Any]:
        async def handler(item: Any) -> None:
            got[kind].append(item)

        return handler

    stream.subscribe_trades(collect("trade"), "AAPL")
    stream.subscribe_quotes(collect("quote"), "AAPL")
    stream.subscribe_bars(collect("bar"), "AAPL")
    with StreamThread(stream):
        wait_for(lambda: all(got.values()), "a trade, a quote and a bar")
    trade, quote, bar = got["trade"][0], got["quote"][0], got["bar"][0]
    assert trade.symbol == "AAPL"
    assert trade.price > 0
    assert trade.timestamp.tzinfo is not None
    assert quote.bid_price < quote.ask_price
    assert bar.low <= bar.close <= bar.high
    assert bar.timestamp.second == 0


def test_crypto_data_stream_with_order_books(sim: SimThread) -> None:
    got: dict[str, list[Any]] = {"trade": [], "quote": [], "book": [], "bar": []}
    stream = CryptoDataStream(KEY, SECRET, url_override=sim.ws + "/v1beta3/crypto/us")

    def collect(kind: str) -> Callable[[Any], Any]:
        async def handler(item: Any) -> None:
            got[kind].append(item)

        return handler

    stream.subscribe_trades(collect("trade"), "BTC/USD")
    stream.subscribe_quotes(collect("quote"), "BTC/USD")
    stream.subscribe_orderbooks(collect("book"), "BTC/USD")
    stream.subscribe_bars(collect("bar"), "BTC/USD")
    with StreamThread(stream):
        wait_for(lambda: all(got.values()), "crypto trades, quotes, books and bars")
    first = got["book"][0]
    assert first.reset is True
    assert first.bids[0].price < first.asks[0].price
    assert got["trade"][0].symbol == "BTC/USD"


def test_trading_stream_receives_trade_updates(sim: SimThread, client: TradingClient) -> None:
    updates: list[Any] = []
    stream = TradingStream(KEY, SECRET, paper=True, url_override=sim.ws + "/stream")

    async def on_update(update: Any) -> None:
        updates.append(update)

    stream.subscribe_trade_updates(on_update)
    with StreamThread(stream):
        wait_for(lambda: sim.call(lambda s: s.stream_clients["trade_updates"]) == 1, "listen")
        market = client.submit_order(
            MarketOrderRequest(
                symbol="BTC/USD", qty=0.01, side=OrderSide.BUY, time_in_force=TimeInForce.GTC
            )
        )
        resting = client.submit_order(
            LimitOrderRequest(
                symbol="BTC/USD",
                qty=0.01,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=1000,
            )
        )
        replaced = client.replace_order_by_id(resting.id, ReplaceOrderRequest(limit_price=1001))
        client.cancel_order_by_id(replaced.id)

        def events() -> list[tuple[str, Any]]:
            return [(str(u.event), u.order.id) for u in updates]

        wait_for(lambda: ("canceled", replaced.id) in events(), "the cancel update")
    seen = events()
    assert ("new", market.id) in seen
    assert ("fill", market.id) in seen
    assert ("new", resting.id) in seen
    assert ("replaced", resting.id) in seen
    assert ("new", replaced.id) in seen
    fill = next(u for u in updates if str(u.event) == "fill")
    assert fill.qty == 0.01
    assert fill.execution_id is not None
