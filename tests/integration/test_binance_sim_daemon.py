"""`botd run` trading through the Binance adapter against `botd sim binance`: two real
processes talking Binance's protocol over loopback."""

from __future__ import annotations

import signal
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

KEY = "botd-test-key-4d1c"
SECRET = "botd-test-secret-9a7e52"

BUYER = """
from decimal import Decimal
from botd import Strategy


class BinanceBuyer(Strategy):
    venue = "binance"
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        if not self.state.get("bought"):
            self.state["bought"] = True
            self.buy(Decimal("0.001"))
"""


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    proc, url = start_binance_sim(tmp_path, KEY, SECRET)
    try:
        yield url
    finally:
        stop_process(proc)


def test_botd_run_trades_on_the_binance_simulator(tmp_path: Path, simulator: str) -> None:
    config = FAST_CONFIG + (
        f'\n[venues.binance]\nkind = "binance"\nbase_url = "{simulator}"\n'
        f'api_key = "{KEY}"\napi_secret = "{SECRET}"\nsymbols = ["BTCUSDT"]\n'
    )
    ws = make_workspace(tmp_path, config, examples=False)
    (ws["strategies"] / "binance_buyer.py").write_text(BUYER)
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        reconciled = daemon.wait_for(
            lambda r: r["event"] == "reconciled" and r["venue"] == "binance", timeout=30
        )
        assert reconciled["corrected"] == 0
        fill = daemon.wait_for(lambda r: r["event"] == "fill" and r["venue"] == "binance")
        assert fill["strategy"] == "binance_buyer"
        assert fill["symbol"] == "BTCUSDT"
        assert fill["qty"].startswith("0.001")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()
    output = "".join(daemon.lines) + daemon.read_stderr()
    assert SECRET not in output


def test_a_wrong_key_is_a_configuration_error(tmp_path: Path, simulator: str) -> None:
    config = FAST_CONFIG + (
        f'\n[venues.binance]\nkind = "binance"\nbase_url = "{simulator}"\n'
        f'api_key = "not-a-key"\napi_secret = "{SECRET}"\nsymbols = ["BTCUSDT"]\n'
    )
    ws = make_workspace(tmp_path, config, examples=False)
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        assert daemon.wait(timeout=30) == 78
    finally:
        daemon.kill()
    assert "venues.binance" in daemon.read_stderr()
