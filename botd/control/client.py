"""``botd status | orders | positions | halt | resume | kill | strategies enable|disable|reload``:
the command-line client of a running daemon's control API.

The daemon's address comes from ``<data_dir>/control.json`` (or ``--url``); the token from
``--token``, else ``control.token`` in the settings (``BOTD_CONTROL__TOKEN``, a secret file),
else ``<data_dir>/control.token``. With no daemon answering, these commands exit 69
(EX_UNAVAILABLE) — except ``kill`` and ``resume``, which fall back to the offline path of
botd/operator.py (signal a daemon without the API, or change the journal for the next start).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from rich.console import Console
from rich.table import Table

from botd.control.auth import TokenError, read_token_file
from botd.control.server import CONTROL_FILE
from botd.operator import set_kill_switch
from botd.settings import Settings

__all__ = [
    "EX_NOPERM",
    "EX_UNAVAILABLE",
    "ControlClient",
    "NoDaemon",
    "add_control_parsers",
    "is_control_command",
    "run_control_command",
]

EX_OK = 0
EX_ERROR = 1
EX_SOFTWARE = 70
EX_UNAVAILABLE = 69
EX_NOPERM = 77
_TIMEOUT_S = 10.0
_DIRECT = ("status", "orders", "positions", "halt")
_STRATEGY_ACTIONS = ("enable", "disable", "reload")


class NoDaemon(Exception):
    """No daemon answers at the address we found (or there is none to find)."""


class ApiFailure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    url: str
    socket: str | None = None


def find_endpoint(data_dir: Path, url: str | None) -> Endpoint:
    if url:
        return Endpoint(url.rstrip("/"))
    path = data_dir / CONTROL_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoDaemon(
            f"no daemon found: {path} does not exist (is botd running with this data "
            "directory and [control] enabled? or give --url)"
        ) from None
    except (OSError, ValueError) as exc:
        raise NoDaemon(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        raise NoDaemon(f"{path} has no url")
    socket = info.get("socket")
    return Endpoint(info["url"].rstrip("/"), socket if isinstance(socket, str) else None)


def find_token(settings: Settings, given: str | None) -> str | None:
    if given:
        return given
    if settings.control.token is not None:
        return settings.control.token.get_secret_value()
    return read_token_file(settings.daemon.data_dir)


class ControlClient:
    def __init__(
        self, endpoint: Endpoint, token: str | None, *, cafile: Path | None = None
    ) -> None:
        self._endpoint = endpoint
        self._token = token
        self._cafile = cafile

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        ssl_ctx: ssl.SSLContext | bool = True
        if self._endpoint.url.startswith("https:") and self._cafile is not None:
            ssl_ctx = ssl.create_default_context(cafile=str(self._cafile))
        connector: aiohttp.BaseConnector = (
            aiohttp.UnixConnector(path=self._endpoint.socket)
            if self._endpoint.socket
            else aiohttp.TCPConnector(ssl=ssl_ctx)
        )
        url = self._endpoint.url + path
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=_TIMEOUT_S)
                ) as session,
                session.request(method, url, params=params, json=body, headers=headers) as resp,
            ):
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
            raise NoDaemon(f"no daemon answers at {self._endpoint.url}: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise ApiFailure(status, "bad_response", f"not JSON (HTTP {status})") from None
        if status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise ApiFailure(
                status, str(error.get("code", "error")), str(error.get("message", text))
            )
        if not isinstance(data, dict):
            raise ApiFailure(status, "bad_response", "expected a JSON object")
        return data


# -- argparse ----------------------------------------------------------------------------------


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="control API base URL (default: from <data_dir>/control.json)")
    p.add_argument(
        "--token",
        help="bearer token (default: BOTD_CONTROL__TOKEN, control.token, <data_dir>/control.token)",
    )
    p.add_argument("--cacert", type=Path, help="CA file to verify an https control API")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")


def add_control_parsers(
    sub: Any,
    config_flags: Callable[[argparse.ArgumentParser], None],
    *,
    kill: argparse.ArgumentParser,
    resume: argparse.ArgumentParser,
    strategies: Any,
) -> None:
    """Register the client commands; ``kill``, ``resume`` and ``strategies`` exist already."""
    status = sub.add_parser("status", help="a running daemon: trading state, venues, strategies")
    orders = sub.add_parser("orders", help="a running daemon's open and recent orders")
    orders.add_argument("--strategy")
    orders.add_argument("--symbol")
    orders.add_argument("--venue")
    orders.add_argument("--status", help="an order status, or 'open'")
    orders.add_argument("--open", action="store_true", help="only open orders")
    orders.add_argument("--limit", type=int, default=50)
    positions = sub.add_parser("positions", help="a running daemon's positions and balances")
    halt = sub.add_parser("halt", help="stop new orders (open ones stay); resume to undo")
    halt.add_argument("--reason", default="botd halt")
    for p in (status, orders, positions, halt):
        config_flags(p)
    for p in (status, orders, positions, halt, kill, resume):
        _client_flags(p)
    for action, text in (
        ("enable", "start a disabled or halted strategy in the running daemon (persisted)"),
        ("disable", "stop a strategy in the running daemon and cancel its orders (persisted)"),
        ("reload", "load a strategy's file again in the running daemon"),
    ):
        p = strategies.add_parser(action, help=text)
        p.add_argument("id", help="strategy id")
        config_flags(p)
        _client_flags(p)


def is_control_command(args: argparse.Namespace) -> bool:
    if args.command in (*_DIRECT, "kill", "resume"):
        return True
    return args.command == "strategies" and args.strategies_command in _STRATEGY_ACTIONS


# -- running -----------------------------------------------------------------------------------


def run_control_command(
    args: argparse.Namespace, settings: Settings, stdout: TextIO, stderr: TextIO
) -> int:
    data_dir = settings.daemon.data_dir
    cmd = args.command
    try:
        token = find_token(settings, args.token)
    except TokenError as exc:
        token = None
        print(f"botd: {exc}", file=stderr)
    try:
        endpoint = find_endpoint(data_dir, args.url)
        client = ControlClient(endpoint, token, cafile=args.cacert or settings.control.tls_cert)
        data = asyncio.run(_fetch(client, args))
    except NoDaemon as exc:
        if cmd in ("kill", "resume") and not args.url:
            # No control API to talk to: the operator path signals a daemon by pid, or sets
            # the switch in the journal for the next start.
            message = set_kill_switch(data_dir, engage=cmd == "kill", reason=args.reason)
            print(message, file=stdout)
            return EX_OK
        print(f"botd: {exc}", file=stderr)
        return EX_UNAVAILABLE
    except ApiFailure as exc:
        print(f"botd: {exc.message} ({exc.code}, HTTP {exc.status})", file=stderr)
        if exc.status == 401:
            return EX_NOPERM
        return EX_SOFTWARE if exc.status >= 500 else EX_ERROR
    if args.json:
        print(json.dumps(data, indent=2), file=stdout)
        return EX_OK
    _render(args, data, stdout)
    return EX_OK


async def _fetch(client: ControlClient, args: argparse.Namespace) -> dict[str, Any]:
    method, path, params, body = _request(args)
    data = await client.call(method, path, params=params, body=body)
    if args.command == "positions":
        data.update(await client.call("GET", "/v1/balances"))
    return data


def _request(
    args: argparse.Namespace,
) -> tuple[str, str, dict[str, str] | None, dict[str, Any] | None]:
    cmd = args.command
    if cmd == "status":
        return "GET", "/v1/status", None, None
    if cmd == "orders":
        params = {"limit": str(args.limit)}
        for name in ("strategy", "symbol", "venue", "status"):
            value = getattr(args, name)
            if value:
                params[name] = value
        if args.open:
            params["status"] = "open"
        return "GET", "/v1/orders", params, None
    if cmd == "positions":
        return "GET", "/v1/positions", None, None
    if cmd in ("halt", "resume", "kill"):
        return "POST", f"/v1/{cmd}", None, {"reason": args.reason}
    return "POST", f"/v1/strategies/{args.id}/{args.strategies_command}", None, None


def _console(stdout: TextIO) -> Console:
    return Console(file=stdout, width=None if stdout.isatty() else 200, highlight=False)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    return table


def _render(args: argparse.Namespace, data: dict[str, Any], stdout: TextIO) -> None:
    out = _console(stdout)
    cmd = args.command
    if cmd == "status":
        t = data["trading"]
        killed = "  KILL SWITCH ENGAGED" if t["killed"] else ""
        out.print(f"botd {data['version']}  pid {data['pid']}  up {data['uptime_s']:.0f}s")
        out.print(f"trading: {t['state']}{killed}" + (f"  ({t['reason']})" if t["reason"] else ""))
        out.print("ready" if data["ready"] else "NOT READY: " + "; ".join(data["not_ready"]))
        out.print(f"open orders: {data['open_orders']}")
        venue_rows = [
            (
                v["name"],
                "yes" if v["connected"] else "NO",
                "yes" if v["reconciled"] else "NO",
                v["trading_state"],
                v["rate_limiter"],
                v["stream_events"],
                v["reconcile_error"] or v["stream_error"],
            )
            for v in data["venues"]
        ]
        out.print(
            _table(
                "venues",
                ["VENUE", "CONNECTED", "RECONCILED", "TRADING", "LIMITER", "EVENTS", "ERROR"],
                venue_rows,
            )
        )
        out.print(
            _table(
                "strategies", ["ID", "STATUS"], [(s["id"], s["status"]) for s in data["strategies"]]
            )
        )
    elif cmd == "orders":
        rows = [
            (
                o["client_order_id"],
                o["strategy"],
                f"{o['venue']}:{o['symbol']}",
                o["side"],
                o["type"],
                o["qty"],
                o["price"] or "market",
                o["filled_qty"],
                o["status"],
                o["reason"] or None,
            )
            for o in data["orders"]
        ]
        columns = ["ID", "STRATEGY", "MARKET", "SIDE", "TYPE", "QTY", "PRICE", "FILLED"]
        out.print(_table(f"{data['count']} orders", [*columns, "STATUS", "REASON"], rows))
    elif cmd == "positions":
        prows = [
            (
                p["strategy"],
                f"{p['venue']}:{p['symbol']}",
                p["qty"],
                p["avg_price"],
                p["mark"],
                p["realized_pnl"],
                p["unrealized_pnl"],
                p["fees_quote"],
            )
            for p in data["positions"]
        ]
        columns = ["STRATEGY", "MARKET", "QTY", "AVG PRICE", "MARK", "REALIZED", "UNREALIZED"]
        out.print(_table("positions", [*columns, "FEES"], prows))
        balances = [
            (b["venue"], b["asset"], b["free"], b["locked"], b["total"])
            for b in data.get("balances", [])
        ]
        out.print(_table("balances", ["VENUE", "ASSET", "FREE", "LOCKED", "TOTAL"], balances))
    elif cmd in ("halt", "resume", "kill"):
        t = data["trading"]
        extra = f", cancelling {data['cancelling']} orders" if cmd == "kill" else ""
        # The wording of the offline path (botd/operator.py), so scripts see one phrase.
        out.print(f"asked the running daemon to {cmd}{extra}: trading is {t['state']}")
    else:
        s = data["strategy"]
        persisted = data.get("persisted")
        note = "" if persisted is None else (" (persisted)" if persisted else " (NOT persisted)")
        out.print(f"strategy {s['id']}: {s['status']}{note}")
