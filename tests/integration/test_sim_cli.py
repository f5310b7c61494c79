"""`botd sim binance` as a user starts it: a real process serving the protocol on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path


def test_sim_binance_serves_exchange_info_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "botd", "sim", "binance", "--port", "0", "--seed", "3"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("BOTD_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("demo API key:")
        match = re.search(r"http://127\.0\.0\.1:(\d+)/api/v3", lines[2])
        assert match, lines
        base = match.group(0)
        with urllib.request.urlopen(f"{base}/exchangeInfo", timeout=10) as resp:
            info = json.load(resp)
        assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
