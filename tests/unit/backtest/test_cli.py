"""``botd backtest``: every flag, the report files, sweeps and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from botd.backtest.cli import minify_json
from botd.cli import run_cli
from tests.unit.backtest.btdata import START_MS, write_klines, write_quotes

EXAMPLES = Path(__file__).resolve().parents[3] / "strategies"
SMA = str(EXAMPLES / "sma_cross.py")


@pytest.fixture(scope="module")
def klines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_klines(tmp_path_factory.mktemp("cli") / "BTCUSDT-1m-2024-01.csv", 900)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_cli(["backtest", *argv], environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def summary(stdout: str) -> dict[str, object]:
    last = stdout.rstrip("\n").splitlines()[-1]
    data: dict[str, object] = json.loads(last)
    return data


def test_one_command_writes_the_report_and_json(tmp_path: Path, klines: Path) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = cli(SMA, "--data", str(klines), "--out", str(out), "--json")
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == {
        "summary.json",
        "trades.csv",
        "equity.png",
        "report.html",
    }
    data = summary(stdout)
    assert data["fills"] == json.loads((out / "summary.json").read_text())["fills"]
    assert f"report: {out / 'report.html'}" in stdout
    meta = data["meta"]
    assert isinstance(meta, dict)
    assert (meta["cash"], meta["fees"], meta["fill_at"], meta["symbols"]) == (
        "10000",
        "0.001",
        "next_open",
        "BTCUSDT",
    )


def test_money_and_fill_flags_reach_the_run(tmp_path: Path, klines: Path) -> None:
    code, stdout, _ = cli(
        SMA, "--data", str(klines), "--out", str(tmp_path / "a"), "--json",
        "--cash", "2500", "--fees", "0.002", "--maker-fees", "0.0005", "--slippage-bps", "3",
        "--latency-ms", "20", "--fill-at", "close", "--tick", "0.1", "--step", "0.00001",
        "--min-notional", "1", "--param", "fast=4", "--param", "sma_cross.slow=12",
        "--log-level", "error", "--no-progress",
    )  # fmt: skip
    assert code == 0
    meta = summary(stdout)["meta"]
    assert isinstance(meta, dict)
    assert meta["cash"] == "2500"
    assert (meta["fees"], meta["maker_fees"], meta["slippage_bps"]) == ("0.002", "0.0005", "3")
    assert (meta["latency_ms"], meta["fill_at"]) == ("20", "close")
    assert meta["params"] == "sma_cross.fast=4, sma_cross.slow=12"
    assert summary(stdout)["initial_cash"] == Decimal("2500")
    trades = (tmp_path / "a" / "trades.csv").read_text().splitlines()[1:]
    assert trades
    for row in trades:  # prices on the 0.1 tick (slippage rounds onto it)
        cells = row.split(",")
        assert all(Decimal(c) % Decimal("0.1") == 0 for c in cells[7:9]), row


def test_time_range_and_symbol(tmp_path: Path, klines: Path) -> None:
    renamed = tmp_path / "export.csv"
    renamed.write_text(klines.read_text())
    start = START_MS + 60 * 60_000
    code, stdout, stderr = cli(
        SMA, "--data", str(renamed), "--symbol", "ETHUSDT", "--out", str(tmp_path / "r"),
        "--from", str(start), "--to", "2024-01-01T05:00:00Z", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    data = summary(stdout)
    assert data["start"] == "2024-01-01T01:00:00Z"
    meta = data["meta"]
    assert isinstance(meta, dict)
    assert meta["events"] == 240
    assert meta["symbols"] == "ETHUSDT"


def test_several_data_files(tmp_path: Path, klines: Path) -> None:
    eth = write_klines(tmp_path / "ETHUSDT-1m.csv", 300)
    code, stdout, _ = cli(
        SMA, str(EXAMPLES / "donchian_breakout.py"), "--data", str(klines), "--data", str(eth),
        "--out", str(tmp_path / "m"), "--json", "--cash", "100000",
    )  # fmt: skip
    assert code == 0
    meta = summary(stdout)["meta"]
    assert isinstance(meta, dict)
    assert meta["events"] == 1200
    assert meta["strategies"] == "sma_cross, donchian_breakout"


def test_quote_data(tmp_path: Path) -> None:
    quotes = write_quotes(tmp_path / "BTCUSDT-quotes.csv", 3000)
    code, stdout, stderr = cli(
        str(EXAMPLES / "price_threshold.py"), "--data", str(quotes), "--out",
        str(tmp_path / "q"), "--json", "--param", "below=41990", "--param", "above=42010",
    )  # fmt: skip
    assert code == 0, stderr
    assert int(str(summary(stdout)["fills"])) > 0


def test_sweep_ranks_every_combination(tmp_path: Path, klines: Path) -> None:
    code, stdout, stderr = cli(
        SMA, "--data", str(klines), "--param", "fast=3,5", "--param", "slow=12,20",
        "--workers", "2", "--json", "--out", str(tmp_path / "s"), "--rank-by", "sharpe",
    )  # fmt: skip
    assert code == 0, stderr
    rows = json.loads(stdout.splitlines()[-1])
    assert len(rows) == 4
    assert {(r["params"]["fast"], r["params"]["slow"]) for r in rows} == {
        ("3", "12"), ("3", "20"), ("5", "12"), ("5", "20"),
    }  # fmt: skip
    sharpes = [r["sharpe"] for r in rows if r["sharpe"] is not None]
    assert sharpes == sorted(sharpes, reverse=True)
    assert "ranked by sharpe" in stdout
    assert json.loads((tmp_path / "s" / "sweep.json").read_text()) == rows


def test_bad_input_exit_codes(tmp_path: Path, klines: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("from botd import Strategy\nclass B(Strategy)\n")
    code, _, stderr = cli(str(broken), "--data", str(klines))
    assert code == 65
    assert "broken.py:2" in stderr
    assert cli(SMA, "--data", str(tmp_path / "missing.csv"))[0] == 66
    assert cli(SMA, "--data", str(klines), "--param", "nope")[0] == 65
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("what,is,this\nx,y,z\n")
    code, _, stderr = cli(SMA, "--data", str(garbage))
    assert code == 65
    assert "no time column" in stderr


def test_broken_strategy_exits_65_from_the_real_command(tmp_path: Path, klines: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    proc = subprocess.run(
        [sys.executable, "-m", "botd", "backtest", str(broken), "--data", str(klines)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
        check=False,
    )
    assert proc.returncode == 65, proc.stderr
    assert "broken.py:1" in proc.stderr
    assert "nonexistent_module_xyz" in proc.stderr


def test_minify_keeps_values_and_strings() -> None:
    text = '{\n  "a": 1.50,\n  "b": "x  y",\n  "c": [1, 2]\n}\n'
    assert minify_json(text) == '{"a":1.50,"b":"x  y","c":[1,2]}'
