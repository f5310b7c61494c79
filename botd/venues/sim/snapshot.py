"""The paper account on disk: a JSON snapshot plus a JSON-lines log of small deltas.

Why two files: an order must be durable before the venue acknowledges it, and the account's
history (up to 10 000 closed orders and 50 000 executions) makes a whole-account rewrite cost
tens to hundreds of milliseconds per order. So each operation appends one delta line and
fsyncs it (about the cost of one fsync), and once the log holds at least ``compact_every``
deltas *and* half the snapshot's size, the whole state is written as a new snapshot (temp
file, fsync, ``os.replace``, fsync of the directory) and the log is emptied. Tying compaction
to the snapshot's size keeps its amortised cost per operation constant as the history grows.

* ``<path>`` — the snapshot. It records ``log_seq``, the last delta folded into it, so a crash
  between replacing the snapshot and emptying the log replays nothing twice.
* ``<path>.log`` — one delta per line, each with an increasing ``seq``. A last line without its
  newline is a write the crash cut short: it was never fsynced, so never acknowledged, and is
  dropped. Anything else that does not parse is corruption and raises
  :class:`PaperStateError` naming the file: starting a fresh account instead would make
  reconciliation report a lie.

Amounts are ``Decimal`` written as strings; the market's fair price is a float signal and is
written as a JSON number (``repr`` round-trips exactly).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from botd.errors import ConfigError
from botd.model import (
    ExecutionReport,
    Liquidity,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    VenueOrder,
)
from botd.venues.sim.engine import AccountChanges, AccountSnapshot, RestingOrder

__all__ = ["FORMAT", "PaperDelta", "PaperState", "PaperStateError", "StateStore"]

FORMAT = "botd.paper-account"
VERSION = 1

_fdatasync = getattr(os, "fdatasync", os.fsync)  # fdatasync is enough for an append (Linux)


class PaperStateError(ConfigError):
    """The paper account's state file cannot be read. The operator decides: repair it, or move
    it aside to start a fresh account. A ``ConfigError`` so the daemon exits 78 and systemd
    does not restart-loop into the same error."""


@dataclass(frozen=True, slots=True)
class PaperState:
    venue: str
    restarts: int  # how many times the account was restored; the market reseeds from it
    order_seq: int
    trade_seq: int
    market: dict[str, tuple[float, str]]  # symbol -> (fair price, regime)
    account: AccountSnapshot


@dataclass(frozen=True, slots=True)
class PaperDelta:
    order_seq: int
    trade_seq: int
    market: dict[str, tuple[float, str]]
    changes: AccountChanges | None  # None: a checkpoint of the market only


class StateStore:
    def __init__(self, path: Path, *, compact_every: int = 1000) -> None:
        self.path = path
        self.log_path = path.with_name(path.name + ".log")
        self.compact_every = compact_every
        self._seq = 0  # last delta written (or folded into the snapshot)
        self._log_records = 0  # deltas in the log since the snapshot
        self._log_bytes = 0
        self._snapshot_bytes = 0
        self._good_log_bytes: int | None = None  # where a torn last line starts
        self._fd: int | None = None

    @property
    def log_records(self) -> int:
        return self._log_records

    @property
    def compaction_due(self) -> bool:
        return (
            self._log_records >= self.compact_every and 2 * self._log_bytes >= self._snapshot_bytes
        )

    # -- reading ------------------------------------------------------------------------------

    def load(self) -> PaperState | None:
        """The saved state with the log replayed onto it; None when there is no saved state."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if self.log_path.exists():
                raise self._error(self.log_path, "exists but its snapshot is missing") from None
            return None
        except OSError as exc:
            raise self._error(self.path, f"cannot be read: {exc}") from exc
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {VERSION}")
            state = _decode_state(doc)
            log_seq = int(doc["log_seq"])
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            raise self._error(self.path, f"is corrupt: {exc!r}") from exc
        self._seq = log_seq
        self._snapshot_bytes = len(raw)
        return self._replay(state, log_seq)

    def _replay(self, state: PaperState, log_seq: int) -> PaperState:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise self._error(self.log_path, f"cannot be read: {exc}") from exc
        lines = data.split(b"\n")
        tail = lines.pop()  # empty when the file ends with a newline
        if tail:
            # Cut short by a crash mid-write: never fsynced, so never acknowledged.
            self._good_log_bytes = len(data) - len(tail)
        open_orders = {o.venue_order_id: o for o in state.account.open}
        closed = list(state.account.closed)
        executions = list(state.account.executions)
        free, locked = state.account.free, state.account.locked
        order_seq, trade_seq, market = state.order_seq, state.trade_seq, dict(state.market)
        for number, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
                seq = int(rec["seq"])
                if seq <= log_seq:
                    continue  # already folded into the snapshot
                if seq != self._seq + 1:
                    raise ValueError(f"sequence {seq} follows {self._seq}")
                self._seq = seq
                order_seq, trade_seq = int(rec["order_seq"]), int(rec["trade_seq"])
                market.update(_decode_market(rec["market"]))
                if rec.get("free") is not None:
                    free, locked = _decode_amounts(rec["free"]), _decode_amounts(rec["locked"])
                    for voi in rec["removed"]:
                        open_orders.pop(str(voi), None)
                    for item in rec["upserted"]:
                        o = _decode_resting(item)
                        open_orders[o.venue_order_id] = o  # new ids come last: time priority
                    closed.extend(_decode_venue_order(x) for x in rec["closed"])
                    executions.extend(_decode_report(x) for x in rec["executions"])
            except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
                raise self._error(self.log_path, f"line {number} is corrupt: {exc!r}") from exc
            self._log_records += 1
            self._log_bytes += len(line) + 1
        account = AccountSnapshot(free, locked, list(open_orders.values()), closed, executions)
        return PaperState(state.venue, state.restarts, order_seq, trade_seq, market, account)

    # -- writing ------------------------------------------------------------------------------

    def write_snapshot(self, state: PaperState) -> None:
        """Replace the snapshot atomically, then empty the log it now contains."""
        doc = {"format": FORMAT, "version": VERSION, "log_seq": self._seq, **_encode_state(state)}
        data = json.dumps(doc, separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        # Only now may the log go: the snapshot holds everything in it.
        self._close_fd()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self._fd = fd
        os.fsync(fd)
        _fsync_dir(self.path.parent)
        self._log_records = 0
        self._log_bytes = 0
        self._snapshot_bytes = len(data)
        self._good_log_bytes = None

    def append(self, delta: PaperDelta) -> None:
        """Write one delta and make it durable before returning."""
        if self._fd is None:
            self._open_log()
        assert self._fd is not None
        rec: dict[str, Any] = {
            "seq": self._seq + 1,
            "order_seq": delta.order_seq,
            "trade_seq": delta.trade_seq,
            "market": _encode_market(delta.market),
        }
        ch = delta.changes
        if ch is not None:
            rec["free"] = _encode_amounts(ch.free)
            rec["locked"] = _encode_amounts(ch.locked)
            rec["upserted"] = [_encode_resting(o) for o in ch.upserted]
            rec["removed"] = ch.removed
            rec["closed"] = [_encode_venue_order(o) for o in ch.closed]
            rec["executions"] = [_encode_report(r) for r in ch.executions]
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
        _write_all(self._fd, line)
        _fdatasync(self._fd)
        self._seq += 1
        self._log_records += 1
        self._log_bytes += len(line)

    def close(self) -> None:
        self._close_fd()

    def _open_log(self) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self._good_log_bytes is not None:
            os.ftruncate(fd, self._good_log_bytes)  # drop the torn line before appending
            os.fsync(fd)
            self._good_log_bytes = None
        self._fd = fd
        _fsync_dir(self.log_path.parent)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def _error(path: Path, what: str) -> PaperStateError:
        return PaperStateError(
            f"paper account state file {path} {what}; refusing to start a fresh account over "
            f"it (repair it, or move it and {path.name}.log aside to start afresh)"
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    # Makes the rename (or the new file's name) itself durable, not only the file's contents.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- codec --------------------------------------------------------------------------------------


def _encode_state(s: PaperState) -> dict[str, Any]:
    a = s.account
    return {
        "venue": s.venue,
        "restarts": s.restarts,
        "order_seq": s.order_seq,
        "trade_seq": s.trade_seq,
        "market": _encode_market(s.market),
        "account": {
            "free": _encode_amounts(a.free),
            "locked": _encode_amounts(a.locked),
            "open": [_encode_resting(o) for o in a.open],
            "closed": [_encode_venue_order(o) for o in a.closed],
            "executions": [_encode_report(r) for r in a.executions],
        },
    }


def _decode_state(doc: dict[str, Any]) -> PaperState:
    a = doc["account"]
    account = AccountSnapshot(
        _decode_amounts(a["free"]),
        _decode_amounts(a["locked"]),
        [_decode_resting(x) for x in a["open"]],
        [_decode_venue_order(x) for x in a["closed"]],
        [_decode_report(x) for x in a["executions"]],
    )
    return PaperState(
        venue=str(doc["venue"]),
        restarts=int(doc["restarts"]),
        order_seq=int(doc["order_seq"]),
        trade_seq=int(doc["trade_seq"]),
        market=_decode_market(doc["market"]),
        account=account,
    )


def _encode_market(m: dict[str, tuple[float, str]]) -> dict[str, Any]:
    return {sym: {"fair": fair, "regime": regime} for sym, (fair, regime) in m.items()}


def _decode_market(m: dict[str, Any]) -> dict[str, tuple[float, str]]:
    return {str(sym): (float(v["fair"]), str(v["regime"])) for sym, v in m.items()}


def _encode_amounts(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {asset: str(v) for asset, v in amounts.items()}


def _decode_amounts(amounts: dict[str, Any]) -> dict[str, Decimal]:
    return {str(asset): _dec(v) for asset, v in amounts.items()}


def _dec(v: object) -> Decimal:
    if not isinstance(v, str):
        raise TypeError(f"amount {v!r} is not a decimal string")
    d = Decimal(v)
    if not d.is_finite():
        raise ValueError(f"amount {v!r} is not finite")
    return d


def _opt_dec(v: object) -> Decimal | None:
    return None if v is None else _dec(v)


def _encode_resting(o: RestingOrder) -> dict[str, Any]:
    return {
        "cid": o.client_order_id,
        "vid": o.venue_order_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "type": o.type.value,
        "qty": str(o.qty),
        "price": None if o.price is None else str(o.price),
        "tif": o.tif.value,
        "post_only": o.post_only,
        "ts": o.ts,
        "filled": str(o.filled),
        "locked": str(o.locked),
        "cost": str(o.cost),
        "updated": o.updated,
        # Stop orders only (absent in files written before stops existed).
        "stop": None if o.stop_price is None else str(o.stop_price),
    }


def _decode_resting(x: dict[str, Any]) -> RestingOrder:
    return RestingOrder(
        client_order_id=str(x["cid"]),
        venue_order_id=str(x["vid"]),
        symbol=str(x["symbol"]),
        side=Side(x["side"]),
        type=OrderType(x["type"]),
        qty=_dec(x["qty"]),
        price=_opt_dec(x["price"]),
        tif=TimeInForce(x["tif"]),
        post_only=bool(x["post_only"]),
        ts=int(x["ts"]),
        filled=_dec(x["filled"]),
        locked=_dec(x["locked"]),
        cost=_dec(x["cost"]),
        updated=int(x["updated"]),
        stop_price=_opt_dec(x.get("stop")),
    )


def _encode_venue_order(o: VenueOrder) -> dict[str, Any]:
    return {
        "venue": o.venue,
        "symbol": o.symbol,
        "cid": o.client_order_id,
        "vid": o.venue_order_id,
        "side": o.side.value,
        "type": o.type.value,
        "qty": str(o.qty),
        "price": None if o.price is None else str(o.price),
        "status": o.status.value,
        "filled": str(o.filled_qty),
        "avg_price": None if o.avg_price is None else str(o.avg_price),
        "ts": o.ts_event,
        "stop": None if o.stop_price is None else str(o.stop_price),
    }


def _decode_venue_order(x: dict[str, Any]) -> VenueOrder:
    return VenueOrder(
        venue=str(x["venue"]),
        symbol=str(x["symbol"]),
        client_order_id=str(x["cid"]),
        venue_order_id=str(x["vid"]),
        side=Side(x["side"]),
        type=OrderType(x["type"]),
        qty=_dec(x["qty"]),
        price=_opt_dec(x["price"]),
        status=OrderStatus(x["status"]),
        filled_qty=_dec(x["filled"]),
        avg_price=_opt_dec(x["avg_price"]),
        ts_event=int(x["ts"]),
        stop_price=_opt_dec(x.get("stop")),
    )


def _encode_report(r: ExecutionReport) -> dict[str, Any]:
    return {
        "venue": r.venue,
        "symbol": r.symbol,
        "cid": r.client_order_id,
        "vid": r.venue_order_id,
        "status": r.status.value,
        "ts": r.ts_event,
        "qty": str(r.last_qty),
        "price": str(r.last_price),
        "fee": str(r.fee),
        "fee_asset": r.fee_asset,
        "liquidity": r.liquidity.value,
        "trade_id": r.trade_id,
        "reason": r.reason,
        "extra": r.extra,
    }


def _decode_report(x: dict[str, Any]) -> ExecutionReport:
    extra = x["extra"]
    if not isinstance(extra, dict):
        raise TypeError("extra is not an object")
    return ExecutionReport(
        venue=str(x["venue"]),
        symbol=str(x["symbol"]),
        client_order_id=str(x["cid"]),
        venue_order_id=str(x["vid"]),
        status=OrderStatus(x["status"]),
        ts_event=int(x["ts"]),
        last_qty=_dec(x["qty"]),
        last_price=_dec(x["price"]),
        fee=_dec(x["fee"]),
        fee_asset=str(x["fee_asset"]),
        liquidity=Liquidity(x["liquidity"]),
        trade_id=str(x["trade_id"]),
        reason=str(x["reason"]),
        extra={str(k): str(v) for k, v in extra.items()},
    )
