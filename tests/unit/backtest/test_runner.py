"""The backtest runner: shipped strategies unchanged, determinism, several strategies and
symbols, bar aggregation, parameters and errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from botd.backtest import BacktestError, run
from botd.backtest.runner import split_symbol
from botd.model import Side
from tests.unit.backtest.btdata import write_klines, write_quotes, write_trades

EXAMPLES = Path(__file__).resolve().parents[3] / "strategies"
SHIPPED = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".py", ".toml"))


@pytest.fixture(scope="module")
def klines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_klines(tmp_path_factory.mktemp("data") / "BTCUSDT-1m-2024-01.csv", 1500)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_strategy_backtests_unchanged(path: Path, klines: Path) -> None:
    result = run(path, klines, cash=Decimal(100_000))
    assert result.events == 1500
    assert result.orders, "the example should trade on 25 hours of minute bars"
    assert result.fills
    assert all(f.symbol == "BTCUSDT" for f in result.fills)
    final = result.equity[-1].equity
    assert Decimal(90_000) < final < Decimal(110_000)


def test_same_inputs_give_byte_identical_summaries(klines: Path) -> None:
    strategy = EXAMPLES / "sma_cross.py"
    one = run(strategy, klines, params={"fast": "5", "slow": "20"}).summary_json()
    two = run(strategy, klines, params={"fast": "5", "slow": "20"}).summary_json()
    assert one == two
    assert '"fills": 0' not in one
    other = run(strategy, klines, params={"fast": "4", "slow": "20"}).summary_json()
    assert other != one  # and the parameter really reached the strategy


def test_several_strategies_and_symbols_in_one_run(tmp_path: Path) -> None:
    btc = write_klines(tmp_path / "BTCUSDT-1m.csv", 600)
    eth = write_klines(tmp_path / "ETHUSDT-1m.csv", 600)
    # sma_cross trades ETHUSDT, donchian_breakout BTCUSDT: each gets its own symbol.
    result = run(
        [EXAMPLES / "sma_cross.py", EXAMPLES / "donchian_breakout.py"],
        [btc, eth],
        cash=Decimal(100_000),
    )
    by = {(f.strategy_id, f.symbol) for f in result.fills}
    assert by == {("sma_cross", "ETHUSDT"), ("donchian_breakout", "BTCUSDT")}
    assert result.events == 1200
    assert result.meta["symbols"] == "BTCUSDT, ETHUSDT"


def test_trades_are_aggregated_into_the_strategys_bars(tmp_path: Path) -> None:
    trades = write_trades(tmp_path / "ETHUSDT-trades-2024-01-01.csv", 4000)  # 1000 s
    result = run(EXAMPLES / "sma_cross.py", trades, params={"fast": "3", "slow": "6"})
    # 10 s bars built by the live bar aggregator from the trades.
    assert result.fills
    assert result.meta["symbols"] == "ETHUSDT"


def test_finer_bars_are_resampled_for_a_coarser_timeframe(tmp_path: Path) -> None:
    klines = write_klines(tmp_path / "BTCUSDT-1m.csv", 300)
    strat = tmp_path / "five.py"
    strat.write_text(
        "from decimal import Decimal\n"
        "from botd import Bar, Strategy\n\n"
        "class Five(Strategy):\n"
        "    api_version = 1\n"
        "    symbol = 'BTCUSDT'\n"
        "    timeframe = '5m'\n\n"
        "    def on_bar(self, bar: Bar) -> None:\n"
        "        self.state.setdefault('bars', []).append([bar.start, bar.end, bar.timeframe])\n"
        "        if len(self.state['bars']) == 2:\n"
        "            self.buy(Decimal('0.01'))\n"
    )
    result = run(strat, klines)
    (fill,) = result.fills
    assert fill.side is Side.BUY
    # Two 5 m bars closed (10 minutes), the order went to the next 1 m bar's open.
    assert (fill.ts_ns - 1_704_067_200 * 10**9) == 10 * 60 * 10**9


def test_a_coarser_data_timeframe_runs_the_strategy_on_it(klines: Path) -> None:
    # rsi_reversion asks for 5 s bars; minute data can only give minutes.
    result = run(EXAMPLES / "rsi_reversion.py", klines)
    assert result.meta["timeframe"] == "1m"


def test_strategy_symbol_is_mapped_onto_single_symbol_data(klines: Path) -> None:
    result = run(EXAMPLES / "sma_cross.py", klines)  # declares ETHUSDT
    assert {f.symbol for f in result.fills} == {"BTCUSDT"}


def test_errors_are_clear(tmp_path: Path, klines: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "from botd import Strategy\n\nclass B(Strategy):\n    api_version = 1\n    x = (\n"
    )
    with pytest.raises(BacktestError, match=r"broken\.py:5.*syntax error") as info:
        run(broken, klines)
    assert info.value.exit_code == 65
    with pytest.raises(BacktestError, match="no strategy has a parameter 'nope'"):
        run(EXAMPLES / "sma_cross.py", klines, params={"nope": "1"})
    with pytest.raises(BacktestError, match=r"fast: expected|below the minimum"):
        run(EXAMPLES / "sma_cross.py", klines, params={"fast": "0"})
    with pytest.raises(BacktestError, match="`fast` must be shorter"):
        run(EXAMPLES / "sma_cross.py", klines, params={"fast": "30", "slow": "10"})
    with pytest.raises(BacktestError, match="no such data file") as missing:
        run(EXAMPLES / "sma_cross.py", tmp_path / "nothing.csv")
    assert missing.value.exit_code == 66
    with pytest.raises(BacktestError, match="fill_at"):
        run(EXAMPLES / "sma_cross.py", klines, fill_at="whenever")


def test_split_symbol() -> None:
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    assert split_symbol("SOL-EUR") == ("SOL", "EUR")
    assert split_symbol("AAPL") == ("AAPL", "USD")


def test_parquet_data_runs_like_csv(tmp_path: Path, klines: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [line.split(",") for line in klines.read_text().splitlines()]
    table = pa.table(
        {
            "open_time": [int(r[0]) for r in rows],
            "open": [r[1] for r in rows],
            "high": [r[2] for r in rows],
            "low": [r[3] for r in rows],
            "close": [r[4] for r in rows],
            "volume": [r[5] for r in rows],
        }
    )
    parquet = tmp_path / "BTCUSDT-1m-2024-01.parquet"
    pq.write_table(table, parquet)
    strategy = EXAMPLES / "sma_cross.py"
    from_csv = run(strategy, klines)
    from_parquet = run(strategy, parquet)
    assert [(f.ts_ns, f.price, f.quantity) for f in from_parquet.fills] == [
        (f.ts_ns, f.price, f.quantity) for f in from_csv.fills
    ]
    assert from_parquet.events == from_csv.events


def test_a_strategy_that_keeps_failing_is_halted_and_reported(tmp_path: Path) -> None:
    strat = tmp_path / "flaky.py"
    strat.write_text(
        "from botd import Quote, Strategy\n\n"
        "class Flaky(Strategy):\n"
        "    api_version = 1\n"
        "    symbol = 'BTCUSDT'\n\n"
        "    def on_quote(self, quote: Quote) -> None:\n"
        "        raise RuntimeError('boom')\n"
    )
    quotes = write_quotes(tmp_path / "BTCUSDT-quotes.csv", 100)
    result = run(strat, quotes, log_level="critical")
    assert result.events == 100  # the run goes on without it
    assert result.meta["halted"] == "flaky: 5 failures within 60s"


def test_one_quote_currency_per_run(tmp_path: Path) -> None:
    btc = write_klines(tmp_path / "BTCUSDT-1m.csv", 10)
    eth = write_klines(tmp_path / "ETHBTC-1m.csv", 10)
    with pytest.raises(BacktestError, match="one quote currency"):
        run(EXAMPLES / "sma_cross.py", [btc, eth])
