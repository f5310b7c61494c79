"""Alpaca wire values to botd's domain types: timestamps, decimals, statuses, instruments.

Wire dictionaries stay in this package; everything leaving it is a ``botd.model`` type.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from botd.model import Instrument, OrderStatus, OrderType, Side, VenueOrder

__all__ = [
    "WireError",
    "format_ns",
    "instrument_from_asset",
    "parse_decimal",
    "parse_ns",
    "status_of",
    "venue_order",
]

_NS: Final = 1_000_000_000
_TS_RE: Final = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)
_STATUS: Final[Mapping[str, OrderStatus]] = {
    "new": OrderStatus.ACCEPTED,
    "accepted": OrderStatus.ACCEPTED,
    "pending_new": OrderStatus.ACCEPTED,
    "accepted_for_bidding": OrderStatus.ACCEPTED,
    "held": OrderStatus.ACCEPTED,
    "calculated": OrderStatus.ACCEPTED,
    "pending_replace": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "pending_cancel": OrderStatus.PENDING_CANCEL,
    "canceled": OrderStatus.CANCELED,
    "replaced": OrderStatus.CANCELED,
    "stopped": OrderStatus.ACCEPTED,
    "suspended": OrderStatus.ACCEPTED,
    "done_for_day": OrderStatus.EXPIRED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


class WireError(ValueError):
    """A venue message that does not have the shape Alpaca documents."""


def parse_ns(text: object) -> int:
    """An RFC 3339 timestamp (up to nanoseconds, any offset) as ns since the epoch."""
    if not isinstance(text, str):
        raise WireError(f"timestamp expected, got {text!r}")
    m = _TS_RE.match(text)
    if m is None:
        raise WireError(f"bad timestamp {text!r}")
    base, frac, zone = m.groups()
    offset = "+00:00" if zone == "Z" else zone
    seconds = int(dt.datetime.fromisoformat(base + offset).timestamp())
    return seconds * _NS + int((frac or "0").ljust(9, "0"))


def format_ns(ns: int) -> str:
    seconds, frac = divmod(ns, _NS)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def parse_decimal(value: object, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise WireError(f"{field}: number expected, got {value!r}")
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise WireError(f"{field}: bad number {value!r}") from None
    if not out.is_finite():
        raise WireError(f"{field}: bad number {value!r}")
    return out


def _opt_decimal(body: Mapping[str, Any], field: str) -> Decimal | None:
    value = body.get(field)
    return None if value is None or value == "" else parse_decimal(value, field)


def status_of(text: object) -> OrderStatus:
    status = _STATUS.get(str(text))
    if status is None:
        raise WireError(f"unknown order status {text!r}")
    return status


def instrument_from_asset(venue: str, asset: Mapping[str, Any]) -> Instrument:
    symbol = asset.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise WireError(f"asset without a symbol: {asset!r}")
    crypto = asset.get("class") == "crypto"
    if crypto:
        base, _, quote = symbol.partition("/")
        tick = _opt_decimal(asset, "price_increment") or Decimal("0.01")
        step = _opt_decimal(asset, "min_trade_increment") or Decimal("0.000000001")
        min_qty = _opt_decimal(asset, "min_order_size") or step
    else:
        base, quote = symbol, "USD"
        tick = Decimal("0.01")  # Alpaca refuses sub-penny prices (for prices >= 1 USD)
        step = Decimal("0.000000001") if asset.get("fractionable") else Decimal(1)
        min_qty = step
    if not base or not quote:
        raise WireError(f"cannot split {symbol!r} into base and quote")
    return Instrument(
        venue=venue,
        symbol=symbol,
        base=base,
        quote=quote,
        tick_size=tick,
        step_size=step,
        min_qty=min_qty,
    )


def venue_order(venue: str, body: Mapping[str, Any]) -> VenueOrder:
    try:
        qty = _opt_decimal(body, "qty")
        filled = parse_decimal(body.get("filled_qty", "0"), "filled_qty")
        return VenueOrder(
            venue=venue,
            symbol=str(body["symbol"]),
            client_order_id=str(body["client_order_id"]),
            venue_order_id=str(body["id"]),
            side=Side(body["side"]),
            type=_ORDER_TYPES.get(str(body.get("type")), OrderType.LIMIT),
            qty=qty if qty is not None else filled,
            price=_opt_decimal(body, "limit_price"),
            status=status_of(body.get("status")),
            filled_qty=filled,
            avg_price=_opt_decimal(body, "filled_avg_price"),
            ts_event=parse_ns(body.get("updated_at") or body.get("created_at")),
            stop_price=_opt_decimal(body, "stop_price"),
        )
    except (KeyError, ValueError) as exc:
        raise WireError(f"bad order object: {exc}") from None


# Alpaca's order types by name; anything else (trailing_stop) is not ours to place.
_ORDER_TYPES = {t.value: t for t in OrderType}
