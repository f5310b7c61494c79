"""Fans operator-relevant bus events out to notification transports, off the hot path.

The bus handler does one thing: append the event to each transport's bounded queue. A sender
task per transport renders and delivers, retrying with exponential backoff and jitter (or as
long as the receiver asked, e.g. Telegram's ``retry_after``). A slow or unreachable transport
therefore never delays trading, and never delays the other transport.

Overflow policy: **drop-oldest**. When a queue is full the oldest queued notice is discarded
and counted; one warning is logged when a burst starts overflowing and one line (with the
count) when the queue has drained. The newest news is the most useful after an outage: that a
venue is back up matters more than the fills from before it went down.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from botd.bus import Bus
from botd.clock import Clock
from botd.events import KillSwitchChanged, StrategyHalted, VenueDown, VenueUp
from botd.gateway.gateway import Alert
from botd.model import Fill, OrderStatus, OrderUpdate, Side
from botd.notify.messages import DailySummary, Notice, kind_of, render
from botd.notify.transports import DeliveryError, Transport
from botd.schedule import Scheduler

__all__ = ["EVENT_KINDS", "Notifier", "TransportStats"]

EVENT_KINDS = (
    "fills",
    "rejections",
    "strategy_halted",
    "venue_down",
    "venue_up",
    "kill_switch",
    "alerts",
)
_TYPES_OF: Mapping[str, tuple[type, ...]] = {
    "fills": (Fill,),
    "rejections": (OrderUpdate,),
    "strategy_halted": (StrategyHalted,),
    "venue_down": (VenueDown,),
    "venue_up": (VenueUp,),
    "kill_switch": (KillSwitchChanged,),
    "alerts": (Alert,),
}


@dataclass(slots=True)
class TransportStats:
    sent: int = 0
    failed: int = 0  # given up on: permanent refusal or attempts exhausted
    dropped: int = 0  # discarded from a full queue
    retries: int = 0


@dataclass(eq=False)
class _Channel:
    transport: Transport
    queue: deque[tuple[int, object]]
    capacity: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stats: TransportStats = field(default_factory=TransportStats)
    busy: bool = False
    overflowing: bool = False
    dropped_in_burst: int = 0


class Notifier:
    def __init__(
        self,
        *,
        bus: Bus,
        clock: Clock,
        transports: Sequence[Transport],
        events: Iterable[str] = EVENT_KINDS,
        queue_size: int = 1000,
        max_attempts: int = 6,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_wait_s: float = 600.0,
        daily_summary_cron: str | None = None,
        timezone: str = "UTC",
        status: Callable[[], Mapping[str, Any]] | None = None,
        rng: random.Random | None = None,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        unknown = set(events) - set(EVENT_KINDS)
        if unknown:
            raise ValueError(f"unknown notification kinds {sorted(unknown)}")
        self._bus = bus
        self._clock = clock
        self._events = frozenset(events)
        # One queue and one sender per transport: a slow one never holds up another.
        self._channels = [_Channel(t, deque(), queue_size) for t in transports]
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._max_wait = max_wait_s
        self._summary_cron = daily_summary_cron
        self._timezone = timezone
        self._status = status
        self._rng = rng or random.Random()
        self._log = log or structlog.get_logger("botd.notify")
        self._seq = itertools.count(1)
        self._boot = format(clock.time_ns() // 1_000_000, "x")
        self._progress = asyncio.Event()
        self._subs: list[Any] = []
        # Counted since the last daily summary.
        self._fills = 0
        self._sides: Counter[Side] = Counter()
        self._symbols: dict[str, None] = {}
        self._rejections = 0

    @property
    def transports(self) -> list[str]:
        return [c.transport.name for c in self._channels]

    def stats(self) -> dict[str, TransportStats]:
        return {c.transport.name: c.stats for c in self._channels}

    def queued(self) -> int:
        return sum(len(c.queue) for c in self._channels)

    # -- bus side (hot path: enqueue only) ---------------------------------------------------
    def attach(self) -> None:
        """Subscribe to the kinds enabled (plus fills and orders if a summary counts them)."""
        wanted = {t for kind in self._events for t in _TYPES_OF[kind]}
        if self._summary_cron:
            wanted |= {Fill, OrderUpdate}
        handlers: dict[type, Callable[[Any], None]] = {
            Fill: self._on_fill,
            OrderUpdate: self._on_order_update,
        }
        for event_type in wanted:
            handler = handlers.get(event_type, self._on_event)
            self._subs.append(self._bus.subscribe(event_type, handler, name="notify"))

    def detach(self) -> None:
        for sub in self._subs:
            self._bus.unsubscribe(sub)
        self._subs.clear()

    def _on_fill(self, fill: Fill) -> None:
        if self._summary_cron:
            self._fills += 1
            self._sides[fill.side] += 1
            self._symbols[fill.symbol] = None
        if "fills" in self._events:
            self.enqueue(fill)

    def _on_order_update(self, update: OrderUpdate) -> None:
        if update.order.status is not OrderStatus.REJECTED:
            return
        self._rejections += 1
        if "rejections" in self._events:
            self.enqueue(update)

    def _on_event(self, event: object) -> None:
        kind = kind_of(event)
        if kind is not None and kind in self._events:
            self.enqueue(event)

    def enqueue(self, event: object) -> None:
        """Queue ``event`` for every transport; never blocks, never raises for a full queue."""
        seq = next(self._seq)
        for ch in self._channels:
            if len(ch.queue) >= ch.capacity:
                ch.queue.popleft()
                ch.stats.dropped += 1
                ch.dropped_in_burst += 1
                if not ch.overflowing:
                    ch.overflowing = True
                    self._log.warning(
                        "notification queue full; dropping the oldest",
                        transport=ch.transport.name,
                        capacity=ch.capacity,
                    )
            ch.queue.append((seq, event))
            ch.wake.set()

    # -- daily summary -----------------------------------------------------------------------
    def summary_due(self) -> None:
        """Snapshot the day so far and queue it (called by the cron job)."""
        status: Mapping[str, Any] = {}
        if self._status is not None:
            try:
                status = dict(self._status())
            except Exception:
                self._log.exception("daily summary status failed")
        summary = DailySummary(
            ts_event=self._clock.time_ns(),
            timezone=self._timezone,
            fills=self._fills,
            buys=self._sides[Side.BUY],
            sells=self._sides[Side.SELL],
            symbols=tuple(self._symbols),
            rejections=self._rejections,
            status=status,
        )
        self._fills, self._rejections = 0, 0
        self._sides.clear()
        self._symbols.clear()
        self.enqueue(summary)

    # -- sender side -------------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver until cancelled; closes the transports on the way out."""
        scheduler = Scheduler(self._clock)
        try:
            if self._summary_cron:
                scheduler.cron(
                    self._summary_cron,
                    self.summary_due,
                    owner="notify",
                    name="daily_summary",
                    tz=self._timezone,
                )
            async with asyncio.TaskGroup() as tg:
                for ch in self._channels:
                    tg.create_task(self._sender(ch), name=f"notify.{ch.transport.name}")
        finally:
            await scheduler.close()
            for ch in self._channels:
                try:
                    await ch.transport.close()
                except Exception as exc:  # closing must not mask the reason we stop
                    self._log.warning(
                        "notification transport close failed",
                        transport=ch.transport.name,
                        error=type(exc).__name__,
                    )

    async def drain(self) -> None:
        """Wait until every queued notice has been delivered or given up on."""
        while any(ch.queue or ch.busy for ch in self._channels):
            self._progress.clear()
            await self._progress.wait()

    async def _sender(self, ch: _Channel) -> None:
        while True:
            if not ch.queue:
                if ch.overflowing:
                    self._log.warning(
                        "notification queue drained",
                        transport=ch.transport.name,
                        dropped=ch.dropped_in_burst,
                    )
                    ch.overflowing, ch.dropped_in_burst = False, 0
                self._progress.set()
                ch.wake.clear()
                await ch.wake.wait()
                continue
            seq, event = ch.queue.popleft()
            ch.busy = True
            try:
                notice = render(event, f"{self._boot}-{seq}")
                if notice is not None:
                    await self._deliver(ch, notice)
            except Exception:
                # A rendering bug must not stop every later notification.
                ch.stats.failed += 1
                self._log.exception("notification failed", transport=ch.transport.name)
            finally:
                ch.busy = False
                self._progress.set()

    def _backoff(self, attempt: int) -> float:
        base = min(self._backoff_max, self._backoff_initial * 2.0 ** (attempt - 1))
        return base / 2 + self._rng.uniform(0, base / 2)

    async def _deliver(self, ch: _Channel, notice: Notice) -> None:
        name = ch.transport.name
        for attempt in range(1, self._max_attempts + 1):
            try:
                await ch.transport.send(notice)
            except DeliveryError as exc:
                if exc.permanent or attempt == self._max_attempts:
                    ch.stats.failed += 1
                    self._log.error(
                        "notification not delivered",
                        transport=name,
                        kind=notice.kind,
                        attempts=attempt,
                        error=str(exc),
                    )
                    return
                wait: float = self._backoff(attempt)
                if exc.retry_after is not None:
                    wait = exc.retry_after
                wait = min(wait, self._max_wait)
                ch.stats.retries += 1
                self._log.warning(
                    "notification delivery failed; retrying",
                    transport=name,
                    kind=notice.kind,
                    attempt=attempt,
                    retry_in_s=round(wait, 3),
                    error=str(exc),
                )
                await self._clock.sleep(wait)
                continue
            ch.stats.sent += 1
            self._log.debug("notification sent", transport=name, kind=notice.kind)
            return
