"""Backtest throughput on the live engine (host, risk, gateway, matching engine).

Prints one JSON line per case:

1. ``quotes_ema``: 1 000 000 synthetic quote ticks of one symbol, an EMA(10/30) crossover on
   the mid price (market orders through risk, the gateway and the engine at every cross);
2. ``bars_sma``: 1 000 000 one-minute bars, an SMA(10/30) crossover on the close.

``events_per_s`` is the replay alone (events already in memory; ``events_per_cpu_s`` the same
per CPU second, steadier on a shared machine), ``end_to_end_per_s`` includes reading and
parsing the CSV file. ``--events N`` (or ``BOTD_BENCH_EVENTS``) scales both cases down;
``--per-order`` also replays each case with a strategy that never orders and adds
``no_orders_events_per_cpu_s`` and ``us_per_order`` (the CPU time the orders added, per order).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from botd.backtest import run
from botd.backtest.runner import run_events
from botd.model import Bar, Quote

N = int(os.environ.get("BOTD_BENCH_EVENTS", "1000000"))
START_NS = 1_704_067_200 * 10**9

EMA_STRATEGY = """
from decimal import Decimal
from botd import Quote, Strategy, param
from botd.indicators import EMA


class EmaCross(Strategy):
    api_version = 1
    venue = "binance"
    symbol = "BTCUSDT"
    size = param(Decimal("0.01"))
    fast = param(10)
    slow = param(30)

    def on_start(self) -> None:
        self.f, self.s = EMA(self.fast), EMA(self.slow)
        self.above = None

    def on_quote(self, quote: Quote) -> None:
        mid = float(quote.bid + quote.ask) / 2
        f, s = self.f.update(mid), self.s.update(mid)
        if f is None or s is None:
            return
        above = f > s
        if above is self.above:
            return
        self.above = above
        if self.open_orders:
            return
        if above and self.position.is_flat:
            self.buy(self.size)
        elif not above and self.position.is_long:
            self.close_position()
"""

SMA_STRATEGY = """
from decimal import Decimal
from botd import Bar, Strategy, param
from botd.indicators import SMA


class SmaCross(Strategy):
    api_version = 1
    venue = "binance"
    symbol = "BTCUSDT"
    timeframe = "1m"
    size = param(Decimal("0.01"))
    fast = param(10)
    slow = param(30)

    def on_start(self) -> None:
        self.f, self.s = SMA(self.fast), SMA(self.slow)

    def on_bar(self, bar: Bar) -> None:
        f, s = self.f.update(bar.close), self.s.update(bar.close)
        if f is None or s is None or self.open_orders:
            return
        if f > s and self.position.is_flat:
            self.buy(self.size)
        elif f < s and self.position.is_long:
            self.close_position()
"""


def _prices(n: int, seed: int, vol: float) -> list[float]:
    rng = random.Random(seed)
    p, out = 42_000.0, []
    for _ in range(n):
        out.append(p)
        p = max(1000.0, p * math.exp(rng.gauss(0.0, vol)))
    return out


def quotes(n: int) -> list[Quote]:
    out = []
    for i, p in enumerate(_prices(n, 1, 0.0002)):
        mid = Decimal(f"{p:.2f}")
        ts = START_NS + i * 100_000_000
        out.append(
            Quote("binance", "BTCUSDT", mid - Decimal("0.5"), mid + Decimal("0.5"),
                  Decimal("1.5"), Decimal("2.5"), ts, ts)
        )  # fmt: skip
    return out


def bars(n: int) -> list[Bar]:
    out = []
    prices = _prices(n + 1, 2, 0.001)
    for i in range(n):
        o, c = prices[i], prices[i + 1]
        start = START_NS + i * 60 * 10**9
        end = start + 60 * 10**9
        high, low = Decimal(f"{max(o, c) * 1.0005:.2f}"), Decimal(f"{min(o, c) * 0.9995:.2f}")
        out.append(
            Bar("binance", "BTCUSDT", "1m", Decimal(f"{o:.2f}"), high, low, Decimal(f"{c:.2f}"),
                Decimal("1.5"), start, end, end, end)
        )  # fmt: skip
    return out


def write_quotes_csv(path: Path, events: list[Quote]) -> None:
    with path.open("w") as fh:
        fh.write("ts_ns,bid,ask,bid_size,ask_size\n")
        for q in events:
            fh.write(f"{q.ts_event},{q.bid},{q.ask},{q.bid_size},{q.ask_size}\n")


def write_klines_csv(path: Path, events: list[Bar]) -> None:
    with path.open("w") as fh:
        for b in events:
            ms = b.start // 1_000_000
            fh.write(
                f"{ms},{b.open},{b.high},{b.low},{b.close},{b.volume},{ms + 59_999},0,1,0,0,0\n"
            )


def case(
    name: str,
    source: str,
    events: list[Quote] | list[Bar],
    csv_path: Path,
    *,
    per_order: bool = False,
) -> None:
    folder = csv_path.parent
    strategy = folder / f"{name}.py"
    strategy.write_text(source)
    result = run_events(strategy, events, cash=Decimal(1_000_000), fees=Decimal("0.001"))
    t0 = time.perf_counter()
    e2e = run(strategy, csv_path, cash=Decimal(1_000_000), fees=Decimal("0.001"))
    e2e_s = time.perf_counter() - t0
    line: dict[str, object] = {
        "bench": "backtest",
        "case": name,
        "events": result.events,
        "orders": len(result.orders),
        "fills": len(result.fills),
        "replay_s": round(result.elapsed_s, 3),
        "events_per_s": round(result.events / result.elapsed_s),
        "replay_cpu_s": round(result.cpu_s, 3),
        "events_per_cpu_s": round(result.events / result.cpu_s),
        "end_to_end_s": round(e2e_s, 3),
        "end_to_end_per_s": round(e2e.events / e2e_s),
    }
    if per_order:
        # The same strategy, deciding the same way, but never ordering.
        quiet = folder / f"{name}_no_orders.py"
        quiet.write_text(
            source.replace("self.buy(self.size)", "pass").replace("self.close_position()", "pass")
        )
        idle = run_events(quiet, events, cash=Decimal(1_000_000), fees=Decimal("0.001"))
        line["no_orders_events_per_cpu_s"] = round(idle.events / idle.cpu_s)
        if result.orders:
            line["us_per_order"] = round((result.cpu_s - idle.cpu_s) / len(result.orders) * 1e6, 1)
    print(json.dumps(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=N, help=f"events per case (default {N})")
    parser.add_argument(
        "--per-order", action="store_true", help="also measure the CPU time per order"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="botd-bench-") as tmp:
        folder = Path(tmp)
        q = quotes(args.events)
        write_quotes_csv(folder / "BTCUSDT-quotes.csv", q)
        case("quotes_ema", EMA_STRATEGY, q, folder / "BTCUSDT-quotes.csv", per_order=args.per_order)
        del q
        b = bars(args.events)
        write_klines_csv(folder / "BTCUSDT-1m.csv", b)
        case("bars_sma", SMA_STRATEGY, b, folder / "BTCUSDT-1m.csv", per_order=args.per_order)


if __name__ == "__main__":
    main()
