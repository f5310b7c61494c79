"""The control API and its command-line client against one real daemon subprocess."""

from __future__ import annotations

import io
import json
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from botd.cli import run_cli as botd_cli
from tests.integration.daemon_proc import (
    FAST_CONFIG,
    Daemon,
    make_workspace,
    run_args,
    run_cli,
)

RESTER = """
from decimal import Decimal
from botd import Strategy


class Rester(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        if not self.open_orders:
            price = (quote.bid * Decimal("0.99")).quantize(Decimal("0.01"))
            self.buy(Decimal("0.001"), price=price)
"""

TAKER = """
from decimal import Decimal
from botd import Strategy


class Taker(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        if self.position.is_flat and not self.open_orders:
            self.buy(Decimal("0.001"))
"""


class Api:
    def __init__(self, ws: dict[str, Path], daemon: Daemon) -> None:
        self.ws = ws
        self.daemon = daemon
        self.data = ws["data"]
        info = json.loads((self.data / "control.json").read_text())
        self.url: str = info["url"]
        self.token = (self.data / "control.token").read_text().strip()

    def call(
        self, method: str, path: str, *, token: str | None = "", **kw: Any
    ) -> requests.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token or self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> dict[str, Any]:
        resp = self.call(method, path, **kw)
        assert resp.status_code == status, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def resting_order(self) -> str:
        """The client id of an order the rester has open (it re-places one after a cancel)."""
        found: list[str] = []

        def check() -> bool:
            params = {"strategy": "rester", "status": "accepted"}
            found[:] = [
                o["client_order_id"] for o in self.ok("GET", "/v1/orders", params=params)["orders"]
            ]
            return bool(found)

        _wait(check)
        return found[0]

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return cli([*args, "--data-dir", str(self.data)], env)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(argv: list[str], env: dict[str, str] | None = None) -> Result:
    """The client in this process (a subprocess per command costs seconds on a busy machine;
    test_cli_as_a_subprocess runs the real executable once)."""
    out, err = io.StringIO(), io.StringIO()
    code = botd_cli(argv, environ=env or {}, stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def _wait(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("control")
    ws = make_workspace(tmp, examples=False)
    (ws["strategies"] / "rester.py").write_text(RESTER)
    (ws["strategies"] / "taker.py").write_text(TAKER)
    daemon = Daemon(run_args(ws), cwd=tmp)
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        daemon.wait_for(lambda r: r["event"] == "order accepted" and r["strategy"] == "rester")
        daemon.wait_for(lambda r: r["event"] == "fill")
        yield Api(ws, daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        assert not (ws["data"] / "control.json").exists(), "removed on shutdown"
    finally:
        daemon.kill()


# -- files and auth ----------------------------------------------------------------------------


def test_control_files_are_private_and_hold_no_token(api: Api) -> None:
    for name in ("control.json", "control.token"):
        mode = stat.S_IMODE((api.data / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    info = json.loads((api.data / "control.json").read_text())
    assert info["host"] == "127.0.0.1"
    assert info["port"] > 0
    assert info["pid"] == api.daemon.proc.pid
    assert api.token not in (api.data / "control.json").read_text()
    assert len(api.token) >= 32
    # The token never reaches the log.
    assert not any(api.token in line for line in api.daemon.lines)


@pytest.mark.parametrize(
    "path", ["/v1/status", "/v1/orders", "/v1/strategies", "/v1/positions", "/metrics"]
)
def test_no_token_and_wrong_token_are_refused(api: Api, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Authorization": api.token}):
        resp = requests.get(api.url + path, headers=headers, timeout=10)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.json()["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.call("GET", path).status_code == 200


def test_commands_need_the_token_too(api: Api) -> None:
    for method, path in [("POST", "/v1/kill"), ("POST", "/v1/halt"), ("DELETE", "/v1/orders/x")]:
        assert api.call(method, path, token=None).status_code == 401
    assert api.ok("GET", "/v1/status")["trading"]["killed"] is False


def test_health_ready_and_openapi_need_no_token(api: Api) -> None:
    assert api.ok("GET", "/health", token=None) == {"status": "ok"}
    ready = api.ok("GET", "/ready", token=None)
    assert ready == {"ready": True, "not_ready": []}
    doc = api.ok("GET", "/v1/openapi.json", token=None)
    assert doc["openapi"].startswith("3.")
    assert "/v1/kill" in doc["paths"]


# -- reads -------------------------------------------------------------------------------------


def test_status(api: Api) -> None:
    status = api.ok("GET", "/v1/status")
    assert status["ready"] is True
    assert status["uptime_s"] > 0
    assert status["pid"] == api.daemon.proc.pid
    assert status["trading"] == {"state": "active", "killed": False, "reason": ""}
    (venue,) = status["venues"]
    assert venue["name"] == "paper"
    assert venue["connected"] is True
    assert venue["reconciled"] is True
    assert venue["stream_events"] > 0
    assert {s["id"]: s["status"] for s in status["strategies"]} == {
        "rester": "running",
        "taker": "running",
    }
    assert status["journal_healthy"] is True


def test_strategies(api: Api) -> None:
    listing = api.ok("GET", "/v1/strategies")["strategies"]
    rester = next(s for s in listing if s["id"] == "rester")
    assert rester["status"] == "running"
    assert rester["file"].endswith("rester.py")
    assert rester["symbols"] == ["BTCUSDT"]
    assert rester["hook_calls"] > 0


def test_orders_filters(api: Api) -> None:
    every = api.ok("GET", "/v1/orders")["orders"]
    assert {o["strategy"] for o in every} == {"rester", "taker"}
    created = [o["ts_created"] for o in every]
    assert created == sorted(created, reverse=True), "newest first"
    api.resting_order()
    mine = api.ok("GET", "/v1/orders", params={"strategy": "rester", "status": "open"})
    assert mine["orders"] and all(o["strategy"] == "rester" and o["open"] for o in mine["orders"])
    filled = api.ok("GET", "/v1/orders", params={"strategy": "taker", "status": "filled"})
    assert filled["orders"] and all(o["status"] == "filled" for o in filled["orders"])
    assert api.ok("GET", "/v1/orders", params={"limit": "1"})["count"] == 1
    assert api.ok("GET", "/v1/orders", params={"symbol": "ETHUSDT"})["orders"] == []
    for bad in ({"limit": "0"}, {"limit": "x"}, {"status": "nope"}, {"colour": "red"}):
        resp = api.call("GET", "/v1/orders", params=bad)
        assert resp.status_code == 400, bad
        assert resp.json()["error"]["code"] == "bad_request"


def test_positions_balances_and_pnl(api: Api) -> None:
    positions = api.ok("GET", "/v1/positions")["positions"]
    taker = next(p for p in positions if p["strategy"] == "taker")
    assert taker["venue"] == "paper"
    assert taker["symbol"] == "BTCUSDT"
    assert taker["qty"].startswith("0.00")  # bought 0.001, less a fee in BTC
    assert taker["quote_asset"] == "USDT"
    balances = api.ok("GET", "/v1/balances")["balances"]
    assets = {b["asset"]: b for b in balances if b["venue"] == "paper"}
    assert set(assets) >= {"USDT", "BTC", "ETH"}
    assert assets["ETH"]["total"] == "10"
    pnl = api.ok("GET", "/v1/pnl")
    assert pnl["day"]
    entry = next(s for s in pnl["strategies"] if s["strategy"] == "taker")
    assert set(entry["by_quote_asset"]["USDT"]) == {"realized", "unrealized", "fees"}


def test_metrics(api: Api) -> None:
    text = api.call("GET", "/metrics").text
    for name in [
        "botd_info{",
        "botd_uptime_seconds ",
        'botd_bus_events_total{type="Quote"}',
        'botd_stream_events_total{venue="paper"}',
        'botd_stream_connected{venue="paper"} 1.0',
        "botd_stream_staleness_seconds{",
        'botd_stream_reconnects_total{venue="paper"} 0.0',
        "botd_tick_to_intent_seconds_bucket{",
        "botd_intent_to_venue_seconds_count{",
        'botd_orders_total{outcome="filled",venue="paper"}',
        "botd_ratelimit_headroom_ratio{",
        'botd_venue_http_429_total{venue="paper"} 0.0',
        'botd_strategy_hook_calls_total{strategy="rester"}',
        "botd_strategy_hook_seconds_total{",
        "botd_strategy_hook_errors_total{",
        'botd_position{strategy="taker",symbol="BTCUSDT",venue="paper"}',
        "botd_journal_commit_seconds_count ",
        "botd_journal_healthy 1.0",
        'botd_trading_state{name="",scope="global",state="active"} 1.0',
        "botd_loop_lag_max_seconds ",
    ]:
        assert name in text, name


# -- commands ----------------------------------------------------------------------------------


def test_cancel_one_order(api: Api) -> None:
    assert api.call("DELETE", "/v1/orders/no-such-order").status_code == 404
    filled = api.ok("GET", "/v1/orders", params={"status": "filled", "limit": "1"})["orders"][0]
    done = api.call("DELETE", f"/v1/orders/{filled['client_order_id']}")
    assert done.status_code == 409
    assert done.json()["error"]["code"] == "order_not_open"
    cid = api.resting_order()
    answer = api.ok("DELETE", f"/v1/orders/{cid}", status=202)
    assert answer["cancel_requested"] is True
    assert answer["order"]["client_order_id"] == cid

    def canceled() -> bool:
        orders = api.ok("GET", "/v1/orders", params={"strategy": "rester", "limit": "20"})
        return any(
            o["client_order_id"] == cid and o["status"] == "canceled" for o in orders["orders"]
        )

    _wait(canceled)


def test_strategy_disable_enable_reload(api: Api) -> None:
    assert api.call("POST", "/v1/strategies/nobody/disable").status_code == 404
    assert api.call("POST", "/v1/strategies/rester/explode").status_code == 404
    off = api.ok("POST", "/v1/strategies/rester/disable")
    assert off["strategy"]["status"] == "disabled"
    assert off["persisted"] is True
    _wait(
        lambda: (
            not api.ok("GET", "/v1/orders", params={"strategy": "rester", "status": "open"})[
                "orders"
            ]
        )
    )
    on = api.ok("POST", "/v1/strategies/rester/enable")
    assert on["strategy"]["status"] == "running"
    assert on["strategy"]["disabled"] is False
    again = api.ok("POST", "/v1/strategies/rester/reload")
    assert again["strategy"]["status"] == "running"
    api.daemon.wait_for(lambda r: r["event"] == "strategy reloaded" and r["strategy"] == "rester")


def test_reload_of_a_broken_file_keeps_the_running_version(api: Api) -> None:
    path = api.ws["strategies"] / "taker.py"
    good = path.read_text()
    try:
        path.write_text(good + "\ndef broken(:\n")
        resp = api.call("POST", "/v1/strategies/taker/reload")
        assert resp.status_code == 422
        assert resp.json()["error"]["code"] == "reload_failed"
        assert "syntax" in resp.json()["error"]["message"]
        statuses = {s["id"]: s["status"] for s in api.ok("GET", "/v1/strategies")["strategies"]}
        assert statuses["taker"] == "running"
    finally:
        path.write_text(good)


def test_halt_resume_and_kill(api: Api) -> None:
    halted = api.ok("POST", "/v1/halt", json={"reason": "lunch"})
    assert halted["trading"]["state"] == "halted"
    assert "lunch" in halted["trading"]["reason"]
    assert api.call("POST", "/v1/halt", json={"why": "x"}).status_code == 400
    assert api.call("POST", "/v1/halt", data=b"{not json").status_code == 400
    resumed = api.ok("POST", "/v1/resume")
    assert resumed["trading"]["state"] == "active"

    killed = api.ok("POST", "/v1/kill", json={"reason": "drill"})
    assert killed["trading"] == {
        "state": "halted",
        "killed": True,
        "reason": "kill switch: drill",
    }
    api.daemon.wait_for(lambda r: r["event"] == "KILL SWITCH engaged" and r["reason"] == "drill")
    _wait(lambda: api.ok("GET", "/v1/status")["open_orders"] == 0)
    api.daemon.wait_for(
        lambda r: r["event"] == "order denied before sending" and "HALTED" in r["reason"]
    )
    released = api.ok("POST", "/v1/resume", json={"reason": "drill over"})
    assert released["trading"]["killed"] is False
    assert released["trading"]["state"] == "active"
    api.daemon.wait_for(lambda r: r["event"] == "kill switch released; trading resumes")


def test_unknown_route_and_method_answer_json(api: Api) -> None:
    missing = api.call("GET", "/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = api.call("PUT", "/v1/kill")
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"


# -- the command-line client -------------------------------------------------------------------


def test_cli_status_orders_positions(api: Api) -> None:
    status = api.cli("status")
    assert status.returncode == 0, status.stderr
    assert "trading: active" in status.stdout
    assert "paper" in status.stdout and "rester" in status.stdout
    as_json = api.cli("status", "--json")
    assert json.loads(as_json.stdout)["venues"][0]["name"] == "paper"
    orders = api.cli("orders", "--strategy", "taker", "--status", "filled", "--json")
    assert orders.returncode == 0, orders.stderr
    rows = json.loads(orders.stdout)["orders"]
    assert rows and all(o["strategy"] == "taker" and o["status"] == "filled" for o in rows)
    table = api.cli("orders", "--limit", "3")
    assert "STATUS" in table.stdout and "3 orders" in table.stdout
    positions = api.cli("positions")
    assert positions.returncode == 0, positions.stderr
    assert "taker" in positions.stdout and "USDT" in positions.stdout


def test_cli_commands(api: Api) -> None:
    off = api.cli("strategies", "disable", "taker")
    assert off.returncode == 0, off.stderr
    assert "taker: disabled (persisted)" in off.stdout
    on = api.cli("strategies", "enable", "taker")
    assert "taker: running" in on.stdout
    unknown = api.cli("strategies", "reload", "nobody")
    assert unknown.returncode == 1
    assert "no strategy 'nobody'" in unknown.stderr
    halt = api.cli("halt", "--reason", "cli test")
    assert "trading is halted" in halt.stdout
    resume = api.cli("resume")
    assert "trading is active" in resume.stdout
    kill = api.cli("kill", "--reason", "cli drill")
    assert kill.returncode == 0, kill.stderr
    assert "asked the running daemon" in kill.stdout
    api.daemon.wait_for(
        lambda r: r["event"] == "KILL SWITCH engaged" and r["reason"] == "cli drill"
    )
    assert api.cli("resume").returncode == 0


def test_cli_token_sources(api: Api) -> None:
    wrong = api.cli("status", "--token", "w" * 40)
    assert wrong.returncode == 77
    assert "unauthorized" in wrong.stderr
    by_env = api.cli("status", "--json", env={"BOTD_CONTROL__TOKEN": "e" * 40})
    assert by_env.returncode == 77, "the environment's token is used (and is wrong here)"
    by_url = cli(["status", "--url", api.url, "--token", api.token, "--json"])
    assert by_url.returncode == 0, by_url.stderr


def test_cli_as_a_subprocess(api: Api) -> None:
    result = run_cli(["status", "--data-dir", str(api.data)], cwd=api.ws["root"])
    assert result.returncode == 0, result.stderr
    assert "trading: active" in result.stdout


# -- without a daemon --------------------------------------------------------------------------


def test_cli_without_a_daemon_exits_69(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for cmd in (["status"], ["orders"], ["positions"], ["halt"], ["strategies", "enable", "x"]):
        result = cli([*cmd, "--data-dir", str(data)])
        assert result.returncode == 69, (cmd, result.stderr)
        assert "no daemon found" in result.stderr
    # A control.json left behind by a daemon that died: nothing answers there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (data / "control.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}"}))
    result = cli(["status", "--data-dir", str(data)])
    assert result.returncode == 69
    assert "no daemon answers" in result.stderr
    # kill and resume fall back to the offline path.
    killed = run_cli(["kill", "--data-dir", str(data)], cwd=tmp_path)
    assert killed.returncode == 0, killed.stderr
    assert "will not trade when it starts" in killed.stdout


def test_disabled_strategy_stays_disabled_across_restart(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    (ws["strategies"] / "rester.py").write_text(RESTER)
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        api = Api(ws, daemon)
        assert api.ok("POST", "/v1/strategies/rester/disable")["persisted"] is True
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        ready = daemon.wait_for(lambda r: r["event"] == "botd ready")
        assert ready["strategies"] == 0
        api = Api(ws, daemon)
        (rester,) = api.ok("GET", "/v1/strategies")["strategies"]
        assert rester["status"] == "disabled"
        assert api.ok("POST", "/v1/strategies/rester/enable")["strategy"]["status"] == "running"
        daemon.wait_for(lambda r: r["event"] == "order accepted")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()


def test_port_in_use_exits_75(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon = Daemon(run_args(ws), cwd=tmp_path, env={"BOTD_CONTROL__PORT": str(port)})
        try:
            assert daemon.wait(timeout=20) == 75
        finally:
            daemon.kill()
    line = next(r for r in daemon.records if r["event"] == "cannot start")
    assert f"127.0.0.1:{port} is in use" in line["error"]


def test_non_loopback_without_token_is_a_config_error(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, FAST_CONFIG, examples=False)
    env = {"BOTD_CONTROL__HOST": "0.0.0.0"}
    result = cli(["check-config", "--config", str(ws["config"])], env)
    assert result.returncode == 78
    assert "control" in result.stderr and "not a loopback address" in result.stderr
    daemon = Daemon(run_args(ws), cwd=tmp_path, env=env)
    try:
        assert daemon.wait(timeout=20) == 78
    finally:
        daemon.kill()
    # With a token it is allowed (bound here to loopback only, to stay on this machine).
    ok = cli(
        ["check-config", "--config", str(ws["config"])], {**env, "BOTD_CONTROL__TOKEN": "t" * 32}
    )
    assert ok.returncode == 0, ok.stderr
    assert "t" * 32 not in ok.stdout + ok.stderr
