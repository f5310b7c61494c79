"""Fans operator-relevant bus events out to notification transports, off the hot path.

The bus handler does one thing: append the event to each transport's bounded queue. A sender
task per transport renders and delivers, retrying with exponential backoff and jitter (or as
long as the receiver asked, e.g. Telegram's ``retry_after``). A slow or unreachable transport
therefore never delays trading, and never delays the other transport.

Priorities: fills and rejections are *routine*; the kill switch, venue down/up, strategy
halted, alerts and the daily summary are *urgent*. Urgent notices are sent before any queued
routine one.

Overflow policy: **drop-oldest, routine first**. When a queue is full the oldest queued
routine notice is discarded and counted; an urgent notice is only ever dropped for a newer
urgent one (a routine notice arriving at a queue full of urgent ones is the one dropped). One
warning is logged when a burst starts overflowing and one line (with the count) when the queue
has drained. The newest news is the most useful after an outage: that a venue is back up
matters more than the fills from before it went down.

Coalescing (``coalesce_window_s`` > 0): the first routine notice of a kind and strategy goes
out at once and opens a window; the ones arriving during it are summed up into one message
when it closes (see :class:`botd.notify.batching.Batch`), and the window rolls on while they
keep coming. A window that caught a single event sends it exactly as it would have gone alone.

Pacing: a transport given a :class:`~botd.notify.batching.Pacer` (Telegram) waits its turn
before each request, so the receiver's rate limit is rarely hit rather than used as the brake.
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
from botd.clock import NS_PER_SECOND, Clock
from botd.events import KillSwitchChanged, StrategyHalted, VenueDown, VenueUp
from botd.gateway.gateway import Alert
from botd.model import Fill, OrderStatus, OrderUpdate, Side
from botd.notify.batching import Batch, Pacer, batch_key, is_routine
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


@dataclass(slots=True)
class _Window:
    closes_ns: int
    batch: Batch | None = None  # the events caught since the window opened


@dataclass(eq=False)
class _Channel:
    transport: Transport
    capacity: int
    pacer: Pacer | None = None
    urgent: deque[tuple[int, object]] = field(default_factory=deque)
    routine: deque[tuple[int, object]] = field(default_factory=deque)  # an event or a Batch
    windows: dict[tuple[str, str], _Window] = field(default_factory=dict)  # by (kind, strategy)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    window_opened: asyncio.Event = field(default_factory=asyncio.Event)
    stats: TransportStats = field(default_factory=TransportStats)
    busy: bool = False
    overflowing: bool = False
    dropped_in_burst: int = 0

    def __len__(self) -> int:
        return len(self.urgent) + len(self.routine)


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
        coalesce_window_s: float = 0.0,
        pacing: Mapping[str, Pacer] | None = None,
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
        pacers = dict(pacing or {})
        self._channels = [_Channel(t, queue_size, pacers.get(t.name)) for t in transports]
        self._window_ns = int(coalesce_window_s * NS_PER_SECOND)
        self._window_s = coalesce_window_s
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
        return sum(
            len(c) + sum(w.batch.count for w in c.windows.values() if w.batch)
            for c in self._channels
        )

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
        key = batch_key(event) if self._window_ns else None
        for ch in self._channels:
            if key is not None and self._coalesce(ch, key, event):
                continue
            self._push(ch, seq, event, routine=is_routine(event))

    def _coalesce(self, ch: _Channel, key: tuple[str, str], event: object) -> bool:
        """True if ``event`` joined an open window; else opens one (and the event goes now)."""
        window = ch.windows.get(key)
        if window is None:
            ch.windows[key] = _Window(self._clock.time_ns() + self._window_ns)
            ch.window_opened.set()
            return False
        if window.batch is None:
            window.batch = Batch(key[0], key[1], self._window_s)
        window.batch.add(event)
        return True

    def _push(self, ch: _Channel, seq: int, item: object, *, routine: bool) -> None:
        if len(ch) >= ch.capacity:
            if ch.routine:
                ch.routine.popleft()
            elif routine:
                item = None  # a full queue of urgent notices keeps them all
            else:
                ch.urgent.popleft()
            ch.stats.dropped += 1
            ch.dropped_in_burst += 1
            if not ch.overflowing:
                ch.overflowing = True
                self._log.warning(
                    "notification queue full; dropping the oldest",
                    transport=ch.transport.name,
                    capacity=ch.capacity,
                )
        if item is not None:
            (ch.routine if routine else ch.urgent).append((seq, item))
        ch.wake.set()

    def _close_windows(self, ch: _Channel, *, until_ns: int | None) -> None:
        """Send the batches of the windows closed by ``until_ns`` (None: all of them, now).

        A window that caught something is followed by a fresh one (the flood goes on); one that
        caught nothing ends, and the next event of its kind goes out at once again.
        """
        for key, window in list(ch.windows.items()):
            if until_ns is not None and window.closes_ns > until_ns:
                continue
            del ch.windows[key]
            batch = window.batch
            if batch is None:
                continue
            self._push(ch, next(self._seq), batch, routine=True)
            if until_ns is not None:
                ch.windows[key] = _Window(max(window.closes_ns + self._window_ns, until_ns + 1))

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
                    if self._window_ns:
                        tg.create_task(
                            self._windows(ch), name=f"notify.{ch.transport.name}.coalesce"
                        )
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
        """Send what open windows hold, then wait until every queued notice has been delivered
        or given up on."""
        for ch in self._channels:
            self._close_windows(ch, until_ns=None)
        while any(len(ch) or ch.busy for ch in self._channels):
            self._progress.clear()
            await self._progress.wait()

    async def _windows(self, ch: _Channel) -> None:
        """Close coalescing windows as they expire.

        A window opened while this task sleeps closes later than the one it sleeps for (every
        window is equally long), so sleeping until the earliest one is never too long.
        """
        while True:
            if not ch.windows:
                ch.window_opened.clear()
                await ch.window_opened.wait()
                continue
            closes_ns = min(w.closes_ns for w in ch.windows.values())
            delay_ns = closes_ns - self._clock.time_ns()
            if delay_ns > 0:
                await self._clock.sleep(delay_ns / NS_PER_SECOND)
            self._close_windows(ch, until_ns=self._clock.time_ns())

    async def _sender(self, ch: _Channel) -> None:
        while True:
            if not len(ch):
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
            seq, item = ch.urgent.popleft() if ch.urgent else ch.routine.popleft()
            ch.busy = True
            try:
                notice_id = f"{self._boot}-{seq}"
                if isinstance(item, Batch):
                    # One event in the window: sent exactly as it would have gone alone.
                    one = item.count == 1 and item.first is not None
                    notice = render(item.first, notice_id) if one else item.render(notice_id)
                else:
                    notice = render(item, notice_id)
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
                if ch.pacer is not None:
                    await ch.pacer.wait()
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
