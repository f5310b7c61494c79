"""Market-data recordings: gzip-compressed NDJSON, one market event per line.

The format (version 1) is documented in ``docs/backtesting.md``. The first line is a header::

    {"type":"header","format":"botd-recording","version":1,"venue":"binance",
     "symbols":["BTCUSDT"],"started_ns":1700000000000000000}

then one object per event, every price and size a decimal *string* (never a float), times in
ns since the epoch:

    {"type":"quote","venue":..,"symbol":..,"ts_ns":..,"ts_recv":..,"bid":..,"ask":..,
     "bid_size":..,"ask_size":..}
    {"type":"trade",..,"price":..,"size":..,"side":"buy"|"sell","trade_id":..}
    {"type":"bar",..,"timeframe":"1m","open":..,"high":..,"low":..,"close":..,"volume":..,
     "start":..,"end":..}
    {"type":"depth","kind":"snapshot",..,"bids":[[price,size],..],"asks":[..],"sequence":..}
    {"type":"depth","kind":"delta",..,"side":"buy"|"sell","price":..,"size":..,"sequence":..}

``ts_ns`` is the venue's event time. A recording cut short by a crash or a full disk is still
readable up to the last complete line: :func:`read_recording` stops there and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from botd.model import Bar, BookDelta, BookLevel, BookSnapshot, MarketEvent, Quote, Side, Trade

__all__ = [
    "FORMAT",
    "VERSION",
    "ReadStats",
    "RecordingError",
    "RecordingWriter",
    "UnknownEventType",
    "decode_event",
    "encode_event",
    "read_recording",
]

FORMAT = "botd-recording"
VERSION = 1


class RecordingError(ValueError):
    """A recording that cannot be read: names the file and the line."""


class UnknownEventType(ValueError):
    """A line of a type this version does not know (written by a newer botd): skipped."""


def encode_event(event: MarketEvent) -> dict[str, Any]:
    head: dict[str, Any] = {"venue": event.venue, "symbol": event.symbol}
    if isinstance(event, Quote):
        return {
            "type": "quote",
            **head,
            "ts_ns": event.ts_event,
            "ts_recv": event.ts_recv,
            "bid": str(event.bid),
            "ask": str(event.ask),
            "bid_size": str(event.bid_size),
            "ask_size": str(event.ask_size),
        }
    if isinstance(event, Trade):
        return {
            "type": "trade",
            **head,
            "ts_ns": event.ts_event,
            "ts_recv": event.ts_recv,
            "price": str(event.price),
            "size": str(event.size),
            "side": event.side.value,
            "trade_id": event.trade_id,
        }
    if isinstance(event, Bar):
        return {
            "type": "bar",
            **head,
            "ts_ns": event.ts_event,
            "ts_recv": event.ts_recv,
            "timeframe": event.timeframe,
            "open": str(event.open),
            "high": str(event.high),
            "low": str(event.low),
            "close": str(event.close),
            "volume": str(event.volume),
            "start": event.start,
            "end": event.end,
        }
    if isinstance(event, BookSnapshot):
        return {
            "type": "depth",
            "kind": "snapshot",
            **head,
            "ts_ns": event.ts_event,
            "ts_recv": event.ts_recv,
            "bids": [[str(lv.price), str(lv.size)] for lv in event.bids],
            "asks": [[str(lv.price), str(lv.size)] for lv in event.asks],
            "sequence": event.sequence,
        }
    return {
        "type": "depth",
        "kind": "delta",
        **head,
        "ts_ns": event.ts_event,
        "ts_recv": event.ts_recv,
        "side": event.side.value,
        "price": str(event.price),
        "size": str(event.size),
        "sequence": event.sequence,
    }


def _dec(obj: dict[str, Any], key: str) -> Decimal:
    raw = obj[key]
    if not isinstance(raw, str):
        raise ValueError(f"{key}: expected a decimal string, got {type(raw).__name__}")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{key}: not a decimal: {raw!r}") from None
    if not value.is_finite():
        raise ValueError(f"{key}: not a finite decimal: {raw!r}")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    raw = obj[key]
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise ValueError(f"{key}: expected an integer, got {raw!r}")
    return raw


def _str(obj: dict[str, Any], key: str) -> str:
    raw = obj[key]
    if not isinstance(raw, str):
        raise ValueError(f"{key}: expected a string, got {raw!r}")
    return raw


def _levels(obj: dict[str, Any], key: str) -> tuple[BookLevel, ...]:
    raw = obj[key]
    if not isinstance(raw, list):
        raise ValueError(f"{key}: expected a list of [price, size]")
    out = []
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ValueError(f"{key}: expected [price, size] pairs")
        out.append(BookLevel(_dec({"p": pair[0]}, "p"), _dec({"s": pair[1]}, "s")))
    return tuple(out)


def decode_event(obj: dict[str, Any]) -> MarketEvent:
    """One line's object back into a market event; ``ValueError``/``KeyError`` when malformed."""
    kind = obj.get("type")
    venue, symbol = _str(obj, "venue"), _str(obj, "symbol")
    ts, recv = _int(obj, "ts_ns"), int(obj.get("ts_recv", obj["ts_ns"]))
    if kind == "quote":
        return Quote(
            venue,
            symbol,
            _dec(obj, "bid"),
            _dec(obj, "ask"),
            _dec(obj, "bid_size"),
            _dec(obj, "ask_size"),
            ts,
            recv,
        )
    if kind == "trade":
        return Trade(
            venue,
            symbol,
            _dec(obj, "price"),
            _dec(obj, "size"),
            Side(_str(obj, "side")),
            str(obj.get("trade_id", "")),
            ts,
            recv,
        )
    if kind == "bar":
        return Bar(
            venue,
            symbol,
            _str(obj, "timeframe"),
            _dec(obj, "open"),
            _dec(obj, "high"),
            _dec(obj, "low"),
            _dec(obj, "close"),
            _dec(obj, "volume"),
            _int(obj, "start"),
            _int(obj, "end"),
            ts,
            recv,
        )
    if kind == "depth" and obj.get("kind") == "snapshot":
        return BookSnapshot(
            venue,
            symbol,
            _levels(obj, "bids"),
            _levels(obj, "asks"),
            _int(obj, "sequence"),
            ts,
            recv,
        )
    if kind == "depth" and obj.get("kind") == "delta":
        return BookDelta(
            venue,
            symbol,
            Side(_str(obj, "side")),
            _dec(obj, "price"),
            _dec(obj, "size"),
            _int(obj, "sequence"),
            ts,
            recv,
        )
    raise UnknownEventType(f"unknown event type {kind!r}")


