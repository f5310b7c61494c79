"""Parameter sweeps: one backtest per combination, spread over processes, ranked.

Each combination runs in its own worker process (``concurrent.futures``), so strategy files
are imported afresh there and no state leaks between runs; the results come back as plain
statistics and are ranked in the parent.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from botd.backtest.runner import BacktestConfig, BacktestError, run

__all__ = ["RANK_KEYS", "SweepRow", "expand_grid", "run_sweep"]

# Statistics a sweep can be ranked by; higher is better for all but drawdown.
RANK_KEYS = ("total_return_pct", "sharpe", "sortino", "calmar", "profit_factor", "max_drawdown_pct")


@dataclass(frozen=True, slots=True)
class SweepRow:
    params: dict[str, str]
    stats: Any  # botd.backtest.stats.Stats
    error: str = ""

    def value(self, key: str) -> float | None:
        if self.stats is None:
            return None
        raw = getattr(self.stats, key, None)
        return None if raw is None else float(raw)


def expand_grid(params: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every combination of the values, in a stable order: ``{"fast": ["5", "10"]}`` → two."""
    names = list(params)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(params[n] for n in names))
    ]


def _one(
    strategies: Sequence[str], data: Sequence[str], config: BacktestConfig, combo: dict[str, str]
) -> SweepRow:
    cfg = replace(config, params={**config.params, **combo}, progress=False)
    try:
        result = run(strategies, data, cfg)
    except BacktestError as exc:
        return SweepRow(combo, None, str(exc))
    except Exception as exc:  # one broken combination must not lose the others' results
        return SweepRow(combo, None, f"{type(exc).__name__}: {exc}")
    return SweepRow(combo, result.stats)


def run_sweep(
    strategies: Sequence[Path],
    data: Sequence[Path],
    config: BacktestConfig,
    grid: Mapping[str, Sequence[str]],
    *,
    workers: int | None = None,
    rank_by: str = "total_return_pct",
) -> list[SweepRow]:
    """Run every combination of ``grid``; rows best first (errors last)."""
    if rank_by not in RANK_KEYS:
        raise BacktestError(f"cannot rank by {rank_by!r}; choose one of {', '.join(RANK_KEYS)}")
    combos = expand_grid(grid)
    files = [str(p) for p in strategies]
    paths = [str(p) for p in data]
    count = max(1, min(workers or os.cpu_count() or 1, len(combos)))
    if count == 1:
        rows = [_one(files, paths, config, c) for c in combos]
    else:
        with ProcessPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(_one, files, paths, config, c) for c in combos]
            rows = [f.result() for f in futures]
    sign = 1.0 if rank_by == "max_drawdown_pct" else -1.0

    def key(row: SweepRow) -> tuple[int, float]:
        value = row.value(rank_by)
        return (1, 0.0) if value is None else (0, sign * value)

    return sorted(rows, key=key)
