"""Operator actions on a daemon's data directory: the kill switch from the command line.

With a daemon running on the directory, ``botd kill`` and ``botd resume`` signal it (SIGUSR1,
SIGUSR2) and it acts at once: halt and cancel everything, or resume. With none running, they
change the kill switch in the journal, so the next start honours it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from botd.clock import LiveClock
from botd.model import Instrument, Order, Position, Quote
from botd.risk import RiskEngine
from botd.store import DB_FILENAME, Journal
from botd.store.commands import quiet_log

__all__ = ["running_pid", "set_kill_switch", "take_request"]

RISK_KEY = "risk"
REQUEST_FILE = "operator-request.json"


def take_request(data_dir: Path) -> str | None:
    """The reason an operator gave with ``botd kill``/``resume``, consumed once."""
    path = data_dir / REQUEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        path.unlink()
    except (OSError, ValueError):
        return None
    reason = data.get("reason") if isinstance(data, dict) else None
    return str(reason) if reason else None


def running_pid(data_dir: Path) -> int | None:
    """The pid of the daemon holding the data directory's lock, or None."""
    path = data_dir / "botd.lock"
    if not path.exists():
        return None
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            text = handle.read().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


class _NoMarket:
    """Offline there is no market; the kill switch never needs one."""

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return None

    def instrument(self, venue: str, symbol: str) -> Instrument:
        raise ValueError("no market while the daemon is stopped")

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position:
        return Position(venue, symbol)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        return []


async def _set_offline(data_dir: Path, engage: bool, reason: str) -> dict[str, Any]:
    journal = await Journal.open(
        data_dir / DB_FILENAME, clock=LiveClock(), log=quiet_log(sys.stderr)
    )
    try:
        risk = RiskEngine(clock=LiveClock(), view=_NoMarket())
        saved = await journal.get_value(RISK_KEY)
        if isinstance(saved, dict):
            risk.restore(saved)
        if engage:
            risk.kill(reason)
        else:
            risk.release(reason)
        snapshot = risk.snapshot()
        await journal.set_value(RISK_KEY, snapshot)
        journal.append_event("kill_switch", {"engaged": engage, "reason": reason, "by": "cli"})
        return snapshot
    finally:
        await journal.close()


def set_kill_switch(data_dir: Path, *, engage: bool, reason: str) -> str:
    """Engage or release the kill switch; returns what was done, for the operator."""
    pid = running_pid(data_dir)
    if pid is not None:
        # A signal carries no words: the reason travels in a file the daemon reads on it.
        request = data_dir / REQUEST_FILE
        tmp = request.with_suffix(".tmp")
        tmp.write_text(json.dumps({"engage": engage, "reason": reason}), encoding="utf-8")
        tmp.replace(request)
        os.kill(pid, signal.SIGUSR1 if engage else signal.SIGUSR2)
        action = "halt trading and cancel every open order" if engage else "resume trading"
        return f"asked the running daemon (pid {pid}) to {action}"
    asyncio.run(_set_offline(data_dir, engage, reason))
    if engage:
        return f"kill switch engaged in {data_dir}: the daemon will not trade when it starts"
    return f"kill switch released in {data_dir}"
