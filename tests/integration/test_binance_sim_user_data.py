"""`botd run` against `botd sim binance` (two processes): a resting limit order filled later by
the simulated market reaches the daemon through the WS API user-data stream, long before the
periodic reconciliation (set to an hour here) could have found it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_proc import (
    FAST_CONFIG,
    Daemon,
    make_workspace,
    run_args,
    start_binance_sim,
    stop_process,
)

KEY = "botd-ud-key-51c2"
SECRET = "botd-ud-secret-0be94d"

# Joins the best bid as a maker; the simulated market trades through it soon after.
RESTING_BUYER = """
from decimal import Decimal

from botd import Strategy


class RestingBuyer(Strategy):
    venue = "binance"
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        if not self.state.get("placed"):
            self.state["placed"] = True
            self.buy(Decimal("0.001"), price=quote.bid, post_only=True)
"""


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    proc, url = start_binance_sim(tmp_path, KEY, SECRET)
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.mark.parametrize("trade_over", ["ws", "rest"])
def test_a_resting_order_fill_arrives_through_the_user_data_stream(
    tmp_path: Path, simulator: str, trade_over: str
) -> None:
    reconcile_s = 3600.0
    config = FAST_CONFIG + (
        f"\n[gateway]\nreconcile_interval = {reconcile_s}\n"
        f'\n[venues.binance]\nkind = "binance"\nbase_url = "{simulator}"\n'
        f'api_key = "{KEY}"\napi_secret = "{SECRET}"\nsymbols = ["BTCUSDT"]\n'
        f'trade_over = "{trade_over}"\n'
    )
    ws = make_workspace(tmp_path, config, examples=False)
    (ws["strategies"] / "resting_buyer.py").write_text(RESTING_BUYER)
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        daemon.wait_for(lambda r: r["event"] == "reconciled" and r["venue"] == "binance", 30)
        submitted = daemon.wait_for(
            lambda r: r["event"] == "order submitted" and r.get("venue") == "binance", 30
        )
        t_submitted = time.monotonic()
        assert submitted["type"] == "limit" and submitted["price"] != "market"
        fill = daemon.wait_for(lambda r: r["event"] == "fill" and r["venue"] == "binance", 120)
        waited = time.monotonic() - t_submitted
        assert fill["strategy"] == "resting_buyer"
        assert fill["liquidity"] == "maker"  # it rested, then the market came to it
        assert waited < reconcile_s / 10
        # Only the start-up reconciliation ran: the fill came from the stream.
        runs = [r for r in daemon.records if r["event"] == "reconciled" and r["venue"] == "binance"]
        assert len(runs) == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()
    output = "".join(daemon.lines) + daemon.read_stderr()
    assert SECRET not in output
