"""The strategies folder as users edit it: add, modify, break, fix, delete, rename."""

from decimal import Decimal
from pathlib import Path

import structlog

from botd.strategy.host import StrategyStatus
from botd.strategy.manager import StrategyManager
from tests.rig import Rig


def source(version: int, *, extra: str = "") -> str:
    return (
        "from decimal import Decimal\n"
        "from botd import Strategy, param\n\n"
        "class Counter(Strategy):\n"
        "    symbol = 'BTCUSDT'\n"
        "    size = param(Decimal('0.001'))\n\n"
        "    def on_start(self):\n"
        f"        self.version = {version}\n"
        "        self.state.setdefault('quotes', 0)\n\n"
        "    def on_quote(self, quote):\n"
        "        self.state['quotes'] += 1\n"
        f"{extra}"
    )


def manager(
    rig: Rig, folder: Path, settings: dict[str, dict[str, object]] | None = None
) -> StrategyManager:
    return StrategyManager(host=rig.host, folder=folder, settings=settings or {})


async def test_modify_swaps_versions_and_keeps_state(tmp_path: Path) -> None:
    (tmp_path / "counter.py").write_text(source(1))
    rig = Rig()
    async with rig.running():
        mgr = manager(rig, tmp_path)
        mgr.sync()
        await rig.advance(0.5)
        first = rig.host.strategies["counter"]
        quotes_before = first.strategy.state["quotes"]
        assert quotes_before > 0
        (tmp_path / "counter.py").write_text(source(2))
        with structlog.testing.capture_logs() as logs:
            mgr.apply_changes([tmp_path / "counter.py"])
        second = rig.host.strategies["counter"]
        await rig.advance(0.5)
    assert second is not first
    assert second.strategy.version == 2  # type: ignore[attr-defined]
    assert second.strategy.state["quotes"] > quotes_before
    assert first.status is StrategyStatus.STOPPED
    assert any(e["event"] == "strategy reloaded" for e in logs)


async def test_unchanged_content_is_not_reloaded(tmp_path: Path) -> None:
    (tmp_path / "counter.py").write_text(source(1))
    rig = Rig()
    mgr = manager(rig, tmp_path)
    mgr.sync()
    first = rig.host.strategies["counter"]
    (tmp_path / "counter.py").touch()
    mgr.apply_changes([tmp_path / "counter.py"])
    mgr.sync()
    assert rig.host.strategies["counter"] is first


async def test_broken_edit_keeps_old_version_and_fix_applies(tmp_path: Path) -> None:
    path = tmp_path / "counter.py"
    path.write_text(source(1))
    rig = Rig()
    async with rig.running():
        mgr = manager(rig, tmp_path)
        mgr.sync()
        old = rig.host.strategies["counter"]
        path.write_text(source(2) + "\n    def oops(self)\n        pass\n")
        with structlog.testing.capture_logs() as logs:
            mgr.apply_changes([path])
        await rig.advance(0.3)
        assert rig.host.strategies["counter"] is old
        assert old.status is StrategyStatus.RUNNING
        (error,) = mgr.errors[path]
        assert error.line == 15  # the `def oops(self)` line
        assert any(e["event"] == "keeping the previous version running" for e in logs)
        path.write_text(source(3))
        mgr.apply_changes([path])
    assert rig.host.strategies["counter"].strategy.version == 3  # type: ignore[attr-defined]
    assert path not in mgr.errors


async def test_edit_with_invalid_settings_keeps_old_version(tmp_path: Path) -> None:
    path = tmp_path / "counter.py"
    path.write_text(source(1))
    rig = Rig(overrides={"counter": {"size": "0.002"}})
    mgr = manager(rig, tmp_path)
    mgr.sync()
    old = rig.host.strategies["counter"]
    # The new version renames the parameter the settings override: it must not go live.
    path.write_text(source(2).replace("size = param", "amount = param"))
    mgr.apply_changes([path])
    assert rig.host.strategies["counter"] is old
    assert old.status is StrategyStatus.RUNNING


async def test_delete_stops_and_cancels_orders(tmp_path: Path) -> None:
    path = tmp_path / "rester.py"
    path.write_text(
        "from decimal import Decimal\nfrom botd import Strategy\n\n"
        "class Rester(Strategy):\n    symbol = 'BTCUSDT'\n\n"
        "    def on_quote(self, q):\n"
        "        if not self.state.get('sent'):\n"
        "            self.state['sent'] = True\n"
        "            self.buy(Decimal('0.001'), price=(q.bid / 2).quantize(Decimal('0.01')))\n"
    )
    rig = Rig()
    async with rig.running():
        mgr = manager(rig, tmp_path)
        mgr.sync()
        await rig.advance(0.3)
        assert len(rig.gateway.open_orders("rester")) == 1
        path.unlink()
        mgr.apply_changes([path])
        await rig.gateway.drain()
        await rig.settle()
    assert rig.host.strategies["rester"].status is StrategyStatus.STOPPED
    assert rig.gateway.open_orders("rester") == []


async def test_rename_stops_old_id_and_starts_new(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(source(1))
    rig = Rig()
    mgr = manager(rig, tmp_path)
    mgr.sync()
    (tmp_path / "a.py").rename(tmp_path / "b.py")
    # inotify reports both paths; the order within a batch must not matter.
    mgr.apply_changes([tmp_path / "b.py", tmp_path / "a.py"])
    assert rig.host.strategies["a"].status is StrategyStatus.STOPPED
    assert rig.host.is_running("b")


async def test_new_file_and_instances_from_settings(tmp_path: Path) -> None:
    rig = Rig(
        overrides={
            "eth_counter": {"class": "counter", "symbols": ["ETHUSDT"], "size": "0.01"},
            "ghost": {"class": "missing"},
        }
    )
    mgr = manager(rig, tmp_path, rig.host_overrides)  # type: ignore[arg-type]
    mgr.sync()
    assert rig.host.strategies == {}
    (tmp_path / "counter.py").write_text(source(1))
    with structlog.testing.capture_logs() as logs:
        mgr.apply_changes([tmp_path / "counter.py"])
        mgr.sync()
    assert rig.host.is_running("counter")
    eth = rig.host.strategies["eth_counter"]
    assert eth.strategy.traded_symbols == ("ETHUSDT",)
    assert eth.strategy.size == Decimal("0.01")  # type: ignore[attr-defined]
    assert any("strategies.ghost.class" in str(e.get("error")) for e in logs)


async def test_duplicate_id_from_another_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "counter.py").write_text(source(1))
    rig = Rig(overrides={"other": {"class": "x"}})
    mgr = manager(rig, tmp_path)
    mgr.sync()
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "counter.py").write_text(source(2))
    mgr2 = manager(rig, sub)
    mgr2.sync()
    assert rig.host.strategies["counter"].strategy.version == 1  # type: ignore[attr-defined]
    assert "duplicate strategy id" in mgr2.errors[sub / "counter.py"][0].message


async def test_watch_reacts_to_real_file_events(tmp_path: Path) -> None:
    import asyncio

    rig = Rig()
    mgr = manager(rig, tmp_path)
    mgr.sync()
    task = asyncio.create_task(mgr.watch(step_ms=50, debounce_ms=500))
    try:
        await asyncio.sleep(0.3)
        tmp = tmp_path / ".counter.py.tmp"
        tmp.write_text(source(1))
        tmp.rename(tmp_path / "counter.py")  # how many editors save
        for _ in range(100):
            await asyncio.sleep(0.05)
            if rig.host.is_running("counter"):
                break
        assert rig.host.is_running("counter")
    finally:
        task.cancel()