@dataclass(slots=True)
class ReadStats:
    """What :func:`read_recording` saw: events yielded, and whether the file ended mid-line
    (a recorder that was killed) — the events before the cut are all yielded."""

    events: int = 0
    skipped: int = 0  # lines of event types this version does not know
    truncated: bool = False
    header: dict[str, Any] | None = None


def read_recording(path: Path, stats: ReadStats | None = None) -> Iterator[MarketEvent]:
    """Yield the events of a recording (``.ndjson.gz`` or plain ``.ndjson``) in file order.

    A malformed line raises :class:`RecordingError` naming the file and line number; a file
    cut off inside the compressed stream ends the iteration quietly with
    ``stats.truncated = True``; a line of an event type this version does not know is skipped
    and counted in ``stats.skipped``.
    """
    st = stats if stats is not None else ReadStats()
    opener: Callable[[], IO[str]]
    with path.open("rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    if gz:

        def opener() -> IO[str]:
            return gzip.open(path, "rt", encoding="utf-8")
    else:

        def opener() -> IO[str]:
            return path.open(encoding="utf-8")

    with opener() as fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except (EOFError, zlib.error, gzip.BadGzipFile):
                st.truncated = True
                return
            if not line:
                return
            lineno += 1
            if not line.endswith("\n"):
                st.truncated = True  # the last line was being written when the file was cut
                return
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("expected a JSON object")
                if obj.get("type") == "header":
                    if obj.get("format") != FORMAT or obj.get("version") != VERSION:
                        raise ValueError(
                            f"not a {FORMAT} v{VERSION} header: "
                            f"{obj.get('format')!r} v{obj.get('version')!r}"
                        )
                    st.header = obj
                    continue
                event = decode_event(obj)
            except UnknownEventType:
                st.skipped += 1
                continue
            except (ValueError, KeyError) as exc:
                raise RecordingError(f"{path}:{lineno}: {exc}") from None
            st.events += 1
            yield event


class RecordingWriter:
    """Appends events to a gzip NDJSON file; :meth:`flush` makes everything written so far
    readable by another process (a gzip sync flush), :meth:`close` finishes the stream.

    Writing happens on the event loop (a line is a few hundred bytes); flushing and closing
    run in a worker thread so a slow disk never stalls market data.
    """

    def __init__(self, path: Path, *, venue: str, symbols: Sequence[str], started_ns: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._raw = path.open("xb")  # never overwrite an earlier recording
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
        self.events = 0
        header = {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "venue": venue,
            "symbols": list(symbols),
            "started_ns": started_ns,
        }
        self._write(header)

    def _write(self, obj: dict[str, Any]) -> None:
        self._gz.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def write(self, event: MarketEvent) -> None:
        self._write(encode_event(event))
        self.events += 1

    def _sync(self) -> None:
        self._gz.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()

    async def flush(self) -> None:
        await asyncio.to_thread(self._sync)

    async def close(self) -> None:
        def finish() -> None:
            with contextlib.ExitStack() as stack:
                stack.callback(self._raw.close)
                self._gz.close()

        await asyncio.to_thread(finish)
