"""Matching-engine throughput on a realistic book, as the fill engine of paper trading.

Prints one JSON line: synthetic market steps per second (each step re-quotes five levels a
side and may trade), plus user market and limit orders per second against that book.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

from botd.model import OrderType, Side, TimeInForce
from botd.venues.sim import MarketGenerator, MatchingEngine, default_instruments

STEPS = 20_000
ORDERS = 20_000


def main() -> None:
    spec = default_instruments("paper")["BTCUSDT"]
    engine = MatchingEngine(
        "paper", [spec.instrument("paper")], maker_fee=Decimal("0.001"), taker_fee=Decimal("0.001")
    )
    engine.open_account("user", {"USDT": Decimal("1e12"), "BTC": Decimal("1e6")})
    market = MarketGenerator(engine, [spec], seed=1)

    start = time.perf_counter()
    for i in range(STEPS):
        market.step("BTCUSDT", i)
    steps_per_s = STEPS / (time.perf_counter() - start)

    start = time.perf_counter()
    for i in range(ORDERS):
        engine.submit(
            "user",
            client_order_id=f"m{i}",
            symbol="BTCUSDT",
            side=Side.BUY if i % 2 else Side.SELL,
            type=OrderType.MARKET,
            qty=Decimal("0.001"),
            price=None,
            tif=TimeInForce.GTC,
            post_only=False,
            ts=i,
        )
        if i % 50 == 0:
            market.step("BTCUSDT", i)
    market_per_s = ORDERS / (time.perf_counter() - start)

    bid, _ = engine.top_of_book("BTCUSDT")
    assert bid is not None
    start = time.perf_counter()
    for i in range(ORDERS):
        engine.submit(
            "user",
            client_order_id=f"l{i}",
            symbol="BTCUSDT",
            side=Side.BUY,
            type=OrderType.LIMIT,
            qty=Decimal("0.001"),
            price=bid.price - Decimal("0.01") * (1 + i % 500),
            tif=TimeInForce.GTC,
            post_only=True,
            ts=i,
        )
    limit_per_s = ORDERS / (time.perf_counter() - start)

    print(
        json.dumps(
            {
                "bench": "matching_engine",
                "market_steps_per_s": round(steps_per_s),
                "market_orders_per_s": round(market_per_s),
                "resting_limit_orders_per_s": round(limit_per_s),
            }
        )
    )


if __name__ == "__main__":
    main()
