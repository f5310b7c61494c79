"""Keeping a flood of routine notices from burying the important ones.

Three pieces, all on the injected clock:

* **Priorities** — :func:`is_routine`: fills and rejections are routine; everything else (kill
  switch, venue down/up, strategy halted, alerts, the daily summary) is urgent.
* **Coalescing** — :class:`Batch` sums up the routine notices of one kind and one strategy that
  arrive within a window into one message (count, per venue/symbol/side quantity, VWAP,
  first/last price and time), in Decimal.
* **Pacing** — :class:`Pacer` spaces the requests to one receiver (Telegram: about one message
  a second per chat, 20 a minute in a group) so that a 429 is rare, not the brake.
"""

from __future__ import annotations

import collections
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botd.clock import NS_PER_SECOND, Clock
from botd.model import Fill, OrderUpdate
from botd.notify.messages import Notice, fmt_duration, fmt_price, fmt_qty, kind_of

__all__ = ["ROUTINE_KINDS", "Batch", "Pacer", "batch_key", "is_routine"]

ROUTINE_KINDS = frozenset({"fills", "rejections"})
_MAX_REASONS = 3


def is_routine(event: object) -> bool:
    return kind_of(event) in ROUTINE_KINDS


def batch_key(event: object) -> tuple[str, str] | None:
    """(kind, strategy) for an event that may be coalesced; None for one that is never."""
    if isinstance(event, Fill):
        return ("fills", event.strategy_id)
    if isinstance(event, OrderUpdate) and kind_of(event) == "rejections":
        return ("rejections", event.order.strategy_id)
    return None


@dataclass(slots=True)
class _Group:
    """One venue/symbol/side inside a batch."""

    venue: str
    symbol: str
    side: str
    count: int = 0
    qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)  # sum of qty * price (fills, and priced rejections)
    priced_qty: Decimal = Decimal(0)
    exponent: int = 0  # the finest price exponent seen: the VWAP is shown to that precision
    first_price: Decimal | None = None
    last_price: Decimal | None = None
    fees: dict[str, Decimal] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, qty: Decimal, price: Decimal | None) -> None:
        self.count += 1
        self.qty += qty
        if price is None:
            return
        self.notional += qty * price
        self.priced_qty += qty
        exp = price.normalize().as_tuple().exponent
        if isinstance(exp, int):
            self.exponent = min(self.exponent, exp)
        if self.first_price is None:
            self.first_price = price
        self.last_price = price

    @property
    def vwap(self) -> Decimal | None:
        if not self.priced_qty:
            return None
        return (self.notional / self.priced_qty).quantize(Decimal(1).scaleb(self.exponent))

    def label(self) -> str:
        return f"{self.side.upper()} {fmt_qty(self.qty)} {self.symbol}"

    def as_json(self) -> dict[str, Any]:
        vwap = self.vwap
        out: dict[str, Any] = {
            "venue": self.venue,
            "symbol": self.symbol,
            "side": self.side,
            "count": self.count,
            "qty": str(self.qty),
            "vwap": "" if vwap is None else str(vwap),
            "first_price": "" if self.first_price is None else str(self.first_price),
            "last_price": "" if self.last_price is None else str(self.last_price),
        }
        if self.fees or not self.reasons:
            out["notional"] = str(self.notional)
            out["fees"] = {asset: str(amount) for asset, amount in self.fees.items()}
        if self.reasons:
            out["reasons"] = dict(self.reasons)
        return out


