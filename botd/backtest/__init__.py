"""Replay history through the strategies and the simulated venue, then report.

``botd.backtest.run(strategy_file, data_files, **options)`` returns a
:class:`BacktestResult` (fills, equity curve, orders, statistics); ``botd backtest`` is the
command line. See docs/backtesting.md.
"""

from botd.backtest.runner import BacktestConfig, BacktestError, BacktestResult, run

__all__ = ["BacktestConfig", "BacktestError", "BacktestResult", "run"]
