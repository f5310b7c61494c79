"""Small, seeded market-data files for backtest tests, in the formats botd reads."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from pathlib import Path

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MINUTE_MS = 60_000


def walk(n: int, *, seed: int = 1, start: float = 42_000.0, vol: float = 0.002) -> list[float]:
    rng = random.Random(seed)
    out, p = [], start
    for _ in range(n):
        out.append(p)
        p = max(1.0, p * math.exp(rng.gauss(0.0, vol)))
    return out


def kline_rows(
    bars: Sequence[tuple[float, float, float, float]],
    *,
    start_ms: int = START_MS,
    step_ms: int = MINUTE_MS,
    micros: bool = False,
) -> list[str]:
    scale = 1000 if micros else 1
    rows = []
    for i, (o, h, lo, c) in enumerate(bars):
        t = start_ms + i * step_ms
        rows.append(
            f"{t * scale},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},1.50000000,"
            f"{(t + step_ms) * scale - 1},63000.0,10,0.7,29400.0,0"
        )
    return rows


def random_bars(n: int, *, seed: int = 1) -> list[tuple[float, float, float, float]]:
    rng = random.Random(seed + 1000)
    prices = walk(n + 1, seed=seed)
    out = []
    for o, c in itertools.pairwise(prices):
        h = max(o, c) * (1 + abs(rng.gauss(0, 0.001)))
        lo = min(o, c) * (1 - abs(rng.gauss(0, 0.001)))
        out.append((o, h, lo, c))
    return out


def write_klines(
    path: Path,
    bars: Sequence[tuple[float, float, float, float]] | int,
    *,
    micros: bool = False,
    step_ms: int = MINUTE_MS,
    header: bool = False,
) -> Path:
    if isinstance(bars, int):
        bars = random_bars(bars)
    rows = kline_rows(bars, micros=micros, step_ms=step_ms)
    if header:
        rows.insert(
            0,
            "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
            "taker_buy_volume,taker_buy_quote_volume,ignore",
        )
    path.write_text("\n".join(rows) + "\n")
    return path


def write_trades(path: Path, n: int, *, seed: int = 2, every_ms: int = 250) -> Path:
    prices = walk(n, seed=seed, vol=0.0005)
    rng = random.Random(seed)
    rows = []
    for i, p in enumerate(prices):
        t = START_MS + i * every_ms
        qty = rng.uniform(0.001, 0.5)
        maker = "True" if rng.random() < 0.5 else "False"
        rows.append(f"{i + 1},{p:.2f},{qty:.8f},{p * qty:.8f},{t},{maker},True")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_quotes(path: Path, n: int, *, seed: int = 3, every_ms: int = 100) -> Path:
    prices = walk(n, seed=seed, vol=0.0003)
    rows = ["time,bid,ask,bid_size,ask_size"]
    for i, p in enumerate(prices):
        t = START_MS + i * every_ms
        rows.append(f"{t},{p - 0.5:.2f},{p + 0.5:.2f},1.5,2.5")
    path.write_text("\n".join(rows) + "\n")
    return path
