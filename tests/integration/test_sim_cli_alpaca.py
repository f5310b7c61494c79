"""`botd sim alpaca` as a user starts it: a real process serving the trading API on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path


def test_sim_alpaca_prints_a_demo_pair_serves_the_clock_and_stops_on_sigint(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "botd", "sim", "alpaca", "--port", "0", "--seed", "3"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("BOTD_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        key = lines[0].split(":", 1)[1].strip()
        secret = lines[1].split(":", 1)[1].strip()
        assert lines[0].startswith("demo API key id:")
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v2", lines[2])
        assert match, lines
        request = urllib.request.Request(
            f"{match.group(0)}/clock",
            headers={"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            clock = json.load(resp)
            assert resp.headers["X-Ratelimit-Limit"] == "200"
        assert set(clock) == {"timestamp", "is_open", "next_open", "next_close"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
