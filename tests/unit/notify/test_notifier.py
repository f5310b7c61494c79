"""The Notifier: bus wiring, per-kind filtering, retries and backoff, overflow, daily summary."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import structlog.testing
from pydantic import SecretStr

from botd import Quote, Strategy
from botd.bus import Bus
from botd.clock import NS_PER_SECOND, FakeClock, LiveClock
from botd.events import KillSwitchChanged, StrategyHalted, VenueDown, VenueUp
from botd.gateway.gateway import Alert
from botd.model import (
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
)
from botd.notify import (
    DeliveryError,
    Notice,
    Notifier,
    TelegramTransport,
    WebhookTransport,
    build_notifier,
)
from botd.settings import NotifySettings
from botd.strategy.host import HostLimits
from botd.strategy.loader import LoadedStrategy
from tests.notify_receiver import Answer, Receiver
from tests.rig import Rig, make_intent

T0 = 1_700_000_000 * NS_PER_SECOND  # FakeClock's start: 2023-11-14 22:13:20 UTC


class RecordingClock(LiveClock):
    """Real time, except that sleeps are recorded and return at once."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


class MemoryTransport:
    """A Transport that keeps what it is sent (optionally failing first)."""

    def __init__(self, name: str = "memory", failures: list[DeliveryError] | None = None) -> None:
        self._name = name
        self.sent: list[Notice] = []
        self.failures = list(failures or [])
        self.closed = False
        self.got = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notice: Notice) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(notice)
        self.got.set()

    async def close(self) -> None:
        self.closed = True


def fill(side: Side = Side.BUY, qty: str = "0.01", price: str = "64210.5", n: int = 1) -> Fill:
    return Fill(
        client_order_id=f"bd1-{n}",
        strategy_id="dip_buyer",
        venue="binance",
        symbol="BTCUSDT",
        side=side,
        qty=Decimal(qty),
        price=Decimal(price),
        fee=Decimal("0.06421050"),
        fee_asset="USDT",
        liquidity=Liquidity.TAKER,
        trade_id=f"t{n}",
        venue_order_id=f"v{n}",
        ts_event=T0,
        ts_recv=T0,
    )


def order_update(status: OrderStatus, reason: str = "") -> OrderUpdate:
    order = Order(
        client_order_id="bd1-9",
        strategy_id="grid",
        venue="paper",
        symbol="ETHUSDT",
        side=Side.SELL,
        type=OrderType.LIMIT,
        qty=Decimal("0.500"),
        price=Decimal("3000"),
        tif=TimeInForce.GTC,
        status=status,
        reason=reason,
    )
    return OrderUpdate(order, OrderStatus.PENDING, T0, T0)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def run_until_drained(notifier: Notifier, within_s: float = 5.0) -> None:
    task = asyncio.create_task(notifier.run())
    try:
        async with asyncio.timeout(within_s):
            await asyncio.sleep(0)
            await notifier.drain()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ------------------------------------------------------------------------------ messages


async def test_messages_read_well_on_a_phone() -> None:
    bus, clock, mem = Bus(), FakeClock(), MemoryTransport()
    notifier = Notifier(bus=bus, clock=clock, transports=[mem])
    notifier.attach()
    bus.publish(fill())
    bus.publish(order_update(OrderStatus.REJECTED, "INSUFFICIENT_BALANCE: not enough ETH"))
    bus.publish(StrategyHalted("sma_cross", "5 errors in 60 s", T0))
    bus.publish(VenueDown("binance", "connection refused", 75.0, T0))
    bus.publish(VenueUp("binance", 200.0, T0))
    bus.publish(KillSwitchChanged(True, "kill switch: operator", T0))
    bus.publish(KillSwitchChanged(False, "released: all clear", T0))
    bus.publish(Alert("banned", "binance", "venue banned us: 418", T0))
    await run_until_drained(notifier)
    titles = [n.title for n in mem.sent]
    # Urgent notices go before the routine ones queued ahead of them (fills, rejections).
    assert titles == [
        "Strategy sma_cross halted",
        "Venue binance DOWN",
        "Venue binance back up",
        "KILL SWITCH ENGAGED",
        "Kill switch released",
        "Alert: banned (binance)",
        "BUY 0.01 BTCUSDT @ 64,210.50 filled — strategy dip_buyer (binance)",
        "Order rejected: SELL 0.5 ETHUSDT @ 3,000.00 — strategy grid (paper)",
    ]
    assert mem.sent[6].body == "fee 0.0642105 USDT · taker · order bd1-1"
    assert mem.sent[7].body == "INSUFFICIENT_BALANCE: not enough ETH"
    assert mem.sent[1].body == "No market data for 1 min 15 s: connection refused"
    assert mem.sent[2].body == "Market data flowing again after 3 min 20 s."
    assert "botd resume" in mem.sent[3].body
    assert mem.sent[6].data["price"] == "64210.5"
    assert len({n.id for n in mem.sent}) == len(mem.sent)
    assert mem.closed


