"""Performance statistics of a backtest run.

Money (equity, P&L, fees) stays Decimal; ratios (returns, Sharpe, drawdown fractions) become
float only at the end. A statistic that is undefined for the run (no trades, a flat equity curve,
too few return periods) is ``None`` — never NaN or infinity. Definitions and formulas:
``docs/backtesting.md``, section "Statistics".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from botd.backtest.records import EquityPoint, FillRecord
from botd.backtest.trades import RoundTrip, match_fills

__all__ = ["DAY_NS", "YEAR_NS", "Stats", "compute_stats", "period_returns"]

DAY_NS = 86_400 * 10**9
YEAR_NS = 365 * DAY_NS  # crypto trades every day of the year
MAX_PERIODS = 5_000_000  # a guard against a return period far too short for the run

_ZERO = Decimal(0)
_PRECISION = 34


@dataclass(frozen=True, slots=True)
class Stats:
    start_ns: int
    end_ns: int
    initial_cash: Decimal
    final_equity: Decimal
    total_return_pct: float
    cagr_pct: float | None
    volatility_pct: float | None  # annualised standard deviation of period returns
    sharpe: float | None
    sortino: float | None
    max_drawdown_pct: float  # 0 when equity never fell below a previous high
    max_drawdown_duration_ns: int  # the deepest drawdown: its peak to recovery (or run end)
    longest_drawdown_ns: int  # the longest time spent below a previous high
    calmar: float | None
    exposure_pct: float  # share of the run's time with a non-zero position
    trades: int  # closed round trips
    wins: int
    losses: int
    win_rate_pct: float | None
    gross_profit: Decimal  # sum of net P&L of winning round trips
    gross_loss: Decimal  # sum of net P&L of losing round trips, as a positive amount
    profit_factor: float | None
    avg_win: Decimal | None
    avg_loss: Decimal | None  # negative
    avg_trade: Decimal | None
    best_trade: Decimal | None
    worst_trade: Decimal | None
    avg_trade_duration_ns: int | None
    realised_pnl: Decimal  # net of fees, closed round trips only
    fees: Decimal  # every fill, including those of positions still open
    fills: int
    volume: Decimal  # traded notional, quote currency
    open_positions: int  # not flat at the end (marked to market in equity, not a trade)
    return_period_ns: int
    periods_per_year: float
    periods: int  # number of period returns behind volatility, Sharpe and Sortino


def compute_stats(
    fills: Sequence[FillRecord],
    equity: Sequence[EquityPoint],
    initial_cash: Decimal,
    *,
    start_ns: int,
    end_ns: int,
    period_ns: int = DAY_NS,
    year_ns: int = YEAR_NS,
) -> Stats:
    """Statistics of one run over [start_ns, end_ns].

    ``equity`` is the marked-to-market account value over time (any order; points outside the
    run are ignored). Returns are sampled every ``period_ns`` (default one day) and annualised
    with ``year_ns / period_ns`` periods per year (default 365 days).
    """
    if initial_cash <= 0:
        raise ValueError("initial_cash must be positive")
    if end_ns < start_ns:
        raise ValueError("end_ns is before start_ns")
    if period_ns <= 0 or year_ns <= 0:
        raise ValueError("period_ns and year_ns must be positive")

    curve = _curve(equity, initial_cash, start_ns, end_ns)
    final = curve[-1].equity
    trips, still_open = match_fills(fills)

    returns = period_returns(curve, initial_cash, start_ns, end_ns, period_ns)
    periods_per_year = year_ns / period_ns
    vol, sharpe, sortino = _risk_ratios(returns, periods_per_year)
    dd, dd_duration, longest = _drawdown(curve, end_ns)
    cagr = _cagr(_ratio(final, initial_cash), end_ns - start_ns, year_ns)
    calmar = None if cagr is None or dd == 0 else cagr / float(dd)
    t = _trade_stats(trips)

    return Stats(
        start_ns=start_ns,
        end_ns=end_ns,
        initial_cash=initial_cash,
        final_equity=final,
        total_return_pct=float(_ratio(final - initial_cash, initial_cash) * 100),
        cagr_pct=None if cagr is None else cagr * 100,
        volatility_pct=None if vol is None else vol * 100,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown_pct=float(dd * 100),
        max_drawdown_duration_ns=dd_duration,
        longest_drawdown_ns=longest,
        calmar=calmar,
        exposure_pct=_exposure(curve, start_ns, end_ns) * 100,
        trades=len(trips),
        wins=t.wins,
        losses=t.losses,
        win_rate_pct=t.win_rate_pct,
        gross_profit=t.gross_profit,
        gross_loss=t.gross_loss,
        profit_factor=t.profit_factor,
        avg_win=t.avg_win,
        avg_loss=t.avg_loss,
        avg_trade=t.avg_trade,
        best_trade=t.best,
        worst_trade=t.worst,
        avg_trade_duration_ns=t.avg_duration_ns,
        realised_pnl=t.net,
        fees=sum((f.fee for f in fills), _ZERO),
        fills=len(fills),
        volume=sum((f.quantity * f.price for f in fills), _ZERO),
        open_positions=len(still_open),
        return_period_ns=period_ns,
        periods_per_year=periods_per_year,
        periods=len(returns),
    )


def _curve(
    equity: Sequence[EquityPoint], initial_cash: Decimal, start_ns: int, end_ns: int
) -> list[EquityPoint]:
    """The run's equity points in time order, starting from the initial cash at start_ns."""
    inside = sorted((p for p in equity if start_ns <= p.ts_ns <= end_ns), key=lambda p: p.ts_ns)
    return [EquityPoint(start_ns, initial_cash, _ZERO), *inside]


