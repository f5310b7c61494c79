"""The daemon as users run it: a real process, real files, real signals, real sd_notify."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.daemon_proc import (
    FAST_CONFIG,
    REPO,
    Daemon,
    NotifyListener,
    make_workspace,
    run_args,
    run_cli,
)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def start(ws: dict[str, Path], env: dict[str, str] | None = None) -> Daemon:
    return Daemon(
        run_args(ws),
        cwd=ws["root"],
        env=env,
    )


def test_trades_then_stops_cleanly_on_sigterm(tmp_path: Path, notify: NotifyListener) -> None:
    ws = make_workspace(
        tmp_path,
        FAST_CONFIG + "\n[strategies.price_threshold]\nbelow = 10000000\nabove = 10000001\n",
    )
    daemon = start(ws, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        fill = daemon.wait_for(lambda r: r["event"] == "fill", timeout=20)
        assert fill["strategy"] in {"price_threshold", "grid"}
        assert fill["client_order_id"].startswith("bd")
        assert {"timestamp", "level", "qty", "price", "fee"} <= fill.keys()
        time.sleep(0.3)
        assert "READY=1" in notify.messages
        assert any(m.startswith("STATUS=trading: 2 strategies") for m in notify.messages)

        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        rc = daemon.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        daemon.kill()
    assert rc == 0, daemon.read_stderr()
    assert elapsed < 10
    time.sleep(0.3)
    assert "STOPPING=1" in notify.messages
    events = [r["event"] for r in daemon.records]
    # Ordered shutdown: feeds stop, strategies stop, orders are cancelled, then the exit line.
    assert events.index("botd stopping") < events.index("strategy stopped")
    assert events[-1] == "botd stopped"
    assert all(line.startswith("{") for line in daemon.lines)  # every stdout line is JSON
    heartbeat = json.loads((ws["data"] / "heartbeat.json").read_text())
    assert heartbeat["status"]["state"] == "stopped" or heartbeat.get("state") == "stopped"


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    daemon = start(ws)
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        daemon.signal(signal.SIGINT)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()


def test_open_orders_are_cancelled_on_shutdown(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    (ws["strategies"] / "rester.py").write_text(
        "from decimal import Decimal\n"
        "from botd import Strategy\n\n"
        "class Rester(Strategy):\n"
        '    symbol = "BTCUSDT"\n\n'
        "    def on_quote(self, quote):\n"
        "        if not self.open_orders and not self.state.get('sent'):\n"
        "            self.state['sent'] = True\n"
        '            price = (quote.bid / 2).quantize(Decimal("0.01"))\n'
        '            self.buy(Decimal("0.001"), price=price)\n'
    )
    daemon = start(ws)
    try:
        daemon.wait_for(lambda r: r["event"] == "order accepted")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    events = [r["event"] for r in daemon.records]
    assert "cancelling open orders" in events
    assert "order canceled" in events
    assert "shutdown budget exhausted" not in events


def test_broken_strategy_is_reported_and_the_others_trade(tmp_path: Path) -> None:
    ws = make_workspace(
        tmp_path,
        FAST_CONFIG + "\n[strategies.price_threshold]\nbelow = 10000000\nabove = 10000001\n",
    )
    broken = ws["strategies"] / "broken.py"
    broken.write_text("from botd import Strategy\n\nclass Broken(Strategy)\n    symbol = 'X'\n")
    daemon = start(ws)
    try:
        error = daemon.wait_for(lambda r: r["event"] == "strategy file not loaded")
        assert error["file"] == str(broken)
        assert error["line"] == 3
        assert "syntax error" in error["error"]
        daemon.wait_for(lambda r: r["event"] == "fill" and r["strategy"] == "price_threshold")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()


def test_sighup_picks_up_a_new_strategy_file(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    daemon = start(ws)
    try:
        ready = daemon.wait_for(lambda r: r["event"] == "botd ready")
        assert ready["strategies"] == 0
        (ws["strategies"] / "late.py").write_text(
            "from decimal import Decimal\nfrom botd import Strategy\n\n"
            "class Late(Strategy):\n    symbol = 'ETHUSDT'\n\n"
            "    def on_quote(self, q):\n"
            "        if self.position.is_flat and not self.open_orders:\n"
            "            self.buy(Decimal('0.01'))\n"
        )
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda r: r["event"] == "strategy started" and r["strategy"] == "late")
        daemon.wait_for(lambda r: r["event"] == "fill" and r["strategy"] == "late")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()


def test_second_daemon_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    first = start(ws)
    try:
        first.wait_for(lambda r: r["event"] == "botd ready")
        second = start(ws)
        rc = second.wait(timeout=20)
        assert rc == 75
        assert any("is in use by pid" in r.get("error", "") for r in second.records)
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0
    finally:
        first.kill()


def test_bad_config_exits_78_and_names_the_field(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    result = run_cli(
        ["run", "--config", str(ws["config"])],
        cwd=tmp_path,
        env={"BOTD_LOG__LEVEL": "loud"},
    )
    assert result.returncode == 78
    assert "log.level" in result.stderr
    assert "BOTD_LOG__LEVEL" in result.stderr
    assert result.stdout == ""

    ws["config"].write_text("[paper]\nevnt_rate = 5\n")
    result = run_cli(["run", "--config", str(ws["config"])], cwd=tmp_path)
    assert result.returncode == 78
    assert "evnt_rate" in result.stderr


def test_unknown_paper_symbol_exits_78(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    result = run_cli(
        run_args(ws),
        cwd=tmp_path,
        env={"BOTD_PAPER__SYMBOLS": '["BTCUSDT", "NOPEUSDT"]'},
    )
    assert result.returncode == 78, result.stderr
    assert "paper.symbols" in result.stderr
    assert "NOPEUSDT" in result.stderr


def test_missing_strategies_folder_exits_78(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    result = run_cli(
        run_args(ws, strategies=tmp_path / "nope"),
        cwd=tmp_path,
    )
    assert result.returncode == 78
    assert "daemon.strategies_dir" in result.stderr


def test_version_and_check_config(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    version = run_cli(["version"], cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("botd ")
    check = run_cli(["check-config", "--config", str(ws["config"])], cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "event_rate" in check.stdout
    assert "50" in check.stdout


def test_health_reflects_a_running_daemon(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    assert run_cli(["health", "--data-dir", str(ws["data"])], cwd=tmp_path).returncode == 1
    daemon = start(ws)
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        time.sleep(0.6)
        healthy = run_cli(["health", "--data-dir", str(ws["data"])], cwd=tmp_path)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    after = run_cli(["health", "--data-dir", str(ws["data"])], cwd=tmp_path)
    assert after.returncode == 1


def test_make_run_defaults_trade_within_ten_seconds(tmp_path: Path) -> None:
    """What `make run` does on a fresh clone: defaults, the shipped strategies, no keys."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    daemon = Daemon(
        ["run", "--config", str(empty), "--data-dir", str(tmp_path / "data")],
        cwd=REPO,
        env={"BOTD_LOG__FORMAT": "json"},
    )
    try:
        started = time.monotonic()
        ready = daemon.wait_for(lambda r: r["event"] == "botd ready", timeout=10)
        shipped = [p for p in (REPO / "strategies").iterdir() if p.suffix in {".py", ".toml"}]
        assert ready["strategies"] == len(shipped)
        daemon.wait_for(lambda r: r["event"] == "fill", timeout=10)
        assert time.monotonic() - started < 10
        daemon.signal(signal.SIGINT)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()


