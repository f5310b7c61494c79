"""Statistics and report files for a year of one-minute equity points.

Prints one JSON line: seconds to compute the statistics and to write the four report files.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from botd.backtest.records import EquityPoint, FillRecord
from botd.backtest.report import write_report
from botd.backtest.stats import compute_stats
from botd.model import Side

MINUTE = 60 * 10**9
POINTS = 365 * 24 * 60
TRADES = 2_000


def make_run() -> tuple[list[FillRecord], list[EquityPoint]]:
    rng = random.Random(0)
    value = 10_000.0
    equity = []
    for i in range(POINTS):
        value *= 1 + rng.gauss(0, 0.0005)
        equity.append(EquityPoint(i * MINUTE, Decimal(f"{value:.2f}"), Decimal(i % 3)))
    fills = []
    step = POINTS // TRADES
    for k in range(TRADES):
        for j, side in enumerate((Side.BUY, Side.SELL)):
            ts = (k * step + j * (step // 2)) * MINUTE
            price = Decimal(100 + rng.randint(-5, 5))
            fills.append(
                FillRecord(
                    ts,
                    "bench",
                    "paper",
                    "BTCUSDT",
                    side,
                    Decimal("0.1"),
                    price,
                    Decimal("0.01"),
                    f"o{k}-{j}",
                    "taker",
                )
            )
    return fills, equity


def main() -> None:
    fills, equity = make_run()
    t0 = time.perf_counter()
    stats = compute_stats(fills, equity, Decimal(10_000), start_ns=0, end_ns=POINTS * MINUTE)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_report(Path(out), stats, fills, equity, {"strategy": "bench"})
    t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "bench": "backtest_report",
                "equity_points": POINTS,
                "round_trips": stats.trades,
                "stats_s": round(t1 - t0, 3),
                "report_s": round(t2 - t1, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