class Batch:
    """The routine notices of one kind and strategy that arrived within one window.

    Aggregates only (plus the first event, so that a window holding a single event renders it
    exactly as it would have been rendered alone): memory stays bounded however long the flood.
    """

    def __init__(self, kind: str, strategy: str, window_s: float) -> None:
        self.kind = kind
        self.strategy = strategy
        self.window_s = window_s
        self.count = 0
        self.first: object | None = None
        self.first_ns = 0
        self.last_ns = 0
        self._groups: dict[tuple[str, str, str], _Group] = {}

    def add(self, event: object) -> None:
        if isinstance(event, Fill):
            ts, key = event.ts_event, (event.venue, event.symbol, event.side.value)
            group = self._group(key)
            group.add(event.qty, event.price)
            if event.fee:
                group.fees[event.fee_asset] = (
                    group.fees.get(event.fee_asset, Decimal(0)) + event.fee
                )
        elif isinstance(event, OrderUpdate):
            o = event.order
            ts, key = event.ts_event, (o.venue, o.symbol, o.side.value)
            group = self._group(key)
            group.add(o.qty, o.price)
            group.reasons[o.reason or "no reason given"] += 1
        else:  # pragma: no cover - batch_key admits only the two types above
            raise TypeError(f"cannot coalesce {type(event).__name__}")
        if self.count == 0:
            self.first, self.first_ns = event, ts
        self.count += 1
        self.first_ns = min(self.first_ns, ts)
        self.last_ns = max(self.last_ns, ts)

    def _group(self, key: tuple[str, str, str]) -> _Group:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(*key)
        return group

    def render(self, notice_id: str) -> Notice:
        """The one message for a batch of two or more (a single event renders as itself)."""
        groups = list(self._groups.values())
        window = (
            f"{self.window_s * 1000:.0f} ms" if self.window_s < 1 else fmt_duration(self.window_s)
        )
        if self.kind == "fills":
            noun = "fills"
            parts = []
            for g in groups:
                vwap = g.vwap
                parts.append(g.label() + (f" avg {fmt_price(vwap)}" if vwap is not None else ""))
        else:
            noun = "orders rejected"
            parts = [f"{g.label()} ({g.count})" for g in groups]
        title = f"{self.count} {noun} in {window} — {self.strategy}: {', '.join(parts)}"
        lines = [self._line(g) for g in groups]
        lines.append(f"first {_clock_time(self.first_ns)}, last {_clock_time(self.last_ns)} UTC")
        batch = {
            "count": self.count,
            "window_s": self.window_s,
            "strategy": self.strategy,
            "first_ts_ns": self.first_ns,
            "last_ts_ns": self.last_ns,
            "groups": [g.as_json() for g in groups],
        }
        data = {
            "strategy": self.strategy,
            "count": str(self.count),
            "window_s": f"{self.window_s:g}",
        }
        return Notice(notice_id, self.kind, title, "\n".join(lines), self.last_ns, data, batch)

    def _line(self, g: _Group) -> str:
        head = f"{g.venue} {g.label()}: {g.count}"
        if self.kind == "fills":
            line = head + (" fill" if g.count == 1 else " fills")
            if g.first_price is not None and g.last_price is not None:
                line += f", {fmt_price(g.first_price)} → {fmt_price(g.last_price)}"
            fees = ", ".join(
                f"{fmt_qty(amount)} {asset}".rstrip() for asset, amount in g.fees.items()
            )
            return line + (f", fees {fees}" if fees else "")
        reasons = "; ".join(f"{r} ({n})" for r, n in g.reasons.most_common(_MAX_REASONS))
        more = len(g.reasons) - _MAX_REASONS
        if more > 0:
            reasons += f"; {more} more"
        return f"{head} rejected: {reasons}"


def _clock_time(ts_ns: int) -> str:
    return f"{datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=UTC):%H:%M:%S}"


class Pacer:
    """At most one request per ``min_interval_s`` and ``per_minute`` per rolling 60 s (0: off)."""

    def __init__(self, clock: Clock, *, min_interval_s: float = 0.0, per_minute: int = 0) -> None:
        self._clock = clock
        self._gap_ns = int(min_interval_s * NS_PER_SECOND)
        self._per_minute = per_minute
        self._recent: collections.deque[int] = collections.deque(maxlen=per_minute or 1)
        self._last: int | None = None

    @property
    def enabled(self) -> bool:
        return self._gap_ns > 0 or self._per_minute > 0

    def delay_s(self) -> float:
        """How long until the next request may go."""
        now = self._clock.monotonic_ns()
        ready = now
        if self._last is not None and self._gap_ns:
            ready = max(ready, self._last + self._gap_ns)
        if self._per_minute and len(self._recent) == self._per_minute:
            ready = max(ready, self._recent[0] + 60 * NS_PER_SECOND)
        return (ready - now) / NS_PER_SECOND

    async def wait(self) -> float:
        """Sleep until a request may go, and count it as gone; returns the seconds waited."""
        waited = 0.0
        while (delay := self.delay_s()) > 0:
            waited += delay
            await self._clock.sleep(delay)
        now = self._clock.monotonic_ns()
        self._last = now
        if self._per_minute:
            self._recent.append(now)
        return waited
