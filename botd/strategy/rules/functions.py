"""The indicator functions of the rules language, built on :mod:`botd.indicators`.

Each call site in a rules file gets its own indicator instance (a *feed*), updated once per
closed bar before the rules are evaluated. A feed returns ``None`` while its indicator is still
warming up; a rule that uses it is then false.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from botd import indicators as ind

__all__ = ["FUNCTIONS", "MAX_PERIOD", "ArgSpec", "BarValues", "Feed", "FunctionSpec"]

MAX_PERIOD = 10_000  # bars; a longer window is a typo, and would hold that much memory


@dataclass(frozen=True, slots=True)
class BarValues:
    open: float
    high: float
    low: float
    close: float
    volume: float


Feed = Callable[[BarValues], float | None]


@dataclass(frozen=True, slots=True)
class ArgSpec:
    name: str
    kind: Literal["period", "factor"]  # a whole number of bars, or a positive multiplier
    default: Decimal | None = None


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    args: tuple[ArgSpec, ...]
    make: Callable[[list[Decimal]], Feed]  # arguments already checked against ``args``
    doc: str


def _int(x: Decimal) -> int:
    return int(x)


def _sma(a: list[Decimal]) -> Feed:
    i = ind.SMA(_int(a[0]))
    return lambda b: i.update(b.close)


def _ema(a: list[Decimal]) -> Feed:
    i = ind.EMA(_int(a[0]))
    return lambda b: i.update(b.close)


def _wma(a: list[Decimal]) -> Feed:
    i = ind.WMA(_int(a[0]))
    return lambda b: i.update(b.close)


def _rsi(a: list[Decimal]) -> Feed:
    i = ind.RSI(_int(a[0]))
    return lambda b: i.update(b.close)


def _atr(a: list[Decimal]) -> Feed:
    i = ind.ATR(_int(a[0]))
    return lambda b: i.update(b.high, b.low, b.close)


def _stddev(a: list[Decimal]) -> Feed:
    i = ind.StdDev(_int(a[0]))
    return lambda b: i.update(b.close)


def _previous(i: ind.RollingMax | ind.RollingMin, field: Literal["high", "low"]) -> Feed:
    # The value over the n bars *before* this one: a bar's own high can never exceed a window
    # that includes it, so `close > highest(20)` could never be a breakout otherwise.
    before: list[float | None] = [None]

    def feed(b: BarValues) -> float | None:
        out = before[0]
        before[0] = i.update(b.high if field == "high" else b.low)
        return out

    return feed


def _highest(a: list[Decimal]) -> Feed:
    return _previous(ind.RollingMax(_int(a[0])), "high")


def _lowest(a: list[Decimal]) -> Feed:
    return _previous(ind.RollingMin(_int(a[0])), "low")


def _bands(pick: Callable[[ind.Bands], float]) -> Callable[[list[Decimal]], Feed]:
    def make(a: list[Decimal]) -> Feed:
        i = ind.BollingerBands(_int(a[0]), float(a[1]))

        def feed(b: BarValues) -> float | None:
            v = i.update(b.close)
            return None if v is None else pick(v)

        return feed

    return make


def _macd(pick: Callable[[ind.MACDValue], float]) -> Callable[[list[Decimal]], Feed]:
    def make(a: list[Decimal]) -> Feed:
        i = ind.MACD(_int(a[0]), _int(a[1]), _int(a[2]))

        def feed(b: BarValues) -> float | None:
            v = i.update(b.close)
            return None if v is None else pick(v)

        return feed

    return make


def _vwap(a: list[Decimal]) -> Feed:
    i = ind.VWAP()
    # Typical price of the bar, the usual input of a bar-based VWAP.
    return lambda b: i.update((b.high + b.low + b.close) / 3.0, b.volume)


def _donchian(pick: Callable[[ind.Channel], float]) -> Callable[[list[Decimal]], Feed]:
    def make(a: list[Decimal]) -> Feed:
        i = ind.DonchianChannel(_int(a[0]))

        def feed(b: BarValues) -> float | None:
            v = i.update(b.high, b.low)
            return None if v is None else pick(v)

        return feed

    return make


_N = ArgSpec("n", "period")
_K = ArgSpec("k", "factor", Decimal(2))
_MACD_ARGS = (
    ArgSpec("fast", "period", Decimal(12)),
    ArgSpec("slow", "period", Decimal(26)),
    ArgSpec("signal", "period", Decimal(9)),
)

FUNCTIONS: dict[str, FunctionSpec] = {
    "sma": FunctionSpec((_N,), _sma, "simple moving average of close"),
    "ema": FunctionSpec((_N,), _ema, "exponential moving average of close"),
    "wma": FunctionSpec((_N,), _wma, "linearly weighted moving average of close"),
    "rsi": FunctionSpec((ArgSpec("n", "period", Decimal(14)),), _rsi, "relative strength index"),
    "atr": FunctionSpec((ArgSpec("n", "period", Decimal(14)),), _atr, "average true range"),
    "stddev": FunctionSpec((_N,), _stddev, "standard deviation of close"),
    "highest": FunctionSpec((_N,), _highest, "highest high of the n bars before this one"),
    "lowest": FunctionSpec((_N,), _lowest, "lowest low of the n bars before this one"),
    "bb_upper": FunctionSpec((_N, _K), _bands(lambda v: v.upper), "upper Bollinger band"),
    "bb_middle": FunctionSpec(
        (_N, _K), _bands(lambda v: v.middle), "middle Bollinger band (the SMA)"
    ),
    "bb_lower": FunctionSpec((_N, _K), _bands(lambda v: v.lower), "lower Bollinger band"),
    "macd": FunctionSpec(_MACD_ARGS, _macd(lambda v: v.macd), "MACD line"),
    "macd_signal": FunctionSpec(_MACD_ARGS, _macd(lambda v: v.signal), "MACD signal line"),
    "macd_hist": FunctionSpec(_MACD_ARGS, _macd(lambda v: v.histogram), "MACD histogram"),
    "vwap": FunctionSpec((), _vwap, "volume-weighted average price since start"),
    "donchian_upper": FunctionSpec(
        (_N,), _donchian(lambda v: v.upper), "highest high of the last n bars, this one included"
    ),
    "donchian_lower": FunctionSpec(
        (_N,), _donchian(lambda v: v.lower), "lowest low of the last n bars, this one included"
    ),
}
