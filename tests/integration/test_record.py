"""`botd record` as users run it: a real process recording the Binance simulator's stream
(another real process) and the built-in exchange, stopped by a duration or by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from botd.model import Quote, Trade
from botd.recording import ReadStats, read_recording
from tests.integration.test_binance_sim_daemon import KEY, SECRET, simulator

__all__ = ["simulator"]  # the fixture, re-exported for pytest


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BOTD_")}


def test_record_the_binance_simulator_then_stop_with_ctrl_c(tmp_path: Path, simulator: str) -> None:
    config = tmp_path / "botd.toml"
    config.write_text(
        f'[venues.binance]\nkind = "binance"\nbase_url = "{simulator}"\n'
        f'api_key = "{KEY}"\napi_secret = "{SECRET}"\nsymbols = ["BTCUSDT"]\n'
    )
    out = tmp_path / "btc.ndjson.gz"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botd",
            "record",
            "--config",
            str(config),
            "--venue",
            "binance",
            "--out",
            str(out),
            "--flush-every",
            "0.2",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        seen = 0
        while time.monotonic() < deadline and seen < 20:
            time.sleep(0.3)
            if out.exists():
                seen = sum(1 for _ in read_recording(out, ReadStats()))
        assert seen >= 20, "the recording did not grow"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "recorded" in stdout and str(out) in stdout
    stats = ReadStats()
    events = list(read_recording(out, stats))
    assert not stats.truncated  # a clean stop finishes the gzip stream
    assert stats.header is not None and stats.header["venue"] == "binance"
    assert any(isinstance(e, Quote) for e in events)
    assert any(isinstance(e, Trade) for e in events)
    assert all(e.symbol == "BTCUSDT" for e in events)
    assert SECRET not in stdout + stderr


def test_record_the_built_in_exchange_for_a_duration(tmp_path: Path) -> None:
    out = tmp_path / "paper.ndjson.gz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "botd",
            "record",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--out",
            str(out),
            "--duration",
            "1.5",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    symbols = {e.symbol for e in read_recording(out)}
    assert symbols == {"BTCUSDT", "ETHUSDT"}
    # ...and the recording backtests as it is.
    strategies = Path(__file__).resolve().parents[2] / "strategies"
    bt = subprocess.run(
        [
            sys.executable,
            "-m",
            "botd",
            "backtest",
            str(strategies / "sma_cross.py"),
            "--data",
            str(out),
            "--symbol",
            "BTCUSDT",
            "--json",
            "--out",
            str(tmp_path / "bt"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bt.returncode == 0, bt.stderr
    summary = json.loads(bt.stdout.strip().splitlines()[-1])
    recorded_btc = sum(1 for e in read_recording(out) if e.symbol == "BTCUSDT")
    assert summary["meta"]["events"] == recorded_btc > 0
    again = subprocess.run(
        [sys.executable, "-m", "botd", "record", "--out", str(out), "--duration", "1"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert again.returncode == 78
    assert "never overwrites" in again.stderr


def test_record_names_an_unknown_venue(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "botd",
            "record",
            "--venue",
            "kraken",
            "--out",
            str(tmp_path / "x.gz"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78
    assert "--venue: no venue named 'kraken'" in done.stderr
