"""The Binance combined-stream client: quotes, trades, the local order book, gaps, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from botd.clock import NS_PER_SECOND, FakeClock
from botd.errors import TransientVenueError
from botd.model import BookDelta, BookLevel, BookSnapshot, MarketEvent, Quote, Side, Trade
from botd.venues.binance.auth import HmacSigner
from botd.venues.binance.http import BinanceHttp
from botd.venues.binance.schemas import DepthSnapshot, DepthUpdateEvent, decode_depth
from botd.venues.binance.stream import BinanceMarketStream, LocalBook, ws_base_from_rest
from botd.venues.sim.binance import BinanceSimulator

D = Decimal
KEY = "stream-key"
SECRET = "stream-secret"
START_NS = 1_700_000_000 * NS_PER_SECOND


class Env:
    def __init__(self, sim: BinanceSimulator, clock: FakeClock, url: str) -> None:
        self.sim = sim
        self.clock = clock
        self.url = url
        self.http = BinanceHttp(url, HmacSigner(SecretStr(KEY), SecretStr(SECRET)), clock)

    def stream(self, symbols: tuple[str, ...] = ("BTCUSDT",), **kw: bool) -> BinanceMarketStream:
        return BinanceMarketStream(
            ws_base=ws_base_from_rest(self.url),
            http=self.http,
            clock=self.clock,
            venue="binance",
            symbols=symbols,
            **kw,
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock(START_NS)
    sim = BinanceSimulator(
        clock=clock, seed=7, symbols=["BTCUSDT", "ETHUSDT"], api_keys={KEY: SECRET}
    )
    port = await sim.start(port=0)
    e = Env(sim, clock, f"http://127.0.0.1:{port}")
    try:
        yield e
    finally:
        await e.http.close()
        await sim.stop()


async def run_until(
    clock: FakeClock,
    events: AsyncIterator[MarketEvent],
    done: Callable[[list[MarketEvent]], bool],
    *,
    step: float = 0.1,
) -> list[MarketEvent]:
    """Collect events, moving the clock in small steps, until ``done(seen)``."""
    seen: list[MarketEvent] = []

    async def collect() -> None:
        async for event in events:
            seen.append(event)
            if done(seen):
                return

    task = asyncio.create_task(collect())
    try:
        for _ in range(400):
            if task.done():
                break
            await clock.advance(step)
            await asyncio.sleep(0.005)
        await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.aclose()  # type: ignore[attr-defined]
    return seen


def test_ws_base_from_rest() -> None:
    assert ws_base_from_rest("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080"
    assert ws_base_from_rest("https://api.binance.com") == "wss://api.binance.com"


async def test_quotes_and_trades_for_requested_symbols_only(env: Env) -> None:
    stream = env.stream(("BTCUSDT",))
    seen = await run_until(
        env.clock,
        stream.events(),
        lambda s: (
            sum(isinstance(e, Quote) for e in s) >= 5 and any(isinstance(e, Trade) for e in s)
        ),
    )
    assert all(isinstance(e, Quote | Trade) for e in seen)
    assert all(e.symbol == "BTCUSDT" and e.venue == "binance" for e in seen)
    quotes = [e for e in seen if isinstance(e, Quote)]
    assert all(0 < q.bid < q.ask and q.bid_size > 0 and q.ask_size > 0 for q in quotes)
    trades = [e for e in seen if isinstance(e, Trade)]
    assert all(t.price > 0 and t.size > 0 for t in trades)
    assert stream.malformed == 0


async def test_local_book_matches_rest_depth(env: Env) -> None:
    stream = env.stream(("BTCUSDT", "ETHUSDT"), quotes=False, trades=False, depth=True)
    events = stream.events()
    seen: list[MarketEvent] = []

    async def collect() -> None:
        async for event in events:
            seen.append(event)

    def ready() -> bool:
        synced = {e.symbol for e in seen if isinstance(e, BookSnapshot)}
        return (
            synced == {"BTCUSDT", "ETHUSDT"} and sum(isinstance(e, BookDelta) for e in seen) >= 20
        )

    task = asyncio.create_task(collect())
    try:
        for _ in range(400):
            if ready():
                break
            await env.clock.advance(0.1)
            await asyncio.sleep(0.005)
        assert ready()
        await asyncio.sleep(0.2)  # the clock stands still: let the last diffs arrive
        assert isinstance(seen[0], BookSnapshot)
        assert stream.gaps == 0
        for symbol in ("BTCUSDT", "ETHUSDT"):
            book = stream.books[symbol]
            assert book.synced
            body = await env.http.get(
                "/api/v3/depth", {"symbol": symbol, "limit": "1000"}, False, "t"
            )
            rest = decode_depth(body).to_book_snapshot("binance", symbol, 0)
            assert book.update_id <= rest.sequence
            assert book.bids() == rest.bids
            assert book.asks() == rest.asks
            assert book.bids()[0].price < book.asks()[0].price
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.aclose()  # type: ignore[attr-defined]


def diff(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> DepthUpdateEvent:
    return DepthUpdateEvent(
        event_time=1, symbol="BTCUSDT", first_update_id=first, final_update_id=last,
        bids=tuple((p, q) for p, q in bids), asks=tuple((p, q) for p, q in asks),
    )  # fmt: skip


def snapshot(last: int, bids: list[list[str]], asks: list[list[str]]) -> DepthSnapshot:
    return DepthSnapshot(
        last_update_id=last,
        bids=tuple((p, q) for p, q in bids),
        asks=tuple((p, q) for p, q in asks),
    )


def test_local_book_sync_drops_old_diffs_and_applies_the_rest() -> None:
    book = LocalBook("binance", "BTCUSDT")
    assert book.on_diff(diff(9, 10, [["99", "1"]], []), 0) is None  # older than the snapshot
    assert book.on_diff(diff(11, 12, [["100", "2"]], [["101", "0"]]), 0) is None
    assert book.needs_snapshot
    image = book.on_snapshot(snapshot(11, [["100", "1"]], [["101", "3"], ["102", "4"]]), 5)
    assert image is not None and image.sequence == 12
    assert image.bids == (BookLevel(D(100), D(2)),)
    assert image.asks == (BookLevel(D(102), D(4)),)
    deltas = book.on_diff(diff(13, 13, [["100", "0"]], []), 6)
    assert deltas is not None and deltas[0].side is Side.BUY and deltas[0].size == 0
    assert book.bids() == () and book.update_id == 13
    assert book.on_diff(diff(12, 13, [], []), 7) is None  # already applied: ignored
    assert book.synced and book.gaps == 0


def test_a_gap_resyncs_from_a_new_snapshot() -> None:
    book = LocalBook("binance", "BTCUSDT")
    book.on_diff(diff(6, 6, [["100", "1"]], []), 0)
    assert book.on_snapshot(snapshot(5, [], [["101", "1"]]), 0) is not None
    assert book.on_diff(diff(7, 7, [["100", "2"]], []), 0) is not None
    # 8 and 9 are lost: the diff starting at 10 breaks the chain.
    assert book.on_diff(diff(10, 10, [["100", "5"]], []), 0) is None
    assert book.gaps == 1 and not book.synced and book.needs_snapshot
    assert book.on_diff(diff(11, 11, [["99", "1"]], []), 0) is None  # buffered meanwhile
    image = book.on_snapshot(snapshot(10, [["100", "5"]], [["101", "1"]]), 0)
    assert image is not None and image.sequence == 11
    assert image.bids == (BookLevel(D(100), D(5)), BookLevel(D(99), D(1)))
    assert book.synced and book.syncs == 2


def test_a_snapshot_older_than_the_stream_is_refetched() -> None:
    book = LocalBook("binance", "BTCUSDT")
    book.on_diff(diff(20, 21, [], []), 0)
    assert book.on_snapshot(snapshot(10, [], []), 0) is None
    assert book.needs_snapshot
    assert book.on_snapshot(snapshot(20, [], []), 0) is not None


async def test_stream_resyncs_a_gap_without_dropping_the_connection(env: Env) -> None:
    stream = env.stream(("BTCUSDT",), quotes=False, trades=False, depth=True)
    events = stream.events()
    snapshots = 0

    async def collect() -> None:
        nonlocal snapshots
        async for event in events:
            if isinstance(event, BookSnapshot):
                snapshots += 1
                if snapshots == 1:
                    # Pretend diffs were lost: the book's id falls behind the stream's chain.
                    stream.books["BTCUSDT"].update_id -= 3
                else:
                    return

    task = asyncio.create_task(collect())
    try:
        for _ in range(400):
            if task.done():
                break
            await env.clock.advance(0.1)
            await asyncio.sleep(0.005)
        await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.aclose()  # type: ignore[attr-defined]
    assert snapshots == 2
    assert stream.gaps == 1
    assert stream.books["BTCUSDT"].syncs == 2


async def scripted_server(
    script: Callable[[web.WebSocketResponse], Awaitable[None]],
) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await script(ws)
        return ws

    app = web.Application()
    app.router.add_get("/stream", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"ws://127.0.0.1:{port}"


def script_stream(clock: FakeClock, ws_base: str) -> BinanceMarketStream:
    http = BinanceHttp("http://127.0.0.1:1", HmacSigner(SecretStr(KEY), SecretStr(SECRET)), clock)
    return BinanceMarketStream(
        ws_base=ws_base, http=http, clock=clock, venue="binance", symbols=["BTCUSDT"], quotes=False
    )


TRADE = {
    "stream": "btcusdt@trade",
    "data": {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7, "p": "1.5", "q": "2", "T": 1,
             "m": False, "M": True},
}  # fmt: skip


async def test_malformed_messages_are_counted_not_raised_and_loss_is_transient() -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await ws.send_str("{not json")
        await ws.send_str(json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade"}}))
        await ws.send_str(json.dumps(TRADE))
        await ws.close()

    runner, base = await scripted_server(script)
    try:
        stream = script_stream(FakeClock(START_NS), base)
        got: list[MarketEvent] = []

        async def consume() -> None:
            async for event in stream.events():
                got.append(event)

        with pytest.raises(TransientVenueError, match="closed"):
            await consume()
        assert stream.malformed == 2
        assert len(got) == 1 and isinstance(got[0], Trade) and got[0].trade_id == "7"
    finally:
        await runner.cleanup()


async def test_a_silent_stream_goes_stale_on_the_clock() -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await ws.send_str(json.dumps(TRADE))
        async for _ in ws:  # then say nothing until the client leaves
            pass

    runner, base = await scripted_server(script)
    clock = FakeClock(START_NS)
    try:
        stream = script_stream(clock, base)
        events = stream.events()
        assert isinstance(await anext(events), Trade)
        task = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.01)
        await clock.advance(9)
        await asyncio.sleep(0.01)
        assert not task.done()
        await clock.advance(2)
        with pytest.raises(TransientVenueError, match="stale"):
            await asyncio.wait_for(task, 5)
    finally:
        await runner.cleanup()


async def test_connect_failure_is_transient() -> None:
    async with aiohttp.ClientSession() as session:
        clock = FakeClock(START_NS)
        http = BinanceHttp(
            "http://127.0.0.1:1", HmacSigner(SecretStr(KEY), SecretStr(SECRET)), clock
        )
        stream = BinanceMarketStream(
            ws_base="ws://127.0.0.1:1", http=http, clock=clock, venue="binance",
            symbols=["BTCUSDT"], session=session,
        )  # fmt: skip
        with pytest.raises(TransientVenueError):
            await anext(stream.events())
