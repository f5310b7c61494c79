from decimal import Decimal as D
from pathlib import Path

import structlog

from botd import Fill, OrderUpdate, Quote, Strategy, param
from botd.model import OrderStatus
from botd.strategy.host import HostLimits, StrategyStatus
from botd.strategy.loader import LoadedStrategy
from tests.rig import Rig


def loaded(cls: type[Strategy], sid: str | None = None) -> LoadedStrategy:
    return LoadedStrategy(sid or cls.__name__.lower(), cls, Path("inline.py"))


class Buyer(Strategy):
    symbol = "BTCUSDT"
    size = param(D("0.001"), min=D("0"))
    times = param(1, min=0)

    def on_start(self) -> None:
        self.sent = 0
        self.quotes = 0
        self.updates: list[OrderUpdate] = []
        self.fills: list[Fill] = []

    def on_quote(self, quote: Quote) -> None:
        self.quotes += 1
        if self.sent < self.times and not self.open_orders:
            self.sent += 1
            self.buy(self.size)

    def on_order(self, update: OrderUpdate) -> None:
        self.updates.append(update)

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)


class Raiser(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote: Quote) -> None:
        raise RuntimeError("strategy bug")


class RestsThenRaises(Strategy):
    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.calls = 0

    def on_quote(self, quote: Quote) -> None:
        self.calls += 1
        if self.calls == 1:
            self.buy(D("0.001"), price=(quote.bid * D("0.8")).quantize(D("0.01")))
        elif self.calls > 3:
            raise ValueError("later bug")


async def test_params_are_overridden_and_validated() -> None:
    rig = Rig(
        overrides={
            "ok": {"size": "0.002", "times": 2},
            "typo": {"sise": "0.002"},
            "negative": {"size": -1},
            "wrongtype": {"times": "three"},
            "off": {"enabled": False},
        }
    )
    with structlog.testing.capture_logs() as logs:
        started = {sid: rig.host.start(loaded(Buyer, sid)) for sid in rig.host_ids()}
    assert started["ok"] is not None
    assert started["ok"].strategy.size == D("0.002")
    assert started["ok"].strategy.times == 2
    assert started["default"] is not None
    assert started["default"].strategy.size == D("0.001")
    for sid in ("typo", "negative", "wrongtype", "off"):
        assert started[sid] is None, sid
    errors = {e["strategy"]: e["error"] for e in logs if e.get("log_level") == "error"}
    assert "unknown parameter 'sise'" in errors["typo"]
    assert "below the minimum 0" in errors["negative"]
    assert "expected int" in errors["wrongtype"]


async def test_failing_strategy_is_halted_while_others_keep_trading() -> None:
    rig = Rig(limits=HostLimits(max_errors=5))
    async with rig.running():
        good = rig.host.start(loaded(Buyer, "good"))
        bad = rig.host.start(loaded(Raiser, "bad"))
        assert good is not None and bad is not None
        with structlog.testing.capture_logs() as logs:
            await rig.advance(2.0)
    assert bad.status is StrategyStatus.HALTED
    assert bad.error_total == 5  # not called again once halted
    assert good.status is StrategyStatus.RUNNING
    assert good.strategy.quotes >= 35  # type: ignore[attr-defined]
    assert len(good.strategy.fills) >= 1  # type: ignore[attr-defined]
    raised = [e for e in logs if e["event"] == "strategy hook raised"]
    assert len(raised) == 5
    assert "RuntimeError: strategy bug" in raised[0]["error"]
    assert any(e["event"].startswith("strategy halted") for e in logs)


async def test_halting_cancels_the_strategys_open_orders() -> None:
    rig = Rig(limits=HostLimits(max_errors=1))
    async with rig.running():
        hosted = rig.host.start(loaded(RestsThenRaises, "rester"))
        assert hosted is not None
        await rig.advance(1.0)
        await rig.gateway.drain()
        await rig.settle()
    assert hosted.status is StrategyStatus.HALTED
    assert rig.gateway.open_orders("rester") == []
    assert [u.status for u in rig.updates][-1] is OrderStatus.CANCELED


