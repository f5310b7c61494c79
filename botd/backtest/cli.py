"""``botd backtest``: run strategy files on historical data and write the report."""

from __future__ import annotations

import argparse
import json
import traceback
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from botd.backtest.data import parse_time
from botd.backtest.runner import FILL_AT, BacktestConfig, BacktestError, BacktestResult, run
from botd.backtest.sweep import RANK_KEYS, SweepRow, run_sweep

__all__ = ["add_backtest_parser", "minify_json", "run_backtest_command"]

EX_OK = 0
EX_USAGE = 64
EX_SOFTWARE = 70


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _time(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_backtest_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "backtest",
        help="run strategy files on historical data (Binance CSV, OHLCV CSV, recordings, Parquet)",
        description="Replay history through the live strategy host, risk checks, gateway and "
        "the simulated exchange's matching engine, then write trades.csv, equity.png, "
        "report.html and summary.json. See docs/backtesting.md.",
    )
    p.add_argument("strategy", nargs="+", type=Path, metavar="STRATEGY_FILE")
    p.add_argument(
        "--data",
        nargs="+",
        action="extend",
        type=Path,
        required=True,
        metavar="PATH",
        help="data files (repeatable); merged in time order",
    )
    p.add_argument("--from", dest="start", type=_time, help="start (ISO 8601 or epoch s/ms/us/ns)")
    p.add_argument("--to", dest="end", type=_time, help="end, exclusive")
    p.add_argument(
        "--cash", type=_decimal, default=Decimal("10000"), help="starting cash in the quote asset"
    )
    p.add_argument(
        "--fees", type=_decimal, default=Decimal("0.001"), help="taker fee per fill (0.001 = 0.1%%)"
    )
    p.add_argument("--maker-fees", type=_decimal, help="maker fee per fill (default: --fees)")
    p.add_argument("--slippage-bps", type=_decimal, default=Decimal(0), metavar="N")
    p.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="N", help="quote/trade data only"
    )
    p.add_argument(
        "--fill-at",
        choices=FILL_AT,
        default="next_open",
        help="bar data: market orders fill at the next bar's open (default) or this close",
    )
    p.add_argument("--tick", type=_decimal, metavar="T", help="price tick (default: from data)")
    p.add_argument("--step", type=_decimal, metavar="S", help="quantity step (default 1e-8)")
    p.add_argument("--min-notional", type=_decimal, default=Decimal(0), metavar="N")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter (strategy.name=value for one strategy); "
        "comma-separated values sweep them: --param fast=5,10,20",
    )
    p.add_argument("--symbol", help="the symbol of the data (default: from each file name)")
    p.add_argument("--out", type=Path, help="report folder (default: backtests/<strategy>)")
    p.add_argument("--json", action="store_true", help="print the JSON summary as the last line")
    p.add_argument("--workers", type=int, help="processes for a sweep (default: CPU count)")
    p.add_argument("--rank-by", choices=RANK_KEYS, default="total_return_pct")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def minify_json(text: str) -> str:
    """``text`` (JSON) on one line, every value's spelling kept exactly."""
    out: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif not ch.isspace():
            out.append(ch)
    return "".join(out)


