"""`botd sim binance --faults`: a real process answering with the injected faults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BOTD_")}


def test_faults_spec_is_applied(tmp_path: Path) -> None:
    args = ["sim", "binance", "--port", "0", "--faults", "http503@n=1&path=/api/v3/time"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "botd", *args],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        match = re.search(r"http://127\.0\.0\.1:(\d+)/api/v3", lines[2])
        assert match, lines
        base = match.group(0)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/time", timeout=10)
        assert info.value.code == 503
        assert json.load(info.value)["code"] == -1016
        with urllib.request.urlopen(f"{base}/time", timeout=10) as resp:
            assert "serverTime" in json.load(resp)  # the fault fired once
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_a_bad_spec_exits_78_naming_the_option(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "botd", "sim", "binance", "--faults", "drop@n=zero"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78
    assert "--faults" in done.stderr and "drop@n=zero" in done.stderr
