"""Bus fan-out throughput, with an asyncio.Queue hop measured in the same process as baseline.

Prints one JSON line. The figure to compare across machines is ``ratio_vs_queue``.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

from botd.bus import Bus
from botd.model import Quote

N = 200_000
SUBSCRIBERS = 4


def make_quotes() -> list[Quote]:
    d = Decimal("1")
    return [Quote("paper", "BTCUSDT", d, d, d, d, i, i) for i in range(N)]


def bench_bus(quotes: list[Quote]) -> float:
    bus = Bus()
    count = [0]

    def handler(_: Quote) -> None:
        count[0] += 1

    for _ in range(SUBSCRIBERS):
        bus.subscribe(Quote, handler, symbol="BTCUSDT")
    bus.subscribe(Quote, handler, symbol="ETHUSDT")  # filtered out: must cost nothing
    start = time.perf_counter()
    for q in quotes:
        bus.publish(q)
    elapsed = time.perf_counter() - start
    assert count[0] == N * SUBSCRIBERS
    return N / elapsed


async def bench_queue(quotes: list[Quote]) -> float:
    queue: asyncio.Queue[Quote] = asyncio.Queue()
    count = [0]

    async def consumer() -> None:
        for _ in range(N):
            await queue.get()
            for _ in range(SUBSCRIBERS):
                count[0] += 1

    task = asyncio.create_task(consumer())
    start = time.perf_counter()
    for q in quotes:
        queue.put_nowait(q)
        if queue.qsize() > 1000:
            await asyncio.sleep(0)
    await task
    elapsed = time.perf_counter() - start
    return N / elapsed


def main() -> None:
    quotes = make_quotes()
    bus_rate = max(bench_bus(quotes) for _ in range(3))
    queue_rate = max(asyncio.run(bench_queue(quotes)) for _ in range(3))
    print(
        json.dumps(
            {
                "bench": "bus_fanout",
                "events": N,
                "subscribers": SUBSCRIBERS,
                "bus_events_per_s": round(bus_rate),
                "queue_hop_events_per_s": round(queue_rate),
                "ratio_vs_queue": round(bus_rate / queue_rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
