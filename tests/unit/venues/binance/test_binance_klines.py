"""Venue bars from Binance klines: the adapter against the simulator (one Bar per closed kline,
equal to REST klines, across handovers) and against a scripted stream (duplicates from the
venue and from a reconnect are dropped; a malformed kline is counted), plus configuration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.errors import ConfigError
from botd.model import Bar, MarketEvent, Quote, Side, Trade
from botd.settings import SettingsError, VenueSettings, load_settings
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.auth import HmacSigner
from botd.venues.binance.constants import BINANCE_CAPABILITIES
from botd.venues.registry import build_venue
from botd.venues.sim.binance import BinanceSimulator

D = Decimal
KEY, SECRET = "kl-key", "kl-secret"
MS = 1_000_000


def signer() -> HmacSigner:
    return HmacSigner(SecretStr(KEY), SecretStr(SECRET))


@pytest.fixture
async def sim_url() -> AsyncIterator[tuple[BinanceSimulator, FakeClock, str]]:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=5,
        symbols=["BTCUSDT"],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": D("1000")}},
    )
    port = await sim.start(port=0)
    try:
        yield sim, clock, f"http://127.0.0.1:{port}"
    finally:
        await sim.stop()


async def run_for(
    adapter: BinanceAdapter, clock: FakeClock, seconds: float, poke: Any = None
) -> list[MarketEvent]:
    events: list[MarketEvent] = []

    async def run() -> None:
        async for e in adapter.market_data(["BTCUSDT"]):
            events.append(e)

    task = asyncio.create_task(run())
    t = 0.0
    while t < seconds:
        await clock.advance(0.25)
        await asyncio.sleep(0.002)
        t += 0.25
        if poke is not None and abs(t - seconds / 2) < 0.1:
            poke()
    await asyncio.sleep(0.05)
    assert not task.done(), task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return events


async def rest_klines(url: str) -> list[list[Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}) as r,
    ):
        assert r.status == 200
        rows: list[list[Any]] = await r.json()
        return rows


def check_against_rest(bars: list[Bar], rows: list[list[Any]], now_ms: int) -> None:
    closed = [row for row in rows if row[6] < now_ms]
    assert len(closed) >= 2
    assert [b.start for b in bars] == [row[0] * MS for row in closed]  # each closed bar, once
    for bar, row in zip(bars, closed, strict=True):
        assert (bar.venue, bar.symbol, bar.timeframe) == ("binance", "BTCUSDT", "1m")
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == tuple(D(x) for x in row[1:6])
        assert bar.end == (row[6] + 1) * MS == bar.start + 60_000 * MS
        assert bar.ts_event >= bar.end  # sent once the minute is over


async def test_one_bar_per_closed_kline_equal_to_rest_klines(
    sim_url: tuple[BinanceSimulator, FakeClock, str],
) -> None:
    _, clock, url = sim_url
    adapter = BinanceAdapter(
        base_url=url,
        signer=signer(),
        clock=clock,
        symbols=("BTCUSDT",),
        user_data=False,
        trade_over="rest",
        bar_intervals=["1m"],
    )
    assert adapter.capabilities.bar_timeframes == frozenset({"1m"})
    await adapter.connect()
    try:
        events = await run_for(adapter, clock, 170.0)  # FakeClock starts 20 s into a minute
        rows = await rest_klines(url)
    finally:
        await adapter.close()
    check_against_rest([e for e in events if isinstance(e, Bar)], rows, clock.time_ns() // MS)
    assert any(isinstance(e, Trade) for e in events)  # the other streams still flow
    assert any(isinstance(e, Quote) for e in events)


async def test_handovers_do_not_repeat_bars(
    sim_url: tuple[BinanceSimulator, FakeClock, str],
) -> None:
    sim, clock, url = sim_url
    adapter = BinanceAdapter(
        base_url=url,
        signer=signer(),
        clock=clock,
        symbols=("BTCUSDT",),
        user_data=False,
        trade_over="rest",
        bar_intervals=["1m"],
        max_connection_age_s=25.0,
    )
    await adapter.connect()
    try:
        events = await run_for(adapter, clock, 170.0, poke=sim.streams.announce_shutdown)
        rows = await rest_klines(url)
    finally:
        await adapter.close()
    assert adapter._markets[-1].handovers >= 5
    check_against_rest([e for e in events if isinstance(e, Bar)], rows, clock.time_ns() // MS)


async def test_without_bar_intervals_no_kline_streams(
    sim_url: tuple[BinanceSimulator, FakeClock, str],
) -> None:
    _, clock, url = sim_url
    adapter = BinanceAdapter(
        base_url=url,
        signer=signer(),
        clock=clock,
        symbols=("BTCUSDT",),
        user_data=False,
        trade_over="rest",
    )
    assert adapter.capabilities is BINANCE_CAPABILITIES
    assert adapter.capabilities.bar_timeframes == frozenset()
    await adapter.connect()
    try:
        events = await run_for(adapter, clock, 70.0)
    finally:
        await adapter.close()
    assert not any(isinstance(e, Bar) for e in events)


# ------------------------------------------------------------------ scripted venue


def kline(start_ms: int, closed: bool, o: str = "10", c: str = "11") -> str:
    k = {
        "t": start_ms,
        "T": start_ms + 59_999,
        "s": "BTCUSDT",
        "i": "1m",
        "f": 1,
        "L": 2,
        "o": o,
        "c": c,
        "h": "12",
        "l": "9",
        "v": "3.5",
        "n": 2,
        "x": closed,
        "q": "35",
        "V": "1",
        "Q": "10",
        "B": "0",
    }
    data = {"e": "kline", "E": start_ms + 60_000, "s": "BTCUSDT", "k": k}
    return json.dumps({"stream": "btcusdt@kline_1m", "data": data})


def marker(n: int) -> str:
    data = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": n, "p": "1", "q": "1", "T": 1, "m": True}
    return json.dumps({"stream": "btcusdt@trade", "data": data})


A, B = 1_700_000_040_000, 1_700_000_100_000  # two consecutive minutes


class ScriptedVenue:
    """REST for connect() and an initial quote; each stream connection sends its script."""

    def __init__(self, scripts: list[list[str]]) -> None:
        self.scripts = scripts
        self.urls: list[str] = []

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_get("/api/v3/time", self._json({"serverTime": 1_700_000_000_000}))
        app.router.add_get("/api/v3/account", self._json({"balances": []}))
        app.router.add_get("/api/v3/ticker/bookTicker", self._json([]))
        info = {
            "symbols": [
                {
                    "symbol": "BTCUSDT",
                    "status": "TRADING",
                    "baseAsset": "BTC",
                    "quoteAsset": "USDT",
                    "filters": [],
                }
            ]
        }
        app.router.add_get("/api/v3/exchangeInfo", self._json(info))
        app.router.add_get("/stream", self._stream)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"

    @staticmethod
    def _json(body: object) -> Any:
        async def handler(_r: web.Request) -> web.Response:
            return web.json_response(body)

        return handler

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        self.urls.append(request.query_string)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for msg in self.scripts.pop(0):
            await ws.send_str(msg)
        async for _ in ws:  # hold the connection until the client leaves
            pass
        return ws


async def until_marker(adapter: BinanceAdapter) -> list[MarketEvent]:
    events: list[MarketEvent] = []
    async with asyncio.timeout(5):
        async for e in adapter.market_data(["BTCUSDT"]):
            if isinstance(e, Trade):
                break
            events.append(e)
    return events


async def test_duplicate_and_reconnect_repeats_are_dropped_and_malformed_counted() -> None:
    venue = ScriptedVenue(
        [
            [
                kline(A, closed=False),  # an update of the open bar: not a bar yet
                kline(A, closed=True, o="bad"),  # malformed: counted, skipped
                kline(A, closed=True),
                kline(A, closed=True),  # the venue repeats itself
                marker(1),
            ],
            [
                kline(A, closed=True),  # after a reconnect: already published
                kline(B, closed=True, o="11", c="12"),
                marker(2),
            ],
        ]
    )
    runner, url = await venue.start()
    clock = FakeClock()
    adapter = BinanceAdapter(
        base_url=url,
        signer=signer(),
        clock=clock,
        symbols=("BTCUSDT",),
        user_data=False,
        trade_over="rest",
        bar_intervals=["1m", "1m"],
    )
    try:
        await adapter.connect()
        first = await until_marker(adapter)
        first_stream = adapter._markets[-1]
        second = await until_marker(adapter)  # the feed runner's reconnect
        second_stream = adapter._markets[-1]
    finally:
        await adapter.close()
        await runner.cleanup()
    assert "streams=btcusdt@bookTicker/btcusdt@trade/btcusdt@kline_1m" in venue.urls[0]
    assert venue.urls[0].count("kline") == 1
    assert first == [
        Bar(
            venue="binance",
            symbol="BTCUSDT",
            timeframe="1m",
            open=D("10"),
            high=D("12"),
            low=D("9"),
            close=D("11"),
            volume=D("3.5"),
            start=A * MS,
            end=(A + 60_000) * MS,
            ts_event=(A + 60_000) * MS,
            ts_recv=first[0].ts_recv if first else 0,
        )
    ]
    assert [(b.start, b.open) for b in second if isinstance(b, Bar)] == [(B * MS, D("11"))]
    assert (first_stream.duplicate_bars, first_stream.malformed) == (1, 1)
    assert (second_stream.duplicate_bars, second_stream.malformed) == (1, 0)


# ------------------------------------------------------------------ configuration


def test_adapter_refuses_an_interval_binance_does_not_have() -> None:
    with pytest.raises(ConfigError, match=r"bar_intervals: '2m'"):
        BinanceAdapter(
            base_url="http://127.0.0.1:1",
            signer=signer(),
            clock=FakeClock(),
            symbols=("BTCUSDT",),
            bar_intervals=["1m", "2m"],
        )


def test_settings_validate_and_pass_bar_intervals(tmp_path: Path) -> None:
    toml = tmp_path / "botd.toml"
    toml.write_text('[venues.b]\nkind = "binance"\nsymbols = ["BTCUSDT"]\nbar_intervals = ["2m"]\n')
    with pytest.raises(SettingsError) as info:
        load_settings(toml, {}, {}, secrets_dirs=[], cwd=tmp_path)
    assert isinstance(info.value, ConfigError)
    assert "venues.b.bar_intervals" in str(info.value)

    toml.write_text(
        '[venues.b]\nkind = "binance"\nsymbols = ["BTCUSDT"]\nbar_intervals = ["1m", "1h"]\n'
    )
    cfg = load_settings(toml, {}, {}, secrets_dirs=[], cwd=tmp_path).venues["b"]
    assert cfg.bar_intervals == ["1m", "1h"]
    cfg = cfg.model_copy(update={"api_key": SecretStr(KEY), "api_secret": SecretStr(SECRET)})
    venue = build_venue("b", cfg, FakeClock())
    assert venue.capabilities.bar_timeframes == frozenset({"1m", "1h"})


def test_alpaca_refuses_bar_intervals() -> None:
    cfg = VenueSettings(
        kind="alpaca",
        symbols=["AAPL"],
        api_key=SecretStr("k"),
        api_secret=SecretStr("s"),
        bar_intervals=["1m"],
    )
    with pytest.raises(ConfigError, match=r"venues\.a\.bar_intervals"):
        build_venue("a", cfg, FakeClock())


async def test_daemon_builds_no_trade_bars_for_the_venue_timeframe(tmp_path: Path) -> None:
    """The daemon's wiring: the bar aggregator asks the venue's capabilities."""
    from botd.app import Daemon
    from botd.store import Journal

    toml = tmp_path / "botd.toml"
    toml.write_text(
        f'[daemon]\ndata_dir = "{tmp_path}"\n'
        '[venues.binance]\nkind = "binance"\nbase_url = "http://127.0.0.1:1"\n'
        'symbols = ["BTCUSDT"]\nbar_intervals = ["1m"]\n'
    )
    env = {"BOTD_VENUES__BINANCE__API_KEY": KEY, "BOTD_VENUES__BINANCE__API_SECRET": SECRET}
    settings = load_settings(toml, {}, env, secrets_dirs=[], cwd=tmp_path)
    clock = FakeClock()
    daemon = Daemon(settings, clock=clock, environ={})
    journal = await Journal.open(tmp_path / "j.db", clock=clock)
    try:
        daemon._build(journal)
        bars: list[Bar] = []
        daemon.bus.subscribe(Bar, bars.append)
        for venue in ("binance", "paper"):
            for tf in ("1m", "5s"):
                daemon.bars.ensure(venue, "BTCUSDT", tf)
        t0 = clock.time_ns() - clock.time_ns() % (60 * 10**9)
        for venue in ("binance", "paper"):
            for sec in (1, 61):
                ts = t0 + sec * 10**9
                daemon.bus.publish(Trade(venue, "BTCUSDT", D(1), D(1), Side.BUY, str(sec), ts, ts))
        got = sorted((b.venue, b.timeframe) for b in bars)
        assert got == [("binance", "5s"), ("paper", "1m"), ("paper", "5s")]
    finally:
        await journal.close()
