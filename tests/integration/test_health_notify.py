"""A real daemon: notifications reach a local webhook receiver; a venue that goes away makes
`botd health` fail and stops the systemd watchdog pings."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from botd.notify import verify_webhook
from tests.integration.daemon_proc import (
    FAST_CONFIG,
    Daemon,
    NotifyListener,
    make_workspace,
    run_args,
    run_cli,
    start_binance_sim,
    stop_process,
)
from tests.notify_receiver import Receiver, threaded_receiver

HOOK_SECRET = "hook-secret-canary-5d0e8b"
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


def wait_until(predicate: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {within_s}s: {what}")


def kinds(receiver: Receiver) -> list[str]:
    return [r.json["kind"] for r in list(receiver.requests)]


def test_a_fill_and_the_kill_switch_reach_the_webhook(tmp_path: Path) -> None:
    with threaded_receiver() as receiver:
        config = FAST_CONFIG + (
            f'\n[notify.webhook]\nurl = "{receiver.url}/hook"\nsecret = "{HOOK_SECRET}"\n'
        )
        ws = make_workspace(tmp_path, config)
        daemon = Daemon(run_args(ws), cwd=tmp_path)
        try:
            daemon.wait_for(lambda r: r["event"] == "notifications on")
            wait_until(lambda: "fills" in kinds(receiver), 30, "a fill notification")
            killed = run_cli(
                ["kill", "--config", str(ws["config"]), "--reason", "drill"], cwd=tmp_path
            )
            assert killed.returncode == 0, killed.stderr
            wait_until(lambda: "kill_switch" in kinds(receiver), 15, "a kill switch notification")
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
        finally:
            daemon.kill()
        requests = list(receiver.requests)
    fill = next(r for r in requests if r.json["kind"] == "fills")
    now = time.time()
    assert verify_webhook(HOOK_SECRET.encode(), fill.headers, fill.body, now)
    body = fill.json
    assert re.fullmatch(
        r"(BUY|SELL) [0-9.]+ [A-Z]+ @ [0-9,]+\.[0-9]{2,} filled — strategy \w+ \(paper\)",
        body["title"],
    ), body["title"]
    assert body["data"]["venue"] == "paper"
    kill = next(r for r in requests if r.json["kind"] == "kill_switch")
    assert kill.json["title"] == "KILL SWITCH ENGAGED"
    assert "drill" in kill.json["text"]
    output = "".join(daemon.lines) + daemon.read_stderr()
    assert HOOK_SECRET not in output
    assert receiver.url not in output  # the webhook URL is a secret too


def start_simulator(cwd: Path) -> tuple[subprocess.Popen[str], str]:
    return start_binance_sim(cwd, KEY, SECRET)


stop = stop_process


def test_a_lost_venue_fails_health_and_starves_the_watchdog(tmp_path: Path) -> None:
    sim, url = start_simulator(tmp_path)
    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        config = FAST_CONFIG + (
            "\n[health]\nvenue_grace = 1.0\n"
            f'\n[venues.binance]\nkind = "binance"\nbase_url = "{url}"\n'
            f'api_key = "{KEY}"\napi_secret = "{SECRET}"\nsymbols = ["BTCUSDT"]\n'
        )
        ws = make_workspace(tmp_path, config, examples=False)
        (ws["strategies"] / "binance_buyer.py").write_text(BUYER)
        daemon = Daemon(
            run_args(ws),
            cwd=tmp_path,
            env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "600000"},
        )
        health = ["health", "--data-dir", str(ws["data"])]
        try:
            daemon.wait_for(lambda r: r["event"] == "botd ready", timeout=30)
            daemon.wait_for(lambda r: r["event"] == "fill" and r["venue"] == "binance")
            wait_until(lambda: run_cli(health, cwd=tmp_path).returncode == 0, 10, "healthy")
            assert listener.messages.count("WATCHDOG=1") >= 1

            stop(sim)  # the venue goes away
            down = daemon.wait_for(lambda r: r["event"] == "venue down", timeout=20)
            assert down["venue"] == "binance"
            result: list[subprocess.CompletedProcess[str]] = []

            def unhealthy() -> bool:
                result[:] = [run_cli(health, cwd=tmp_path)]
                return result[0].returncode == 1

            wait_until(unhealthy, 10, "botd health failing")
            assert "unhealthy: venue binance disconnected" in result[0].stderr
            beat = json.loads((ws["data"] / "heartbeat.json").read_text())
            assert beat["status"]["healthy"] is False
            assert beat["status"]["venues"] == {"paper": "up", "binance": "down"}

            # The daemon is alive (heartbeat fresh) but no longer feeds the watchdog.
            pings = listener.messages.count("WATCHDOG=1")
            time.sleep(1.5)  # five ping intervals
            assert listener.messages.count("WATCHDOG=1") == pings
            assert daemon.proc.poll() is None
            daemon.wait_for(lambda r: r["event"] == "unhealthy: withholding systemd watchdog pings")
            daemon.signal(signal.SIGTERM)
            daemon.wait(timeout=20)
        finally:
            daemon.kill()
        output = "".join(daemon.lines) + daemon.read_stderr()
        assert SECRET not in output
    finally:
        stop(sim)
        listener.close()