def _params(raw: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    fixed: dict[str, str] = {}
    grid: dict[str, list[str]] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BacktestError(f"--param expects NAME=VALUE, got {item!r}")
        values = [v.strip() for v in value.split(",")]
        if len(values) > 1:
            if any(not v for v in values):
                raise BacktestError(f"--param {item}: empty value in the list")
            grid[name] = values
        else:
            fixed[name] = value.strip()
    return fixed, grid


def run_backtest_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    try:
        fixed, grid = _params(args.param)
        config = BacktestConfig(
            cash=args.cash,
            fees=args.fees,
            maker_fees=args.maker_fees,
            slippage_bps=args.slippage_bps,
            latency_ms=args.latency_ms,
            fill_at=args.fill_at,
            tick=args.tick,
            step=args.step,
            min_notional=args.min_notional,
            start_ns=args.start,
            end_ns=args.end,
            symbol=args.symbol,
            params=fixed,
            progress=not args.no_progress,
            log_level=args.log_level,
        )
        if grid:
            return _sweep(args, config, grid, stdout, stderr)
        result = run(args.strategy, args.data, config)
        out = args.out or Path("backtests") / "_".join(p.stem for p in args.strategy)
        paths = result.write_report(out)
    except BacktestError as exc:
        print(f"botd backtest: {exc}", file=stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("botd backtest: interrupted", file=stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so, with the traceback
        traceback.print_exc(file=stderr)
        print(f"botd backtest: internal error: {exc!r}", file=stderr)
        return EX_SOFTWARE
    _print_summary(result, paths, stdout)
    if args.json:
        print(minify_json(result.summary_json()), file=stdout)
    return EX_OK


def _fmt(value: Any, places: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{places}f}"
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    return str(value)


def _print_summary(result: BacktestResult, paths: dict[str, Path], stdout: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.stats
    table = Table(title=f"backtest: {result.meta['strategies']} on {result.meta['symbols']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("events", f"{result.events:,}"),
        ("final equity", _fmt(s.final_equity)),
        ("total return %", _fmt(s.total_return_pct)),
        ("max drawdown %", _fmt(s.max_drawdown_pct)),
        ("sharpe", _fmt(s.sharpe)),
        ("trades", str(s.trades)),
        ("win rate %", _fmt(s.win_rate_pct)),
        ("fills", str(s.fills)),
        ("fees", _fmt(s.fees)),
        ("orders rejected", str(result.rejected)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console(file=stdout, width=100, force_terminal=False, no_color=not stdout.isatty())
    console.print(table)
    if "halted" in result.meta:
        console.print(f"strategies halted during the run: {result.meta['halted']}")
    report = paths.get("report") or next(iter(paths.values()), None)
    if report is not None:
        console.print(f"report: {report}", soft_wrap=True)


def _sweep(
    args: argparse.Namespace,
    config: BacktestConfig,
    grid: dict[str, list[str]],
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    from rich.console import Console
    from rich.table import Table

    rows = run_sweep(
        args.strategy, args.data, config, grid, workers=args.workers, rank_by=args.rank_by
    )
    names = list(grid)
    table = Table(title=f"sweep: {len(rows)} runs, ranked by {args.rank_by}")
    table.add_column("#", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for col in ("return %", "max dd %", "sharpe", "trades", "win %"):
        table.add_column(col, justify="right")
    for i, row in enumerate(rows, start=1):
        s = row.stats
        if s is None:
            table.add_row(
                str(i), *(row.params[n] for n in names), f"error: {row.error}", "", "", "", ""
            )
            continue
        table.add_row(
            str(i),
            *(row.params[n] for n in names),
            _fmt(s.total_return_pct),
            _fmt(s.max_drawdown_pct),
            _fmt(s.sharpe),
            str(s.trades),
            _fmt(s.win_rate_pct),
        )
    Console(file=stdout, width=120, force_terminal=False, no_color=True).print(table)
    records = [_row_json(r) for r in rows]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sweep.json").write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(records, sort_keys=True, separators=(",", ":")), file=stdout)
    failed = [r for r in rows if r.stats is None]
    if failed and len(failed) == len(rows):
        print(f"botd backtest: every run failed: {failed[0].error}", file=stderr)
        return 65
    return EX_OK


def _row_json(row: SweepRow) -> dict[str, Any]:
    out: dict[str, Any] = {"params": row.params}
    if row.stats is None:
        out["error"] = row.error
        return out
    for key in ("total_return_pct", "max_drawdown_pct", "sharpe", "sortino", "calmar"):
        out[key] = getattr(row.stats, key)
    out["trades"] = row.stats.trades
    out["final_equity"] = str(row.stats.final_equity)
    return out
