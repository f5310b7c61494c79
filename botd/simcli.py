"""``botd sim binance``: serve the Binance spot protocol simulator on loopback."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from botd.clock import LiveClock
from botd.simcli_alpaca import add_alpaca_parser, run_alpaca
from botd.stopsignal import until_stop_signal
from botd.venues.sim.binance import ApiKey, BinanceSimulator
from botd.venues.sim.binance.faults import FaultSpecError, WireFaultPlan

__all__ = ["add_sim_parser", "run_sim_command"]

_EX_CONFIG = 78  # sysexits.h EX_CONFIG: a bad --faults spec
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
        help=(
            "an API key and its HMAC secret, or KEY:ed25519:PEMFILE for an Ed25519 key (the "
            "PEM file holds the public key, or the private key to derive it from); "
            "repeatable; a demo pair is printed if none"
        ),
    )
    binance.add_argument(
        "--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated symbols to list"
    )
    binance.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help=(
            "inject wire faults: comma-separated items, KIND[=ARG]@TRIGGER (fires once) or "
            "KIND[=ARG]~P (each event of its kind's site, with probability P), and seed=N for "
            "the probabilistic ones. KIND: drop, stall[=SECONDS], shutdown (stream messages); "
            "depth_gap, depth_dup (depth events); http500[=after], http503[=after] (REST "
            "requests; 'after': processed first), timeout[=hang] (POST /api/v3/order accepted, "
            "then no answer); reorder (user-data events); skew=MS (server clock offset, time "
            "trigger only). TRIGGER: n=N (the Nth event), t=SECONDS (from start), method=M, "
            "path=P, joined with '&'. A WS API method (method=order.place) or "
            "path=/ws-api/v3 puts http500, http503, timeout (order.place unless named), "
            "drop, stall or shutdown on WS API requests instead; KIND~P@method=M&path=P "
            "limits a probabilistic fault to those requests. Example: "
            "'depth_gap@n=5,http503~0.01,timeout@n=1,skew=-3000@t=60,seed=7' or "
            "'timeout@n=3&method=order.place,http503~0.02@path=/ws-api/v3'"
        ),
    )
    add_alpaca_parser(venues)


def _keys(specs: list[str], stdout: TextIO) -> dict[str, ApiKey]:
    keys: dict[str, ApiKey] = {}
    for spec in specs:
        key, sep, secret = spec.partition(":")
        if not sep or not key or not secret:
            raise SystemExit(f"botd sim binance: --key expects KEY:SECRET, got {key!r}:…")
        if secret.startswith("ed25519:"):
            keys[key] = _ed25519_key(key, secret.removeprefix("ed25519:"))
        else:
            keys[key] = ApiKey.hmac(secret)
    if not keys:
        key, secret = secrets.token_hex(16), secrets.token_hex(32)
        keys[key] = ApiKey.hmac(secret)
        # A throwaway pair for a local simulator: printing it is the point.
        print(f"demo API key:    {key}\ndemo API secret: {secret}", file=stdout)
    return keys


def _ed25519_key(key: str, path: str) -> ApiKey:
    try:
        return ApiKey.ed25519(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        # The path, never the file's content: it may be a private key.
        raise SystemExit(f"botd sim binance: --key {key}:ed25519:{path}: {e}") from None


async def _serve(
    args: argparse.Namespace, stdout: TextIO, faults: WireFaultPlan | None = None
) -> None:
    keys = _keys(args.key, stdout)
    sim = BinanceSimulator(
        clock=LiveClock(),
        seed=args.seed,
        symbols=[s.strip() for s in args.symbols.split(",") if s.strip()],
        api_keys=keys,
        balances={key: _DEFAULT_BALANCES for key in keys},
        faults=faults,
    )
    port = await sim.start(port=args.port)
    print(f"Binance spot simulator on http://127.0.0.1:{port}/api/v3 (Ctrl-C stops)", file=stdout)
    try:
        await until_stop_signal()
    finally:
        await sim.stop()


def run_sim_command(args: argparse.Namespace, stdout: TextIO) -> int:
    if args.sim_venue == "alpaca":
        return run_alpaca(args, stdout)
    faults = None
    if args.faults:
        try:
            faults = WireFaultPlan.parse(args.faults)
        except FaultSpecError as e:
            print(f"botd sim binance: --faults: {e}", file=sys.stderr)
            return _EX_CONFIG
    asyncio.run(_serve(args, stdout, faults))
    return 0
