"""``botd record``: write a venue's market-data stream to a recording for replay and backtests.

The stream is kept flowing by the same :class:`~botd.feeds.runner.FeedRunner` the daemon uses
(reconnect with jittered backoff), so a recording survives disconnects; each reconnect is
logged. The file is flushed every few seconds, so a recorder that is killed loses at most that
much, and a recording is never overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import structlog

from botd.bus import Bus
from botd.clock import Clock
from botd.errors import ConfigError
from botd.feeds.runner import FeedRunner
from botd.model import Bar, BookDelta, BookSnapshot, MarketEvent, Quote, Trade
from botd.recording import RecordingWriter
from botd.settings import Settings
from botd.stopsignal import until_stop_signal
from botd.venues.base import VenueAdapter

__all__ = ["RecordResult", "add_record_parser", "build_record_venue", "record"]

_EVENT_TYPES: tuple[type, ...] = (Quote, Trade, Bar, BookSnapshot, BookDelta)


def add_record_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    rec = subparsers.add_parser(
        "record",
        help="write a venue's market data to a compressed NDJSON recording (for backtests)",
    )
    rec.add_argument(
        "--venue",
        default="paper",
        help="'paper' (the built-in simulated exchange) or a configured [venues.NAME]",
    )
    rec.add_argument(
        "--symbols", help="comma-separated symbols (default: the venue's configured symbols)"
    )
    rec.add_argument("--out", type=Path, required=True, help="output file, e.g. btc.ndjson.gz")
    rec.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)"
    )
    rec.add_argument(
        "--flush-every", type=float, default=5.0, help="seconds between flushes (default 5)"
    )
    return rec


def build_record_venue(
    settings: Settings, venue: str, symbols: Sequence[str] | None, clock: Clock
) -> tuple[VenueAdapter, list[str]]:
    """The adapter to record from and the symbols, validated; ``ConfigError`` names the
    setting or flag at fault."""
    if venue == "paper":
        from botd.venues.sim.paper import PaperVenue, UnknownSymbol

        chosen = list(symbols) if symbols else list(settings.paper.symbols)
        p = settings.paper
        try:
            adapter: VenueAdapter = PaperVenue(
                clock=clock,
                symbols=chosen,
                seed=p.seed,
                event_rate=p.event_rate,
                maker_fee=p.maker_fee,
                taker_fee=p.taker_fee,
                balances=p.balances,
            )
        except UnknownSymbol as exc:
            raise ConfigError(f"--symbols: {exc}") from None
        return adapter, chosen
    cfg = settings.venues.get(venue)
    if cfg is None:
        known = ", ".join(["paper", *settings.venues]) or "paper"
        raise ConfigError(f"--venue: no venue named {venue!r} is configured (known: {known})")
    from botd.venues.registry import build_venue

    chosen = list(symbols) if symbols else list(cfg.symbols)
    if symbols:
        cfg = cfg.model_copy(update={"symbols": sorted({*cfg.symbols, *chosen})})
    if not chosen:
        raise ConfigError(f"--symbols: name the symbols to record (venues.{venue} lists none)")
    return build_venue(venue, cfg, clock), chosen


@dataclass(slots=True)
class RecordResult:
    events: int
    reconnects: int
    path: Path


async def record(
    adapter: VenueAdapter,
    symbols: Sequence[str],
    out: Path,
    *,
    clock: Clock,
    stop: asyncio.Event,
    duration: float | None = None,
    flush_every: float = 5.0,
    rng: random.Random | None = None,
) -> RecordResult:
    """Record until ``stop`` is set or ``duration`` seconds pass on ``clock``."""
    log = structlog.get_logger("botd.record").bind(venue=adapter.name)
    await adapter.connect()
    try:
        missing = [s for s in symbols if s not in adapter.instruments()]
        if missing:
            raise ConfigError(f"--symbols: {adapter.name} does not list {', '.join(missing)}")
        writer = RecordingWriter(
            out, venue=adapter.name, symbols=symbols, started_ns=clock.time_ns()
        )
        bus = Bus()

        def on_event(event: MarketEvent) -> None:
            writer.write(event)

        for etype in _EVENT_TYPES:
            bus.subscribe(etype, on_event, venue=adapter.name, name="recorder")
        feed = FeedRunner(
            adapter=adapter,
            symbols=symbols,
            bus=bus,
            clock=clock,
            rng=rng or random.Random(),
        )
        log.info("recording", symbols=list(symbols), out=str(out))

        async def flusher() -> None:
            while True:
                await clock.sleep(flush_every)
                await writer.flush()

        async def timer() -> None:
            if duration is not None:
                await clock.sleep(duration)
                stop.set()

        tasks = [
            asyncio.create_task(feed.run(), name="record.feed"),
            asyncio.create_task(flusher(), name="record.flush"),
            asyncio.create_task(timer(), name="record.timer"),
        ]
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([tasks[0], stopper], return_when=asyncio.FIRST_COMPLETED)
            if tasks[0] in done:
                tasks[0].result()  # an AuthError or a bug: surface it
        finally:
            for t in [*tasks, stopper]:
                t.cancel()
            for t in [*tasks, stopper]:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await writer.close()
        log.info("recording finished", events=writer.events, reconnects=feed.reconnects)
        return RecordResult(writer.events, feed.reconnects, out)
    finally:
        await adapter.close()


async def run_record(
    args: argparse.Namespace, settings: Settings, clock: Clock, stdout: TextIO
) -> int:
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    if args.out.exists():
        raise ConfigError(f"--out: {args.out} exists; botd never overwrites a recording")
    adapter, chosen = build_record_venue(settings, args.venue, symbols, clock)
    stop = asyncio.Event()

    async def on_signal() -> None:
        await until_stop_signal()
        stop.set()

    watcher = asyncio.create_task(on_signal())
    try:
        result = await record(
            adapter,
            chosen,
            args.out,
            clock=clock,
            stop=stop,
            duration=args.duration,
            flush_every=args.flush_every,
        )
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    print(
        f"recorded {result.events} events from {adapter.name} "
        f"({', '.join(chosen)}) to {result.path}; {result.reconnects} reconnects",
        file=stdout,
    )
    return 0
