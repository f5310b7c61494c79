"""Every shipped example strategy runs on the simulated exchange and trades as it says."""

from decimal import Decimal
from pathlib import Path

from botd.model import Fill, Liquidity, Side
from botd.strategy.host import HostedStrategy, StrategyStatus
from botd.strategy.loader import scan
from tests.rig import Rig

EXAMPLES = Path(__file__).resolve().parents[3] / "strategies"
SHIPPED = {s.id: s for s in scan(EXAMPLES).strategies}


def test_every_example_loads() -> None:
    result = scan(EXAMPLES)
    assert result.errors == []
    assert set(SHIPPED) == {
        "price_threshold",
        "sma_cross",
        "rsi_reversion",
        "grid",
        "donchian_breakout",
        "dip_buyer",
    }


async def run_example(
    sid: str, seconds: float, *, overrides: dict[str, object] | None = None, slow: bool = False
) -> tuple[HostedStrategy, list[Fill], Rig]:
    # Bar strategies need simulated minutes: fewer market steps per second keep that cheap.
    rig = Rig(event_rate=2 if slow else 20, overrides={sid: overrides or {}})
    async with rig.running():
        hosted = rig.host.start(SHIPPED[sid])
        assert hosted is not None
        await rig.advance(seconds, step=0.5 if slow else 0.05)
    assert hosted.status is StrategyStatus.RUNNING, hosted.halt_reason
    assert hosted.error_total == 0
    return hosted, [f for f in rig.fills if f.strategy_id == sid], rig


def assert_long_only(fills: list[Fill]) -> None:
    held = Decimal(0)
    for f in fills:
        held += f.qty if f.side is Side.BUY else -f.qty
        assert held >= 0, "a long-only strategy sold what it did not hold"


async def test_price_threshold_buys_below_and_sells_above() -> None:
    # A narrow band around where the seeded market trades: crossed both ways within a minute.
    _, fills, _ = await run_example(
        "price_threshold", 60, overrides={"below": 65015, "above": 65035}
    )
    assert {f.side for f in fills} == {Side.BUY, Side.SELL}
    assert_long_only(fills)


async def test_price_threshold_waits_outside_its_band() -> None:
    _, fills, _ = await run_example("price_threshold", 3, overrides={"below": 1, "above": 10**7})
    assert fills == []


async def test_sma_cross_trades_crossovers_long_only() -> None:
    _, fills, _ = await run_example("sma_cross", 1800, slow=True)
    assert {f.side for f in fills} == {Side.BUY, Side.SELL}
    assert_long_only(fills)


async def test_rsi_reversion_buys_oversold() -> None:
    _, fills, _ = await run_example(
        "rsi_reversion", 1800, overrides={"oversold": 45.0, "overbought": 55.0}, slow=True
    )
    assert any(f.side is Side.BUY for f in fills)
    assert_long_only(fills)


async def test_donchian_breakout_enters_and_exits() -> None:
    _, fills, _ = await run_example(
        "donchian_breakout", 3600, overrides={"entry": 5, "exit": 3}, slow=True
    )
    assert {f.side for f in fills} == {Side.BUY, Side.SELL}
    assert_long_only(fills)


async def test_grid_fills_as_maker_and_replaces_levels() -> None:
    hosted, fills, rig = await run_example("grid", 30)
    assert fills, "the price moves through a 0.02% grid within 30 s"
    assert all(f.liquidity is Liquidity.MAKER for f in fills)
    # Every fill put a new order on the other side: the grid keeps its size.
    assert len(rig.gateway.open_orders("grid")) == 6
    assert len(hosted.strategy.state["orders"]) == 6


async def test_dip_buyer_rules_file_trades() -> None:
    _, fills, _ = await run_example("dip_buyer", 1800, slow=True)
    assert any(f.side is Side.BUY for f in fills)
    assert_long_only(fills)


async def test_grid_lays_out_again_after_a_restart_that_cancelled_its_orders() -> None:
    rig = Rig()
    async with rig.running():
        first = rig.host.start(SHIPPED["grid"])
        assert first is not None
        await rig.advance(1.0)
        saved = rig.host.states()["grid"]
        rig.host.stop("grid", cancel_orders=True)  # what a shutdown does
        await rig.settle()
        assert rig.gateway.open_orders("grid") == []
        rig.host.saved_states = {"grid": saved}  # what the journal hands the next run
        second = rig.host.start(SHIPPED["grid"])
        assert second is not None
        await rig.advance(0.5)
        assert len(rig.gateway.open_orders("grid")) == 6
