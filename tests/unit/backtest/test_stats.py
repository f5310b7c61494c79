"""Statistics, checked against independent numpy/pandas computations and hand-worked cases."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from botd.backtest.records import EquityPoint, FillRecord
from botd.backtest.stats import DAY_NS, YEAR_NS, compute_stats
from botd.model import Side

H = 3600 * 10**9
T0 = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z


def point(ts: int, equity: str | Decimal, exposure: str | Decimal = "0") -> EquityPoint:
    return EquityPoint(ts, Decimal(equity), Decimal(exposure))


def fill(ts: int, side: Side, qty: str, price: str, fee: str = "0") -> FillRecord:
    return FillRecord(
        ts,
        "s1",
        "paper",
        "BTCUSDT",
        side,
        Decimal(qty),
        Decimal(price),
        Decimal(fee),
        f"o{ts}",
        "taker",
    )


def random_curve(seed: int) -> tuple[list[EquityPoint], int, int]:
    """Irregular timestamps (gaps of 10 min to 30 h), a random walk, blocks of exposure."""
    rng = random.Random(seed)
    start = T0 + 5 * H + 17 * 10**9  # deliberately not on a period boundary
    ts = start
    value = 10_000.0
    exposed = False
    points = []
    while ts < start + 45 * DAY_NS:
        ts += rng.randint(600, 30 * 3600) * 10**9
        value *= 1 + rng.gauss(0.0005, 0.02)
        if rng.random() < 0.2:
            exposed = not exposed
        exposure = Decimal(str(round(value * 0.5, 2))) if exposed else Decimal(0)
        points.append(EquityPoint(ts, Decimal(str(round(value, 2))), exposure))
    return points, start, ts + 3 * H


def pandas_returns(
    points: list[EquityPoint], initial: float, start: int, end: int, freq: str
) -> np.ndarray:
    s = pd.Series(
        [float(p.equity) for p in points], index=pd.to_datetime([p.ts_ns for p in points], utc=True)
    )
    closes = s.resample(freq, origin="epoch").last()
    first = pd.Timestamp(start, unit="ns", tz="UTC").floor(freq)
    last = pd.Timestamp(end, unit="ns", tz="UTC").floor(freq)
    closes = closes.reindex(pd.date_range(first, last, freq=freq)).ffill().fillna(initial)
    values = np.concatenate([[initial], closes.to_numpy(dtype=float)])
    returns: np.ndarray = np.diff(values) / values[:-1]
    return returns


@pytest.mark.parametrize(
    ("seed", "freq", "period_ns"),
    [(1, "1D", DAY_NS), (2, "1D", DAY_NS), (3, "1h", H), (4, "4h", 4 * H)],
)
def test_ratios_match_an_independent_pandas_computation(
    seed: int, freq: str, period_ns: int
) -> None:
    points, start, end = random_curve(seed)
    initial = 10_000.0
    stats = compute_stats(
        [], points, Decimal(initial), start_ns=start, end_ns=end, period_ns=period_ns
    )

    r = pandas_returns(points, initial, start, end, freq)
    periods_per_year = YEAR_NS / period_ns
    assert stats.periods == len(r)
    assert stats.periods_per_year == pytest.approx(periods_per_year)
    sharpe = r.mean() / r.std(ddof=1) * math.sqrt(periods_per_year)
    sortino = r.mean() / math.sqrt(np.mean(np.minimum(r, 0.0) ** 2)) * math.sqrt(periods_per_year)
    assert stats.sharpe == pytest.approx(sharpe, rel=1e-9)
    assert stats.sortino == pytest.approx(sortino, rel=1e-9)
    assert stats.volatility_pct == pytest.approx(
        r.std(ddof=1) * math.sqrt(periods_per_year) * 100, rel=1e-9
    )

    values = np.array([initial] + [float(p.equity) for p in points])
    peaks = np.maximum.accumulate(values)
    max_dd = float(np.max(1 - values / peaks))
    assert stats.max_drawdown_pct == pytest.approx(max_dd * 100, rel=1e-9)

    final = values[-1]
    years = (end - start) / YEAR_NS
    cagr = (final / initial) ** (1 / years) - 1
    assert stats.final_equity == points[-1].equity
    assert stats.total_return_pct == pytest.approx((final / initial - 1) * 100, rel=1e-9)
    assert stats.cagr_pct == pytest.approx(cagr * 100, rel=1e-9)
    assert stats.calmar == pytest.approx(cagr / max_dd, rel=1e-9)

    times = np.array([start] + [p.ts_ns for p in points], dtype=np.int64)
    held = np.array([False] + [p.exposure != 0 for p in points])
    spans = np.diff(np.append(times, end))
    assert stats.exposure_pct == pytest.approx(spans[held].sum() / (end - start) * 100, rel=1e-12)


def test_known_drawdown_and_its_duration() -> None:
    d = DAY_NS
    curve = [
        point(1 * d, "120"),
        point(2 * d, "90"),
        point(3 * d, "110"),
        point(4 * d, "130"),
        point(5 * d, "125"),
    ]
    stats = compute_stats([], curve, Decimal(100), start_ns=0, end_ns=6 * d)
    assert stats.max_drawdown_pct == pytest.approx(25.0)  # 120 -> 90
    assert stats.max_drawdown_duration_ns == 3 * d  # high on day 1, back above it on day 4
    assert stats.longest_drawdown_ns == 3 * d  # the later dip (day 4 to the end) lasts 2 days


def test_deepest_drawdown_is_not_always_the_longest() -> None:
    d = DAY_NS
    curve = [point(1 * d, "80"), point(2 * d, "100"), point(3 * d, "99")]
    stats = compute_stats([], curve, Decimal(100), start_ns=0, end_ns=10 * d)
    assert stats.max_drawdown_pct == pytest.approx(20.0)
    assert stats.max_drawdown_duration_ns == 2 * d
    assert stats.longest_drawdown_ns == 8 * d  # from day 2's high to the end, never recovered


def test_unrecovered_drawdown_lasts_until_the_end() -> None:
    stats = compute_stats([], [point(H, "90")], Decimal(100), start_ns=0, end_ns=5 * H)
    assert stats.max_drawdown_pct == pytest.approx(10.0)
    assert stats.max_drawdown_duration_ns == 5 * H


def round_trip_fills(t: int, entry: str, exit_: str, fee: str = "0") -> list[FillRecord]:
    return [fill(t, Side.BUY, "1", entry, fee), fill(t + 1, Side.SELL, "1", exit_, fee)]


def test_known_profit_factor_and_trade_averages() -> None:
    fills = [
        *round_trip_fills(10, "100", "130"),  # +30
        *round_trip_fills(20, "100", "90"),  # -10
        *round_trip_fills(30, "100", "120"),  # +20
        *round_trip_fills(40, "100", "95"),  # -5
    ]
    stats = compute_stats(fills, [point(50, "10035")], Decimal(10_000), start_ns=0, end_ns=60)
    assert stats.trades == 4
    assert stats.fills == 8
    assert (stats.wins, stats.losses) == (2, 2)
    assert stats.win_rate_pct == pytest.approx(50.0)
    assert stats.gross_profit == Decimal(50)
    assert stats.gross_loss == Decimal(15)
    assert stats.profit_factor == pytest.approx(50 / 15)
    assert stats.avg_win == Decimal(25)
    assert stats.avg_loss == Decimal("-7.5")
    assert stats.avg_trade == Decimal("8.75")
    assert (stats.best_trade, stats.worst_trade) == (Decimal(30), Decimal(-10))
    assert stats.realised_pnl == Decimal(35)
    assert stats.avg_trade_duration_ns == 1
    assert stats.volume == Decimal(400) + Decimal(130 + 90 + 120 + 95)


def test_a_win_is_counted_after_fees() -> None:
    fills = round_trip_fills(1, "100", "100.1", fee="0.1")  # +0.1 gross, -0.2 fees
    stats = compute_stats(fills, [], Decimal(1000), start_ns=0, end_ns=10)
    assert (stats.wins, stats.losses) == (0, 1)
    assert stats.fees == Decimal("0.2")
    assert stats.profit_factor == 0.0  # nothing won, 0.1 lost
    assert stats.gross_profit == 0


def test_no_trades_and_flat_equity_give_no_nan() -> None:
    stats = compute_stats([], [], Decimal(1000), start_ns=T0, end_ns=T0 + 30 * DAY_NS)
    assert stats.final_equity == Decimal(1000)
    assert stats.total_return_pct == 0.0
    assert stats.cagr_pct == 0.0
    assert stats.volatility_pct == 0.0
    assert stats.sharpe is None
    assert stats.sortino is None
    assert stats.max_drawdown_pct == 0.0
    assert stats.max_drawdown_duration_ns == 0
    assert stats.calmar is None
    assert stats.exposure_pct == 0.0
    assert stats.trades == 0
    assert stats.win_rate_pct is None
    assert stats.profit_factor is None
    assert stats.avg_win is None
    assert stats.avg_loss is None
    assert stats.avg_trade is None
    assert stats.fees == 0


def test_zero_variance_returns_have_no_sharpe() -> None:
    # Exactly +1 % every day: the standard deviation is zero, so the ratio is undefined.
    curve = [
        point((k + 1) * DAY_NS - 1, Decimal(100) * Decimal("1.01") ** (k + 1)) for k in range(10)
    ]
    stats = compute_stats([], curve, Decimal(100), start_ns=0, end_ns=10 * DAY_NS - 1)
    assert stats.periods == 10
    assert stats.sharpe is None
    assert stats.sortino is None  # no losing period either
    assert stats.max_drawdown_pct == 0.0
    assert stats.calmar is None


def test_only_winners_have_no_profit_factor() -> None:
    stats = compute_stats(
        round_trip_fills(1, "100", "110"), [], Decimal(100), start_ns=0, end_ns=10
    )
    assert stats.profit_factor is None
    assert stats.win_rate_pct == 100.0


def test_a_single_return_period_has_no_sharpe() -> None:
    stats = compute_stats(
        [], [point(H, "110"), point(2 * H, "105")], Decimal(100), start_ns=0, end_ns=3 * H
    )
    assert stats.periods == 1
    assert stats.sharpe is None
    assert stats.volatility_pct is None


def test_cagr_of_a_tiny_run_that_would_overflow_is_none() -> None:
    stats = compute_stats(
        [], [point(30 * 10**9, "150")], Decimal(100), start_ns=0, end_ns=60 * 10**9
    )
    assert stats.total_return_pct == pytest.approx(50.0)
    assert stats.cagr_pct is None
    assert stats.calmar is None


def test_losing_everything_is_minus_one_hundred_percent_cagr() -> None:
    stats = compute_stats([], [point(DAY_NS, "0")], Decimal(100), start_ns=0, end_ns=2 * DAY_NS)
    assert stats.cagr_pct == -100.0
    assert stats.max_drawdown_pct == 100.0
    assert stats.calmar == pytest.approx(-1.0)


def test_exposure_is_the_share_of_time_in_a_position() -> None:
    curve = [point(H, "100", "50"), point(3 * H, "100", "0")]
    stats = compute_stats([], curve, Decimal(100), start_ns=0, end_ns=4 * H)
    assert stats.exposure_pct == pytest.approx(50.0)


def test_open_position_is_marked_to_market_but_not_a_trade() -> None:
    fills = [fill(H, Side.BUY, "1", "100", "0.1")]
    curve = [point(H, "999.9", "100"), point(2 * H, "1004.9", "105")]
    stats = compute_stats(fills, curve, Decimal(1000), start_ns=0, end_ns=2 * H)
    assert stats.trades == 0
    assert stats.fills == 1
    assert stats.open_positions == 1
    assert stats.final_equity == Decimal("1004.9")
    assert stats.total_return_pct == pytest.approx(0.49)
    assert stats.fees == Decimal("0.1")
    assert stats.realised_pnl == 0
    assert stats.exposure_pct == pytest.approx(50.0)


def test_points_outside_the_run_are_ignored() -> None:
    curve = [point(-H, "50"), point(H, "110"), point(10 * H, "1")]
    stats = compute_stats([], curve, Decimal(100), start_ns=0, end_ns=2 * H)
    assert stats.final_equity == Decimal(110)
    assert stats.max_drawdown_pct == 0.0


@pytest.mark.parametrize(
    ("cash", "start", "end", "period"),
    [(Decimal(0), 0, 1, DAY_NS), (Decimal(1), 5, 1, DAY_NS), (Decimal(1), 0, 1, 0)],
)
def test_bad_arguments_are_rejected(cash: Decimal, start: int, end: int, period: int) -> None:
    with pytest.raises(ValueError, match=r"must be positive|before"):
        compute_stats([], [], cash, start_ns=start, end_ns=end, period_ns=period)


def test_a_return_period_far_too_short_is_rejected() -> None:
    with pytest.raises(ValueError, match="too short"):
        compute_stats([], [], Decimal(1), start_ns=0, end_ns=YEAR_NS, period_ns=10**6)
