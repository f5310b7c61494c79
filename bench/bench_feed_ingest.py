"""Binance stream messages through the adapter's decode into bus events.

Decodes combined-stream messages in Binance's wire format (bookTicker and depth diffs) with the
adapter's msgspec structs, converts them to domain events (exact Decimals) and publishes them
on the bus. The in-process baseline does the same with ``json.loads`` and hand conversion.
Prints one JSON line with messages per second and CPU seconds per 10 000 messages.
"""

from __future__ import annotations

import json
import random
import time
from decimal import Decimal

from botd.bus import Bus
from botd.model import BookDelta, Quote, Side
from botd.venues.binance.schemas import BookTickerEvent, DepthUpdateEvent, decode_combined

N = 100_000


def messages(rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    for i in range(N):
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


def main() -> None:
    msgs = messages(random.Random(1))
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
                "messages": N,
                "adapter_msgs_per_s": round(N / ours),
                "json_loads_baseline_msgs_per_s": round(N / base),
                "ratio_vs_json_loads": round(base / ours, 2),
                "cpu_s_per_10k_msgs": round(ours / N * 10_000, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