def test_strategy_state_and_positions_survive_a_restart(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    (ws["strategies"] / "keeper.py").write_text(
        "from decimal import Decimal\nfrom botd import Strategy\n\n"
        "class Keeper(Strategy):\n    symbol = 'BTCUSDT'\n\n"
        "    def on_start(self):\n"
        "        self.state['starts'] = self.state.get('starts', 0) + 1\n"
        "        self.log.info('keeper started', starts=self.state['starts'],\n"
        "                      position=str(self.position.qty))\n\n"
        "    def on_quote(self, q):\n"
        "        if not self.state.get('bought'):\n"
        "            self.state['bought'] = True\n"
        "            self.buy(Decimal('0.002'))\n"
    )
    for run in (1, 2):
        daemon = start(ws)
        try:
            started = daemon.wait_for(lambda r: r["event"] == "keeper started")
            assert started["starts"] == run
            if run == 1:
                assert started["position"] == "0"
                daemon.wait_for(lambda r: r["event"] == "fill")
            else:
                # Rebuilt from the journal's fills: 0.002 less the fee paid in BTC.
                assert Decimal(started["position"]) == Decimal("0.001998")
                time.sleep(0.5)
                assert not any(r["event"] == "fill" for r in daemon.records)  # bought once
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout=10) == 0
        finally:
            daemon.kill()
