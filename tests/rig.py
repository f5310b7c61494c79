"""An in-process trading stack on the simulated exchange, driven by a FakeClock.

Real components throughout: the paper venue's matching engine and market generator, the
gateway, the strategy host and the feed runner. Only time is simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from botd.app import LiveRiskView
from botd.bus import Bus
from botd.clock import FakeClock
from botd.feeds.bars import BarAggregator
from botd.feeds.runner import FeedRunner
from botd.gateway import Gateway
from botd.model import Fill, OrderIntent, OrderUpdate, Side
from botd.risk import RiskEngine, RiskLimits
from botd.schedule import Scheduler
from botd.sessions import SessionSource
from botd.store import Journal, JournalError
from botd.strategy.host import HostLimits, StrategyHost
from botd.venues.base import VenueAdapter
from botd.venues.sim.faulty import FaultPlan, FaultyVenue
from botd.venues.sim.paper import PaperVenue

# Risk's fat-finger band needs live quotes; tests that run without the feed opt out of it.
_NO_BAND = RiskLimits(price_band=None, max_quote_age_s=None)
DEFAULT_BALANCES = {"USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("10")}


def make_intent(**kw: object) -> OrderIntent:
    """An order intent with test defaults: strategy s1 buys 0.01 BTCUSDT at market."""
    base: dict[str, object] = {
        "strategy_id": "s1",
        "venue": "paper",
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "qty": Decimal("0.01"),
    }
    base.update(kw)
    return OrderIntent(**base)  # type: ignore[arg-type]


class Rig:
    def __init__(
        self,
        *,
        symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
        seed: int = 7,
        event_rate: float = 20.0,
        balances: Mapping[str, Decimal] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        limits: HostLimits | None = None,
        perf: Callable[[], int] | None = None,
        risk_limits: RiskLimits | None = None,
        data_dir: Path | None = None,
        faults: FaultPlan | None = None,
        journal_busy_timeout: float = 5.0,
        sessions: SessionSource | None = None,
    ) -> None:
        self._busy_timeout = journal_busy_timeout
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="botd-rig-"))
        self.clock = FakeClock()
        self.bus = Bus()
        self.paper = PaperVenue(
            clock=self.clock,
            symbols=symbols,
            seed=seed,
            event_rate=event_rate,
            maker_fee=Decimal("0.001"),
            taker_fee=Decimal("0.002"),
            balances=balances if balances is not None else DEFAULT_BALANCES,
        )
        self.venue: VenueAdapter = self.paper
        if faults is not None:
            self.venue = FaultyVenue(self.paper, faults)
        view = LiveRiskView()
        self.risk = RiskEngine(clock=self.clock, view=view, limits=risk_limits or _NO_BAND)
        self.gateway = Gateway(
            bus=self.bus,
            clock=self.clock,
            venues={"paper": self.venue},
            risk=self.risk,
        )
        self.host_overrides = dict(overrides or {})
        self.bars = BarAggregator(self.bus, self.clock)
        self.scheduler = Scheduler(self.clock)
        self.host = StrategyHost(
            bus=self.bus,
            clock=self.clock,
            orders=self.gateway,
            market=self.gateway,
            bars=self.bars,
            scheduler=self.scheduler,
            overrides=overrides,
            limits=limits,
            sessions=sessions,
            **({"perf": perf} if perf is not None else {}),
        )
        self.host.on_realized = self.risk.on_fill
        view.gateway, view.host = self.gateway, self.host
        self.feed = FeedRunner(
            adapter=self.venue,
            symbols=symbols,
            bus=self.bus,
            clock=self.clock,
            rng=random.Random(1),
        )
        self.updates: list[OrderUpdate] = []
        self.fills: list[Fill] = []
        self.bus.subscribe(OrderUpdate, self.updates.append)
        self.bus.subscribe(Fill, self.fills.append)
        self._tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def running(self, *, feed: bool = True) -> AsyncIterator[Rig]:
        self.journal = await Journal.open(
            self.data_dir / "botd.db", clock=self.clock, busy_timeout=self._busy_timeout
        )
        self.gateway.attach_journal(self.journal)
        await self.gateway.start()
        await self.venue.connect()
        self._tasks.append(asyncio.create_task(self.gateway.run()))
        if feed:
            self._tasks.append(asyncio.create_task(self.feed.run()))
            self._tasks.append(asyncio.create_task(self.bars.run()))
        await self.settle()
        try:
            yield self
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.scheduler.close()
            with contextlib.suppress(JournalError):
                await self.journal.close()

    async def settle(self, rounds: int = 30) -> None:
        """Let every ready task run until the loop is quiet, including the journal's writes
        (real I/O on a worker thread: those take real time, however the clock is faked)."""
        quiet = 0
        for _ in range(50):
            for _ in range(rounds):
                await asyncio.sleep(0)
            if hasattr(self, "journal") and self.journal.healthy:
                with contextlib.suppress(JournalError):  # a failing journal is a test subject
                    await self.journal.flush()
            busy = self.gateway.busy_sending or self.paper.pending_reports
            if hasattr(self, "journal") and self.journal.healthy:
                busy = busy or self.journal.backlog > 0
            # Quiet twice in a row: a report the gateway took before the first check may
            # still be waiting on the journal write it started, and resumes only after it.
            if busy:
                quiet = 0
                await asyncio.sleep(0.001)
                continue
            quiet += 1
            if quiet >= 2:
                break

    async def advance(self, seconds: float, step: float = 0.05) -> None:
        elapsed = 0.0
        while elapsed < seconds:
            await self.clock.advance(step)
            await self.settle()
            elapsed += step

    def host_ids(self) -> list[str]:
        return ["default", *self.host_overrides]

    def resting_buy_price(self, symbol: str = "BTCUSDT", fraction: str = "0.9") -> Decimal:
        """A limit price far enough below the bid that the order rests."""
        quote = self.gateway.last_quote("paper", symbol)
        assert quote is not None, "no quote yet: advance the rig first"
        return (quote.bid * Decimal(fraction)).quantize(Decimal("0.01"))

    def statuses(self, client_order_id: str) -> list[str]:
        return [u.status.value for u in self.updates if u.client_order_id == client_order_id]
