"""Floods: coalescing routine notices, urgent ones first, priority-aware overflow, pacing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from botd.bus import Bus
from botd.clock import NS_PER_SECOND, FakeClock
from botd.events import KillSwitchChanged, StrategyHalted, VenueDown
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
    Batch,
    Notice,
    Notifier,
    Pacer,
    TelegramTransport,
    WebhookTransport,
    build_notifier,
    render,
)
from botd.settings import NotifySettings, SettingsError, load_settings
from tests.notify_receiver import Receiver

T0 = 1_700_000_000 * NS_PER_SECOND


class Recorder:
    """A Transport that records each notice with the (fake) time it was sent at."""

    def __init__(self, clock: FakeClock, name: str = "memory") -> None:
        self._clock = clock
        self._name = name
        self.sent: list[Notice] = []
        self.at: list[float] = []  # seconds since T0
        self.gate: asyncio.Event | None = None  # an unset Event holds every send

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notice: Notice) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(notice)
        self.at.append((self._clock.time_ns() - T0) / NS_PER_SECOND)

    async def close(self) -> None:
        pass


def fill(
    n: int,
    price: str = "64210.5",
    qty: str = "0.01",
    side: Side = Side.BUY,
    strategy: str = "dip_buyer",
    symbol: str = "BTCUSDT",
) -> Fill:
    return Fill(
        strategy_id=strategy,
        client_order_id=f"bd1-{n}",
        venue="binance",
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        price=Decimal(price),
        fee=Decimal("0.01"),
        fee_asset="USDT",
        liquidity=Liquidity.TAKER,
        trade_id=f"t{n}",
        venue_order_id=f"v{n}",
        ts_event=T0 + n * NS_PER_SECOND // 10,
        ts_recv=T0,
    )


def rejected(n: int, reason: str, strategy: str = "grid") -> OrderUpdate:
    order = Order(
        client_order_id=f"bd1-r{n}",
        strategy_id=strategy,
        venue="paper",
        symbol="ETHUSDT",
        side=Side.SELL,
        type=OrderType.LIMIT,
        qty=Decimal("0.5"),
        price=Decimal("3000"),
        tif=TimeInForce.GTC,
        status=OrderStatus.REJECTED,
        reason=reason,
    )
    return OrderUpdate(order, OrderStatus.PENDING, T0 + n, T0 + n)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def start(notifier: Notifier, tasks: list[asyncio.Task[None]]) -> None:
    tasks.append(asyncio.create_task(notifier.run()))


# ------------------------------------------------------------------------------ coalescing


async def test_a_burst_of_fills_becomes_one_summary(running: list[asyncio.Task[None]]) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec], coalesce_window_s=10.0)
    start(notifier, running)
    await settle()
    notifier.enqueue(fill(0))
    await settle()
    first = render(fill(0), "x")
    assert first is not None
    assert [n.title for n in rec.sent] == [first.title]  # the first goes at once
    prices = ["64200", "64210.5", "64220.25", "64190"]
    for n in range(1, 13):
        await clock.advance(0.5)
        notifier.enqueue(fill(n, prices[n % 4], qty="0.01" if n % 2 else "0.02"))
    await settle()
    assert len(rec.sent) == 1  # the rest wait for the window to close
    await clock.advance(4.0)  # 10 s after the first
    await settle()
    assert len(rec.sent) == 2
    batch = rec.sent[1]
    assert rec.at[1] == 10.0
    # 6 fills of 0.01 and 6 of 0.02: 0.18 BTC; VWAP in Decimal, to the finest tick seen.
    qty = sum((Decimal("0.01") if n % 2 else Decimal("0.02") for n in range(1, 13)), Decimal(0))
    notional = sum(
        (
            (Decimal("0.01") if n % 2 else Decimal("0.02")) * Decimal(prices[n % 4])
            for n in range(1, 13)
        ),
        Decimal(0),
    )
    vwap = (notional / qty).quantize(Decimal("0.01"))
    assert qty == Decimal("0.18")
    assert batch.title == (f"12 fills in 10 s — dip_buyer: BUY 0.18 BTCUSDT avg {vwap:,f}")
    assert batch.kind == "fills"
    assert batch.body.splitlines() == [
        "binance BUY 0.18 BTCUSDT: 12 fills, 64,210.50 → 64,200.00, fees 0.12 USDT",
        "first 22:13:20, last 22:13:21 UTC",
    ]
    assert batch.batch is not None
    group = batch.batch["groups"][0]
    assert group["vwap"] == str(vwap)
    assert group["qty"] == "0.18"
    assert group["notional"] == str(notional)
    assert batch.batch["count"] == 12
    assert batch.data == {"strategy": "dip_buyer", "count": "12", "window_s": "10"}
    assert notifier.stats()["memory"].sent == 2


async def test_the_window_rolls_while_the_flood_lasts_then_ends(
    running: list[asyncio.Task[None]],
) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec], coalesce_window_s=10.0)
    start(notifier, running)
    await settle()
    notifier.enqueue(fill(0))  # sent at 0, window 0..10
    await settle()
    await clock.advance(5)
    notifier.enqueue(fill(1))
    notifier.enqueue(fill(2))
    await clock.advance(7)  # t=12: batch of 2 sent at 10; the next window is 10..20
    notifier.enqueue(fill(3))  # caught by it
    await clock.advance(8)  # t=20: sent alone, exactly as a single fill
    await clock.advance(10)  # t=30: the window 20..30 caught nothing and ends
    notifier.enqueue(fill(4))  # so this one goes at once
    await settle()
    assert rec.at == [0.0, 10.0, 20.0, 30.0]
    assert rec.sent[1].title.startswith("2 fills in 10 s — dip_buyer: BUY 0.02 BTCUSDT avg")
    for i, n in ((2, 3), (3, 4)):
        alone = render(fill(n), rec.sent[i].id)
        assert rec.sent[i] == alone
        assert rec.sent[i].batch is None


async def test_kinds_and_strategies_are_coalesced_separately(
    running: list[asyncio.Task[None]],
) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec], coalesce_window_s=5.0)
    start(notifier, running)
    await settle()
    for n in range(4):
        notifier.enqueue(fill(n))
        notifier.enqueue(fill(n, strategy="grid", side=Side.SELL, symbol="ETHUSDT", price="3000"))
        notifier.enqueue(fill(n, strategy="grid", side=Side.BUY, symbol="ETHUSDT", price="2990"))
        notifier.enqueue(rejected(n, "INSUFFICIENT_BALANCE" if n else "PRICE_FILTER"))
    await clock.advance(5)
    await settle()
    titles = [n.title for n in rec.sent]
    assert len(titles) == 6  # 3 sent at once (2 fills, 1 rejection) + 3 summaries
    assert "3 fills in 5 s — dip_buyer: BUY 0.03 BTCUSDT avg 64,210.50" in titles
    assert (
        # Groups in order of their first fill in the window (the first SELL went at once).
        "7 fills in 5 s — grid: BUY 0.04 ETHUSDT avg 2,990.00, SELL 0.03 ETHUSDT avg 3,000.00"
    ) in titles
    rej = next(n for n in rec.sent if n.kind == "rejections" and n.batch is not None)
    assert rej.title == "3 orders rejected in 5 s — grid: SELL 1.5 ETHUSDT (3)"
    assert rej.body.splitlines()[0] == (
        "paper SELL 1.5 ETHUSDT: 3 rejected: INSUFFICIENT_BALANCE (3)"
    )
    assert rej.batch is not None
    assert rej.batch["groups"][0]["reasons"] == {"INSUFFICIENT_BALANCE": 3}


async def test_urgent_notices_are_never_held_by_a_window(
    running: list[asyncio.Task[None]],
) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec], coalesce_window_s=10.0)
    start(notifier, running)
    await settle()
    for _ in range(3):
        notifier.enqueue(VenueDown("binance", "gone", 61.0, T0))
    notifier.enqueue(KillSwitchChanged(True, "drill", T0))
    await settle()
    assert [n.kind for n in rec.sent] == ["venue_down"] * 3 + ["kill_switch"]
    assert rec.at == [0.0] * 4


async def test_drain_sends_what_open_windows_hold(running: list[asyncio.Task[None]]) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec], coalesce_window_s=60.0)
    start(notifier, running)
    await settle()
    for n in range(3):
        notifier.enqueue(fill(n))
    assert notifier.queued() == 3
    async with asyncio.timeout(5):
        await notifier.drain()  # without the fake clock moving
    assert [n.title.split(" —")[0] for n in rec.sent[1:]] == ["2 fills in 1 min"]
    assert notifier.queued() == 0


def test_a_zero_window_keeps_every_fill_separate() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec], coalesce_window_s=0)
    for n in range(5):
        notifier.enqueue(fill(n))
    assert notifier.queued() == 5


# ------------------------------------------------------------------------------ priorities


async def test_urgent_notices_jump_ahead_of_queued_routine_ones(
    running: list[asyncio.Task[None]],
) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    rec.gate = asyncio.Event()
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec])
    start(notifier, running)
    await settle()
    notifier.enqueue(fill(0))  # taken by the sender, held at the gate
    await settle()
    for n in range(1, 4):
        notifier.enqueue(fill(n))
    notifier.enqueue(KillSwitchChanged(True, "drill", T0))
    notifier.enqueue(StrategyHalted("grid", "5 errors", T0))
    rec.gate.set()
    async with asyncio.timeout(5):
        await notifier.drain()
    assert [n.kind for n in rec.sent] == [
        "fills",
        "kill_switch",
        "strategy_halted",
        "fills",
        "fills",
        "fills",
    ]
    assert [n.data["client_order_id"] for n in rec.sent if n.kind == "fills"] == [
        "bd1-0",
        "bd1-1",
        "bd1-2",
        "bd1-3",
    ]


async def test_overflow_drops_routine_notices_first(running: list[asyncio.Task[None]]) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec], queue_size=3)
    urgent = [VenueDown(f"v{i}", "gone", 61.0, T0) for i in range(5)]
    notifier.enqueue(urgent[1])
    notifier.enqueue(fill(1))
    notifier.enqueue(fill(2))  # full: [v1 | f1 f2]
    notifier.enqueue(urgent[2])  # drops f1
    notifier.enqueue(fill(3))  # drops f2
    notifier.enqueue(urgent[3])  # drops f3: [v1 v2 v3]
    notifier.enqueue(fill(4))  # a queue of urgent notices is never cut for a routine one
    assert notifier.stats()["memory"].dropped == 4
    notifier.enqueue(urgent[4])  # only a newer urgent one pushes out the oldest urgent one
    assert notifier.stats()["memory"].dropped == 5
    start(notifier, running)
    async with asyncio.timeout(5):
        await settle()
        await notifier.drain()
    assert [n.data["venue"] for n in rec.sent] == ["v2", "v3", "v4"]


async def test_a_batch_is_routine_when_the_queue_overflows(
    running: list[asyncio.Task[None]],
) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    rec.gate = asyncio.Event()
    notifier = Notifier(
        bus=Bus(), clock=clock, transports=[rec], queue_size=2, coalesce_window_s=1.0
    )
    start(notifier, running)
    await settle()
    notifier.enqueue(fill(0))  # held at the gate
    await settle()
    for n in range(1, 5):
        notifier.enqueue(fill(n))
    notifier.enqueue(StrategyHalted("a", "x", T0))
    notifier.enqueue(StrategyHalted("b", "x", T0))
    await clock.advance(1)  # the batch of 4 meets a queue full of urgent notices: dropped
    assert notifier.stats()["memory"].dropped == 1
    rec.gate.set()
    async with asyncio.timeout(5):
        await notifier.drain()
    assert [n.kind for n in rec.sent] == ["fills", "strategy_halted", "strategy_halted"]


# ------------------------------------------------------------------------------ pacing


async def test_pacing_spaces_the_messages_on_the_clock(running: list[asyncio.Task[None]]) -> None:
    clock = FakeClock()
    rec = Recorder(clock, name="telegram")
    other = Recorder(clock, name="webhook")
    pacer = Pacer(clock, min_interval_s=1.0, per_minute=5)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[rec, other], pacing={"telegram": pacer})
    start(notifier, running)
    await settle()
    for i in range(7):
        notifier.enqueue(VenueDown(f"v{i}", "gone", 61.0, T0))
    await settle()
    assert other.at == [0.0] * 7  # an unpaced transport is not held up
    assert rec.at == [0.0]
    for _ in range(70):
        await clock.advance(1)
    # One a second, then the 6th waits for the first to leave the 60 s window.
    assert rec.at == [0.0, 1.0, 2.0, 3.0, 4.0, 60.0, 61.0]


async def test_pacing_holds_telegram_requests_to_the_receiver(
    receiver: Receiver, running: list[asyncio.Task[None]]
) -> None:
    clock = FakeClock()
    tg = TelegramTransport(
        bot_token=SecretStr("123:ABC"), chat_id="-100", clock=clock, api_base=receiver.url
    )
    notifier = Notifier(
        bus=Bus(),
        clock=clock,
        transports=[tg],
        pacing={"telegram": Pacer(clock, min_interval_s=1.0)},
    )
    start(notifier, running)
    await settle()
    notifier.enqueue(KillSwitchChanged(True, "drill", T0))
    notifier.enqueue(VenueDown("binance", "gone", 61.0, T0))
    await receiver.wait_for(1)
    await asyncio.sleep(0.2)  # real time: the second request must still be waiting its turn
    assert len(receiver.requests) == 1
    await clock.advance(1)
    await receiver.wait_for(2)
    assert notifier.stats()["telegram"].retries == 0


# ------------------------------------------------------------------------------ webhook body


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_webhook_gets_a_batch_object_and_the_single_schema_is_unchanged(
    receiver: Receiver, running: list[asyncio.Task[None]]
) -> None:
    clock = FakeClock()
    hook = WebhookTransport(url=SecretStr(receiver.url + "/hook"), secret=None, clock=clock)
    notifier = Notifier(bus=Bus(), clock=clock, transports=[hook], coalesce_window_s=10.0)
    start(notifier, running)
    await settle()
    notifier.enqueue(fill(0))
    notifier.enqueue(fill(1, price="64000", side=Side.SELL))
    notifier.enqueue(fill(2, price="64100", side=Side.SELL))
    await receiver.wait_for(1)
    await clock.advance(10)
    await receiver.wait_for(2)
    single, batch = (r.json for r in receiver.requests)
    assert set(single) == {"id", "kind", "title", "text", "ts", "ts_ns", "data"}
    assert single["data"]["trade_id"] == "t0"
    assert batch["kind"] == "fills"
    assert receiver.requests[1].headers["X-Botd-Event"] == "fills"
    assert batch["data"] == {"strategy": "dip_buyer", "count": "2", "window_s": "10"}
    assert batch["batch"] == {
        "count": 2,
        "window_s": 10.0,
        "strategy": "dip_buyer",
        "first_ts_ns": T0 + NS_PER_SECOND // 10,
        "last_ts_ns": T0 + 2 * NS_PER_SECOND // 10,
        "groups": [
            {
                "venue": "binance",
                "symbol": "BTCUSDT",
                "side": "sell",
                "count": 2,
                "qty": "0.02",
                "vwap": "64050",
                "first_price": "64000",
                "last_price": "64100",
                "notional": "1281.00",
                "fees": {"USDT": "0.02"},
            }
        ],
    }
    assert batch["title"] == "2 fills in 10 s — dip_buyer: SELL 0.02 BTCUSDT avg 64,050.00"


def test_batch_body_lists_at_most_three_reasons() -> None:
    b = Batch("rejections", "grid", 0.5)
    for n, reason in enumerate("ABCDEA"):
        b.add(rejected(n, reason))
    b.add(rejected(9, ""))
    notice = b.render("id-1")
    assert notice.title == "7 orders rejected in 500 ms — grid: SELL 3.5 ETHUSDT (7)"
    assert notice.body.splitlines()[0] == (
        "paper SELL 3.5 ETHUSDT: 7 rejected: A (2); B (1); C (1); 3 more"
    )
    assert json.loads(json.dumps(notice.batch))["groups"][0]["reasons"]["no reason given"] == 1


# ------------------------------------------------------------------------------ settings


def test_settings_take_a_window_with_a_unit(tmp_path: Path) -> None:
    given: object
    for given, seconds in (("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), (3, 3.0), ("0", 0.0)):
        window = NotifySettings.model_validate({"coalesce_window": given}).coalesce_window
        assert window == seconds
    assert NotifySettings().coalesce_window == 10.0
    assert NotifySettings().telegram.min_interval == 1.0
    assert NotifySettings().telegram.max_per_minute == 20
    config = tmp_path / "botd.toml"
    config.write_text('[notify]\ncoalesce_window = "10 parsecs"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"notify\.coalesce_window"):
        load_settings(config, {}, {}, secrets_dirs=[], cwd=tmp_path)


async def test_build_notifier_paces_telegram_and_coalesces(
    running: list[asyncio.Task[None]],
) -> None:
    clock = FakeClock()
    settings = NotifySettings.model_validate(
        {
            "coalesce_window": "5s",
            "telegram": {"bot_token": "1:A", "chat_id": "1", "api_base": "http://127.0.0.1:9"},
            "webhook": {"url": "http://127.0.0.1:9/hook"},
        }
    )
    notifier = build_notifier(settings, bus=Bus(), clock=clock)
    assert notifier is not None
    for n in range(3):
        notifier.enqueue(fill(n))
    # Per transport: the first fill is queued, the next two wait in the open window.
    assert notifier.queued() == 2 * 3
    channels = {c.transport.name: c for c in notifier._channels}
    assert channels["telegram"].pacer is not None
    assert channels["webhook"].pacer is None
