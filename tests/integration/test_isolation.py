"""A raising strategy and a blocking strategy beside a healthy one, in a real daemon."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.integration.daemon_proc import FAST_CONFIG, Daemon, make_workspace, run_args

RAISER = """
from botd import Strategy

class Raiser(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        raise RuntimeError("bug in my strategy")
"""

BLOCKER = """
import time
from botd import Strategy

class Blocker(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        time.sleep(0.3)  # blocking call on the event loop: every strategy waits for it
"""

HEALTHY = """
from decimal import Decimal
from botd import Strategy

class Healthy(Strategy):
    symbol = "ETHUSDT"

    def on_quote(self, quote):
        if not self.open_orders:
            if self.position.is_flat:
                self.buy(Decimal("0.01"))
            else:
                self.close_position()
"""


def test_bad_strategies_are_halted_and_the_healthy_one_keeps_trading(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, FAST_CONFIG, examples=False)
    for name, text in (("raiser", RAISER), ("blocker", BLOCKER), ("healthy", HEALTHY)):
        (ws["strategies"] / f"{name}.py").write_text(text)
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        halted = {
            daemon.wait_for(lambda r: r["event"].startswith("strategy halted"))["strategy"],
            daemon.wait_for(
                lambda r: r["event"].startswith("strategy halted") and r["strategy"] == "blocker",
                timeout=30,
            )["strategy"],
        }
        assert halted == {"raiser", "blocker"}
        lag = daemon.wait_for(lambda r: r["event"] == "event loop was blocked")
        assert "blocker.on_quote" in str(lag["slowest_recent_hook"])
        fills_before = sum(1 for r in daemon.records if r["event"] == "fill")
        daemon.wait_for(
            lambda r: (
                r["event"] == "fill"
                and r["strategy"] == "healthy"
                and sum(1 for x in daemon.records if x["event"] == "fill") > fills_before + 3
            )
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    raised = [r for r in daemon.records if r["event"] == "strategy hook raised"]
    assert len(raised) == 5  # default runtime.max_errors, then never called again
    assert "bug in my strategy" in raised[0]["exception"]
    overruns = [r for r in daemon.records if r["event"] == "strategy hook over its time budget"]
    assert len(overruns) == 10  # default runtime.max_overruns
    assert all(r["strategy"] == "blocker" for r in overruns)
