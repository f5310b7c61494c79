"""Data format detection and parsing: what each supported file turns into."""

from __future__ import annotations

import gzip
import json
import zipfile
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from botd.backtest.data import (
    BARS,
    QUOTES,
    TRADES,
    DataError,
    format_timeframe,
    infer_tick,
    open_source,
    parse_time,
    read_events,
    symbol_from_path,
)
from botd.model import Bar, BookDelta, BookLevel, BookSnapshot, Quote, Side, Trade
from botd.recording import encode_event
from tests.unit.backtest.btdata import START_MS, write_klines, write_quotes, write_trades

NS = 1_000_000


def test_symbol_comes_from_the_file_stem() -> None:
    assert symbol_from_path(Path("BTCUSDT-1m-2024-01.csv")) == "BTCUSDT"
    assert symbol_from_path(Path("/x/ethusdt-trades-2024-01-02.zip")) == "ETHUSDT"
    assert symbol_from_path(Path("SOLUSDT.csv.gz")) == "SOLUSDT"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1704067200", 1_704_067_200_000_000_000),
        ("1704067200000", 1_704_067_200_000_000_000),
        ("1704067200000000", 1_704_067_200_000_000_000),
        ("1704067200000000123", 1_704_067_200_000_000_123),
        ("1704067200.5", 1_704_067_200_500_000_000),
        ("2024-01-01T00:00:00Z", 1_704_067_200_000_000_000),
        ("2024-01-01 01:00:00+01:00", 1_704_067_200_000_000_000),
        ("2024-01-01", 1_704_067_200_000_000_000),
    ],
)
def test_timestamps_in_any_unit_or_iso(raw: str, expected: int) -> None:
    assert parse_time(raw) == expected


def test_timeframes_and_ticks() -> None:
    assert format_timeframe(60_000_000_000) == "1m"
    assert format_timeframe(3_600_000_000_000) == "1h"
    assert format_timeframe(90_000_000_000) == "90s"
    assert infer_tick([Decimal("42000.01000000"), Decimal("42000.10000000")]) == Decimal("0.01")
    assert infer_tick([Decimal("42000"), Decimal("41999")]) == Decimal("1")
    assert infer_tick([Decimal("100.00"), Decimal("101.00")]) == Decimal("0.01")
    assert infer_tick([Decimal("0.00001234")]) == Decimal("1E-8")


@pytest.mark.parametrize("micros", [False, True])
def test_binance_klines_ms_and_2025_microseconds(tmp_path: Path, micros: bool) -> None:
    path = write_klines(
        tmp_path / "BTCUSDT-1m-2025-01.csv",
        [(100, 110, 90, 105), (105, 106, 104, 104.5)],
        micros=micros,
    )
    source = open_source(path)
    assert (source.format, source.kind, source.symbol, source.timeframe) == (
        "binance-klines",
        BARS,
        "BTCUSDT",
        "1m",
    )
    bars = list(read_events(source, "paper"))
    assert len(bars) == 2
    first = bars[0]
    assert isinstance(first, Bar)
    assert first.start == START_MS * NS
    assert first.end == first.ts_event == (START_MS + 60_000) * NS
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("100.00"),
        Decimal("110.00"),
        Decimal("90.00"),
        Decimal("105.00"),
    )
    assert first.venue == "paper"


def test_binance_klines_with_header_and_inside_a_zip(tmp_path: Path) -> None:
    csv_path = write_klines(tmp_path / "ETHUSDT-5m-2024-01.csv", 5, step_ms=300_000, header=True)
    archive = tmp_path / "ETHUSDT-5m-2024-01.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(csv_path, csv_path.name)
    source = open_source(archive)
    assert (source.format, source.symbol, source.timeframe) == ("binance-klines", "ETHUSDT", "5m")
    assert len(list(read_events(source, "paper"))) == 5


def test_binance_trades(tmp_path: Path) -> None:
    path = write_trades(tmp_path / "BTCUSDT-trades-2024-01-01.csv", 10)
    source = open_source(path)
    assert (source.format, source.kind) == ("binance-trades", TRADES)
    trades = list(read_events(source, "paper"))
    assert len(trades) == 10
    t = trades[0]
    assert isinstance(t, Trade)
    assert t.trade_id == "1"
    assert t.ts_event == START_MS * NS
    # is_buyer_maker=True means the aggressor sold.
    raw = path.read_text().splitlines()[0].split(",")
    assert t.side is (Side.SELL if raw[5] == "True" else Side.BUY)
    assert t.price == Decimal(raw[1])


def test_binance_aggtrades(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2024-01-01.csv"
    path.write_text("7,42000.10,0.5,10,12,1704067200123,False,True\n")
    source = open_source(path)
    assert source.format == "binance-aggtrades"
    (t,) = list(read_events(source, "paper"))
    assert isinstance(t, Trade)
    assert (t.price, t.size, t.side, t.ts_event) == (
        Decimal("42000.10"),
        Decimal("0.5"),
        Side.BUY,
        1_704_067_200_123 * NS,
    )


def test_generic_ohlcv_with_iso_times(tmp_path: Path) -> None:
    path = tmp_path / "SOLUSDT.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-01T00:00:00Z,100,101,99,100.5,10\n"
        "2024-01-01T01:00:00Z,100.5,102,100,101.25,12\n"
    )
    source = open_source(path)
    assert (source.format, source.kind, source.timeframe, source.symbol) == (
        "csv",
        BARS,
        "1h",
        "SOLUSDT",
    )
    bars = list(read_events(source, "x"))
    assert isinstance(bars[1], Bar)
    assert bars[1].close == Decimal("101.25")
    assert bars[1].start == 1_704_070_800 * 1_000_000_000


