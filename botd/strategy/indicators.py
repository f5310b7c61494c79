"""Incremental indicators: O(1) per update, ``None`` until warmed up.

They take floats: indicators are signals, not money (see DESIGN.md §3).
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

__all__ = ["EMA", "SMA"]

Number = float | int | Decimal


class SMA:
    """Simple moving average over the last ``period`` values."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError("period must be at least 1")
        self.period = period
        self._window: deque[float] = deque()
        self._sum = 0.0
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        self._window.append(v)
        self._sum += v
        if len(self._window) > self.period:
            self._sum -= self._window.popleft()
        if len(self._window) == self.period:
            self.value = self._sum / self.period
        return self.value


class EMA:
    """Exponential moving average, seeded with the SMA of the first ``period`` values."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError("period must be at least 1")
        self.period = period
        self._alpha = 2.0 / (period + 1)
        self._seed = SMA(period)
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        if self.value is None:
            self.value = self._seed.update(v)
        else:
            self.value += self._alpha * (v - self.value)
        return self.value
