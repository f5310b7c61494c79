"""Report files: deterministic summary.json and trades.csv, a valid PNG, well-formed safe HTML."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import struct
import subprocess
import sys
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from botd.backtest.records import EquityPoint, FillRecord
from botd.backtest.report import (
    TRADES_CSV_COLUMNS,
    iso_time,
    summary_json,
    trades_csv,
    write_report,
)
from botd.backtest.stats import Stats, compute_stats
from botd.backtest.trades import round_trips
from botd.model import Side

T0 = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
M = 60 * 10**9
# Markup for the HTML, and broken mathtext for the chart title (matplotlib would raise on it).
HOSTILE = "<script>alert('x')</script>&\"evil\" </td></table> $\\frac{$"
REQUIRED = (
    "final_equity",
    "total_return_pct",
    "trades",
    "win_rate_pct",
    "max_drawdown_pct",
    "sharpe",
    "fees",
    "fills",
)


def run(strategy: str = "sma") -> tuple[Stats, list[FillRecord], list[EquityPoint]]:
    """A small run: two round trips (one a flip) and a position left open."""

    def f(minute: int, side: Side, qty: str, price: str, fee: str) -> FillRecord:
        return FillRecord(
            T0 + minute * M,
            strategy,
            "paper",
            "BTCUSDT",
            side,
            Decimal(qty),
            Decimal(price),
            Decimal(fee),
            f"o{minute}",
            "taker",
        )

    fills = [
        f(60, Side.BUY, "0.5", "42000.10", "0.021"),
        f(600, Side.SELL, "1.5", "42500.55", "0.06375"),  # closes the long, opens 1 short
        f(3000, Side.BUY, "1", "41000", "0.041"),
        f(4000, Side.BUY, "0.25", "41500", "0.01"),  # left open
    ]
    equity = []
    value = Decimal(100_000)
    for minute in range(0, 5000, 7):
        value += Decimal((minute * 7919) % 401 - 200) / 10
        equity.append(EquityPoint(T0 + minute * M, value, Decimal(0) if minute < 60 else value / 4))
    stats = compute_stats(fills, equity, Decimal(100_000), start_ns=T0, end_ns=T0 + 5000 * M)
    return stats, fills, equity


def test_summary_has_the_required_keys_with_fixed_formatting() -> None:
    stats, _, _ = run()
    text = summary_json(stats, {"strategy": "sma", "seed": 7})
    data = json.loads(text)
    for key in REQUIRED:
        assert key in data
    assert data["trades"] == 2  # round trips, not fills
    assert data["fills"] == 4
    assert data["open_positions"] == 1
    assert data["meta"] == {"seed": 7, "strategy": "sma"}
    assert re.search(r'"final_equity": -?\d+\.\d{8},', text)
    assert re.search(r'"fees": 0\.13575000,', text)
    assert re.search(r'"sharpe": (null|-?\d+\.\d{6}),', text)
    assert text.endswith("}\n")
    keys = list(data)
    assert keys == sorted(keys)


def test_summary_of_a_run_without_trades_has_nulls_not_nan() -> None:
    stats = compute_stats([], [], Decimal(1000), start_ns=T0, end_ns=T0 + 3 * 86_400 * 10**9)
    text = summary_json(stats, {})
    for bad in ("NaN", "Infinity"):
        assert bad not in text
    data = json.loads(text)
    assert data["sharpe"] is None
    assert data["win_rate_pct"] is None
    assert data["profit_factor"] is None
    assert data["trades"] == 0
    assert data["max_drawdown_pct"] == 0
    assert data["final_equity"] == 1000


def test_same_input_gives_byte_identical_summary_and_trades(tmp_path: Path) -> None:
    stats_a, fills, equity = run()
    stats_b, _, _ = run()
    meta: dict[str, str | int] = {"strategy": "sma", "seed": 7}
    assert summary_json(stats_a, meta) == summary_json(stats_b, dict(reversed(meta.items())))
    a = write_report(tmp_path / "a", stats_a, fills, equity, meta)
    b = write_report(tmp_path / "b", stats_b, list(reversed(fills)), list(reversed(equity)), meta)
    for name in ("summary", "trades"):
        assert a[name].read_bytes() == b[name].read_bytes()
    assert a["summary"].read_bytes() == summary_json(stats_a, meta).encode()


def test_trades_csv_has_one_row_per_round_trip() -> None:
    _, fills, _ = run()
    text = trades_csv(round_trips(fills))
    assert "\r" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == TRADES_CSV_COLUMNS
    long, short = rows
    assert long["side"] == "long"
    assert long["entry_time"] == "2024-01-01T01:00:00Z"
    assert long["exit_time"] == "2024-01-01T10:00:00Z"
    assert long["quantity"] == "0.5"
    assert long["avg_entry"] == "42000.10000000"
    assert long["gross_pnl"] == "250.22500000"
    assert long["fees"] == "0.04225000"  # 0.021 + a third of 0.06375
    assert long["pnl"] == "250.18275000"
    assert long["duration_s"] == "32400"
    assert short["side"] == "short"
    assert short["quantity"] == "1"
    assert short["pnl"] == "1500.46650000"  # 1500.55 - (0.0425 + 0.041)
    assert short["pnl_pct"] == "3.5305"  # 3.530463…, rounded half-even to 4 places


def test_iso_time_keeps_sub_second_precision() -> None:
    assert iso_time(T0) == "2024-01-01T00:00:00Z"
    assert iso_time(T0 + 1_500_000) == "2024-01-01T00:00:00.0015Z"


class StrictTreeChecker(HTMLParser):
    """Fails on any end tag that does not close the innermost open element."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_files_are_written_and_html_is_well_formed_and_escaped(tmp_path: Path) -> None:
    stats, fills, equity = run(strategy=HOSTILE)
    paths = write_report(tmp_path / "out", stats, fills, equity, {"strategy": HOSTILE, "n": 1})
    assert {p.name for p in paths.values()} == {
        "summary.json",
        "trades.csv",
        "equity.png",
        "report.html",
    }
    page = paths["report"].read_text(encoding="utf-8")

    checker = StrictTreeChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    assert "script" not in checker.tags  # the hostile id did not become markup
    assert "<script>" not in page
    assert HOSTILE in "".join(checker.text)  # but it is shown, as text
    assert page.count("&lt;script&gt;") >= 4  # title, heading, meta table, trade rows
    assert "<style>" in page
    assert "http://" not in page
    assert "https://" not in page  # self-contained: nothing to fetch

    png = paths["equity"].read_bytes()
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded is not None
    assert base64.b64decode(embedded.group(1)) == png

    data = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert data["meta"]["strategy"] == HOSTILE
    rows = list(csv.DictReader(io.StringIO(paths["trades"].read_text(encoding="utf-8"))))
    assert [r["strategy"] for r in rows] == [HOSTILE, HOSTILE]