def test_generic_quotes_and_trades_csv(tmp_path: Path) -> None:
    quotes = open_source(write_quotes(tmp_path / "BTCUSDT-quotes.csv", 3))
    assert quotes.kind == QUOTES
    q = next(read_events(quotes, "paper"))
    assert isinstance(q, Quote)
    assert q.ask - q.bid == Decimal("1.00")
    trades_path = tmp_path / "X.csv"
    trades_path.write_text("timestamp,price,size,side\n1704067200,10.5,2,sell\n")
    source = open_source(trades_path, symbol="BTCUSDT")
    assert (source.kind, source.symbol) == (TRADES, "BTCUSDT")
    (t,) = list(read_events(source, "paper"))
    assert isinstance(t, Trade)
    assert (t.side, t.symbol) == (Side.SELL, "BTCUSDT")


def test_recordings_are_gzip_ndjson(tmp_path: Path) -> None:
    """`botd record` files replay: quotes, trades and bars as recorded, a depth snapshot as
    its top of book; deltas and event types this version does not know are skipped."""
    path = tmp_path / "rec.ndjson.gz"
    recorded = [
        Quote("binance", "BTCUSDT", Decimal("100.1"), Decimal("100.2"), Decimal(1), Decimal(2),
              5, 5),
        Trade("binance", "ETHUSDT", Decimal("3000.5"), Decimal("0.1"), Side.SELL, "9", 6, 6),
        BookSnapshot("binance", "BTCUSDT", (BookLevel(Decimal("100.0"), Decimal(3)),),
                     (BookLevel(Decimal("100.3"), Decimal(4)),), 1, 7, 7),
        BookDelta("binance", "BTCUSDT", Side.BUY, Decimal("99.9"), Decimal(1), 2, 8, 8),
        Bar("binance", "BTCUSDT", "1m", Decimal(1), Decimal(2), Decimal("0.5"), Decimal("1.5"),
            Decimal(0), 0, 60_000_000_000, 60_000_000_000, 60_000_000_000),
    ]  # fmt: skip
    with gzip.open(path, "wt") as fh:
        fh.write(
            json.dumps({"type": "header", "format": "botd-recording", "version": 1,
                        "venue": "binance", "symbols": [], "started_ns": 0}) + "\n"
        )  # fmt: skip
        for e in recorded:
            fh.write(json.dumps(encode_event(e)) + "\n")
        fh.write(json.dumps({"type": "funding", "venue": "binance", "symbol": "X", "ts_ns": 9}))
        fh.write("\n")
    source = open_source(path)
    assert source.format == "recording"
    events = list(read_events(source, "paper"))
    assert [type(e).__name__ for e in events] == ["Quote", "Trade", "Quote", "Bar"]
    assert all(e.venue == "paper" for e in events)  # the recorded venue maps onto the sim
    depth = events[2]
    assert isinstance(depth, Quote)
    assert (depth.bid, depth.ask) == (Decimal("100.0"), Decimal("100.3"))
    bar = events[3]
    assert isinstance(bar, Bar)
    assert bar.start == 0


def test_a_broken_recording_line_is_a_data_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.ndjson"
    good = json.dumps(encode_event(Trade("b", "S", Decimal(1), Decimal(1), Side.BUY, "1", 1, 1)))
    path.write_text(good + "\n" + good.replace('"price": "1"', '"price": 1') + "\n")
    with pytest.raises(DataError, match=r"rec\.ndjson:2: price"):
        list(read_events(open_source(path), "paper"))


def test_parquet_bars(tmp_path: Path) -> None:
    path = tmp_path / "BNBUSDT-1m.parquet"
    table = pa.table(
        {
            "timestamp": [START_MS, START_MS + 60_000, START_MS + 120_000],
            "open": ["1.0", "1.1", "1.2"],
            "high": ["1.2", "1.3", "1.4"],
            "low": ["0.9", "1.0", "1.1"],
            "close": ["1.1", "1.2", "1.3"],
            "volume": ["5", "6", "7"],
        }
    )
    pq.write_table(table, path)
    source = open_source(path)
    assert (source.format, source.kind, source.timeframe, source.symbol) == (
        "parquet",
        BARS,
        "1m",
        "BNBUSDT",
    )
    bars = list(read_events(source, "paper"))
    assert [b.close for b in bars if isinstance(b, Bar)] == [
        Decimal("1.1"),
        Decimal("1.2"),
        Decimal("1.3"),
    ]


def test_time_range_filter(tmp_path: Path) -> None:
    source = open_source(write_klines(tmp_path / "BTCUSDT-1m.csv", 10))
    start = (START_MS + 2 * 60_000) * NS
    end = (START_MS + 5 * 60_000) * NS
    bars = list(read_events(source, "p", start_ns=start, end_ns=end))
    assert [b.start for b in bars if isinstance(b, Bar)] == [
        start,
        start + 60 * 10**9,
        end - 60 * 10**9,
    ]


def test_bad_rows_and_unknown_files_are_named(tmp_path: Path) -> None:
    path = write_klines(tmp_path / "BTCUSDT-1m.csv", 3)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[4], "oops", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"BTCUSDT-1m\.csv:3: close is not a number"):
        list(read_events(open_source(path), "p"))
    odd = tmp_path / "odd.csv"
    odd.write_text("hello,world\n1,2\n")
    with pytest.raises(DataError, match="no time column"):
        open_source(odd)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        open_source(empty)
