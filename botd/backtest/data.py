"""Historical market data for backtests: what a file holds, and its events in time order.

Formats (detected from the content, not trusted from the name; see docs/backtesting.md):

* Binance public data (data.binance.vision), as downloaded (``.zip``) or unpacked (``.csv``):
  klines (12 columns, open time in ms, or µs from 2025), trades (``id,price,qty,quote_qty,
  time,is_buyer_maker,is_best_match``) and aggTrades (8 columns). With or without a header.
* Generic CSV with a header: OHLCV bars (``time,open,high,low,close[,volume]``), quotes
  (``time,bid,ask[,bid_size,ask_size]``) or trades (``time,price,qty[,side]``). Timestamps in
  s, ms, µs or ns since the epoch, or ISO 8601 (UTC unless an offset says otherwise).
* botd recordings: NDJSON (gzip or plain), one market-data event per line.
* Parquet (the optional ``botd[parquet]`` extra) with the generic CSV's columns.

Prices and sizes are parsed from their text into exact Decimals, never through a float.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from botd.durations import timeframe_ns
from botd.model import Bar, BookSnapshot, Quote, Side, Trade
from botd.recording import RecordingError, read_recording

__all__ = [
    "BARS",
    "QUOTES",
    "TRADES",
    "DataError",
    "DataSource",
    "Event",
    "format_timeframe",
    "infer_tick",
    "open_source",
    "parse_time",
    "read_events",
    "symbol_from_path",
]

BARS, TRADES, QUOTES, MIXED = "bars", "trades", "quotes", "mixed"
Event = Bar | Trade | Quote
_ZERO = Decimal(0)
_SAMPLE = 200

_TIME_NAMES = (
    "ts_ns",
    "timestamp",
    "time",
    "ts",
    "open_time",
    "datetime",
    "date",
    "ts_event",
    "t",
)
_ALIASES = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "bid": ("bid", "bid_price", "best_bid"),
    "ask": ("ask", "ask_price", "best_ask"),
    "bid_size": ("bid_size", "bid_qty", "bid_volume"),
    "ask_size": ("ask_size", "ask_qty", "ask_volume"),
    "price": ("price", "p", "last"),
    "qty": ("qty", "size", "quantity", "amount"),
    "side": ("side",),
    "is_buyer_maker": ("is_buyer_maker",),
}


class DataError(ValueError):
    """A data file that cannot be read as market data; the message names file and line."""


@dataclass(frozen=True, slots=True)
class DataSource:
    path: Path
    format: str  # binance-klines | binance-trades | binance-aggtrades | csv | recording | parquet
    kind: str  # bars | trades | quotes | mixed (recordings)
    symbol: str | None  # None: each record names its own (recordings)
    timeframe: str | None  # bars only
    columns: tuple[str, ...] = ()  # the header of a generic CSV/Parquet file
    has_header: bool = False


# -- helpers -------------------------------------------------------------------------------------
def symbol_from_path(path: Path) -> str:
    """``BTCUSDT-1m-2024-01.csv`` → ``BTCUSDT``: the file stem up to its first ``-``."""
    name = path.name
    for suffix in (".gz", ".zip", ".csv", ".parquet", ".ndjson", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    name = name.removesuffix(".csv").removesuffix(".ndjson").removesuffix(".jsonl")
    return name.split("-")[0].split("_")[0].upper()


def parse_time(raw: object) -> int:
    """Nanoseconds since the epoch from s, ms, µs or ns (by magnitude) or ISO 8601."""
    if type(raw) is str and raw.isdigit():  # the common case, on every row: an integer
        v = int(raw)
        if v >= 100_000_000_000_000_000:
            return v
        if v >= 100_000_000_000_000:
            return v * 1_000
        if v >= 100_000_000_000:
            return v * 1_000_000
        return v * 1_000_000_000
    if isinstance(raw, datetime):
        dt = raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    if isinstance(raw, int | float | Decimal) and not isinstance(raw, bool):
        return _scale(Decimal(str(raw)))
    text = str(raw).strip()
    try:
        return _scale(Decimal(text))
    except InvalidOperation:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a timestamp: {text!r}") from None
    return parse_time(dt)


def _scale(value: Decimal) -> int:
    magnitude = abs(value)
    if magnitude >= Decimal(10) ** 17:
        factor = 1
    elif magnitude >= Decimal(10) ** 14:
        factor = 1_000
    elif magnitude >= Decimal(10) ** 11:
        factor = 1_000_000
    else:
        factor = 1_000_000_000
    return int(value * factor)


def format_timeframe(length_ns: int) -> str:
    """The shortest timeframe string for a bar length: 60 s → ``"1m"``."""
    seconds, rest = divmod(length_ns, 1_000_000_000)
    if rest or seconds <= 0:
        raise DataError(f"bars of {length_ns} ns are not a whole number of seconds")
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def infer_tick(prices: Sequence[Decimal]) -> Decimal:
    """A tick every one of ``prices`` sits on: the finest decimal place they use, but at least
    cents when the file writes them (``100.00`` → 0.01; ``42000.01000000`` → 0.01, not 1e-8)."""
    used = 0  # finest place with a non-zero digit
    written = 0  # finest place the text shows
    for p in prices:
        if not p.is_finite():
            continue
        exp = p.as_tuple().exponent
        if isinstance(exp, int):
            written = min(written, exp)
        if p != 0:
            exp = p.normalize().as_tuple().exponent
            if isinstance(exp, int):
                used = min(used, exp)
    return Decimal(1).scaleb(min(used, max(written, -2)))


def _dec(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{what} is not a finite number: {text!r}")
    return value


def _fast_dec(text: Any) -> Decimal:
    """:func:`_dec` for the hot path: the error names the text, not the column."""
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "t", "yes")


# -- opening files -----------------------------------------------------------------------------
def _open_text(path: Path) -> IO[str]:
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    if magic == b"PK\x03\x04":
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if not n.endswith("/")]
        if len(members) != 1:
            raise DataError(f"{path}: a zip archive must hold exactly one data file")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _looks_numeric(cell: str) -> bool:
    try:
        Decimal(cell)
    except InvalidOperation:
        return False
    return True


def open_source(path: Path, symbol: str | None = None) -> DataSource:
    """Detect what ``path`` holds. ``symbol`` overrides the file-name rule."""
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        if _is_parquet(path):
            return _parquet_source(path, symbol)
        with _open_text(path) as fh:
            head = [line for _, line in zip(range(3), fh, strict=False)]
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if not head:
        raise DataError(f"{path}: the file is empty")
    first = head[0].strip()
    if first.startswith("{"):
        return DataSource(path, "recording", MIXED, symbol, None)
    rows = list(csv.reader(head))
    sym = symbol or symbol_from_path(path)
    header = not all(_looks_numeric(c) or c.strip().lower() in ("true", "false") for c in rows[0])
    data_rows = rows[1:] if header else rows
    if not data_rows:
        raise DataError(f"{path}: no data rows")
    sample = data_rows[0]
    width = len(sample)
    if width == 12 and all(_looks_numeric(c) for c in sample[:11]):
        start, end = parse_time(sample[0]), parse_time(sample[6])
        length = _round_interval(end - start)
        return DataSource(
            path, "binance-klines", BARS, sym, format_timeframe(length), has_header=header
        )
    if width == 7 and sample[5].strip().lower() in ("true", "false"):
        return DataSource(path, "binance-trades", TRADES, sym, None, has_header=header)
    if width == 8 and sample[6].strip().lower() in ("true", "false"):
        return DataSource(path, "binance-aggtrades", TRADES, sym, None, has_header=header)
    if header:
        columns = tuple(c.strip().lower() for c in rows[0])
        kind = _kind_of(columns, path)
        source = DataSource(path, "csv", kind, sym, None, columns, has_header=True)
        if kind == BARS:
            return _with_timeframe(source)
        return source
    if width >= 5 and all(_looks_numeric(c) for c in sample[:5]):
        columns = ("time", "open", "high", "low", "close", "volume")[:width]
        columns = columns + tuple(f"col{i}" for i in range(len(columns), width))
        return _with_timeframe(DataSource(path, "csv", BARS, sym, None, columns))
    raise DataError(
        f"{path}: unrecognised data: expected Binance klines or trades, a CSV with a header "
        "(time,open,high,low,close[,volume] or time,bid,ask or time,price,qty), a botd "
        "recording or a Parquet file"
    )


def _round_interval(raw_ns: int) -> int:
    # Binance's close time is the last millisecond (or microsecond) of the interval.
    second = 1_000_000_000
    return ((raw_ns + second // 2) // second) * second


def _find(columns: Sequence[str], names: Sequence[str]) -> int | None:
    for name in names:
        if name in columns:
            return list(columns).index(name)
    return None


def _kind_of(columns: Sequence[str], path: Path) -> str:
    if _find(columns, _TIME_NAMES) is None:
        raise DataError(
            f"{path}: no time column (one of {', '.join(_TIME_NAMES)}) in the header "
            f"{','.join(columns)}"
        )
    has = {key: _find(columns, names) is not None for key, names in _ALIASES.items()}
    if all(has[k] for k in ("open", "high", "low", "close")):
        return BARS
    if has["bid"] and has["ask"]:
        return QUOTES
    if has["price"] and has["qty"]:
        return TRADES
    raise DataError(
        f"{path}: the header {','.join(columns)} has neither open/high/low/close, nor bid/ask, "
        "nor price/qty columns"
    )


def _with_timeframe(source: DataSource) -> DataSource:
    """Bars' length: the smallest gap between the first bars' start times."""
    times: list[int] = []
    for event in _iter_raw(source, "venue", limit=_SAMPLE):
        assert isinstance(event, Bar)
        times.append(event.start)
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    if not gaps:
        raise DataError(f"{source.path}: cannot tell the bar length from fewer than two bars")
    return DataSource(
        source.path,
        source.format,
        source.kind,
        source.symbol,
        format_timeframe(min(gaps)),
        source.columns,
        source.has_header,
    )


def _parquet_source(path: Path, symbol: str | None) -> DataSource:
    pq = _pyarrow()
    columns = tuple(c.lower() for c in pq.read_schema(path).names)
    sym = symbol or symbol_from_path(path)
    kind = _kind_of(columns, path)
    source = DataSource(path, "parquet", kind, sym, None, columns, has_header=True)
    return _with_timeframe(source) if kind == BARS else source


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("Parquet data needs pyarrow: pip install 'botd[parquet]'") from None
    return pq


# -- reading events ------------------------------------------------------------------------------
def read_events(
    source: DataSource,
    venue: str,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Iterator[Event]:
    """Every event of ``source`` in file order, for ``venue``, within ``[start_ns, end_ns)``
    (bars by their start). Bad rows raise :class:`DataError` naming file and line."""
    for event in _iter_raw(source, venue):
        ts = event.start if isinstance(event, Bar) else event.ts_event
        if start_ns is not None and ts < start_ns:
            continue
        if end_ns is not None and ts >= end_ns:
            continue
        yield event


def _iter_raw(source: DataSource, venue: str, limit: int | None = None) -> Iterator[Event]:
    if source.format == "recording":
        yield from _read_recording(source, venue, limit)
        return
    if source.format == "parquet":
        yield from _read_parquet(source, venue, limit)
        return
    make = _row_reader(source, venue)
    path = source.path
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        line = 0
        if source.has_header:
            next(reader, None)
            line = 1
        for row in reader:
            line += 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                event = make(row)
            except (ValueError, IndexError, ArithmeticError) as exc:
                raise DataError(f"{path}:{line}: {_describe(exc)}") from None
            yield event
            if limit is not None and line > limit:
                return


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidOperation):
        return "a price, size or time is not a number"
    return str(exc)


def _row_reader(source: DataSource, venue: str) -> Callable[[Sequence[Any]], Event]:
    symbol = source.symbol or ""
    fmt = source.format
    if fmt == "binance-klines":
        tf = source.timeframe or "1m"
        length = timeframe_ns(tf)

        def kline(row: Sequence[Any]) -> Event:
            start = parse_time(row[0])
            end = start + length
            return Bar(
                venue, symbol, tf, _dec(row[1], "open"), _dec(row[2], "high"),
                _dec(row[3], "low"), _dec(row[4], "close"), _dec(row[5], "volume"),
                start, end, end, end,
            )  # fmt: skip

        return kline
    if fmt in ("binance-trades", "binance-aggtrades"):
        t_col, m_col = (4, 5) if fmt == "binance-trades" else (5, 6)

        def trade(row: Sequence[Any]) -> Event:
            ts = parse_time(row[t_col])
            # The buyer was the maker: the aggressor sold.
            side = Side.SELL if _bool(str(row[m_col])) else Side.BUY
            return Trade(
                venue, symbol, _dec(row[1], "price"), _dec(row[2], "qty"), side, str(row[0]),
                ts, ts,
            )  # fmt: skip

        return trade
    return _generic_reader(source, venue)


def _generic_reader(source: DataSource, venue: str) -> Callable[[Sequence[Any]], Event]:
    cols = source.columns
    symbol = source.symbol or ""
    t = _find(cols, _TIME_NAMES)
    assert t is not None
    idx = {key: _find(cols, names) for key, names in _ALIASES.items()}

    def num(row: Sequence[Any], key: str, default: Decimal | None = None) -> Decimal:
        i = idx[key]
        if i is None or row[i] is None or str(row[i]).strip() == "":
            if default is not None:
                return default
            raise ValueError(f"missing {key}")
        return _dec(str(row[i]), key)

    if source.kind == BARS:
        tf = source.timeframe or "1m"
        length = timeframe_ns(tf)

        def bar(row: Sequence[Any]) -> Event:
            start = parse_time(row[t])
            end = start + length
            return Bar(
                venue, symbol, tf, num(row, "open"), num(row, "high"), num(row, "low"),
                num(row, "close"), num(row, "volume", _ZERO), start, end, end, end,
            )  # fmt: skip

        return bar
    if source.kind == QUOTES:
        bi, ai, bsi, asi = idx["bid"], idx["ask"], idx["bid_size"], idx["ask_size"]
        assert bi is not None
        assert ai is not None
        if bsi is not None and asi is not None:

            def full_quote(row: Sequence[Any]) -> Event:
                ts = parse_time(row[t])
                bid, ask = _fast_dec(row[bi]), _fast_dec(row[ai])
                bid_size, ask_size = _fast_dec(row[bsi]), _fast_dec(row[asi])
                return Quote(venue, symbol, bid, ask, bid_size, ask_size, ts, ts)

            return full_quote

        def quote(row: Sequence[Any]) -> Event:
            ts = parse_time(row[t])
            return Quote(
                venue, symbol, num(row, "bid"), num(row, "ask"), num(row, "bid_size", _ZERO),
                num(row, "ask_size", _ZERO), ts, ts,
            )  # fmt: skip

        return quote
    seq = iter(range(1, 1 << 62))

    def trade(row: Sequence[Any]) -> Event:
        ts = parse_time(row[t])
        si, mi = idx["side"], idx["is_buyer_maker"]
        sold = si is not None and str(row[si]).strip().lower() in ("sell", "s", "ask")
        if mi is not None and _bool(str(row[mi])):
            sold = True  # the buyer was the maker: the aggressor sold
        side = Side.SELL if sold else Side.BUY
        return Trade(
            venue, symbol, num(row, "price"), num(row, "qty"), side, str(next(seq)), ts, ts
        )

    return trade


def _read_parquet(source: DataSource, venue: str, limit: int | None) -> Iterator[Event]:
    pq = _pyarrow()
    make = _generic_reader(source, venue)
    table = pq.read_table(source.path)
    names = [n.lower() for n in table.column_names]
    order = [names.index(c) for c in source.columns]
    n = 0
    for batch in table.to_batches(max_chunksize=65_536):
        columns = [batch.column(i).to_pylist() for i in order]
        for row in zip(*columns, strict=True):
            n += 1
            cells = [c if isinstance(c, datetime) or c is None else str(c) for c in row]
            try:
                yield make(cells)
            except (ValueError, IndexError) as exc:
                raise DataError(f"{source.path}: row {n}: {exc}") from None
            if limit is not None and n >= limit:
                return


# -- recordings ------------------------------------------------------------------------------
def _read_recording(source: DataSource, venue: str, limit: int | None) -> Iterator[Event]:
    """A ``botd record`` file (botd/recording.py's format) as replay events: quotes, trades
    and bars as recorded, a depth snapshot as its top of book; depth deltas are not replayed
    (the fill models need the top of book only). Events name their own symbols; ``--symbol``
    selects one of them."""
    produced = 0
    try:
        for event in read_recording(source.path):
            if source.symbol is not None and event.symbol != source.symbol:
                continue  # --symbol picks one symbol out of a recording of several
            sym = event.symbol
            out: Event | None
            if isinstance(event, Quote | Trade | Bar):
                out = replace(event, venue=venue, symbol=sym)
            elif isinstance(event, BookSnapshot) and event.bids and event.asks:
                top_bid, top_ask = event.bids[0], event.asks[0]
                out = Quote(
                    venue, sym, top_bid.price, top_ask.price, top_bid.size, top_ask.size,
                    event.ts_event, event.ts_recv,
                )  # fmt: skip
            else:
                out = None
            if out is not None:
                yield out
                produced += 1
                if limit is not None and produced >= limit:
                    return
    except RecordingError as exc:
        raise DataError(str(exc)) from None
