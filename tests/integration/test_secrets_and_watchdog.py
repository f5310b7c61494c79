"""Canary secrets fed through every configuration path never surface; the watchdog pings."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.integration.daemon_proc import (
    FAST_CONFIG,
    Daemon,
    NotifyListener,
    make_workspace,
    run_args,
    run_cli,
)

CANARY_ENV = "CANARY-env-7f3e9a1c-SECRET"
CANARY_FILE = "CANARY-file-52b0d4e8-SECRET"
CANARY_TOML = "CANARY-toml-9c1f6a37-SECRET"

LEAKY_STRATEGY = '''
import os
from botd import Strategy


class Leaky(Strategy):
    """A careless plugin that logs secrets it should never have touched."""

    symbol = "BTCUSDT"

    def on_start(self) -> None:
        secret = os.environ["BOTD_VENUES__BINANCE__API_SECRET"]
        self.log.info("leaking", value=secret, nested={"deep": [secret]})
        self.log.info(f"inline {secret} in the message")
        try:
            raise RuntimeError(f"failure mentioning {secret}")
        except RuntimeError:
            self.log.exception("leaking through a traceback")
        raise ValueError(f"hook error with {secret}")
'''


def workspace(tmp_path: Path) -> tuple[dict[str, Path], dict[str, str]]:
    config = FAST_CONFIG + (
        '\n[venues.kraken]\nkind = "binance"\nenabled = false\n'
        f'api_key = "{CANARY_TOML}"\n'
        '\n[venues.binance]\nkind = "binance"\nenabled = false\n'
    )
    ws = make_workspace(tmp_path, config)
    (ws["strategies"] / "leaky.py").write_text(LEAKY_STRATEGY)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "venues__binance__api_key").write_text(CANARY_FILE + "\n")
    env = {
        "BOTD_VENUES__BINANCE__API_SECRET": CANARY_ENV,
        "CREDENTIALS_DIRECTORY": str(creds),
    }
    return ws, env


def assert_no_canary(text: str) -> None:
    for canary in (CANARY_ENV, CANARY_FILE, CANARY_TOML):
        assert canary not in text
        assert canary[:20] not in text  # no partial prints either


def test_canaries_never_appear_in_any_output(tmp_path: Path) -> None:
    ws, env = workspace(tmp_path)
    daemon = Daemon(
        run_args(ws),
        cwd=tmp_path,
        env=env,
    )
    try:
        daemon.wait_for(lambda r: r["event"] == "leaking through a traceback")
        daemon.wait_for(lambda r: r["event"] == "strategy hook raised")
        daemon.wait_for(lambda r: r["event"] == "fill")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    stdout = "".join(daemon.lines)
    assert "leaking" in stdout and "**********" in stdout  # the lines are there, masked
    assert "RuntimeError" in stdout  # the traceback is kept, minus the secret
    assert_no_canary(stdout)
    assert_no_canary(daemon.read_stderr())
    for path in ws["data"].rglob("*"):
        if path.is_file():
            assert_no_canary(path.read_text(errors="replace"))

    check = run_cli(["check-config", "--config", str(ws["config"])], cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stderr
    assert "kraken" in check.stdout
    assert_no_canary(check.stdout + check.stderr)

    # An invalid configuration elsewhere: the error names the bad field, not the secrets.
    bad = run_cli(
        ["check-config", "--config", str(ws["config"])],
        cwd=tmp_path,
        env={**env, "BOTD_PAPER__EVENT_RATE": "-1"},
    )
    assert bad.returncode == 78
    assert "paper.event_rate" in bad.stderr
    assert_no_canary(bad.stdout + bad.stderr)

    # A secret that is itself invalid (a number where a string is expected) is not echoed.
    ws["config"].write_text(
        FAST_CONFIG + '\n[venues.kraken]\nkind = "binance"\napi_key = 71937193719371937193\n'
    )
    bad_secret = run_cli(["check-config", "--config", str(ws["config"])], cwd=tmp_path)
    assert bad_secret.returncode == 78
    assert "venues.kraken.api_key" in bad_secret.stderr
    assert "71937193719371937193" not in bad_secret.stderr


def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    listener = NotifyListener(tmp_path / "notify.sock")
    daemon = Daemon(
        run_args(ws),
        cwd=tmp_path,
        env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "400000"},
    )
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        time.sleep(1.5)
        pings = listener.messages.count("WATCHDOG=1")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
        listener.close()
    # 0.2 s interval over ~1.5 s: about 7; allow for a slow, shared machine.
    assert 3 <= pings <= 12, pings
