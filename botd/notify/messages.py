"""Events turned into short messages a person can read on a phone.

Rendering happens in the notifier's sender task, never in the bus handler: the handler only
queues the event itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from botd.clock import NS_PER_SECOND
from botd.events import KillSwitchChanged, StrategyHalted, VenueDown, VenueUp
from botd.gateway.gateway import Alert
from botd.model import Fill, OrderStatus, OrderUpdate

__all__ = ["DailySummary", "Notice", "fmt_duration", "fmt_price", "fmt_qty", "kind_of", "render"]

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Notice:
    """One message, as every transport sends it."""

    id: str
    kind: str
    title: str  # one line, the part a lock screen shows
    body: str  # further lines; may be empty
    ts_ns: int
    data: dict[str, str] = field(default_factory=dict)  # machine-readable, for webhooks
    # Set only on a coalesced message (several routine events in one window): the summary as
    # structured JSON for webhooks (see docs/operations.md, "Notifications").
    batch: Mapping[str, Any] | None = None

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.body}" if self.body else self.title

    @property
    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.ts_ns / NS_PER_SECOND, tz=UTC).isoformat()


@dataclass(frozen=True, slots=True)
class DailySummary:
    """Taken when the summary is due; rendered (and sent) afterwards."""

    ts_event: int
    timezone: str
    fills: int
    buys: int
    sells: int
    symbols: tuple[str, ...]
    rejections: int
    status: Mapping[str, Any]


def kind_of(event: object) -> str | None:
    """The ``notify.events`` name an event is filtered by; None if it is never notified."""
    if isinstance(event, Fill):
        return "fills"
    if isinstance(event, OrderUpdate):
        return "rejections" if event.order.status is OrderStatus.REJECTED else None
    if isinstance(event, StrategyHalted):
        return "strategy_halted"
    if isinstance(event, VenueDown):
        return "venue_down"
    if isinstance(event, VenueUp):
        return "venue_up"
    if isinstance(event, KillSwitchChanged):
        return "kill_switch"
    if isinstance(event, Alert):
        # The kill switch arrives as KillSwitchChanged (from every path that engages it).
        return None if event.kind == "kill_switch" else "alerts"
    if isinstance(event, DailySummary):
        return "daily_summary"
    return None


def fmt_qty(qty: Decimal) -> str:
    """``0.01000000`` -> ``0.01``; ``5E+1`` -> ``50``."""
    return format(qty.normalize(), "f")


def fmt_price(price: Decimal) -> str:
    """Thousands separators and at least two decimals: ``64210.5`` -> ``64,210.50``."""
    norm = price.normalize()
    exponent = norm.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        norm = norm.quantize(_CENT)
    return format(norm, ",f")


def fmt_duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def render(event: object, notice_id: str) -> Notice | None:
    kind = kind_of(event)
    if kind is None:
        return None
    if isinstance(event, Fill):
        return _fill(event, notice_id)
    if isinstance(event, OrderUpdate):
        return _rejection(event, notice_id)
    if isinstance(event, StrategyHalted):
        return Notice(
            notice_id,
            kind,
            f"Strategy {event.strategy_id} halted",
            f"{event.reason}\nIts open orders are being cancelled; the other strategies keep "
            "trading.",
            event.ts_event,
            {"strategy": event.strategy_id, "reason": event.reason},
        )
    if isinstance(event, VenueDown):
        return Notice(
            notice_id,
            kind,
            f"Venue {event.venue} DOWN",
            f"No market data for {fmt_duration(event.down_for_s)}: {event.reason}",
            event.ts_event,
            {"venue": event.venue, "reason": event.reason, "down_for_s": f"{event.down_for_s:.0f}"},
        )
    if isinstance(event, VenueUp):
        return Notice(
            notice_id,
            kind,
            f"Venue {event.venue} back up",
            f"Market data flowing again after {fmt_duration(event.down_for_s)}.",
            event.ts_event,
            {"venue": event.venue, "down_for_s": f"{event.down_for_s:.0f}"},
        )
    if isinstance(event, KillSwitchChanged):
        if event.engaged:
            title = "KILL SWITCH ENGAGED"
            body = (
                f"{event.reason}\nAll trading is halted and open orders are being cancelled. "
                "Release with `botd resume`."
            )
        else:
            title = "Kill switch released"
            body = f"{event.reason}\nTrading resumes."
        return Notice(
            notice_id,
            kind,
            title,
            body,
            event.ts_event,
            {"engaged": str(event.engaged).lower(), "reason": event.reason},
        )
    if isinstance(event, Alert):
        return Notice(
            notice_id,
            kind,
            f"Alert: {event.kind.replace('_', ' ')} ({event.venue})",
            event.message,
            event.ts_event,
            {"alert": event.kind, "venue": event.venue, "message": event.message},
        )
    if isinstance(event, DailySummary):
        return _summary(event, notice_id)
    return None  # pragma: no cover - kind_of and render cover the same types


def _fill(fill: Fill, notice_id: str) -> Notice:
    title = (
        f"{fill.side.value.upper()} {fmt_qty(fill.qty)} {fill.symbol} @ {fmt_price(fill.price)} "
        f"filled — strategy {fill.strategy_id} ({fill.venue})"
    )
    fee = f"fee {fmt_qty(fill.fee)} {fill.fee_asset}".rstrip() if fill.fee else "no fee"
    body = f"{fee} · {fill.liquidity.value} · order {fill.client_order_id}"
    return Notice(
        notice_id,
        "fills",
        title,
        body,
        fill.ts_event,
        {
            "strategy": fill.strategy_id,
            "venue": fill.venue,
            "symbol": fill.symbol,
            "side": fill.side.value,
            "qty": str(fill.qty),
            "price": str(fill.price),
            "fee": str(fill.fee),
            "fee_asset": fill.fee_asset,
            "client_order_id": fill.client_order_id,
            "trade_id": fill.trade_id,
        },
    )


def _rejection(update: OrderUpdate, notice_id: str) -> Notice:
    o = update.order
    price = f" @ {fmt_price(o.price)}" if o.price is not None else ""
    title = (
        f"Order rejected: {o.side.value.upper()} {fmt_qty(o.qty)} {o.symbol}{price} "
        f"— strategy {o.strategy_id} ({o.venue})"
    )
    return Notice(
        notice_id,
        "rejections",
        title,
        o.reason or "no reason given",
        update.ts_event,
        {
            "strategy": o.strategy_id,
            "venue": o.venue,
            "symbol": o.symbol,
            "side": o.side.value,
            "qty": str(o.qty),
            "price": "" if o.price is None else str(o.price),
            "reason": o.reason,
            "client_order_id": o.client_order_id,
        },
    )


def _summary(s: DailySummary, notice_id: str) -> Notice:
    local = datetime.fromtimestamp(s.ts_event / NS_PER_SECOND, tz=ZoneInfo(s.timezone))
    lines = []
    if s.fills:
        lines.append(f"Fills: {s.fills} ({s.buys} buys, {s.sells} sells) in {', '.join(s.symbols)}")
    else:
        lines.append("Fills: none")
    lines.append(f"Rejections: {s.rejections}")
    st = s.status
    if "pnl_today" in st:
        lines.append(f"Realized PnL today (UTC day): {st['pnl_today']}")
    strategies = st.get("strategies")
    if isinstance(strategies, Mapping):
        running = sorted(k for k, v in strategies.items() if v == "running")
        halted = sorted(k for k, v in strategies.items() if v == "halted")
        line = f"Strategies: {len(running)} running"
        if halted:
            line += f", {len(halted)} halted ({', '.join(halted)})"
        lines.append(line)
    if "trading" in st:
        kill = "ENGAGED" if st.get("kill_switch") else "off"
        orders = st.get("open_orders", 0)
        lines.append(f"Trading: {st['trading']} · kill switch {kill} · open orders {orders}")
    data = {
        "fills": str(s.fills),
        "buys": str(s.buys),
        "sells": str(s.sells),
        "rejections": str(s.rejections),
        **{k: str(v) for k, v in st.items() if not isinstance(v, Mapping)},
    }
    return Notice(
        notice_id,
        "daily_summary",
        f"Daily summary — {local:%Y-%m-%d %H:%M} {s.timezone}",
        "\n".join(lines),
        s.ts_event,
        data,
    )
