"""Backtest output files: summary.json, trades.csv, equity.png and a self-contained report.html.

summary.json and trades.csv are byte-for-byte deterministic: keys sorted, money written with
exactly eight decimals, ratios with exactly six, times as ISO 8601 UTC. The chart is drawn with
matplotlib's object-oriented API (no pyplot, no backend switch), so writing a report changes no
global state.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

from botd.backtest.records import EquityPoint, FillRecord
from botd.backtest.stats import Stats
from botd.backtest.trades import OpenPosition, RoundTrip, match_fills

__all__ = [
    "SUMMARY_VERSION",
    "TRADES_CSV_COLUMNS",
    "equity_png",
    "iso_time",
    "report_html",
    "summary_dict",
    "summary_json",
    "trades_csv",
    "write_report",
]

SUMMARY_VERSION = 1
MONEY_PLACES = 8
RATIO_PLACES = 6
HTML_TRADE_ROWS = 2000  # the HTML table stops here; trades.csv has them all
_PLOT_POINTS = 4000  # the chart keeps each bucket's extremes beyond this many points

TRADES_CSV_COLUMNS = (
    "strategy",
    "venue",
    "symbol",
    "side",
    "entry_time",
    "exit_time",
    "quantity",
    "avg_entry",
    "avg_exit",
    "gross_pnl",
    "fees",
    "pnl",
    "pnl_pct",
    "duration_s",
    "fills",
)

MetaValue = str | int


class _Raw(str):
    """A JSON token already formatted (a number with fixed decimals)."""

    __slots__ = ()


# ---------------------------------------------------------------- formatting


def iso_time(ts_ns: int) -> str:
    """``2024-01-02T03:04:05Z``, with a fraction (up to ns, no trailing zeros) only if any."""
    seconds, frac = divmod(ts_ns, 10**9)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def _fixed(value: Decimal, places: int) -> str:
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.rounding = ROUND_HALF_EVEN
        q = value.quantize(Decimal(1).scaleb(-places))
    if q == 0:
        q = abs(q)
    return format(q, "f")


def money(value: Decimal) -> str:
    return _fixed(value, MONEY_PLACES)


def ratio(value: float, places: int = RATIO_PLACES) -> str:
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _plain(value: Decimal) -> str:
    """Exact decimal text without exponent."""
    text = format(value.normalize(), "f") if value != 0 else "0"
    return text


def _seconds(ns: int) -> Decimal:
    return Decimal(ns).scaleb(-9)


def _human_duration(ns: int) -> str:
    total = ns // 10**9
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if days and not (hours or minutes or seconds):
        return f"{days}d"
    return f"{days}d {clock}" if days else clock


def _human_money(value: Decimal) -> str:
    text = money(value).rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


# ---------------------------------------------------------------- summary.json


def summary_dict(stats: Stats, meta: Mapping[str, MetaValue]) -> dict[str, object]:
    """The summary as JSON-ready values: money and ratios already fixed-point tokens."""

    def m(value: Decimal | None) -> _Raw | None:
        return None if value is None else _Raw(money(value))

    def r(value: float | None) -> _Raw | None:
        return None if value is None else _Raw(ratio(value))

    def s(ns: int | None) -> _Raw | None:
        return None if ns is None else _Raw(_fixed(_seconds(ns), 3))

    return {
        "summary_version": SUMMARY_VERSION,
        "start": iso_time(stats.start_ns),
        "end": iso_time(stats.end_ns),
        "duration_s": s(stats.end_ns - stats.start_ns),
        "initial_cash": m(stats.initial_cash),
        "final_equity": m(stats.final_equity),
        "total_return_pct": r(stats.total_return_pct),
        "cagr_pct": r(stats.cagr_pct),
        "volatility_pct": r(stats.volatility_pct),
        "sharpe": r(stats.sharpe),
        "sortino": r(stats.sortino),
        "max_drawdown_pct": r(stats.max_drawdown_pct),
        "max_drawdown_duration_s": s(stats.max_drawdown_duration_ns),
        "longest_drawdown_s": s(stats.longest_drawdown_ns),
        "calmar": r(stats.calmar),
        "exposure_pct": r(stats.exposure_pct),
        "trades": stats.trades,
        "wins": stats.wins,
        "losses": stats.losses,
        "win_rate_pct": r(stats.win_rate_pct),
        "gross_profit": m(stats.gross_profit),
        "gross_loss": m(stats.gross_loss),
        "profit_factor": r(stats.profit_factor),
        "avg_win": m(stats.avg_win),
        "avg_loss": m(stats.avg_loss),
        "avg_trade": m(stats.avg_trade),
        "best_trade": m(stats.best_trade),
        "worst_trade": m(stats.worst_trade),
        "avg_trade_duration_s": s(stats.avg_trade_duration_ns),
        "realised_pnl": m(stats.realised_pnl),
        "fees": m(stats.fees),
        "fills": stats.fills,
        "volume": m(stats.volume),
        "open_positions": stats.open_positions,
        "return_period_s": s(stats.return_period_ns),
        "periods_per_year": r(stats.periods_per_year),
        "periods": stats.periods,
        "meta": dict(meta),
    }


def summary_json(stats: Stats, meta: Mapping[str, MetaValue]) -> str:
    """Deterministic JSON text (sorted keys, two-space indent, trailing newline)."""
    return _dump(summary_dict(stats, meta), 0) + "\n"


def _dump(value: object, depth: int) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return money(value) if value.is_finite() else "null"
    if isinstance(value, float):
        return ratio(value) if value == value and abs(value) != float("inf") else "null"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        pad = "  " * (depth + 1)
        items = sorted((str(k), v) for k, v in value.items())
        body = ",\n".join(f"{pad}{json.dumps(k)}: {_dump(v, depth + 1)}" for k, v in items)
        return "{\n" + body + "\n" + "  " * depth + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        pad = "  " * (depth + 1)
        body = ",\n".join(pad + _dump(v, depth + 1) for v in value)
        return "[\n" + body + "\n" + "  " * depth + "]"
    return json.dumps(str(value), ensure_ascii=True)


# ---------------------------------------------------------------- trades.csv


def _trade_row(t: RoundTrip) -> list[str]:
    return [
        t.strategy_id,
        t.venue,
        t.symbol,
        t.side,
        iso_time(t.entry_ts_ns),
        iso_time(t.exit_ts_ns),
        _plain(t.quantity),
        money(t.avg_entry),
        money(t.avg_exit),
        money(t.gross_pnl),
        money(t.fees),
        money(t.pnl),
        _fixed(t.pnl_pct, 4),
        _plain(_seconds(t.duration_ns)),
        str(t.fills),
    ]


def trades_csv(trips: Sequence[RoundTrip]) -> str:
    """One row per closed round trip, in exit-time order; ``\\n`` line endings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRADES_CSV_COLUMNS)
    for trip in trips:
        writer.writerow(_trade_row(trip))
    return buffer.getvalue()


