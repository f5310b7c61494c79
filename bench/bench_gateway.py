"""Intents per second through risk + journal + rate limiter to the paper venue, and the time
from intent to venue request (p50/p99), with a direct-to-venue loop as the in-process baseline.

Prints one JSON line. The journal is a real SQLite file (WAL, synchronous=FULL) in a temporary
directory; the paper venue does not persist its own account here (its durability is its own
cost, not the gateway's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import structlog

from botd.app import LiveRiskView
from botd.bus import Bus
from botd.clock import LiveClock
from botd.gateway import Gateway
from botd.gateway.throttle import Throttle
from botd.model import Order, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce
from botd.risk import RiskEngine, RiskLimits
from botd.store import Journal
from botd.strategy.host import StrategyHost
from botd.venues.base import RateLimit, SubmitAck
from botd.venues.sim.paper import PaperVenue

N = 3000  # a burst: every intent submitted at once
SINGLE = 300  # then one at a time
BALANCES = {"USDT": Decimal("1e9"), "BTC": Decimal("1e6"), "ETH": Decimal("1e6")}


class TimedPaper(PaperVenue):
    """Records when each submit request reaches the venue."""

    arrived: dict[str, int]

    async def submit(self, order: Order) -> SubmitAck:
        self.arrived[order.client_order_id] = time.perf_counter_ns()
        return await super().submit(order)


def paper(clock: LiveClock) -> TimedPaper:
    venue = TimedPaper(
        clock=clock,
        symbols=["BTCUSDT"],
        seed=1,
        event_rate=1.0,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        balances=BALANCES,
    )
    venue.arrived = {}
    return venue


async def baseline() -> float:
    clock = LiveClock()
    venue = paper(clock)
    await venue.connect()
    bid = venue.engine.top_of_book("BTCUSDT")[0]
    assert bid is not None
    start = time.perf_counter()
    for i in range(N):
        await venue.submit(
            Order(
                f"b{i}",
                "bench",
                "paper",
                "BTCUSDT",
                Side.BUY,
                OrderType.LIMIT,
                Decimal("0.001"),
                bid.price - Decimal("100"),
                TimeInForce.GTC,
            )
        )
    return N / (time.perf_counter() - start)


async def through_gateway(directory: Path) -> tuple[float, list[int], list[int]]:
    clock = LiveClock()
    bus = Bus()
    venue = paper(clock)
    view = LiveRiskView()
    risk = RiskEngine(clock=clock, view=view, limits=RiskLimits(price_band=None))
    # The paper venue's declared limits would throttle 3000 orders to 50 per 10 s; the
    # benchmark measures the limiter's own cost with a budget it never exhausts.
    throttle = Throttle(
        "paper",
        clock,
        [RateLimit("REQUEST_WEIGHT", 10**9, 60.0, kind="fixed")],
        {
            e: {"REQUEST_WEIGHT": 1}
            for e in (
                "order.submit",
                "order.cancel",
                "order.cancel_all",
                "order.query",
                "order.open_orders",
                "account.fills",
                "account.balances",
            )
        },
    )
    journal = await Journal.open(directory / "botd.db", clock=clock)
    gateway = Gateway(
        bus=bus,
        clock=clock,
        venues={"paper": venue},
        risk=risk,
        journal=journal,
        throttles={"paper": throttle},
    )
    host = StrategyHost(bus=bus, clock=clock, orders=gateway, market=gateway)
    view.gateway, view.host = gateway, host
    await gateway.start()
    await venue.connect()
    done = asyncio.Event()
    accepted = [0]

    def on_update(update: OrderUpdate) -> None:
        if update.status is OrderStatus.ACCEPTED:
            accepted[0] += 1
            if accepted[0] == N:
                done.set()

    bus.subscribe(OrderUpdate, on_update)
    runner = asyncio.create_task(gateway.run())
    await asyncio.sleep(0.05)
    bid = venue.engine.top_of_book("BTCUSDT")[0]
    assert bid is not None
    submitted: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(N):
        intent = OrderIntent(
            "bench",
            "paper",
            "BTCUSDT",
            Side.BUY,
            Decimal("0.001"),
            OrderType.LIMIT,
            bid.price - Decimal("100"),
        )
        submitted[gateway.submit(intent)] = time.perf_counter_ns()
        if i % 100 == 99:
            await asyncio.sleep(0)  # a strategy yields between events
    await asyncio.wait_for(done.wait(), 120)
    rate = N / (time.perf_counter() - start)
    burst = sorted(venue.arrived[cid] - t for cid, t in submitted.items())

    # One intent at a time on an idle gateway: the latency a single signal sees.
    single: list[int] = []
    for _ in range(SINGLE):
        done.clear()
        accepted[0] = N - 1  # on_update sets `done` at the next acceptance
        t0 = time.perf_counter_ns()
        cid = gateway.submit(intent)
        await done.wait()
        single.append(venue.arrived[cid] - t0)
    single.sort()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await journal.close()
    return rate, burst, single


def _ms(sorted_ns: list[int], q: float) -> float:
    return round(sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1e6, 3)


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    base = asyncio.run(baseline())
    with tempfile.TemporaryDirectory() as tmp:
        rate, burst, single = asyncio.run(through_gateway(Path(tmp)))
    print(
        json.dumps(
            {
                "bench": "gateway",
                "intents": N,
                "gateway_intents_per_s": round(rate),
                "direct_venue_submits_per_s": round(base),
                "ratio_vs_direct": round(rate / base, 3),
                "single_intent_to_request_p50_ms": _ms(single, 0.5),
                "single_intent_to_request_p99_ms": _ms(single, 0.99),
                "burst_intent_to_request_p50_ms": _ms(burst, 0.5),
                "burst_intent_to_request_p99_ms": _ms(burst, 0.99),
            }
        )
    )


if __name__ == "__main__":
    main()