# ------------------------------------------------------------------------------ filtering


async def test_only_the_configured_kinds_are_sent() -> None:
    bus, clock, mem = Bus(), FakeClock(), MemoryTransport()
    notifier = Notifier(bus=bus, clock=clock, transports=[mem], events=["kill_switch", "venue_up"])
    notifier.attach()
    bus.publish(fill())
    bus.publish(order_update(OrderStatus.REJECTED, "nope"))
    bus.publish(StrategyHalted("x", "y", T0))
    bus.publish(VenueDown("binance", "gone", 61.0, T0))
    bus.publish(VenueUp("binance", 62.0, T0))
    # The gateway's kill-switch alert duplicates KillSwitchChanged: never sent twice.
    bus.publish(Alert("kill_switch", "*", "kill switch engaged: x", T0))
    bus.publish(KillSwitchChanged(True, "x", T0))
    await run_until_drained(notifier)
    assert [n.kind for n in mem.sent] == ["venue_up", "kill_switch"]
    # Fills were not even subscribed: nothing is queued on the hot path for them.
    assert notifier.stats()["memory"].sent == 2


async def test_order_updates_other_than_rejections_are_ignored() -> None:
    bus, mem = Bus(), MemoryTransport()
    notifier = Notifier(bus=bus, clock=FakeClock(), transports=[mem])
    notifier.attach()
    for status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.CANCELED):
        bus.publish(order_update(status))
    assert notifier.queued() == 0
    bus.publish(order_update(OrderStatus.REJECTED, "r"))
    assert notifier.queued() == 1


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="fils"):
        Notifier(bus=Bus(), clock=FakeClock(), transports=[], events=["fils"])


def test_build_notifier_needs_a_transport() -> None:
    clock = FakeClock()
    assert build_notifier(NotifySettings(), bus=Bus(), clock=clock) is None
    settings = NotifySettings.model_validate(
        {
            "webhook": {"url": "http://127.0.0.1:9/h"},
            "telegram": {"bot_token": "1:abcdef", "chat_id": 5},
            "daily_summary": "18:30",
        }
    )
    notifier = build_notifier(settings, bus=Bus(), clock=clock)
    assert notifier is not None
    assert notifier.transports == ["webhook", "telegram"]
    assert settings.telegram.chat_id == "5"


# ------------------------------------------------------------------------------ retries


async def test_webhook_retries_on_500_with_growing_jittered_backoff(receiver: Receiver) -> None:
    receiver.script.extend([Answer(500), Answer(502), Answer(200)])
    clock = RecordingClock()
    hook = WebhookTransport(
        url=SecretStr(receiver.url + "/h"), secret=SecretStr("k3y!"), clock=clock
    )
    notifier = Notifier(
        bus=Bus(), clock=clock, transports=[hook], backoff_initial_s=0.5, rng=random.Random(1)
    )
    notifier.enqueue(fill())
    await run_until_drained(notifier)
    assert len(receiver.requests) == 3
    stats = notifier.stats()["webhook"]
    assert (stats.sent, stats.retries, stats.failed) == (1, 2, 0)
    first, second = clock.sleeps
    assert 0.25 <= first <= 0.5  # half the base plus up to half again
    assert 0.5 <= second <= 1.0
    # Every attempt is the same delivery (receivers dedupe on it).
    assert len({r.headers["X-Botd-Delivery"] for r in receiver.requests}) == 1


