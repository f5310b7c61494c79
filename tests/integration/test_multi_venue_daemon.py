"""One `botd run` trading crypto at Binance and US stocks at Alpaca, each against its own
simulator process (`botd sim binance`, `botd sim alpaca --session always-open`, so the equity
leg fills whenever the test runs), plus the start-up errors an Alpaca venue can cause."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from botd.sessions import ExchangeCalendar
from botd.settings import load_settings
from tests.integration.daemon_proc import FAST_CONFIG, REPO, Daemon, make_workspace, run_args

BINANCE_KEY, BINANCE_SECRET = "multi-binance-key-1f", "multi-binance-secret-8c2d"
ALPACA_KEY, ALPACA_SECRET = "PKMULTITEST0042", "multi-alpaca-secret-77ab91"

BTC_BUYER = """
from decimal import Decimal
from botd import Strategy


class BtcBuyer(Strategy):
    venue = "binance"
    symbol = "BTCUSDT"

    def on_start(self):
        self.log.info("session at start", market_open=self.market_open, now=self.now)

    def on_quote(self, quote):
        if not self.state.get("bought"):
            self.state["bought"] = True
            self.buy(Decimal("0.001"))
"""

AAPL_BUYER = """
from decimal import Decimal
from botd import Strategy


class AaplBuyer(Strategy):
    venue = "alpaca"
    symbol = "AAPL"

    def on_start(self):
        self.log.info("session at start", market_open=self.market_open, now=self.now)

    def on_quote(self, quote):
        if not self.state.get("bought"):
            self.state["bought"] = True
            self.buy(Decimal("2"))
"""


def _simulator(tmp_path: Path, *args: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "botd", "sim", *args, "--port", "0"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("BOTD_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield match.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def binance_sim(tmp_path: Path) -> Iterator[str]:
    yield from _simulator(tmp_path, "binance", "--key", f"{BINANCE_KEY}:{BINANCE_SECRET}")


@pytest.fixture
def alpaca_sim(tmp_path: Path) -> Iterator[str]:
    yield from _simulator(
        tmp_path, "alpaca", "--key", f"{ALPACA_KEY}:{ALPACA_SECRET}", "--session", "always-open"
    )


def _alpaca_section(base_url: str, key: str = ALPACA_KEY, secret: str = ALPACA_SECRET) -> str:
    return (
        f'\n[venues.alpaca]\nkind = "alpaca"\nbase_url = "{base_url}"\n'
        f'api_key = "{key}"\napi_secret = "{secret}"\nsymbols = ["AAPL"]\n'
    )


def reconciled_at(venue: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["event"] == "reconciled" and r["venue"] == venue


def test_one_daemon_trades_btc_at_binance_and_aapl_at_alpaca(
    tmp_path: Path, binance_sim: str, alpaca_sim: str
) -> None:
    config = (
        FAST_CONFIG
        + (
            f'\n[venues.binance]\nkind = "binance"\nbase_url = "{binance_sim}"\n'
            f'api_key = "{BINANCE_KEY}"\napi_secret = "{BINANCE_SECRET}"\n'
            'symbols = ["BTCUSDT"]\n'
        )
        + _alpaca_section(alpaca_sim)
    )
    ws = make_workspace(tmp_path, config, examples=False)
    (ws["strategies"] / "btc_buyer.py").write_text(BTC_BUYER)
    (ws["strategies"] / "aapl_buyer.py").write_text(AAPL_BUYER)
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        for venue in ("binance", "alpaca"):
            reconciled = daemon.wait_for(reconciled_at(venue), timeout=30)
            assert reconciled["corrected"] == 0
        btc = daemon.wait_for(lambda r: r["event"] == "fill" and r["venue"] == "binance")
        aapl = daemon.wait_for(lambda r: r["event"] == "fill" and r["venue"] == "alpaca")
        # Both started before they could trade.
        sessions = {r["strategy"]: r for r in daemon.records if r["event"] == "session at start"}
        assert (btc["strategy"], btc["symbol"]) == ("btc_buyer", "BTCUSDT")
        assert btc["qty"].startswith("0.001")
        assert (aapl["strategy"], aapl["symbol"]) == ("aapl_buyer", "AAPL")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()
    # Crypto never closes; AAPL follows the NYSE calendar at the daemon's clock, whatever
    # hours the simulator keeps.
    assert sessions["btc_buyer"]["market_open"] is True
    aapl_start = sessions["aapl_buyer"]
    assert aapl_start["market_open"] is ExchangeCalendar("XNYS").is_open(aapl_start["now"])
    output = "".join(daemon.lines) + daemon.read_stderr()
    for secret in (BINANCE_SECRET, ALPACA_SECRET):
        assert secret not in output


def test_a_refused_alpaca_key_is_a_configuration_error(tmp_path: Path, alpaca_sim: str) -> None:
    ws = make_workspace(
        tmp_path, FAST_CONFIG + _alpaca_section(alpaca_sim, key="PKWRONG"), examples=False
    )
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        assert daemon.wait(timeout=30) == 78
    finally:
        daemon.kill()
    stderr = daemon.read_stderr()
    assert "venues.alpaca" in stderr
    assert ALPACA_SECRET not in stderr + "".join(daemon.lines)


def test_a_missing_alpaca_secret_names_the_field(tmp_path: Path) -> None:
    config = FAST_CONFIG + (
        '\n[venues.alpaca]\nkind = "alpaca"\napi_key = "PKX"\nsymbols = ["AAPL"]\n'
    )
    ws = make_workspace(tmp_path, config, examples=False)
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        assert daemon.wait(timeout=30) == 78
    finally:
        daemon.kill()
    assert "venues.alpaca.api_secret" in daemon.read_stderr()


def test_an_unreachable_alpaca_is_a_temporary_failure(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = make_workspace(
        tmp_path, FAST_CONFIG + _alpaca_section(f"http://127.0.0.1:{port}"), examples=False
    )
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        assert daemon.wait(timeout=30) == 75
    finally:
        daemon.kill()


def test_the_multi_venue_example_validates(tmp_path: Path) -> None:
    example = REPO / "deploy" / "multi-venue.example.toml"
    settings = load_settings(example, {}, {}, secrets_dirs=[], cwd=tmp_path)
    assert {n: v.kind for n, v in settings.venues.items()} == {
        "binance": "binance",
        "alpaca": "alpaca",
    }
    assert settings.venues["alpaca"].symbols == ["AAPL"]