# ---------------------------------------------------------------- equity.png


def _thin(points: Sequence[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """At most about ``limit`` points, keeping each bucket's first, lowest, highest, last."""
    if len(points) <= limit:
        return list(points)
    size = max(1, len(points) * 4 // limit)
    kept: list[tuple[int, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        low = min(range(len(bucket)), key=lambda k: bucket[k][1])
        high = max(range(len(bucket)), key=lambda k: bucket[k][1])
        for k in sorted({0, low, high, len(bucket) - 1}):
            kept.append(bucket[k])
    return kept


def equity_png(
    path: Path,
    equity: Sequence[EquityPoint],
    initial_cash: Decimal,
    start_ns: int,
    end_ns: int,
    title: str = "Equity",
) -> None:
    """Equity (top) and drawdown from the running high (bottom), written as a PNG."""
    # Imported here so that importing this module stays cheap.
    import numpy as np
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    series = [(start_ns, float(initial_cash))]
    series += sorted((p.ts_ns, float(p.equity)) for p in equity if start_ns <= p.ts_ns <= end_ns)
    if series[-1][0] < end_ns:
        series.append((end_ns, series[-1][1]))
    drawdown = []
    peak = series[0][1]
    for ts, value in series:
        peak = max(peak, value)
        drawdown.append((ts, (value / peak - 1.0) * 100 if peak > 0 else 0.0))
    series = _thin(series, _PLOT_POINTS)
    drawdown = _thin(drawdown, _PLOT_POINTS)

    fig = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    x = np.array([ts for ts, _ in series], dtype="datetime64[ns]")
    top.plot(x, [v for _, v in series], color="#1f5fa8", linewidth=1.2, drawstyle="steps-post")
    top.axhline(float(initial_cash), color="#888888", linewidth=0.8, linestyle="--")
    top.set_title(title, parse_math=False)  # a strategy id is not mathtext
    top.set_ylabel("equity")
    top.grid(visible=True, alpha=0.3)
    dx = np.array([ts for ts, _ in drawdown], dtype="datetime64[ns]")
    dy = [v for _, v in drawdown]
    bottom.fill_between(dx, dy, 0, color="#c0392b", alpha=0.35, linewidth=0, step="post")
    bottom.plot(dx, dy, color="#c0392b", linewidth=0.8, drawstyle="steps-post")
    bottom.set_ylabel("drawdown %")
    bottom.grid(visible=True, alpha=0.3)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    top.ticklabel_format(axis="y", useOffset=False, style="plain")
    fig.savefig(path, format="png", metadata={"Software": None})


# ---------------------------------------------------------------- report.html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#222;max-width:1200px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}
td.w{white-space:normal;max-width:40em;overflow-wrap:anywhere}
tr:nth-child(even) td{background:#fafafa}
.pos{color:#1e7b34}.neg{color:#b03a2e}.note{color:#666;font-size:.9em}
img{max-width:100%;height:auto;border:1px solid #eee}
.grid{display:flex;flex-wrap:wrap;gap:2em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _signed(value: Decimal, text: str) -> str:
    css = "pos" if value > 0 else "neg" if value < 0 else ""
    return f'<td class="{css}">{_e(text)}</td>' if css else f"<td>{_e(text)}</td>"


def _stat_rows(stats: Stats) -> list[tuple[str, str]]:
    def r(value: float | None, suffix: str = "", places: int = 2) -> str:
        return "n/a" if value is None else ratio(value, places) + suffix

    def m(value: Decimal | None) -> str:
        return "n/a" if value is None else _human_money(value)

    def d(ns: int | None) -> str:
        return "n/a" if ns is None else _human_duration(ns)

    return [
        ("Period", f"{iso_time(stats.start_ns)} → {iso_time(stats.end_ns)}"),
        ("Initial cash", m(stats.initial_cash)),
        ("Final equity", m(stats.final_equity)),
        ("Total return", r(stats.total_return_pct, " %")),
        ("CAGR", r(stats.cagr_pct, " %")),
        ("Volatility (annualised)", r(stats.volatility_pct, " %")),
        ("Sharpe", r(stats.sharpe, places=3)),
        ("Sortino", r(stats.sortino, places=3)),
        ("Max drawdown", r(stats.max_drawdown_pct, " %")),
        ("Max drawdown duration", d(stats.max_drawdown_duration_ns)),
        ("Longest drawdown", d(stats.longest_drawdown_ns)),
        ("Calmar", r(stats.calmar, places=3)),
        ("Exposure (time in market)", r(stats.exposure_pct, " %")),
        ("Trades (round trips)", str(stats.trades)),
        ("Wins / losses", f"{stats.wins} / {stats.losses}"),
        ("Win rate", r(stats.win_rate_pct, " %")),
        ("Average win", m(stats.avg_win)),
        ("Average loss", m(stats.avg_loss)),
        ("Average trade", m(stats.avg_trade)),
        ("Best / worst trade", f"{m(stats.best_trade)} / {m(stats.worst_trade)}"),
        ("Profit factor", r(stats.profit_factor, places=3)),
        ("Average trade duration", d(stats.avg_trade_duration_ns)),
        ("Realised P&L (net)", m(stats.realised_pnl)),
        ("Fees paid", m(stats.fees)),
        ("Fills", str(stats.fills)),
        ("Volume", m(stats.volume)),
        ("Open positions at end", str(stats.open_positions)),
        (
            "Return sampling",
            f"every {_human_duration(stats.return_period_ns)}, "
            f"{ratio(stats.periods_per_year, 2)} periods/year, {stats.periods} returns",
        ),
    ]


def _table(head: Sequence[str], rows: Sequence[str], left: int = 0) -> str:
    cells = "".join(
        f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>"
        for i, h in enumerate(head)
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _trade_html_row(t: RoundTrip) -> str:
    cells = [
        f'<td class="l">{_e(t.strategy_id)}</td>',
        f'<td class="l">{_e(t.venue)}</td>',
        f'<td class="l">{_e(t.symbol)}</td>',
        f'<td class="l">{_e(t.side)}</td>',
        f'<td class="l">{_e(iso_time(t.entry_ts_ns))}</td>',
        f'<td class="l">{_e(iso_time(t.exit_ts_ns))}</td>',
        f"<td>{_e(_plain(t.quantity))}</td>",
        f"<td>{_e(_human_money(t.avg_entry))}</td>",
        f"<td>{_e(_human_money(t.avg_exit))}</td>",
        _signed(t.pnl, _human_money(t.pnl)),
        _signed(t.pnl, _fixed(t.pnl_pct, 2) + " %"),
        f"<td>{_e(_human_money(t.fees))}</td>",
        f"<td>{_e(_human_duration(t.duration_ns))}</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _open_html_row(p: OpenPosition) -> str:
    cells = [
        f'<td class="l">{_e(p.strategy_id)}</td>',
        f'<td class="l">{_e(p.venue)}</td>',
        f'<td class="l">{_e(p.symbol)}</td>',
        f'<td class="l">{_e(p.side)}</td>',
        f'<td class="l">{_e(iso_time(p.entry_ts_ns))}</td>',
        f"<td>{_e(_plain(p.quantity))}</td>",
        f"<td>{_e(_human_money(p.avg_entry))}</td>",
        f"<td>{_e(_human_money(p.fees))}</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def report_html(
    stats: Stats,
    trips: Sequence[RoundTrip],
    still_open: Sequence[OpenPosition],
    meta: Mapping[str, MetaValue],
    png: bytes,
) -> str:
    """One HTML page with everything inline: CSS, the chart as base64, every table."""
    meta_rows = [
        f'<tr><td class="l">{_e(k)}</td><td class="l w">{_e(v)}</td></tr>'
        for k, v in sorted(meta.items())
    ]
    stat_rows = [
        f'<tr><td class="l">{_e(k)}</td><td>{_e(v)}</td></tr>' for k, v in _stat_rows(stats)
    ]
    shown = trips[:HTML_TRADE_ROWS]
    trade_head = [
        "strategy",
        "venue",
        "symbol",
        "side",
        "entry",
        "exit",
        "qty",
        "avg entry",
        "avg exit",
        "pnl",
        "pnl %",
        "fees",
        "duration",
    ]
    open_head = ["strategy", "venue", "symbol", "side", "entry", "qty", "avg entry", "fees"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(_title(meta))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(_title(meta))}</h1>",
        '<div class="grid"><section><h2>Summary</h2>',
        _table(["statistic", "value"], stat_rows, left=1),
        "</section><section><h2>Run</h2>",
        _table(["key", "value"], meta_rows, left=2) if meta_rows else "<p>-</p>",
        "</section></div>",
        "<h2>Equity and drawdown</h2>",
        f'<img alt="equity and drawdown chart" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}">',
        f"<h2>Trades ({len(trips)} round trips)</h2>",
    ]
    if trips:
        parts.append(_table(trade_head, [_trade_html_row(t) for t in shown], left=6))
        if len(trips) > len(shown):
            parts.append(
                f'<p class="note">First {len(shown)} of {len(trips)} shown; '
                "trades.csv has them all.</p>"
            )
    else:
        parts.append('<p class="note">No closed round trips.</p>')
    if still_open:
        parts.append("<h2>Open at the end (marked to market, not counted as trades)</h2>")
        parts.append(_table(open_head, [_open_html_row(p) for p in still_open], left=5))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _title(meta: Mapping[str, MetaValue]) -> str:
    name = meta.get("strategy") or meta.get("strategies")
    return f"Backtest report — {name}" if name else "Backtest report"


# ---------------------------------------------------------------- all files


def write_report(
    out_dir: Path,
    stats: Stats,
    fills: Sequence[FillRecord],
    equity: Sequence[EquityPoint],
    meta: Mapping[str, MetaValue],
) -> dict[str, Path]:
    """Write the four report files into ``out_dir`` (created if missing).

    Returns their paths keyed ``"summary"``, ``"trades"``, ``"equity"``, ``"report"``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    trips, still_open = match_fills(fills)
    paths = {
        "summary": out_dir / "summary.json",
        "trades": out_dir / "trades.csv",
        "equity": out_dir / "equity.png",
        "report": out_dir / "report.html",
    }
    paths["summary"].write_text(summary_json(stats, meta), encoding="utf-8")
    paths["trades"].write_text(trades_csv(trips), encoding="utf-8", newline="")
    equity_png(
        paths["equity"], equity, stats.initial_cash, stats.start_ns, stats.end_ns, _title(meta)
    )
    png = paths["equity"].read_bytes()
    page = report_html(stats, trips, still_open, meta, png)
    paths["report"].write_text(page, encoding="utf-8")
    return paths
