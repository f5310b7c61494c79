"""Binance stream messages through the adapter's decode into bus events.

Two kinds of case, one JSON line each:

``in_process_decode``: pre-built combined-stream messages in Binance's wire format (bookTicker and
depth diffs) decoded with the adapter's msgspec structs, converted to domain events (exact
Decimals) and published on the bus, against a ``json.loads`` + hand conversion baseline run in the
same process. No socket.

``ws_bookTicker``, ``ws_depth``, ``ws_mixed``: end to end over a real loopback websocket. A
separate process runs the Binance simulator (its REST, its StreamHub, its own message builders).
For each case the client (this process) opens :class:`BinanceMarketStream` on the simulator,
syncs its local order book from a REST snapshot while the server steps the market slowly, then
asks for a burst: the server calls the simulator's ``step()`` in a tight loop until the hub has
queued the wanted number of messages for the connection, queues ``serverShutdown`` behind them as
the end marker, and only then lets the hub's writer send them as fast as the socket takes them.
The client decodes them, keeps the local book (diffs chain by U/u; gaps are counted and must be
0, and the book must end equal to the simulator's) and publishes every event on a
:class:`~botd.bus.Bus` with a counting subscriber. Client figures: messages per second of wall
time from the burst's start to the end marker, and CPU seconds (``time.process_time`` of this
process, which only runs the client) per 10 000 messages. The baseline, in the same process, is a
receive-only client (aiohttp frames counted, nothing decoded) on the same server path: it bounds
what server + socket deliver, so ``ratio_vs_receive_only`` well below 1 means the client, not
the server, sets the pace. The server reports its own send rate (queue drained) for both.
A depth gap, a malformed message or a book that ends different exits non-zero.

``--n`` sets the in-process messages, ``--ws-n`` the messages per websocket case (0 skips them);
the defaults take about 30 s on one free core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from pydantic import SecretStr

from botd.bus import Bus
from botd.clock import FakeClock, LiveClock
from botd.errors import TransientVenueError
from botd.model import BookDelta, BookSnapshot, MarketEvent, Quote, Side
from botd.venues.binance.auth import HmacSigner
from botd.venues.binance.http import BinanceHttp
from botd.venues.binance.schemas import BookTickerEvent, DepthUpdateEvent, decode_combined
from botd.venues.binance.stream import BinanceMarketStream, ws_base_from_rest
from botd.venues.sim.binance import BinanceSimulator, StreamConfig

N = 100_000  # in-process messages (--n)
WS_N = 20_000  # messages per websocket case (--ws-n)
SYMBOL = "BTCUSDT"
KEY, SECRET = "bench-key", "bench-secret"
WARM_STEP_S = 0.01  # the server's market step while the client syncs (real time)
WS_CASES = {"ws_bookTicker": (True, False), "ws_depth": (False, True), "ws_mixed": (True, True)}


def messages(rng: random.Random, n: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(n):
        price = 65000 + rng.randint(-500, 500) / 100
        if i % 2:
            data = {
                "u": i,
                "s": "BTCUSDT",
                "b": f"{price:.2f}",
                "B": "0.51200000",
                "a": f"{price + 0.01:.2f}",
                "A": "1.20300000",
            }
            stream = "btcusdt@bookTicker"
        else:
            data = {
                "e": "depthUpdate",
                "E": 1_700_000_000_000 + i,
                "s": "BTCUSDT",
                "U": i,
                "u": i,
                "b": [[f"{price:.2f}", "0.25000000"]],
                "a": [[f"{price + 0.02:.2f}", "0.00000000"]],
            }
            stream = "btcusdt@depth@100ms"
        out.append(json.dumps({"stream": stream, "data": data}).encode())
    return out


def with_adapter_decode(msgs: list[bytes], bus: Bus) -> float:
    start = time.process_time()
    for raw in msgs:
        _, event = decode_combined(raw)
        if isinstance(event, BookTickerEvent):
            bus.publish(event.to_quote("binance", 0))
        elif isinstance(event, DepthUpdateEvent):
            for delta in event.to_book_deltas("binance", 0):
                bus.publish(delta)
    return time.process_time() - start


def with_json_loads(msgs: list[bytes], bus: Bus) -> float:
    start = time.process_time()
    for raw in msgs:
        env = json.loads(raw)
        d = env["data"]
        if env["stream"].endswith("@bookTicker"):
            bus.publish(
                Quote(
                    "binance",
                    d["s"],
                    Decimal(d["b"]),
                    Decimal(d["a"]),
                    Decimal(d["B"]),
                    Decimal(d["A"]),
                    0,
                    0,
                )
            )
        else:
            for side, key in ((Side.BUY, "b"), (Side.SELL, "a")):
                for p, q in d[key]:
                    bus.publish(
                        BookDelta("binance", d["s"], side, Decimal(p), Decimal(q), d["u"], 0, 0)
                    )
    return time.process_time() - start


def in_process(n: int) -> None:
    msgs = messages(random.Random(1), n)
    bus = Bus()
    seen = [0]
    bus.subscribe(Quote, lambda _: seen.__setitem__(0, seen[0] + 1))
    bus.subscribe(BookDelta, lambda _: seen.__setitem__(0, seen[0] + 1))
    ours = min(with_adapter_decode(msgs, bus) for _ in range(3))
    base = min(with_json_loads(msgs, bus) for _ in range(3))
    print(
        json.dumps(
            {
                "bench": "feed_ingest",
                "case": "in_process_decode",
                "messages": n,
                "adapter_msgs_per_s": round(n / ours),
                "json_loads_baseline_msgs_per_s": round(n / base),
                "ratio_vs_json_loads": round(base / ours, 2),
                "cpu_s_per_10k_msgs": round(ours / n * 10_000, 4),
            }
        ),
        flush=True,
    )


# -- the simulator's process -------------------------------------------------------------------


def _server(pipe: Connection) -> None:
    """Run the simulator until the client sends ``("stop",)``. Commands: ``("warm",)`` steps
    the market every WARM_STEP_S; ``("burst", n)`` stops that, steps in a tight loop until n
    messages are queued for the one open stream connection, queues ``serverShutdown`` as the
    end marker, answers ``("ready", count, generate_s, bids, asks)`` and, once the hub's writer
    has sent everything, ``("drained", send_s)``."""
    asyncio.run(_serve(pipe))


async def _warm(sim: BinanceSimulator) -> None:
    while True:
        sim.step()
        await asyncio.sleep(WARM_STEP_S)


async def _serve(pipe: Connection) -> None:
    sim = BinanceSimulator(
        clock=FakeClock(),  # the simulator's own market task never fires: we step it
        seed=1,
        symbols=[SYMBOL],
        api_keys={KEY: SECRET},
        streams=StreamConfig(queue_size=10**7),  # the burst is queued whole before sending
    )
    port = await sim.start()
    hub = sim.streams
    pipe.send(port)
    warm: asyncio.Task[None] | None = None
    try:
        while True:
            try:
                cmd = await asyncio.to_thread(pipe.recv)
            except EOFError:
                return  # the client is gone
            if cmd[0] == "warm":
                warm = asyncio.create_task(_warm(sim))
                continue
            if warm is not None:
                warm.cancel()
                warm = None
            if cmd[0] == "stop":
                return
            # A bench-only peek at the hub's connection queue: the burst is counted exactly
            # and the send is timed until the writer has taken the last message.
            (conn,) = [c for c in hub._conns if not c.closing]
            queue = conn.queue
            before = queue.qsize()
            t0 = time.perf_counter()
            while queue.qsize() - before < cmd[1]:
                sim.step()  # never yields: the writer cannot send until the burst is queued
            count = queue.qsize() - before
            generate_s = time.perf_counter() - t0
            bids, asks = sim.engine.depth(SYMBOL, 1000)
            hub.announce_shutdown(grace=3600.0)  # on the FakeClock: queued, never closed
            pipe.send(
                (
                    "ready",
                    count,
                    generate_s,
                    [(str(b.price), str(b.size)) for b in bids],
                    [(str(a.price), str(a.size)) for a in asks],
                )
            )
            t0 = time.perf_counter()
            while queue.qsize():  # noqa: ASYNC110 - the hub has no "sent" event to wait on
                await asyncio.sleep(0.0005)
            pipe.send(("drained", max(time.perf_counter() - t0, 1e-9)))
    finally:
        if warm is not None:
            warm.cancel()
        await sim.stop()


# -- the client (this process) -----------------------------------------------------------------


class _Counter:
    """The bus subscriber: counts what arrives, by kind."""

    def __init__(self, bus: Bus) -> None:
        self.quotes = 0
        self.deltas = 0
        self.snapshots = 0
        bus.subscribe(Quote, self._quote)
        bus.subscribe(BookDelta, self._delta)
        bus.subscribe(BookSnapshot, self._snapshot)

    def _quote(self, _: Quote) -> None:
        self.quotes += 1

    def _delta(self, _: BookDelta) -> None:
        self.deltas += 1

    def _snapshot(self, _: BookSnapshot) -> None:
        self.snapshots += 1

    def reset(self) -> None:
        self.quotes = self.deltas = self.snapshots = 0


def _stream(url: str, http: BinanceHttp, quotes: bool, depth: bool) -> BinanceMarketStream:
    return BinanceMarketStream(
        ws_base=ws_base_from_rest(url),
        http=http,
        clock=LiveClock(),
        venue="binance",
        symbols=[SYMBOL],
        quotes=quotes,
        trades=False,
        depth=depth,
        stale_after_s=600.0,  # the server is silent while it builds a burst
    )


async def _warm_up(
    events: AsyncIterator[MarketEvent],
    stream: BinanceMarketStream,
    bus: Bus,
    counter: _Counter,
    quotes: bool,
    depth: bool,
) -> None:
    """Consume until the stream is live: a websocket quote (the first comes from REST) and/or
    a synced book with diffs applied on top of its snapshot."""
    while True:
        book = stream.books.get(SYMBOL)  # the stream makes its books once connected
        synced = book is not None and book.synced and counter.deltas > 0
        if (not quotes or counter.quotes >= 2) and (not depth or synced):
            return
        bus.publish(await anext(events))


async def _adapter_case(
    pipe: Connection, url: str, http: BinanceHttp, quotes: bool, depth: bool, n: int
) -> dict[str, Any]:
    stream = _stream(url, http, quotes, depth)
    bus = Bus()
    counter = _Counter(bus)
    pipe.send(("warm",))
    events = stream.events()
    async with asyncio.timeout(30):
        await _warm_up(events, stream, bus, counter, quotes, depth)
    counter.reset()
    pipe.send(("burst", n))
    cpu0 = time.process_time()
    _, count, generate_s, bids, asks = await asyncio.to_thread(pipe.recv)
    t0 = time.perf_counter()
    try:
        async for event in events:
            bus.publish(event)
    except TransientVenueError as exc:
        if "shutting down" not in str(exc):
            raise
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    _, send_s = pipe.recv()
    if stream.malformed or stream.gaps:
        raise SystemExit(f"malformed {stream.malformed}, depth gaps {stream.gaps}: expected 0")
    if depth:
        book = stream.books[SYMBOL]
        ours = (
            [(lv.price, lv.size) for lv in book.bids()],
            [(lv.price, lv.size) for lv in book.asks()],
        )
        theirs = tuple([(Decimal(p), Decimal(q)) for p, q in side] for side in (bids, asks))
        if not book.synced or ours != theirs:
            raise SystemExit("the local order book does not match the simulator's after the burst")
    return {
        "messages": count,
        "wall_s": wall,
        "cpu_s": cpu,
        "generate_s": generate_s,
        "send_s": send_s,
        "events": {
            "quotes": counter.quotes,
            "deltas": counter.deltas,
            "snapshots": counter.snapshots,  # a resync would show here
        },
        "depth_gaps": stream.gaps,
        "malformed": stream.malformed,
    }


async def _receive_only_case(
    pipe: Connection, session: aiohttp.ClientSession, url: str, n: int
) -> dict[str, Any]:
    pipe.send(("warm",))
    async with session.ws_connect(url) as ws:
        async with asyncio.timeout(30):
            for _ in range(2):
                await ws.receive_str()
        pipe.send(("burst", n))
        cpu0 = time.process_time()
        _, count, _, _, _ = await asyncio.to_thread(pipe.recv)
        t0 = time.perf_counter()
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise SystemExit(f"receive-only client: unexpected {msg.type.name}")
            if msg.data.startswith('{"stream":"!serverShutdown"'):
                break
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    _, send_s = pipe.recv()
    return {"messages": count, "wall_s": wall, "cpu_s": cpu, "send_s": send_s}


async def over_websocket(n: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    pipe, child = ctx.Pipe()
    server = ctx.Process(target=_server, args=(child,), daemon=True)
    server.start()
    try:
        port = await asyncio.to_thread(pipe.recv)
        url = f"http://127.0.0.1:{port}"
        http = BinanceHttp(url, HmacSigner(SecretStr(KEY), SecretStr(SECRET)), LiveClock())
        try:
            async with aiohttp.ClientSession() as session:
                for case, (quotes, depth) in WS_CASES.items():
                    stream_url = _stream(url, http, quotes, depth).url()
                    base = await _receive_only_case(pipe, session, stream_url, n)
                    ours = await _adapter_case(pipe, url, http, quotes, depth, n)
                    count = ours["messages"]
                    print(
                        json.dumps(
                            {
                                "bench": "feed_ingest",
                                "case": case,
                                "messages": count,
                                "client_msgs_per_s": round(count / ours["wall_s"]),
                                "client_cpu_s_per_10k_msgs": round(ours["cpu_s"] / count * 1e4, 4),
                                "receive_only_msgs_per_s": round(base["messages"] / base["wall_s"]),
                                "receive_only_cpu_s_per_10k_msgs": round(
                                    base["cpu_s"] / base["messages"] * 1e4, 4
                                ),
                                "ratio_vs_receive_only": round(
                                    base["wall_s"] / base["messages"] / (ours["wall_s"] / count), 2
                                ),
                                "server_send_msgs_per_s": round(count / ours["send_s"]),
                                "server_send_msgs_per_s_receive_only": round(
                                    base["messages"] / base["send_s"]
                                ),
                                "server_generate_s": round(ours["generate_s"], 2),
                                "bus_events": ours["events"],
                                "depth_gaps": ours["depth_gaps"],
                                "malformed": ours["malformed"],
                            }
                        ),
                        flush=True,
                    )
        finally:
            await http.close()
    finally:
        pipe.send(("stop",))
        server.join(10)
        if server.is_alive():
            server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=N, help="in-process messages (default %(default)s)"
    )
    parser.add_argument(
        "--ws-n",
        type=int,
        default=WS_N,
        help="messages per websocket case, 0 to skip them (default %(default)s)",
    )
    args = parser.parse_args()
    in_process(args.n)
    if args.ws_n > 0:
        asyncio.run(over_websocket(args.ws_n))


if __name__ == "__main__":
    main()
