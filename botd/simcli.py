"""``botd sim binance``: serve the Binance spot protocol simulator on loopback."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
from decimal import Decimal
from typing import TextIO

from botd.clock import LiveClock
from botd.venues.sim.binance import BinanceSimulator

__all__ = ["add_sim_parser", "run_sim_command"]

_DEFAULT_BALANCES = {"USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("10")}


def add_sim_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = subparsers.add_parser("sim", help="serve a venue protocol simulator on loopback")
    venues = sim.add_subparsers(dest="sim_venue", required=True, metavar="VENUE")
    binance = venues.add_parser("binance", help="Binance spot REST API (/api/v3)")
    binance.add_argument("--port", type=int, default=8765, help="loopback port (default 8765)")
    binance.add_argument("--seed", type=int, default=7, help="seed of the simulated market")
    binance.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY:SECRET",
        help="an API key and its HMAC secret (repeatable); a demo pair is printed if none",
    )
    binance.add_argument(
        "--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated symbols to list"
    )


def _keys(specs: list[str], stdout: TextIO) -> dict[str, str]:
    keys: dict[str, str] = {}
    for spec in specs:
        key, sep, secret = spec.partition(":")
        if not sep or not key or not secret:
            raise SystemExit(f"botd sim binance: --key expects KEY:SECRET, got {key!r}:…")
        keys[key] = secret
    if not keys:
        key, secret = secrets.token_hex(16), secrets.token_hex(32)
        keys[key] = secret
        # A throwaway pair for a local simulator: printing it is the point.
        print(f"demo API key:    {key}\ndemo API secret: {secret}", file=stdout)
    return keys


async def _serve(args: argparse.Namespace, stdout: TextIO) -> None:
    keys = _keys(args.key, stdout)
    sim = BinanceSimulator(
        clock=LiveClock(),
        seed=args.seed,
        symbols=[s.strip() for s in args.symbols.split(",") if s.strip()],
        api_keys=keys,
        balances={key: _DEFAULT_BALANCES for key in keys},
    )
    port = await sim.start(port=args.port)
    print(f"Binance spot simulator on http://127.0.0.1:{port}/api/v3 (Ctrl-C stops)", file=stdout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def run_sim_command(args: argparse.Namespace, stdout: TextIO) -> int:
    asyncio.run(_serve(args, stdout))
    return 0