async def test_telegram_429_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.script.append(
        Answer(
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7},
            },
        )
    )
    clock = RecordingClock()
    tg = TelegramTransport(
        bot_token=SecretStr("42:tok-abcdef"), chat_id="1", clock=clock, api_base=receiver.url
    )
    notifier = Notifier(bus=Bus(), clock=clock, transports=[tg], rng=random.Random(1))
    notifier.enqueue(fill())
    await run_until_drained(notifier)
    assert clock.sleeps == [7.0]
    assert len(receiver.requests) == 2
    assert notifier.stats()["telegram"].sent == 1


async def test_gives_up_after_max_attempts_and_on_permanent_errors() -> None:
    clock = RecordingClock()
    flaky = MemoryTransport("flaky", [DeliveryError("HTTP 500")] * 5)
    refused = MemoryTransport("refused", [DeliveryError("HTTP 401", permanent=True)])
    notifier = Notifier(
        bus=Bus(), clock=clock, transports=[flaky, refused], max_attempts=3, backoff_initial_s=0.01
    )
    with structlog.testing.capture_logs() as logs:
        notifier.enqueue(fill())
        await run_until_drained(notifier)
    assert flaky.sent == [] and refused.sent == []
    assert notifier.stats()["flaky"].failed == 1
    assert notifier.stats()["flaky"].retries == 2
    assert notifier.stats()["refused"].retries == 0
    gave_up = [e for e in logs if e["event"] == "notification not delivered"]
    assert sorted((e["transport"], e["attempts"]) for e in gave_up) == [
        ("flaky", 3),
        ("refused", 1),
    ]


async def test_a_slow_transport_does_not_hold_up_another(receiver: Receiver) -> None:
    receiver.gate = asyncio.Event()  # the webhook hangs
    clock = LiveClock()
    hook = WebhookTransport(url=SecretStr(receiver.url + "/h"), secret=None, clock=clock)
    mem = MemoryTransport()
    notifier = Notifier(bus=Bus(), clock=clock, transports=[hook, mem])
    task = asyncio.create_task(notifier.run())
    try:
        for n in range(3):
            notifier.enqueue(fill(n=n))
        async with asyncio.timeout(5):
            while len(mem.sent) < 3:
                mem.got.clear()
                await mem.got.wait()
        await receiver.wait_for(1)
        # The webhook is still waiting on its first answer; the other one is done.
        assert len(receiver.requests) == 1
        assert notifier.stats()["webhook"].sent == 0
    finally:
        receiver.gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ------------------------------------------------------------------------------ overflow


async def test_queue_overflow_drops_the_oldest_and_counts(receiver: Receiver) -> None:
    receiver.gate = asyncio.Event()
    clock = LiveClock()
    bus = Bus()
    hook = WebhookTransport(url=SecretStr(receiver.url + "/h"), secret=None, clock=clock)
    notifier = Notifier(bus=bus, clock=clock, transports=[hook], queue_size=3)
    notifier.attach()
    task = asyncio.create_task(notifier.run())
    try:
        with structlog.testing.capture_logs() as logs:
            bus.publish(fill(n=1))
            await receiver.wait_for(1)  # in flight, held by the receiver
            for n in range(2, 11):
                bus.publish(fill(n=n))  # the handler returns at once, whatever the queue
            assert notifier.queued() == 3
            assert notifier.stats()["webhook"].dropped == 6
            receiver.gate.set()
            async with asyncio.timeout(5):
                await notifier.drain()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    orders = [r.json["data"]["client_order_id"] for r in receiver.requests]
    assert orders == ["bd1-1", "bd1-8", "bd1-9", "bd1-10"]  # the newest kept
    full = [e for e in logs if e["event"] == "notification queue full; dropping the oldest"]
    drained = [e for e in logs if e["event"] == "notification queue drained"]
    assert len(full) == 1  # one line per burst, not one per drop
    assert drained[0]["dropped"] == 6


