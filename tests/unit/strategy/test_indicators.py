"""Indicators against references computed independently with numpy/pandas."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import botd.indicators as public
import botd.strategy.indicators as impl
from botd.indicators import (
    ATR,
    EMA,
    MACD,
    ROC,
    RSI,
    SMA,
    VWAP,
    WMA,
    Bands,
    BollingerBands,
    Channel,
    DonchianChannel,
    MACDValue,
    RollingMax,
    RollingMin,
    StdDev,
)

N = 2000
PERIODS = [1, 2, 5, 14, 50]
REL = ABS = 1e-9


# --- data -------------------------------------------------------------------------------------


def _make_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240601)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, N)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) + np.abs(rng.normal(0.0, 0.3, N))
    low = np.minimum(open_, close) - np.abs(rng.normal(0.0, 0.3, N))
    volume = rng.uniform(0.0, 10.0, N)
    volume[rng.random(N) < 0.1] = 0.0  # some bars trade nothing
    return {"close": close, "high": high, "low": low, "volume": volume}


DATA = _make_data()
CLOSE = DATA["close"]
HIGH = DATA["high"]
LOW = DATA["low"]
VOLUME = DATA["volume"]


def run(update: Callable[..., Any], *columns: Iterable[Any]) -> list[Any]:
    return [update(*args) for args in zip(*columns, strict=True)]


def assert_matches(got: Sequence[float | None], expected: np.ndarray) -> None:
    """``None`` exactly where the reference is NaN, and approximately equal elsewhere."""
    assert len(got) == len(expected)
    got_none = [g is None for g in got]
    assert got_none == [bool(np.isnan(e)) for e in expected]
    pairs = [(g, e) for g, e in zip(got, expected, strict=True) if g is not None]
    assert pairs, "reference never warmed up"
    assert [g for g, _ in pairs] == pytest.approx([float(e) for _, e in pairs], rel=REL, abs=ABS)


def first_non_none(values: Sequence[object]) -> int:
    return next(i for i, v in enumerate(values) if v is not None)


# --- independent references -------------------------------------------------------------------


def seeded_ewm(values: np.ndarray, period: int, alpha: float, start: int = 0) -> np.ndarray:
    """pandas ewm (adjust=False) seeded with the mean of the first ``period`` values from
    ``start``: the first output sits at ``start + period - 1``."""
    out = np.full(len(values), np.nan)
    seed_at = start + period - 1
    if seed_at >= len(values):
        return out
    seeded = pd.Series(values[seed_at:], dtype=float).copy()
    seeded.iloc[0] = values[start : seed_at + 1].mean()
    out[seed_at:] = seeded.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def loop_ema(values: np.ndarray, period: int, start: int) -> np.ndarray:
    """A plain loop EMA (alpha 2/(n+1)) seeded with the SMA of values[start:start+period]."""
    out = np.full(len(values), np.nan)
    alpha = 2.0 / (period + 1)
    seed_at = start + period - 1
    if seed_at >= len(values):
        return out
    ema = float(np.mean(values[start : seed_at + 1]))
    out[seed_at] = ema
    for i in range(seed_at + 1, len(values)):
        ema = ema + alpha * (values[i] - ema)
        out[i] = ema
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    prev_close = pd.Series(close).shift(1)
    h, lo = pd.Series(high), pd.Series(low)
    tr = pd.concat([h - lo, (h - prev_close).abs(), (lo - prev_close).abs()], axis=1).max(axis=1)
    tr.iloc[0] = high[0] - low[0]
    out: np.ndarray = tr.to_numpy()
    return out


# --- accuracy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("period", PERIODS)
def test_sma(period: int) -> None:
    expected = pd.Series(CLOSE).rolling(period).mean().to_numpy()
    assert_matches(run(SMA(period).update, CLOSE), expected)


@pytest.mark.parametrize("period", PERIODS)
def test_ema_is_sma_seeded(period: int) -> None:
    expected = seeded_ewm(CLOSE, period, alpha=2.0 / (period + 1))
    assert_matches(run(EMA(period).update, CLOSE), expected)


@pytest.mark.parametrize("period", PERIODS)
def test_wma(period: int) -> None:
    weights = np.arange(1, period + 1, dtype=float)
    expected = np.full(N, np.nan)
    expected[period - 1 :] = sliding_window_view(CLOSE, period) @ weights / weights.sum()
    assert_matches(run(WMA(period).update, CLOSE), expected)


@pytest.mark.parametrize("period", [*PERIODS, 14])
def test_rsi_wilder(period: int) -> None:
    change = np.diff(CLOSE)
    gains, losses = np.clip(change, 0, None), np.clip(-change, 0, None)
    alpha = 1.0 / period
    # change[i] is known at input i + 1, so shift the averages by one input.
    avg_gain = np.concatenate(([np.nan], seeded_ewm(gains, period, alpha)))
    avg_loss = np.concatenate(([np.nan], seeded_ewm(losses, period, alpha)))
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    expected[avg_loss == 0] = 100.0
    expected[(avg_loss == 0) & (avg_gain == 0)] = 50.0
    assert_matches(run(RSI(period).update, CLOSE), expected)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (3, 10, 4), (1, 2, 1)])
def test_macd(fast: int, slow: int, signal: int) -> None:
    line = loop_ema(CLOSE, fast, 0) - loop_ema(CLOSE, slow, 0)
    sig = loop_ema(np.nan_to_num(line), signal, start=slow - 1)
    got = run(MACD(fast, slow, signal).update, CLOSE)
    assert_matches([None if g is None else g.macd for g in got], np.where(np.isnan(sig), sig, line))
    assert_matches([None if g is None else g.signal for g in got], sig)
    assert_matches([None if g is None else g.histogram for g in got], line - sig)
    assert all(isinstance(g, MACDValue) for g in got if g is not None)


def test_macd_default_parameters() -> None:
    assert repr(MACD()) == "MACD(fast=12, slow=26, signal=9)"
    assert first_non_none(run(MACD().update, CLOSE)) == 26 + 9 - 2


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("k", [2.0, 1.5])
def test_bollinger_bands_population_std(period: int, k: float) -> None:
    # Two-pass numpy std: pandas' online rolling std drifts by ~1e-8 after volatile stretches.
    middle = pd.Series(CLOSE).rolling(period).mean().to_numpy()
    width = np.full(N, np.nan)
    width[period - 1 :] = k * sliding_window_view(CLOSE, period).std(axis=1)
    got = run(BollingerBands(period, k).update, CLOSE)
    assert_matches([None if g is None else g.upper for g in got], middle + width)
    assert_matches([None if g is None else g.middle for g in got], middle)
    assert_matches([None if g is None else g.lower for g in got], middle - width)
    assert all(isinstance(g, Bands) for g in got if g is not None)


@pytest.mark.parametrize("period", PERIODS)
def test_atr_wilder(period: int) -> None:
    expected = seeded_ewm(true_range(HIGH, LOW, CLOSE), period, alpha=1.0 / period)
    assert_matches(run(ATR(period).update, HIGH, LOW, CLOSE), expected)


def test_atr_first_bar_true_range_is_high_minus_low() -> None:
    atr = ATR(1)
    assert atr.update(10, 7, 9) == 3.0
    assert atr.update(12, 11, 11.5) == 3.0  # gap up: high - previous close
    assert atr.update(8, 7.5, 8) == 4.0  # gap down: previous close - low


def test_vwap_cumulative() -> None:
    pv = np.cumsum(CLOSE * VOLUME)
    vol = np.cumsum(VOLUME)
    expected = np.where(vol > 0, pv / np.where(vol > 0, vol, 1.0), np.nan)
    assert_matches(run(VWAP().update, CLOSE, VOLUME), expected)


@pytest.mark.parametrize("period", PERIODS)
def test_vwap_rolling(period: int) -> None:
    pv = pd.Series(CLOSE * VOLUME).rolling(period).sum().to_numpy()
    vol = pd.Series(VOLUME).rolling(period).sum().to_numpy()
    expected = np.where(vol > 0, pv / np.where(vol > 0, vol, 1.0), np.nan)
    assert_matches(run(VWAP(period=period).update, CLOSE, VOLUME), expected)


@pytest.mark.parametrize("period", PERIODS)
def test_rolling_max_min(period: int) -> None:
    rolling = pd.Series(CLOSE).rolling(period)
    assert_matches(run(RollingMax(period).update, CLOSE), rolling.max().to_numpy())
    assert_matches(run(RollingMin(period).update, CLOSE), rolling.min().to_numpy())


@pytest.mark.parametrize("period", [1, 3, 7])
def test_rolling_max_min_with_many_ties(period: int) -> None:
    values = np.random.default_rng(7).integers(0, 4, 500).astype(float)
    rolling = pd.Series(values).rolling(period)
    assert_matches(run(RollingMax(period).update, values), rolling.max().to_numpy())
    assert_matches(run(RollingMin(period).update, values), rolling.min().to_numpy())


@pytest.mark.parametrize(("period", "ddof"), [(p, d) for p in PERIODS for d in (0, 1) if d < p])
def test_stddev(period: int, ddof: int) -> None:
    expected = np.full(N, np.nan)
    expected[period - 1 :] = sliding_window_view(CLOSE, period).std(axis=1, ddof=ddof)
    assert_matches(run(StdDev(period, ddof).update, CLOSE), expected)


@pytest.mark.parametrize("period", PERIODS)
def test_donchian_channel(period: int) -> None:
    upper = pd.Series(HIGH).rolling(period).max().to_numpy()
    lower = pd.Series(LOW).rolling(period).min().to_numpy()
    got = run(DonchianChannel(period).update, HIGH, LOW)
    assert_matches([None if g is None else g.upper for g in got], upper)
    assert_matches([None if g is None else g.middle for g in got], (upper + lower) / 2)
    assert_matches([None if g is None else g.lower for g in got], lower)
    assert all(isinstance(g, Channel) for g in got if g is not None)


@pytest.mark.parametrize("period", PERIODS)
def test_roc_percent(period: int) -> None:
    expected = pd.Series(CLOSE).pct_change(period).to_numpy() * 100.0
    assert_matches(run(ROC(period).update, CLOSE), expected)


def test_roc_is_none_on_a_zero_base() -> None:
    roc = ROC(1)
    assert roc.update(0) is None
    assert roc.update(5) is None
    assert roc.update(10) == 100.0


# --- warm-up, value, reset, repr --------------------------------------------------------------

# (factory, index of the first value)
WARMUPS: list[tuple[Callable[[], Any], int]] = [
    (lambda: SMA(10), 9),
    (lambda: EMA(10), 9),
    (lambda: WMA(10), 9),
    (lambda: RSI(), 14),
    (lambda: RSI(10), 10),
    (lambda: MACD(12, 26, 9), 33),
    (lambda: MACD(3, 5, 2), 5),
    (lambda: BollingerBands(), 19),
    (lambda: ATR(), 13),
    (lambda: VWAP(period=10), 9),
    (lambda: RollingMax(10), 9),
    (lambda: RollingMin(10), 9),
    (lambda: StdDev(10), 9),
    (lambda: StdDev(10, ddof=1), 9),
    (lambda: DonchianChannel(), 19),
    (lambda: ROC(10), 10),
]


def columns_for(indicator: object) -> list[np.ndarray]:
    if isinstance(indicator, ATR):
        return [HIGH, LOW, CLOSE]
    if isinstance(indicator, DonchianChannel):
        return [HIGH, LOW]
    if isinstance(indicator, VWAP):
        return [CLOSE, VOLUME + 1.0]
    return [CLOSE]


def feed(indicator: Any, count: int, offset: int = 0) -> list[Any]:
    columns = columns_for(indicator)
    return run(indicator.update, *(c[offset : offset + count] for c in columns))


@pytest.mark.parametrize(("factory", "first"), WARMUPS)
def test_warm_up_length_is_exact(factory: Callable[[], Any], first: int) -> None:
    indicator = factory()
    got = feed(indicator, 200)
    assert first_non_none(got) == first
    assert all(g is not None for g in got[first:])


@pytest.mark.parametrize(("factory", "first"), WARMUPS)
def test_value_holds_the_latest_result(factory: Callable[[], Any], first: int) -> None:
    indicator = factory()
    assert indicator.value is None
    for args in zip(*columns_for(indicator), strict=False):
        result = indicator.update(*args)
        assert indicator.value is result
        if result is not None:
            break
    assert indicator.value is not None


@pytest.mark.parametrize(("factory", "first"), WARMUPS)
def test_reset_starts_over(factory: Callable[[], Any], first: int) -> None:
    indicator = factory()
    feed(indicator, 300, offset=500)
    indicator.reset()
    assert indicator.value is None
    assert feed(indicator, 300) == feed(factory(), 300)


@pytest.mark.parametrize(("factory", "first"), WARMUPS)
def test_decimal_input_matches_float(factory: Callable[[], Any], first: int) -> None:
    from_float = feed(factory(), 100)
    indicator = factory()
    decimals = [[Decimal(repr(float(v))) for v in c[:100]] for c in columns_for(indicator)]
    assert run(indicator.update, *decimals) == from_float


def test_int_input() -> None:
    assert SMA(2).update(1) is None
    assert RSI(1).update(3) is None
    sma = SMA(2)
    sma.update(1)
    assert sma.update(2) == 1.5


@pytest.mark.parametrize(
    ("indicator", "text"),
    [
        (SMA(5), "SMA(period=5)"),
        (EMA(5), "EMA(period=5)"),
        (WMA(5), "WMA(period=5)"),
        (RSI(), "RSI(period=14)"),
        (MACD(5, 8, 3), "MACD(fast=5, slow=8, signal=3)"),
        (BollingerBands(), "BollingerBands(period=20, k=2.0)"),
        (ATR(7), "ATR(period=7)"),
        (VWAP(), "VWAP()"),
        (VWAP(period=30), "VWAP(period=30)"),
        (RollingMax(3), "RollingMax(period=3)"),
        (RollingMin(3), "RollingMin(period=3)"),
        (StdDev(5, ddof=1), "StdDev(period=5, ddof=1)"),
        (DonchianChannel(), "DonchianChannel(period=20)"),
        (ROC(3), "ROC(period=3)"),
    ],
)
def test_repr_shows_parameters(indicator: object, text: str) -> None:
    assert repr(indicator) == text


@pytest.mark.parametrize(("factory", "first"), WARMUPS)
def test_instances_use_slots(factory: Callable[[], Any], first: int) -> None:
    indicator = factory()
    assert not hasattr(indicator, "__dict__")
    with pytest.raises(AttributeError):
        indicator.typo = 1


def test_results_are_frozen() -> None:
    for result in (MACDValue(1.0, 2.0, -1.0), Bands(3.0, 2.0, 1.0), Channel(3.0, 2.0, 1.0)):
        field = dataclasses.fields(result)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, field, 0.0)


def test_public_module_exports_everything() -> None:
    assert sorted(public.__all__) == sorted(impl.__all__)
    for name in public.__all__:
        assert getattr(public, name) is getattr(impl, name)


# --- bad parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SMA(0), "period"),
        (lambda: SMA(-3), "period"),
        (lambda: SMA(2.5), "period"),  # type: ignore[arg-type]
        (lambda: SMA(True), "period"),
        (lambda: EMA(0), "period"),
        (lambda: WMA(0), "period"),
        (lambda: RSI(0), "period"),
        (lambda: MACD(0, 26, 9), "fast"),
        (lambda: MACD(12, 26, 0), "signal"),
        (lambda: MACD(26, 12, 9), "shorter than slow"),
        (lambda: MACD(12, 12, 9), "shorter than slow"),
        (lambda: BollingerBands(0), "period"),
        (lambda: BollingerBands(20, 0.0), "k"),
        (lambda: BollingerBands(20, -1.0), "k"),
        (lambda: BollingerBands(20, math.inf), "k"),
        (lambda: BollingerBands(20, math.nan), "k"),
        (lambda: ATR(0), "period"),
        (lambda: VWAP(period=0), "period"),
        (lambda: RollingMax(0), "period"),
        (lambda: RollingMin(0), "period"),
        (lambda: StdDev(0), "period"),
        (lambda: StdDev(5, ddof=-1), "ddof"),
        (lambda: StdDev(1, ddof=1), "ddof"),
        (lambda: DonchianChannel(0), "period"),
        (lambda: ROC(0), "period"),
    ],
)
def test_bad_parameters_raise(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("volume", [-1.0, math.nan, Decimal("-0.5")])
def test_vwap_rejects_bad_volume(volume: float | Decimal) -> None:
    with pytest.raises(ValueError, match="volume"):
        VWAP().update(100.0, volume)


# --- edge cases -------------------------------------------------------------------------------


def test_flat_series() -> None:
    flat = [65000.1] * 100
    assert run(RSI(14).update, flat)[-1] == 50.0
    assert run(StdDev(20).update, flat)[-1] == 0.0
    assert run(StdDev(20, ddof=1).update, flat)[-1] == 0.0
    bands = run(BollingerBands(20).update, flat)[-1]
    assert bands == Bands(65000.1, 65000.1, 65000.1)
    assert run(ATR(14).update, flat, flat, flat)[-1] == 0.0
    assert run(SMA(7).update, flat)[-1] == pytest.approx(65000.1, rel=1e-15)
    assert run(WMA(7).update, flat)[-1] == pytest.approx(65000.1, rel=1e-15)
    assert run(EMA(7).update, flat)[-1] == pytest.approx(65000.1, rel=1e-15)
    macd = run(MACD().update, flat)[-1]
    assert macd is not None
    assert (macd.macd, macd.signal, macd.histogram) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    assert run(ROC(5).update, flat)[-1] == 0.0
    assert run(DonchianChannel(5).update, flat, flat)[-1] == Channel(65000.1, 65000.1, 65000.1)


def test_rsi_extremes() -> None:
    assert run(RSI(14).update, range(100))[-1] == 100.0
    assert run(RSI(14).update, range(100, 0, -1))[-1] == 0.0


def test_stddev_numerical_stability_at_large_prices() -> None:
    """Around 65 000 with a spread of ~1e-4 a naive sum of squares loses every digit."""
    values = 65000.0 + np.random.default_rng(3).normal(0.0, 1e-4, 20_000)
    period = 50
    windows = sliding_window_view(values, period)
    # Reference: shift each window by its own first value (exact, Sterbenz), then two-pass.
    shifted = windows - windows[:, :1]
    for ddof in (0, 1):
        got = run(StdDev(period, ddof).update, values)[period - 1 :]
        expected = shifted.std(axis=1, ddof=ddof)
        assert got == pytest.approx(expected.tolist(), rel=1e-9)
    # Bollinger bands share the same window arithmetic.
    got_bands = run(BollingerBands(period, 2.0).update, values)[period - 1 :]
    widths = [b.upper - b.middle for b in got_bands if b is not None]
    assert widths == pytest.approx((2.0 * shifted.std(axis=1)).tolist(), rel=1e-6)
    # With two values the population std dev is exactly half their distance.
    got_pairs = run(StdDev(2).update, values)[1:]
    assert got_pairs == (np.abs(np.diff(values)) / 2).tolist()


def test_stddev_of_a_step_returns_to_zero() -> None:
    std = StdDev(10)
    values = [65000.0] * 10 + [65000.5] * 5 + [65000.0] * 10
    assert run(std.update, values)[-1] == 0.0


def test_vwap_is_none_until_volume_trades() -> None:
    vwap = VWAP()
    assert vwap.update(100, 0) is None
    assert vwap.update(101, 0) is None
    assert vwap.update(102, 2) == 102.0
    assert vwap.update(99, 1) == pytest.approx((204 + 99) / 3)
    assert vwap.update(50, 0) == pytest.approx((204 + 99) / 3)


def test_rolling_vwap_window_without_volume_is_none() -> None:
    vwap = VWAP(period=2)
    assert vwap.update(100, 1) is None
    assert vwap.update(101, 0) == 100.0
    assert vwap.update(102, 0) is None
    assert vwap.value is None
    assert vwap.update(103, 3) == 103.0


def test_rolling_vwap_survives_a_huge_print_leaving_the_window() -> None:
    vwap = VWAP(period=2)
    vwap.update(100, 1e20)
    vwap.update(200, 1)
    assert vwap.update(300, 1) == pytest.approx(250.0)
