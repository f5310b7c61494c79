"""Operator commands on the strategies folder: disable, enable, reload (the control API's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from botd.strategy.host import StrategyStatus
from botd.strategy.manager import StrategyManager
from tests.rig import Rig

COUNTER = """
from botd import Strategy

class Counter(Strategy):
    symbol = 'BTCUSDT'

    def on_start(self):
        self.version = VERSION
        self.state.setdefault('quotes', 0)

    def on_quote(self, quote):
        self.state['quotes'] += 1
"""


def _write(folder: Path, version: int) -> None:
    (folder / "counter.py").write_text(COUNTER.replace("VERSION", str(version)))


async def test_disable_survives_resync_and_edits_until_enabled(tmp_path: Path) -> None:
    _write(tmp_path, 1)
    rig = Rig()
    async with rig.running():
        mgr = StrategyManager(host=rig.host, folder=tmp_path, settings={})
        mgr.sync()
        assert rig.host.is_running("counter")
        mgr.disable("counter")
        assert "counter" in mgr.disabled
        assert rig.host.strategies["counter"].status is StrategyStatus.STOPPED
        mgr.sync()
        _write(tmp_path, 2)
        mgr.sync()
        assert not rig.host.is_running("counter"), "an edit does not bring it back"
        mgr.enable("counter")
        assert rig.host.is_running("counter")
        assert rig.host.strategies["counter"].strategy.version == 2  # type: ignore[attr-defined]
        assert "counter" not in mgr.disabled


async def test_disabled_at_start_is_never_started(tmp_path: Path) -> None:
    _write(tmp_path, 1)
    rig = Rig()
    async with rig.running():
        mgr = StrategyManager(host=rig.host, folder=tmp_path, settings={})
        mgr.disabled = {"counter"}  # as restored from the journal
        mgr.sync()
        assert "counter" not in rig.host.strategies
        assert mgr.sources["counter"] == tmp_path / "counter.py"
        mgr.enable("counter")
        assert rig.host.is_running("counter")


async def test_enable_refuses_what_the_settings_disable(tmp_path: Path) -> None:
    _write(tmp_path, 1)
    settings: dict[str, dict[str, object]] = {"counter": {"enabled": False}}
    rig = Rig(overrides=settings)
    async with rig.running():
        mgr = StrategyManager(host=rig.host, folder=tmp_path, settings=settings)
        mgr.sync()
        assert "counter" not in rig.host.strategies
        with pytest.raises(ValueError, match="disabled in the settings"):
            mgr.enable("counter")
        with pytest.raises(KeyError):
            mgr.enable("nobody")


async def test_reload_rereads_the_file_and_keeps_the_old_on_error(tmp_path: Path) -> None:
    _write(tmp_path, 1)
    rig = Rig()
    async with rig.running():
        mgr = StrategyManager(host=rig.host, folder=tmp_path, settings={})
        mgr.sync()
        await rig.advance(0.5)
        quotes = rig.host.strategies["counter"].strategy.state["quotes"]
        assert quotes > 0
        assert mgr.reload("counter") == []
        fresh = rig.host.strategies["counter"].strategy
        assert fresh.state["quotes"] == quotes, "state handed over"
        (tmp_path / "counter.py").write_text("def broken(:\n")
        errors = mgr.reload("counter")
        assert errors and "syntax" in errors[0].message
        assert rig.host.strategies["counter"].strategy is fresh
        assert rig.host.is_running("counter")