# ------------------------------------------------------------------------------ summary


async def test_daily_summary_fires_at_the_configured_time_on_the_fake_clock() -> None:
    bus, clock, mem = Bus(), FakeClock(T0), MemoryTransport()
    status: dict[str, object] = {
        "trading": "active",
        "kill_switch": False,
        "open_orders": 2,
        "pnl_today": "-1.5",
        "strategies": {"grid": "running", "sma": "running", "bad": "halted"},
    }
    notifier = Notifier(
        bus=bus,
        clock=clock,
        transports=[mem],
        events=[],  # the summary counts fills even when they are not notified one by one
        daily_summary_cron="15 23 * * *",  # 23:15 in Paris = 22:15 UTC in November
        timezone="Europe/Paris",
        status=lambda: status,
    )
    notifier.attach()
    task = asyncio.create_task(notifier.run())
    try:
        await asyncio.sleep(0)
        bus.publish(fill(Side.BUY, n=1))
        bus.publish(fill(Side.SELL, n=2))
        bus.publish(order_update(OrderStatus.REJECTED, "r"))
        await clock.advance(99)  # 22:14:59 UTC
        assert mem.sent == []
        await clock.advance(1)  # 22:15:00 UTC
        await asyncio.sleep(0)
        [summary] = mem.sent
        assert summary.kind == "daily_summary"
        assert summary.ts_ns == T0 + 100 * NS_PER_SECOND
        assert summary.title == "Daily summary — 2023-11-14 23:15 Europe/Paris"
        assert summary.body.splitlines() == [
            "Fills: 2 (1 buys, 1 sells) in BTCUSDT",
            "Rejections: 1",
            "Realized PnL today (UTC day): -1.5",
            "Strategies: 2 running, 1 halted (bad)",
            "Trading: active · kill switch off · open orders 2",
        ]
        await clock.advance(86_400)  # the next day, counters reset
        await asyncio.sleep(0)
        assert len(mem.sent) == 2
        assert mem.sent[1].body.startswith("Fills: none\nRejections: 0")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ------------------------------------------------------------------------------ real stack


class _Raiser(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote: Quote) -> None:
        raise RuntimeError("strategy bug")


class _Buyer(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote: Quote) -> None:
        if not self.state.get("bought"):
            self.state["bought"] = True
            self.buy(Decimal("0.001"))


async def test_a_real_trading_stack_feeds_the_notifier() -> None:
    """Paper venue, gateway, risk and host on one bus: a fill, a risk denial and a halted
    strategy each become one notice."""
    rig = Rig(limits=HostLimits(max_errors=3))
    mem = MemoryTransport()
    notifier = Notifier(bus=rig.bus, clock=rig.clock, transports=[mem])
    notifier.attach()
    async with rig.running():
        task = asyncio.create_task(notifier.run())
        rig.host.start(LoadedStrategy("buyer", _Buyer, Path("buyer.py")))
        rig.host.start(LoadedStrategy("raiser", _Raiser, Path("raiser.py")))
        rig.gateway.submit(make_intent(strategy_id="buyer", qty=Decimal("1000")))  # no funds
        await rig.advance(2.0)
        await notifier.drain()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    by_kind: dict[str, list[Notice]] = {}
    for n in mem.sent:
        by_kind.setdefault(n.kind, []).append(n)
    [fill_notice] = by_kind["fills"]
    assert re.fullmatch(
        r"BUY 0\.001 BTCUSDT @ [0-9,]+\.\d\d+ filled — strategy buyer \(paper\)", fill_notice.title
    ), fill_notice.title
    [rejected] = by_kind["rejections"]
    assert rejected.title.startswith("Order rejected: BUY 1000 BTCUSDT — strategy buyer (paper)")
    assert rejected.body  # the risk check's reason
    [halted] = by_kind["strategy_halted"]
    assert halted.title == "Strategy raiser halted"
