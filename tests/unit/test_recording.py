"""Recordings: every market event survives the round trip exactly, a cut file is readable up
to its last whole line, and a malformed line is named by file and line."""

from __future__ import annotations

import asyncio
import gzip
import random
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botd.clock import FakeClock
from botd.model import Bar, BookDelta, BookLevel, BookSnapshot, Quote, Side, Trade
from botd.recordcli import record
from botd.recording import (
    ReadStats,
    RecordingError,
    RecordingWriter,
    decode_event,
    encode_event,
    read_recording,
)
from botd.venues.sim.paper import PaperVenue

decimals = st.decimals(min_value=Decimal("0"), max_value=Decimal("1e9"), places=8, allow_nan=False)
times = st.integers(min_value=0, max_value=2**62)
names = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)
sides = st.sampled_from(list(Side))

events = st.one_of(
    st.builds(Quote, names, names, decimals, decimals, decimals, decimals, times, times),
    st.builds(Trade, names, names, decimals, decimals, sides, names, times, times),
    st.builds(
        Bar,
        names,
        names,
        st.sampled_from(["1s", "1m", "1h"]),
        decimals,
        decimals,
        decimals,
        decimals,
        decimals,
        times,
        times,
        times,
        times,
    ),
    st.builds(
        BookSnapshot,
        names,
        names,
        st.lists(st.builds(BookLevel, decimals, decimals), max_size=5).map(tuple),
        st.lists(st.builds(BookLevel, decimals, decimals), max_size=5).map(tuple),
        times,
        times,
        times,
    ),
    st.builds(BookDelta, names, names, sides, decimals, decimals, times, times, times),
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_every_event_round_trips_exactly(event: object) -> None:
    assert decode_event(encode_event(event)) == event  # type: ignore[arg-type]


def _sample(n: int) -> list[Quote | Trade]:
    out: list[Quote | Trade] = []
    for i in range(n):
        price = Decimal("100") + Decimal(i) / 100
        out.append(Quote("binance", "BTCUSDT", price, price + 1, Decimal(1), Decimal(2), i, i + 1))
        out.append(Trade("binance", "BTCUSDT", price, Decimal("0.5"), Side.BUY, str(i), i, i))
    return out


async def test_writer_then_reader_gives_back_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "rec.ndjson.gz"
    sample = _sample(500)
    writer = RecordingWriter(path, venue="binance", symbols=["BTCUSDT"], started_ns=42)
    for e in sample:
        writer.write(e)
    await writer.close()
    stats = ReadStats()
    assert list(read_recording(path, stats)) == sample
    assert stats.events == len(sample) and not stats.truncated
    assert stats.header is not None and stats.header["symbols"] == ["BTCUSDT"]
    with gzip.open(path, "rt") as fh:  # plain gzip NDJSON: any tool can read it
        assert fh.readline().startswith('{"type":"header"')


async def test_flushed_part_of_a_killed_recording_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "cut.ndjson.gz"
    sample = _sample(300)
    writer = RecordingWriter(path, venue="binance", symbols=["BTCUSDT"], started_ns=0)
    for e in sample[:200]:
        writer.write(e)
    await writer.flush()
    for e in sample[200:]:
        writer.write(e)  # never flushed: lost with the process
    # The process dies here: the file holds the flushed bytes and no gzip trailer.
    data = path.read_bytes()
    cut = tmp_path / "copy.ndjson.gz"
    cut.write_bytes(data)
    stats = ReadStats()
    got = list(read_recording(cut, stats))
    assert got == sample[:200]
    assert stats.truncated
    # Cut in the middle of a compressed block: everything before the damage, then stop.
    half = tmp_path / "half.ndjson.gz"
    half.write_bytes(data[: len(data) // 2])
    stats = ReadStats()
    partial = list(read_recording(half, stats))
    assert stats.truncated
    assert partial == sample[: len(partial)]


def test_a_malformed_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    good = (
        '{"type":"trade","venue":"v","symbol":"S","ts_ns":1,"price":"1","size":"1",'
        '"side":"buy","trade_id":"1"}\n'
    )
    path.write_text(good + good.replace('"price":"1"', '"price":1.5'))
    with pytest.raises(RecordingError, match=r"bad\.ndjson:2: price: expected a decimal string"):
        list(read_recording(path))
    path.write_text('{"type":"header","format":"other","version":1}\n')
    with pytest.raises(RecordingError, match=r":1: not a botd-recording v1 header"):
        list(read_recording(path))
    path.write_text(good + '{"type":"quote","venue":"v","symbol":"S","ts_ns":1,"bid":"NaN"}\n')
    with pytest.raises(RecordingError, match=r":2: "):
        list(read_recording(path))


async def test_writer_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson.gz"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        RecordingWriter(path, venue="v", symbols=[], started_ns=0)
    assert path.read_bytes() == b"precious"


async def test_record_from_the_paper_venue_on_a_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    venue = PaperVenue(
        clock=clock,
        symbols=["BTCUSDT"],
        seed=3,
        event_rate=20.0,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        balances={"USDT": Decimal(1000)},
    )
    out = tmp_path / "paper.ndjson.gz"
    stop = asyncio.Event()
    task = asyncio.create_task(
        record(venue, ["BTCUSDT"], out, clock=clock, stop=stop, duration=5.0, rng=random.Random(1))
    )
    for _ in range(200):
        await clock.advance(0.05)
        if task.done():
            break
    result = await asyncio.wait_for(task, 5)
    got = list(read_recording(out))
    assert result.events == len(got) > 20
    assert {type(e) for e in got} >= {Quote}
    assert all(e.symbol == "BTCUSDT" and e.venue == "paper" for e in got)
    ts = [e.ts_event for e in got]
    assert ts == sorted(ts)
