"""Bars, rules, timers, time budgets, sizing and state handover in the strategy host."""

from decimal import Decimal as D
from pathlib import Path

import structlog

from botd import Bar, Quote, Strategy, param
from botd.strategy.host import HostLimits, StrategyStatus
from botd.strategy.loader import LoadedStrategy
from tests.rig import Rig


def loaded(cls: type[Strategy], sid: str) -> LoadedStrategy:
    return LoadedStrategy(sid, cls, Path(f"{sid}.py"))


class BarWatcher(Strategy):
    symbol = "BTCUSDT"
    timeframe = "1s"

    def on_start(self) -> None:
        self.bars: list[Bar] = []

    def on_bar(self, bar: Bar) -> None:
        self.bars.append(bar)


async def test_on_bar_receives_bars_of_its_timeframe() -> None:
    rig = Rig(event_rate=20)
    async with rig.running():
        hosted = rig.host.start(loaded(BarWatcher, "bars"))
        assert hosted is not None
        await rig.advance(5.0)
    bars = hosted.strategy.bars  # type: ignore[attr-defined]
    assert 3 <= len(bars) <= 5
    assert all(b.timeframe == "1s" and b.symbol == "BTCUSDT" for b in bars)
    assert all(b.end - b.start == 1_000_000_000 for b in bars)
    assert all(b.low <= b.open <= b.high and b.low <= b.close <= b.high for b in bars)


async def test_stopping_releases_bar_building() -> None:
    rig = Rig()
    async with rig.running():
        rig.host.start(loaded(BarWatcher, "bars"))
        subs = rig.bus.subscriptions
        rig.host.stop("bars")
        assert rig.bus.subscriptions < subs - 1  # its Bar subscription and the bar builder's


class RuleBuyer(Strategy):
    symbol = "BTCUSDT"
    level = param(D("0"))

    def on_start(self) -> None:
        self.fired = 0
        self.when(lambda: self.last_quote() is not None, self.go, once=True, name="first quote")

    def go(self) -> None:
        self.fired += 1
        self.buy(D("0.001"))


async def test_when_rules_fire_on_edges_after_market_events() -> None:
    rig = Rig()
    async with rig.running():
        hosted = rig.host.start(loaded(RuleBuyer, "rule"))
        assert hosted is not None
        await rig.advance(2.0)
    assert hosted.strategy.fired == 1  # type: ignore[attr-defined]
    assert len([f for f in rig.fills if f.strategy_id == "rule"]) >= 1


class RuleRaises(Strategy):
    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.when(lambda: 1 / 0, lambda: None, name="broken")


async def test_a_raising_rule_counts_as_a_strategy_failure() -> None:
    rig = Rig(limits=HostLimits(max_errors=3))
    async with rig.running():
        hosted = rig.host.start(loaded(RuleRaises, "rr"))
        assert hosted is not None
        with structlog.testing.capture_logs() as logs:
            await rig.advance(1.0)
    assert hosted.status is StrategyStatus.HALTED
    assert any(e.get("hook") == "when broken" for e in logs)


class Ticker(Strategy):
    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.ticks = 0
        self.every("250ms", self.tick)

    def tick(self) -> None:
        self.ticks += 1


async def test_timers_run_and_stop_with_the_strategy() -> None:
    rig = Rig()
    async with rig.running():
        hosted = rig.host.start(loaded(Ticker, "ticker"))
        assert hosted is not None
        await rig.advance(1.0)
        assert hosted.strategy.ticks == 4  # type: ignore[attr-defined]
        rig.host.stop("ticker")
        await rig.advance(1.0)
        assert hosted.strategy.ticks == 4  # type: ignore[attr-defined]
        assert rig.scheduler.jobs("ticker") == []


async def test_sustained_overruns_halt_a_slow_strategy() -> None:
    now = [0]

    class Slow(Strategy):
        symbol = "BTCUSDT"

        def on_quote(self, quote: Quote) -> None:
            now[0] += 50_000_000  # pretend this hook took 50 ms

    class Healthy(Strategy):
        symbol = "BTCUSDT"

        def on_start(self) -> None:
            self.quotes = 0

        def on_quote(self, quote: Quote) -> None:
            self.quotes += 1

    rig = Rig(limits=HostLimits(hook_budget_ms=5, max_overruns=4), perf=lambda: now[0])
    async with rig.running():
        slow = rig.host.start(loaded(Slow, "slow"))
        healthy = rig.host.start(loaded(Healthy, "healthy"))
        assert slow is not None and healthy is not None
        with structlog.testing.capture_logs() as logs:
            await rig.advance(2.0)
    assert slow.status is StrategyStatus.HALTED
    assert slow.overrun_total == 4
    assert "time-budget overruns" in slow.halt_reason
    assert healthy.status is StrategyStatus.RUNNING
    assert healthy.strategy.quotes >= 35  # type: ignore[attr-defined]
    warnings = [e for e in logs if e["event"] == "strategy hook over its time budget"]
    assert warnings[0]["elapsed_ms"] == 50.0
    assert rig.host.last_overrun == "slow.on_quote (50.0 ms)"


class Sizer(Strategy):
    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.ids: list[str] = []

    def on_quote(self, quote: Quote) -> None:
        if not self.ids:
            self.ids.append(self.buy(quote=D("1000")))
            self.ids.append(self.sell(fraction=0.5))


async def test_sizing_by_quote_amount_and_fraction() -> None:
    rig = Rig()
    async with rig.running():
        hosted = rig.host.start(loaded(Sizer, "sizer"))
        assert hosted is not None
        await rig.advance(0.5)
        quote_order = rig.gateway.order(hosted.strategy.ids[0])  # type: ignore[attr-defined]
        fraction_order = rig.gateway.order(hosted.strategy.ids[1])  # type: ignore[attr-defined]
    assert quote_order is not None and fraction_order is not None
    assert D("0.014") < quote_order.qty < D("0.016")  # 1000 USDT at ~65000
    assert fraction_order.qty == D("0.5")  # half of the 1 BTC balance


class Stateful(Strategy):
    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.state.setdefault("starts", 0)
        self.state["starts"] += 1
        self.state.setdefault("quotes", 0)

    def on_quote(self, quote: Quote) -> None:
        self.state["quotes"] += 1


async def test_replace_hands_over_state_as_a_copy() -> None:
    rig = Rig()
    async with rig.running():
        old = rig.host.start(loaded(Stateful, "st"))
        assert old is not None
        await rig.advance(0.5)
        seen = old.strategy.state["quotes"]
        new = rig.host.prepare(loaded(Stateful, "st"))
        assert new is not None
        rig.host.replace(new)
        await rig.advance(0.5)
    assert old.status is StrategyStatus.STOPPED
    assert new.strategy.state["starts"] == 2
    assert new.strategy.state["quotes"] > seen
    assert old.strategy.state is not new.strategy.state
    assert old.strategy.state["quotes"] == seen  # the old instance no longer receives events
