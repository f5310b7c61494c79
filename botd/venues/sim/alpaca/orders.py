"""The simulator's order record, its JSON as Alpaca sends it, and request-value parsing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from botd.venues.sim.alpaca.assets import AssetSpec
from botd.venues.sim.alpaca.errors import invalid
from botd.venues.sim.alpaca.wire import dec, rfc3339

__all__ = [
    "OPEN",
    "Order",
    "date_param",
    "decimal_param",
    "money",
    "opt_decimal",
    "order_json",
    "time_param",
]

_ZERO = Decimal(0)
_NS = 1_000_000_000
OPEN = ("new", "accepted", "partially_filled")


@dataclass(slots=True)
class Order:
    """An order as Alpaca shows it, and where it is in the simulator's life cycle."""

    id: str
    client_order_id: str
    account: str
    asset: AssetSpec
    side: str
    type: str
    tif: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    extended_hours: bool
    created_ns: int
    updated_ns: int
    start_ns: int = 0  # equities: not before this (the open of its session, or 04:00 ET)
    expires_ns: int | None = None  # DAY orders: end of their session
    fire_ns: int | None = None  # opg/cls: the auction time
    status: str = "accepted"
    filled_qty: Decimal = _ZERO
    cost: Decimal = _ZERO
    filled_ns: int | None = None
    expired_ns: int | None = None
    canceled_ns: int | None = None
    failed_ns: int | None = None
    replaced_ns: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    triggered: bool = False
    engine_cid: str | None = None  # set while working in the engine
    generation: int = 0
    announced: bool = False  # the "new" update went out

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def remaining(self) -> Decimal | None:
        return None if self.qty is None else self.qty - self.filled_qty


def order_json(o: Order) -> dict[str, object]:
    def ts(value: int | None) -> str | None:
        return None if value is None else rfc3339(value)

    avg = o.cost / o.filled_qty if o.filled_qty else None
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "created_at": rfc3339(o.created_ns),
        "updated_at": rfc3339(o.updated_ns),
        "submitted_at": rfc3339(o.created_ns),
        "filled_at": ts(o.filled_ns),
        "expired_at": ts(o.expired_ns),
        "expires_at": ts(o.expires_ns),
        "canceled_at": ts(o.canceled_ns),
        "failed_at": ts(o.failed_ns),
        "replaced_at": ts(o.replaced_ns),
        "replaced_by": o.replaced_by,
        "replaces": o.replaces,
        "asset_id": o.asset.asset_id,
        "symbol": o.asset.symbol,
        "asset_class": o.asset.asset_class,
        "notional": dec(o.notional),
        "qty": dec(o.qty),
        "filled_qty": dec(o.filled_qty),
        "filled_avg_price": None if avg is None else dec(avg.quantize(Decimal("1e-9"))),
        "order_class": "",
        "order_type": o.type,
        "type": o.type,
        "side": o.side,
        "time_in_force": o.tif,
        "limit_price": dec(o.limit_price),
        "stop_price": dec(o.stop_price),
        "status": o.status,
        "extended_hours": o.extended_hours,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
    }


def decimal_param(raw: object, name: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise invalid(f"{name} must be a number")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid(f"invalid {name}: {raw}") from None
    if not value.is_finite():
        raise invalid(f"invalid {name}: {raw}")
    return value


def opt_decimal(body: Mapping[str, Any], name: str) -> Decimal | None:
    raw = body.get(name)
    return None if raw is None or raw == "" else decimal_param(raw, name)


def money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def time_param(q: Mapping[str, str], name: str) -> int | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"invalid {name}: {raw}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp()) * _NS + parsed.microsecond * 1000


def date_param(q: Mapping[str, str], name: str) -> dt.date | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw[:10])
    except ValueError:
        raise invalid(f"invalid {name}: {raw}") from None
