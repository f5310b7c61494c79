"""The venue's own rate-limit counters reach the gateway's limiter (several bots on one IP
share one budget: our limiter must count what the server counts, not only our requests)."""

from decimal import Decimal

from pydantic import SecretStr

from botd.clock import LiveClock
from botd.gateway.throttle import Throttle
from botd.settings import VenueSettings
from botd.venues.binance.constants import BINANCE_CAPABILITIES
from botd.venues.registry import build_venue
from botd.venues.sim.binance import BinanceSimulator


async def test_server_usage_headers_are_adopted_by_the_throttle() -> None:
    clock = LiveClock()
    sim = BinanceSimulator(
        clock=clock,
        seed=1,
        symbols=["BTCUSDT"],
        api_keys={"k1": "s1"},
        balances={"k1": {"USDT": Decimal("1000")}},
    )
    port = await sim.start()
    throttle = Throttle(
        "binance",
        clock,
        BINANCE_CAPABILITIES.rate_limits,
        {k: dict(v) for k, v in BINANCE_CAPABILITIES.endpoint_costs.items()},
    )
    seen: list[dict[str, int]] = []

    def adopt(usage: dict[str, int], sent_ns: int) -> None:
        seen.append(usage)
        for pool, used in usage.items():
            throttle.observe(pool, used, sent_ns)

    cfg = VenueSettings(
        kind="binance",
        base_url=f"http://127.0.0.1:{port}",
        api_key=SecretStr("k1"),
        api_secret=SecretStr("s1"),
        symbols=["BTCUSDT"],
    )
    venue = build_venue("binance", cfg, clock, adopt)
    try:
        await venue.connect()  # time, exchangeInfo, account: weighted requests
        await venue.balances()
    finally:
        await venue.close()
        await sim.stop()
    assert seen, "the adapter reported the server's usage headers"
    server_weight = seen[-1]["REQUEST_WEIGHT"]
    assert server_weight > 1
    # We never granted anything through this throttle ourselves: all it knows came from the
    # server, and it now counts exactly that.
    assert throttle.usage()["REQUEST_WEIGHT"][0] == server_weight