def test_chart_is_a_real_png(tmp_path: Path) -> None:
    stats, fills, equity = run()
    png = write_report(tmp_path, stats, fills, equity, {})["equity"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1000, 600)
    assert len(png) > 20_000  # two drawn panels, not an empty canvas
    assert png.rstrip(b"\x00")[-8:-4] == b"IEND"


def test_chart_of_an_empty_run_still_renders(tmp_path: Path) -> None:
    stats = compute_stats([], [], Decimal(1000), start_ns=T0, end_ns=T0)
    paths = write_report(tmp_path, stats, [], [], {})
    assert paths["equity"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "No closed round trips" in paths["report"].read_text(encoding="utf-8")


@pytest.mark.parametrize("action", ["import", "write"])
def test_no_pyplot_and_no_backend_switch(tmp_path: Path, action: str) -> None:
    code = (
        "import sys\n"
        "import botd.backtest.report as r\n"
        "assert 'matplotlib' not in sys.modules, 'imported matplotlib eagerly'\n"
    )
    if action == "write":
        code += (
            "from decimal import Decimal\n"
            "from pathlib import Path\n"
            "from botd.backtest.stats import compute_stats\n"
            "s = compute_stats([], [], Decimal(1), start_ns=0, end_ns=10**12)\n"
            f"r.write_report(Path({str(tmp_path)!r}), s, [], [], {{}})\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
