"""``botd sim alpaca``: serve the Alpaca simulator (trading API v2, data streams and
``trade_updates``) on one loopback port."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from typing import TextIO

from botd.clock import LiveClock
from botd.stopsignal import until_stop_signal
from botd.venues.sim.alpaca import AlpacaSimulator
from botd.venues.sim.alpaca.hours import AlwaysOpenHours

__all__ = ["add_alpaca_parser", "run_alpaca"]


def add_alpaca_parser(venues: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alpaca = venues.add_parser(
        "alpaca", help="Alpaca trading API v2, market-data streams and trade_updates"
    )
    alpaca.add_argument("--port", type=int, default=8767, help="loopback port (default 8767)")
    alpaca.add_argument("--seed", type=int, default=7, help="seed of the simulated market")
    alpaca.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY:SECRET",
        help="an API key id and its secret (repeatable); a demo pair is printed if none",
    )
    alpaca.add_argument(
        "--session",
        choices=("calendar", "always-open"),
        default="calendar",
        help="equity trading hours: the NYSE calendar (default) or always open (for tests and "
        "demos while the real market is closed)",
    )


def _keys(specs: list[str], stdout: TextIO) -> dict[str, str]:
    keys: dict[str, str] = {}
    for spec in specs:
        key, sep, secret = spec.partition(":")
        if not sep or not key or not secret:
            raise SystemExit(f"botd sim alpaca: --key expects KEY:SECRET, got {key!r}:…")
        keys[key] = secret
    if not keys:
        key, secret = "PK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
        keys[key] = secret
        # A throwaway pair for a local simulator: printing it is the point.
        print(f"demo API key id:     {key}\ndemo API secret key: {secret}", file=stdout, flush=True)
    return keys


async def _serve(args: argparse.Namespace, stdout: TextIO) -> None:
    hours = AlwaysOpenHours() if args.session == "always-open" else None
    sim = AlpacaSimulator(
        clock=LiveClock(), seed=args.seed, api_keys=_keys(args.key, stdout), hours=hours
    )
    port = await sim.start(port=args.port)
    base = f"127.0.0.1:{port}"
    print(
        f"Alpaca simulator on http://{base}/v2 (trading), ws://{base}/stream (trade_updates),\n"
        f"ws://{base}/v2/iex, /v2/sip, /v2/test and /v1beta3/crypto/us (market data); "
        "Ctrl-C stops",
        file=stdout,
        flush=True,
    )
    try:
        await until_stop_signal()
    finally:
        await sim.stop()


def run_alpaca(args: argparse.Namespace, stdout: TextIO) -> int:
    asyncio.run(_serve(args, stdout))
    return 0
