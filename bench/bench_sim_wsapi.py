"""Round trips through the Binance simulator's WebSocket API on loopback.

One aiohttp client connection, without a session logon, subscribes to its own user data stream
with ``userDataStream.subscribe.signature``, then places and cancels a LIMIT order N times, one
request at a time (HMAC-signed ``order.place`` then ``order.cancel``), reading the reply and
the user data events each causes (executionReport + outboundAccountPosition per request).
Prints one JSON line: requests per second, median and p99 round trip in microseconds, and the
number of events received. Client and server share one process and one core, so the figures
bound what a bot sees from the simulator, not from Binance.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import statistics
import time
from decimal import Decimal
from typing import Any

import aiohttp

from botd.clock import FakeClock
from botd.venues.sim.binance import BinanceSimulator, RateLimitConfig

N = 2000
KEY, SECRET = "bench-key", "bench-secret"


def _sign(params: dict[str, Any]) -> dict[str, Any]:
    out = {**params, "apiKey": KEY}
    payload = "&".join(f"{k}={out[k]}" for k in sorted(out))
    return {
        **out,
        "signature": hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest(),
    }


async def main() -> None:
    clock = FakeClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=1,
        symbols=["BTCUSDT"],
        api_keys={KEY: SECRET},
        balances={KEY: {"USDT": Decimal("1000000")}},
        limits=RateLimitConfig(request_weight_per_minute=10**9, orders_per_10s=10**9,
                               orders_per_day=10**9),
    )  # fmt: skip
    port = await sim.start()
    ts = clock.time_ns() // 1_000_000
    events = 0
    rtts: list[float] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}/ws-api/v3?returnRateLimits=false") as ws,
    ):

        async def call(req_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
            nonlocal events
            await ws.send_str(json.dumps({"id": req_id, "method": method, "params": params}))
            while True:
                msg: dict[str, Any] = json.loads(await ws.receive_str())
                if "event" in msg:
                    events += 1
                elif msg["id"] == req_id:
                    return msg

        await call(0, "userDataStream.subscribe.signature", _sign({"timestamp": ts}))
        start = time.perf_counter()
        for i in range(N):
            t0 = time.perf_counter()
            params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": "0.001", "price": "30000", "newClientOrderId": f"b{i}",
                      "newOrderRespType": "ACK", "timestamp": ts}  # fmt: skip
            placed = await call(2 * i + 1, "order.place", _sign(params))
            assert placed["status"] == 200, placed
            cancel = {"symbol": "BTCUSDT", "orderId": placed["result"]["orderId"], "timestamp": ts}
            assert (await call(2 * i + 2, "order.cancel", _sign(cancel)))["status"] == 200
            rtts.append((time.perf_counter() - t0) / 2)
        elapsed = time.perf_counter() - start
        # Events of the last request may still be on the way.
        while True:
            try:
                await ws.receive_str(timeout=0.2)
                events += 1
            except TimeoutError:
                break
    await sim.stop()
    us = sorted(r * 1e6 for r in rtts)
    print(
        json.dumps(
            {
                "bench": "sim_wsapi_round_trip",
                "requests": 2 * N,
                "requests_per_s": round(2 * N / elapsed),
                "rtt_us_p50": round(statistics.median(us)),
                "rtt_us_p99": round(us[int(len(us) * 0.99)]),
                "events": events,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