async def test_positions_are_per_strategy_and_events_go_to_their_owner() -> None:
    rig = Rig(overrides={"small": {"size": "0.001"}, "large": {"size": "0.003"}})
    async with rig.running():
        small = rig.host.start(loaded(Buyer, "small"))
        large = rig.host.start(loaded(Buyer, "large"))
        assert small is not None and large is not None
        await rig.advance(1.0)
    s, lg = small.strategy, large.strategy
    fee = D("0.002")  # taker fee, paid in BTC
    assert s.position.qty == D("0.001") * (1 - fee)
    assert lg.position.qty == D("0.003") * (1 - fee)
    assert {u.strategy_id for u in s.updates} == {"small"}  # type: ignore[attr-defined]
    assert {f.strategy_id for f in lg.fills} == {"large"}  # type: ignore[attr-defined]
    assert s.position.avg_price > 0


async def test_stop_calls_on_stop_and_no_hook_runs_afterwards() -> None:
    stopped: list[str] = []

    class Stopper(Buyer):
        def on_stop(self) -> None:
            stopped.append(self.id)

    rig = Rig()
    async with rig.running():
        hosted = rig.host.start(loaded(Stopper, "stopper"))
        assert hosted is not None
        await rig.advance(0.3)
        rig.host.stop("stopper")
        quotes = hosted.strategy.quotes  # type: ignore[attr-defined]
        await rig.advance(0.5)
    assert stopped == ["stopper"]
    assert hosted.strategy.quotes == quotes  # type: ignore[attr-defined]
    assert hosted.status is StrategyStatus.STOPPED


async def test_on_start_failure_is_contained() -> None:
    class BadStart(Strategy):
        symbol = "BTCUSDT"

        def on_start(self) -> None:
            raise KeyError("missing")

    rig = Rig()
    with structlog.testing.capture_logs() as logs:
        hosted = rig.host.start(loaded(BadStart))
    assert hosted is not None
    assert any(e["event"] == "strategy hook raised" for e in logs)
    assert hosted.status is StrategyStatus.HALTED
    assert hosted.halt_reason == "on_start failed"


async def test_unknown_symbol_is_refused_at_start() -> None:
    class Doge(Strategy):
        symbol = "DOGEUSDT"

    rig = Rig()
    with structlog.testing.capture_logs() as logs:
        assert rig.host.start(loaded(Doge)) is None
    assert "has no symbol 'DOGEUSDT'" in logs[-1]["error"]


class QuietBuyer(Buyer):
    """Buyer without on_order / on_fill: the host has nothing to call for them."""

    on_order = Strategy.on_order
    on_fill = Strategy.on_fill


async def test_hooks_a_strategy_does_not_override_are_not_called() -> None:
    rig = Rig()
    async with rig.running():
        loud = rig.host.start(loaded(Buyer, "loud"))
        quiet = rig.host.start(loaded(QuietBuyer, "quiet"))
        assert loud is not None and quiet is not None
        await rig.advance(1.0)
    assert loud.wants_orders and loud.wants_fills
    assert not quiet.wants_orders and not quiet.wants_fills
    # Both bought and got the same events; only the overriding one had its hooks called
    # (on_start and one on_quote per quote are counted for both).
    assert quiet.strategy.sent == loud.strategy.sent == 1  # type: ignore[attr-defined]
    assert len(loud.strategy.fills) == 1  # type: ignore[attr-defined]
    assert loud.strategy.updates  # type: ignore[attr-defined]
    assert quiet.strategy.position.qty == loud.strategy.position.qty > 0
    extra = len(loud.strategy.updates) + len(loud.strategy.fills)  # type: ignore[attr-defined]
    assert loud.calls - quiet.calls == extra
