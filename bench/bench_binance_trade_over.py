"""Order round trips through the Binance adapter against the simulator, over the WebSocket API
and over REST.

For each ``trade_over`` mode, one adapter (connected, user data subscribed) places a far LIMIT
order and cancels it N times, one request at a time, timing ``submit`` and ``cancel`` as the
gateway sees them (signing, sending, reading and decoding the reply). Prints one JSON line:
median and p99 in microseconds per mode. Adapter and simulator share one process and core, so
the figures compare the two transports; they are not Binance's latencies.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from decimal import Decimal
from typing import Literal

from pydantic import SecretStr

from botd.clock import FakeClock
from botd.model import OrderType, Side, TimeInForce
from botd.model.orders import Order
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.auth import HmacSigner
from botd.venues.sim.binance import BinanceSimulator, RateLimitConfig

N = 500
KEY, SECRET = "bench-key", "bench-secret"


async def run(mode: Literal["ws", "rest"]) -> dict[str, float]:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=1,
        symbols=["BTCUSDT"],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": Decimal("100000000")}},
        limits=RateLimitConfig(
            request_weight_per_minute=10**9, orders_per_10s=10**9, orders_per_day=10**9
        ),
    )
    port = await sim.start()
    adapter = BinanceAdapter(
        base_url=f"http://127.0.0.1:{port}",
        signer=HmacSigner(SecretStr(KEY), SecretStr(SECRET)),
        clock=clock,
        symbols=("BTCUSDT",),
        trade_over=mode,
    )
    await adapter.connect()
    submits: list[float] = []
    cancels: list[float] = []
    try:
        for i in range(N):
            order = Order(
                client_order_id=f"b{mode}{i}",
                strategy_id="bench",
                venue="binance",
                symbol="BTCUSDT",
                side=Side.BUY,
                type=OrderType.LIMIT,
                qty=Decimal("0.001"),
                price=Decimal("30000"),
                tif=TimeInForce.GTC,
            )
            t0 = time.perf_counter()
            await adapter.submit(order)
            t1 = time.perf_counter()
            await adapter.cancel("BTCUSDT", order.client_order_id)
            t2 = time.perf_counter()
            submits.append((t1 - t0) * 1e6)
            cancels.append((t2 - t1) * 1e6)
    finally:
        await adapter.close()
        await sim.stop()

    def q(values: list[float], p: float) -> float:
        return round(statistics.quantiles(values, n=100)[int(p) - 1], 1)

    return {
        f"{mode}_submit_p50_us": round(statistics.median(submits), 1),
        f"{mode}_submit_p99_us": q(submits, 99),
        f"{mode}_cancel_p50_us": round(statistics.median(cancels), 1),
        f"{mode}_cancel_p99_us": q(cancels, 99),
    }


async def main() -> None:
    out: dict[str, object] = {"bench": "binance_trade_over", "orders": N}
    for mode in ("ws", "rest"):
        out.update(await run(mode))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
