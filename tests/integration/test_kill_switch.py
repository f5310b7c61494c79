"""The kill switch from the command line, against a real daemon, across a restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.integration.daemon_proc import Daemon, make_workspace, run_args, run_cli

RESTING = """
from decimal import Decimal
from botd import Strategy


class Rester(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        if not self.open_orders:
            price = (quote.bid * Decimal("0.99")).quantize(Decimal("0.01"))
            self.buy(Decimal("0.001"), price=price)
"""


def test_kill_cancels_everything_survives_restart_and_resume_releases(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    (ws["strategies"] / "rester.py").write_text(RESTING)
    data = ["--data-dir", str(ws["data"])]

    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        daemon.wait_for(lambda r: r["event"] == "order accepted")
        killed = run_cli(["kill", "--reason", "test drill", *data], cwd=tmp_path)
        assert killed.returncode == 0, killed.stderr
        assert "asked the running daemon" in killed.stdout
        daemon.wait_for(
            lambda r: r["event"] == "KILL SWITCH engaged" and r["reason"] == "test drill"
        )
        daemon.wait_for(lambda r: r["event"] == "order canceled")
        # The strategy keeps asking; every new order is refused while the switch is on.
        denied = daemon.wait_for(
            lambda r: r["event"] == "order denied before sending" and "HALTED" in r["reason"]
        )
        assert denied["strategy"] == "rester"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()

    # A restart honours the engaged switch.
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        ready = daemon.wait_for(lambda r: r["event"] == "botd ready")
        assert ready["trading"] == "halted"
        daemon.wait_for(lambda r: r["event"] == "order denied before sending")
        assert not any(r["event"] == "order accepted" for r in daemon.records)
        resumed = run_cli(["resume", *data], cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        daemon.wait_for(lambda r: r["event"] == "kill switch released; trading resumes")
        daemon.wait_for(lambda r: r["event"] == "order accepted")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()


def test_kill_with_no_daemon_running_is_honoured_at_start(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    (ws["strategies"] / "rester.py").write_text(RESTING)
    killed = run_cli(["kill", "--data-dir", str(ws["data"])], cwd=tmp_path)
    assert killed.returncode == 0, killed.stderr
    assert "will not trade when it starts" in killed.stdout
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        ready = daemon.wait_for(lambda r: r["event"] == "botd ready")
        assert ready["trading"] == "halted"
        daemon.wait_for(lambda r: r["event"] == "order denied before sending")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    exported = run_cli(["db", "export", "--orders", "--data-dir", str(ws["data"])], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    orders = [json.loads(line) for line in exported.stdout.splitlines()]
    assert orders, "the strategy tried to trade"
    assert all(o["status"] == "rejected" and o["reason"].startswith("HALTED") for o in orders)
