"""The Binance simulator's kline book and fault plan, per trade and per consultation.

Feeds 50 000 synthetic trades (one a second, every documented interval kept) into a
:class:`KlineBook`, reads the last 500 one-minute bars, and consults a seeded fault plan at
the stream site 200 000 times. Prints one JSON line: trades per second into the book,
microseconds per REST-sized read, consultations per second.
"""

from __future__ import annotations

import json
import random
import time
from decimal import Decimal

from botd.venues.sim.binance.faults import WireFaultPlan
from botd.venues.sim.binance.klines import KlineBook

TRADES = 50_000
READS = 200
CONSULTS = 200_000
T0 = 1_700_000_000_000


def main() -> None:
    rng = random.Random(1)
    trades = [
        (Decimal(65000 + rng.randint(-500, 500)) / 100, Decimal(rng.randint(1, 500)) / 1000)
        for _ in range(TRADES)
    ]
    book = KlineBook()
    start = time.perf_counter()
    for i, (price, qty) in enumerate(trades):
        book.add_trade(
            "BTCUSDT",
            trade_id=i,
            price=price,
            qty=qty,
            buyer_is_taker=i % 2 == 0,
            time_ms=T0 + i * 1000,
        )
    feed_s = time.perf_counter() - start
    now = T0 + TRADES * 1000
    start = time.perf_counter()
    for _ in range(READS):
        bars = book.klines("BTCUSDT", "1m", now_ms=now, limit=500)
    read_s = time.perf_counter() - start
    assert len(bars) == 500
    plan = WireFaultPlan.parse("drop~0.0001,stall~0.0001,shutdown~0.0001,seed=1")
    plan.bind(0)
    start = time.perf_counter()
    for i in range(CONSULTS):
        plan.on_stream(i)
    consult_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "bench": "sim_klines",
                "trades_per_s": round(TRADES / feed_s),
                "read_500_bars_us": round(read_s / READS * 1e6, 1),
                "fault_consults_per_s": round(CONSULTS / consult_s),
            }
        )
    )


if __name__ == "__main__":
    main()