def period_returns(
    curve: Sequence[EquityPoint],
    initial_cash: Decimal,
    start_ns: int,
    end_ns: int,
    period_ns: int,
) -> list[float]:
    """Simple returns of the equity sampled at the close of each period.

    Periods are aligned to the Unix epoch (daily periods run midnight to midnight UTC). A
    period's value is the last equity point inside it, carried forward through periods with no
    point; the first return is measured from the initial cash. The first and last periods may
    be partial when the run does not start or end on a boundary. ``curve`` must be time-ordered.
    """
    first_bin = start_ns // period_ns
    last_bin = end_ns // period_ns
    count = last_bin - first_bin + 1
    if count > MAX_PERIODS:
        raise ValueError(f"return period too short: {count} periods in this run")
    closes: list[Decimal] = []
    value = initial_cash
    i = 0
    for b in range(first_bin, last_bin + 1):
        bin_end = (b + 1) * period_ns
        while i < len(curve) and curve[i].ts_ns < bin_end:
            value = curve[i].equity
            i += 1
        closes.append(value)
    returns = []
    previous = initial_cash
    for close in closes:
        # A non-positive base has no meaningful simple return; measure against its magnitude
        # (and call a move from exactly zero no return) so the result stays finite.
        returns.append(0.0 if previous == 0 else float(_ratio(close - previous, abs(previous))))
        previous = close
    return returns


def _risk_ratios(
    returns: Sequence[float], periods_per_year: float
) -> tuple[float | None, float | None, float | None]:
    """Annualised volatility, Sharpe and Sortino (risk-free rate 0)."""
    n = len(returns)
    if n < 2:
        return None, None, None
    mean = math.fsum(returns) / n
    scale = math.sqrt(periods_per_year)
    if max(returns) == min(returns):
        std = 0.0
    else:
        std = math.sqrt(math.fsum((r - mean) ** 2 for r in returns) / (n - 1))
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / n)
    sharpe = mean / std * scale if std > 0 else None
    sortino = mean / downside * scale if downside > 0 else None
    return std * scale, _finite(sharpe), _finite(sortino)


def _drawdown(curve: Sequence[EquityPoint], end_ns: int) -> tuple[Decimal, int, int]:
    """Deepest drawdown (fraction of the previous high), its duration, the longest one."""
    peak = curve[0].equity
    peak_ts = curve[0].ts_ns
    underwater = False
    episode = 0
    deepest = _ZERO
    deepest_episode = -1
    deepest_duration = 0
    longest = 0
    for point in curve:
        if point.equity >= peak:
            if underwater:
                duration = point.ts_ns - peak_ts
                longest = max(longest, duration)
                if episode == deepest_episode:
                    deepest_duration = duration
                underwater = False
                episode += 1
            peak, peak_ts = point.equity, point.ts_ns
            continue
        underwater = True
        depth = _ratio(peak - point.equity, peak)
        if depth > deepest:
            deepest, deepest_episode = depth, episode
    if underwater:
        duration = end_ns - peak_ts
        longest = max(longest, duration)
        if episode == deepest_episode:
            deepest_duration = duration
    return deepest, deepest_duration, longest


def _cagr(growth: Decimal, elapsed_ns: int, year_ns: int) -> float | None:
    if elapsed_ns <= 0:
        return None
    if growth <= 0:
        return -1.0
    try:
        return _finite(float(growth) ** (year_ns / elapsed_ns) - 1.0)
    except OverflowError:  # a short, profitable run: the annualised figure is meaningless
        return None


def _exposure(curve: Sequence[EquityPoint], start_ns: int, end_ns: int) -> float:
    span = end_ns - start_ns
    if span <= 0:
        return 0.0
    held = 0
    for point, following in zip(curve, [*curve[1:], None], strict=True):
        until = end_ns if following is None else following.ts_ns
        if point.exposure != 0:
            held += until - point.ts_ns
    return held / span


@dataclass(frozen=True, slots=True)
class _TradeStats:
    wins: int
    losses: int
    win_rate_pct: float | None
    gross_profit: Decimal
    gross_loss: Decimal
    profit_factor: float | None
    avg_win: Decimal | None
    avg_loss: Decimal | None
    avg_trade: Decimal | None
    best: Decimal | None
    worst: Decimal | None
    avg_duration_ns: int | None
    net: Decimal


def _trade_stats(trips: Sequence[RoundTrip]) -> _TradeStats:
    pnls = [t.pnl for t in trips]
    winners = [p for p in pnls if p > 0]
    losers = [p for p in pnls if p < 0]
    gross_profit = sum(winners, _ZERO)
    gross_loss = -sum(losers, _ZERO)
    net = sum(pnls, _ZERO)
    n = len(trips)
    return _TradeStats(
        wins=len(winners),
        losses=len(losers),
        win_rate_pct=len(winners) / n * 100 if n else None,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        profit_factor=float(_ratio(gross_profit, gross_loss)) if gross_loss > 0 else None,
        avg_win=_ratio(gross_profit, Decimal(len(winners))) if winners else None,
        avg_loss=_ratio(-gross_loss, Decimal(len(losers))) if losers else None,
        avg_trade=_ratio(net, Decimal(n)) if n else None,
        best=max(pnls) if pnls else None,
        worst=min(pnls) if pnls else None,
        avg_duration_ns=sum(t.duration_ns for t in trips) // n if n else None,
        net=net,
    )


def _ratio(a: Decimal, b: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return a / b


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None
