"""Incremental indicators: O(1) per update, ``None`` until warmed up.

They take floats: indicators are signals, not money (see DESIGN.md §3). Each input is converted
once with ``float()``, so ``int`` and ``Decimal`` work too. Every indicator keeps its latest
result in ``.value`` and can be reused with ``reset()``.

Rolling sums are recomputed from their window once every ``period`` updates (amortised O(1)) so
floating-point drift cannot accumulate over a long-running session.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "ATR",
    "EMA",
    "MACD",
    "ROC",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "Bands",
    "BollingerBands",
    "Channel",
    "DonchianChannel",
    "MACDValue",
    "RollingMax",
    "RollingMin",
    "StdDev",
]

Number = float | int | Decimal


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class MACDValue:
    """One MACD reading: ``histogram`` is ``macd - signal``."""

    macd: float
    signal: float
    histogram: float


@dataclass(frozen=True, slots=True)
class Bands:
    """Bollinger bands: ``middle`` is the moving average, the others are ``k`` std devs away."""

    upper: float
    middle: float
    lower: float


@dataclass(frozen=True, slots=True)
class Channel:
    """Price channel: highest high, midpoint, lowest low."""

    upper: float
    middle: float
    lower: float


class SMA:
    """Simple moving average over the last ``period`` values."""

    __slots__ = ("_evictions", "_sum", "_window", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_int("period", period, 1)
        self._window: deque[float] = deque()
        self.reset()

    def __repr__(self) -> str:
        return f"SMA(period={self.period})"

    def reset(self) -> None:
        self._window.clear()
        self._sum = 0.0
        self._evictions = 0
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        window = self._window
        window.append(v)
        self._sum += v
        if len(window) > self.period:
            self._sum -= window.popleft()
            self._evictions += 1
            if self._evictions >= self.period:
                self._evictions = 0
                self._sum = math.fsum(window)
        if len(window) == self.period:
            self.value = self._sum / self.period
        return self.value


class EMA:
    """Exponential moving average (alpha ``2/(period+1)``), seeded with the SMA of the first
    ``period`` values."""

    __slots__ = ("_alpha", "_seed", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_int("period", period, 1)
        self._alpha = 2.0 / (period + 1)
        self._seed = SMA(period)
        self.reset()

    def __repr__(self) -> str:
        return f"EMA(period={self.period})"

    def reset(self) -> None:
        self._seed.reset()
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        if self.value is None:
            self.value = self._seed.update(v)
        else:
            self.value += self._alpha * (v - self.value)
        return self.value


class WMA:
    """Linearly weighted moving average: weights 1..``period``, the newest value weighs most."""

    __slots__ = (
        "_denominator",
        "_numerator",
        "_since_resync",
        "_sum",
        "_window",
        "period",
        "value",
    )

    def __init__(self, period: int) -> None:
        self.period = _check_int("period", period, 1)
        self._denominator = period * (period + 1) / 2.0
        self._window: deque[float] = deque()
        self.reset()

    def __repr__(self) -> str:
        return f"WMA(period={self.period})"

    def reset(self) -> None:
        self._window.clear()
        self._sum = 0.0
        self._numerator = 0.0
        self._since_resync = 0
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        window = self._window
        n = self.period
        if len(window) < n:
            window.append(v)
            self._numerator += len(window) * v
            self._sum += v
            if len(window) < n:
                return None
        else:
            # Every old weight drops by one (the oldest to zero), the new value weighs n.
            self._numerator += n * v - self._sum
            self._sum += v - window.popleft()
            window.append(v)
            self._since_resync += 1
            if self._since_resync >= n:
                self._since_resync = 0
                self._sum = math.fsum(window)
                self._numerator = math.fsum(i * w for i, w in enumerate(window, 1))
        self.value = self._numerator / self._denominator
        return self.value


class RSI:
    """Relative strength index with Wilder's smoothing.

    The first average gain/loss is the simple mean of the first ``period`` changes, then
    ``avg = (prev * (period - 1) + current) / period``. The first value needs ``period + 1``
    inputs. RSI is 100 when the average loss is 0, and 50 when both averages are 0.
    """

    __slots__ = ("_avg_gain", "_avg_loss", "_changes", "_prev", "period", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_int("period", period, 1)
        self.reset()

    def __repr__(self) -> str:
        return f"RSI(period={self.period})"

    def reset(self) -> None:
        self._prev: float | None = None
        self._changes = 0
        self._avg_gain = 0.0
        self._avg_loss = 0.0
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        prev = self._prev
        self._prev = v
        if prev is None:
            return None
        change = v - prev
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        n = self.period
        if self._changes < n:
            # Warm-up: accumulate sums, turned into simple means after `period` changes.
            self._changes += 1
            self._avg_gain += gain
            self._avg_loss += loss
            if self._changes < n:
                return None
            self._avg_gain /= n
            self._avg_loss /= n
        else:
            self._avg_gain = (self._avg_gain * (n - 1) + gain) / n
            self._avg_loss = (self._avg_loss * (n - 1) + loss) / n
        avg_gain, avg_loss = self._avg_gain, self._avg_loss
        if avg_loss == 0.0:
            self.value = 50.0 if avg_gain == 0.0 else 100.0
        else:
            self.value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
        return self.value


class MACD:
    """Moving average convergence/divergence.

    ``macd = EMA(fast) - EMA(slow)``; ``signal`` is an EMA of the MACD line, fed from the first
    bar on which the slow EMA is warm. All EMAs are SMA-seeded (see :class:`EMA`), so the first
    value needs ``slow + signal - 1`` inputs.
    """

    __slots__ = ("_fast", "_signal", "_slow", "fast", "signal", "slow", "value")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast = _check_int("fast", fast, 1)
        self.slow = _check_int("slow", slow, 1)
        self.signal = _check_int("signal", signal, 1)
        if fast >= slow:
            raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
        self._fast = EMA(fast)
        self._slow = EMA(slow)
        self._signal = EMA(signal)
        self.reset()

    def __repr__(self) -> str:
        return f"MACD(fast={self.fast}, slow={self.slow}, signal={self.signal})"

    def reset(self) -> None:
        self._fast.reset()
        self._slow.reset()
        self._signal.reset()
        self.value: MACDValue | None = None

    def update(self, x: Number) -> MACDValue | None:
        v = float(x)
        fast = self._fast.update(v)
        slow = self._slow.update(v)
        if fast is None or slow is None:
            return None
        line = fast - slow
        signal = self._signal.update(line)
        if signal is None:
            return None
        self.value = MACDValue(line, signal, line - signal)
        return self.value


class StdDev:
    """Rolling standard deviation over the last ``period`` values.

    ``ddof=0`` (the default) is the population std dev, ``ddof=1`` the sample one. Uses a
    rolling Welford update on values shifted by a reference close to the window's mean (no sum
    of squares, so no catastrophic cancellation on large prices with a small spread), and
    recomputes exactly, two-pass, once every ``period`` updates.
    """

    __slots__ = ("_m2", "_mean", "_shift", "_since_resync", "_window", "ddof", "period", "value")

    def __init__(self, period: int, ddof: int = 0) -> None:
        self.period = _check_int("period", period, 1)
        self.ddof = _check_int("ddof", ddof, 0)
        if ddof >= period:
            raise ValueError(f"ddof ({ddof}) must be less than period ({period})")
        self._window: deque[float] = deque()
        self.reset()

    def __repr__(self) -> str:
        return f"StdDev(period={self.period}, ddof={self.ddof})"

    @property
    def mean(self) -> float | None:
        """Mean of the current window once warm (the SMA, shared by Bollinger bands)."""
        return self._shift + self._mean if len(self._window) == self.period else None

    def reset(self) -> None:
        self._window.clear()
        self._shift = 0.0
        self._mean = 0.0
        self._m2 = 0.0
        self._since_resync = 0
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        window = self._window
        n = self.period
        if len(window) < n:
            if not window:
                self._shift = v
            window.append(v)
            d = v - self._shift
            delta = d - self._mean
            self._mean += delta / len(window)
            self._m2 += delta * (d - self._mean)
            if len(window) < n:
                return None
        else:
            d = v - self._shift
            old = window.popleft() - self._shift
            window.append(v)
            old_mean = self._mean
            self._mean = old_mean + (d - old) / n
            self._m2 += (d - old) * (d - self._mean + old - old_mean)
            self._since_resync += 1
            if self._since_resync >= n:
                self._resync()
        if self._m2 < 0.0:  # rounding can push a zero variance slightly negative
            self._m2 = 0.0
        self.value = math.sqrt(self._m2 / (n - self.ddof))
        return self.value

    def _resync(self) -> None:
        window = self._window
        n = len(window)
        shift = math.fsum(window) / n
        mean = math.fsum(w - shift for w in window) / n
        self._shift = shift
        self._mean = mean
        self._m2 = math.fsum((w - shift - mean) ** 2 for w in window)
        self._since_resync = 0


class BollingerBands:
    """Bollinger bands: SMA(``period``) ± ``k`` times the population std dev (``ddof=0``, as in
    Bollinger's definition) of the same window."""

    __slots__ = ("_std", "k", "period", "value")

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        self.period = _check_int("period", period, 1)
        k = float(k)
        if not math.isfinite(k) or k <= 0.0:
            raise ValueError(f"k must be a positive finite number, got {k!r}")
        self.k = k
        self._std = StdDev(period, ddof=0)
        self.reset()

    def __repr__(self) -> str:
        return f"BollingerBands(period={self.period}, k={self.k})"

    def reset(self) -> None:
        self._std.reset()
        self.value: Bands | None = None

    def update(self, x: Number) -> Bands | None:
        std = self._std.update(x)
        middle = self._std.mean
        if std is None or middle is None:
            return None
        width = self.k * std
        self.value = Bands(middle + width, middle, middle - width)
        return self.value


class ATR:
    """Average true range with Wilder's smoothing.

    True range is ``max(high - low, |high - prev_close|, |low - prev_close|)``; the first bar's
    is ``high - low``. The first value is the mean of the first ``period`` true ranges, then
    ``atr = (prev * (period - 1) + tr) / period``.
    """

    __slots__ = ("_bars", "_prev_close", "_sum", "period", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_int("period", period, 1)
        self.reset()

    def __repr__(self) -> str:
        return f"ATR(period={self.period})"

    def reset(self) -> None:
        self._prev_close: float | None = None
        self._bars = 0
        self._sum = 0.0
        self.value: float | None = None

    def update(self, high: Number, low: Number, close: Number) -> float | None:
        h, lo, c = float(high), float(low), float(close)
        pc = self._prev_close
        tr = h - lo if pc is None else max(h - lo, abs(h - pc), abs(lo - pc))
        self._prev_close = c
        n = self.period
        if self.value is not None:
            self.value = (self.value * (n - 1) + tr) / n
        else:
            self._bars += 1
            self._sum += tr
            if self._bars == n:
                self.value = self._sum / n
        return self.value


class VWAP:
    """Volume-weighted average price.

    ``VWAP()`` is cumulative since construction or ``reset()`` and is ``None`` until some volume
    has traded. ``VWAP(period=n)`` covers the last ``n`` updates: ``None`` until ``n`` updates
    have been seen, and while those ``n`` carry no volume. Volume must not be negative.
    """

    __slots__ = ("_nonzero", "_pv", "_since_resync", "_volume", "_window", "period", "value")

    def __init__(self, period: int | None = None) -> None:
        self.period = None if period is None else _check_int("period", period, 1)
        self._window: deque[tuple[float, float]] = deque()
        self.reset()

    def __repr__(self) -> str:
        return "VWAP()" if self.period is None else f"VWAP(period={self.period})"

    def reset(self) -> None:
        self._window.clear()
        self._pv = 0.0
        self._volume = 0.0
        self._nonzero = 0
        self._since_resync = 0
        self.value: float | None = None

    def update(self, price: Number, volume: Number) -> float | None:
        p, v = float(price), float(volume)
        if not v >= 0.0:
            raise ValueError(f"volume must be non-negative, got {volume!r}")
        pv = p * v
        self._pv += pv
        self._volume += v
        if v > 0.0:
            self._nonzero += 1
        n = self.period
        if n is None:
            if self._nonzero:
                self.value = self._pv / self._volume
            return self.value
        window = self._window
        window.append((pv, v))
        if len(window) > n:
            old_pv, old_v = window.popleft()
            self._pv -= old_pv
            self._volume -= old_v
            if old_v > 0.0:
                self._nonzero -= 1
            self._since_resync += 1
            # Resync now if cancellation ate the volume (e.g. a huge print left the window).
            if self._since_resync >= n or (self._nonzero and self._volume <= 0.0):
                self._since_resync = 0
                self._pv = math.fsum(e[0] for e in window)
                self._volume = math.fsum(e[1] for e in window)
        if len(window) < n:
            return None
        self.value = self._pv / self._volume if self._nonzero else None
        return self.value


class _RollingExtreme:
    """Monotonic deque of (index, value): amortised O(1) rolling max or min."""

    __slots__ = ("_count", "_deque", "_is_max", "period", "value")

    def __init__(self, period: int, *, is_max: bool) -> None:
        self.period = _check_int("period", period, 1)
        self._is_max = is_max
        self._deque: deque[tuple[int, float]] = deque()
        self.reset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(period={self.period})"

    def reset(self) -> None:
        self._deque.clear()
        self._count = 0
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        dq = self._deque
        if self._is_max:
            while dq and dq[-1][1] <= v:
                dq.pop()
        else:
            while dq and dq[-1][1] >= v:
                dq.pop()
        i = self._count
        self._count = i + 1
        dq.append((i, v))
        if dq[0][0] <= i - self.period:
            dq.popleft()
        if self._count >= self.period:
            self.value = dq[0][1]
        return self.value


class RollingMax(_RollingExtreme):
    """Highest of the last ``period`` values."""

    __slots__ = ()

    def __init__(self, period: int) -> None:
        super().__init__(period, is_max=True)


class RollingMin(_RollingExtreme):
    """Lowest of the last ``period`` values."""

    __slots__ = ()

    def __init__(self, period: int) -> None:
        super().__init__(period, is_max=False)


class DonchianChannel:
    """Donchian channel: highest high and lowest low of the last ``period`` bars, and their
    midpoint."""

    __slots__ = ("_high", "_low", "period", "value")

    def __init__(self, period: int = 20) -> None:
        self.period = _check_int("period", period, 1)
        self._high = RollingMax(period)
        self._low = RollingMin(period)
        self.reset()

    def __repr__(self) -> str:
        return f"DonchianChannel(period={self.period})"

    def reset(self) -> None:
        self._high.reset()
        self._low.reset()
        self.value: Channel | None = None

    def update(self, high: Number, low: Number) -> Channel | None:
        upper = self._high.update(high)
        lower = self._low.update(low)
        if upper is None or lower is None:
            return None
        self.value = Channel(upper, (upper + lower) / 2.0, lower)
        return self.value


class ROC:
    """Rate of change in percent: ``100 * (x - x[-period]) / x[-period]``.

    The first value needs ``period + 1`` inputs; it is ``None`` when ``x[-period]`` is 0.
    """

    __slots__ = ("_window", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_int("period", period, 1)
        self._window: deque[float] = deque(maxlen=period + 1)
        self.reset()

    def __repr__(self) -> str:
        return f"ROC(period={self.period})"

    def reset(self) -> None:
        self._window.clear()
        self.value: float | None = None

    def update(self, x: Number) -> float | None:
        v = float(x)
        window = self._window
        window.append(v)
        if len(window) <= self.period:
            return None
        base = window[0]
        self.value = None if base == 0.0 else 100.0 * (v - base) / base
        return self.value
