"""Account activities of type FILL (``GET /v2/account/activities``), the venue's record of
every execution, for recovering fills missed while a client was away."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from botd.venues.sim.alpaca.errors import invalid
from botd.venues.sim.alpaca.orders import Order, time_param
from botd.venues.sim.alpaca.wire import dec, rfc3339

__all__ = ["ActivityLog"]

_NS = 1_000_000_000
_ZERO = Decimal(0)
_MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class _Fill:
    id: str
    ts: int
    body: dict[str, object]


def _activity_id(ts: int, execution_id: str) -> str:
    """Alpaca's form: a 17-digit UTC time (to the millisecond), ``::``, a UUID."""
    seconds, frac = divmod(ts, _NS)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}{frac // 1_000_000:03d}::{execution_id}"


class ActivityLog:
    def __init__(self, account_ids: Mapping[str, str]) -> None:
        self._account_ids = dict(account_ids)
        self._fills: dict[str, list[_Fill]] = {k: [] for k in account_ids}

    def record(
        self, o: Order, qty: Decimal, price: Decimal, done: bool, ts: int, execution_id: str
    ) -> None:
        leaves = _ZERO if done or o.qty is None else o.qty - o.filled_qty
        fill_id = _activity_id(ts, execution_id)
        body: dict[str, object] = {
            "id": fill_id,
            "account_id": self._account_ids[o.account],
            "activity_type": "FILL",
            "transaction_time": rfc3339(ts),
            "type": "fill" if done else "partial_fill",
            "price": dec(price),
            "qty": dec(qty),
            "side": o.side,
            "symbol": o.asset.symbol,
            "leaves_qty": dec(leaves),
            "order_id": o.id,
            "cum_qty": dec(o.filled_qty),
            "order_status": "filled" if done else "partially_filled",
        }
        self._fills[o.account].append(_Fill(fill_id, ts, body))

    def query(self, account: str, types: list[str], q: Mapping[str, str]) -> list[object]:
        unknown = [t for t in types if not t.isupper() or not t.isalpha()]
        if unknown:
            raise invalid(f"invalid activity type: {unknown[0]}")
        if types and "FILL" not in types:
            return []
        direction = q.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise invalid(f"invalid direction: {direction}")
        raw_size = q.get("page_size", str(_MAX_PAGE))
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= _MAX_PAGE:
            raise invalid(f"page_size must be between 1 and {_MAX_PAGE}")
        after = time_param(q, "after")
        until = time_param(q, "until")
        chosen = [
            f
            for f in self._fills[account]
            if (after is None or f.ts > after) and (until is None or f.ts < until)
        ]
        if direction == "desc":
            chosen.reverse()
        token = q.get("page_token")
        if token:
            ids = [f.id for f in chosen]
            if token not in ids:
                raise invalid("invalid page_token")
            chosen = chosen[ids.index(token) + 1 :]
        return [f.body for f in chosen[: int(raw_size)]]
