"""One rate limiter per venue: exact waits on the injected clock, strict priorities.

A venue declares its limit pools (:class:`~botd.venues.base.RateLimit`) and what each endpoint
costs in each pool. :class:`Throttle` grants a request only when every pool it touches can take
its cost, computing *when* that will be from the pool's own arithmetic rather than polling:

* ``fixed``: windows aligned to the Unix epoch (Binance resets its minute weight on the minute
  and its daily order count at 00:00 UTC), so a full pool frees up exactly at the next boundary;
* ``rolling``: any ``interval``-long window holds at most ``limit``; a grant at ``t`` stops
  counting at ``t + interval``, so the wait is until enough of the oldest grants have expired;
* ``bucket``: a token bucket refilled continuously; the wait is ``deficit / rate``.

Time is integer nanoseconds of wall time (windows are calendar-aligned). Bucket levels are kept
as ``tokens * interval_ns`` so that a refill of ``dt`` ns adds exactly ``dt * limit``: no float
ever decides whether a grant fits, and every wait is rounded up to the next nanosecond.

Waiters are served by one timer task per throttle, created when someone has to wait and ended
when nobody is waiting. It sleeps on ``clock.sleep`` for exactly the head waiter's wait, grants
everything that fits at that instant, and sleeps again. ``acquire`` runs the same grant pass
synchronously, so a request that fits now is granted without yielding, and a new head with an
earlier grant time replaces the timer instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

import structlog

from botd.clock import NS_PER_SECOND, Clock
from botd.errors import Banned, BotdError
from botd.venues.base import RateLimit

__all__ = ["Priority", "Throttle", "Throttled"]

# Binance's 418 carries Retry-After, but a ban whose length we could not read must still be
# respected; two minutes is the shortest ban Binance documents.
DEFAULT_BAN_S = 120.0

# How far back we remember our own grants in fixed windows and buckets. A server counter comes
# back with the response to a request we sent moments ago; grants made after the counter was
# read are what it cannot include. Responses older than this are not worth reconciling, and the
# bound keeps a 160 000-per-day pool from holding a day of timestamps.
_IN_FLIGHT_NS = 60 * NS_PER_SECOND

AlertHook = Callable[[str, dict[str, object]], None]


class Priority(IntEnum):
    """Lower is served first: cancels reduce risk, new orders add it, queries can wait."""

    CANCEL = 0
    SUBMIT = 1
    QUERY = 2


class Throttled(BotdError):
    """The request could not be granted before its deadline; it was not sent."""

    def __init__(self, message: str, available_at_ns: int) -> None:
        super().__init__(message)
        self.available_at_ns = available_at_ns


def _current_task() -> asyncio.Task[object] | None:
    # observe()/pause()/ban() are plain methods and may be called with no loop running.
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _seconds_to_ns(seconds: float) -> int:
    """Durations the venue tells us (Retry-After): rounded up, since waiting 1 ns too long is
    harmless and 1 ns too short is not."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return math.ceil(seconds * NS_PER_SECOND)


def _sleep_seconds(wait_ns: int) -> float:
    """The float to hand ``clock.sleep`` so that it sleeps at least ``wait_ns``.

    ``wait_ns / 1e9 * 1e9`` can come back 1 ns short (FakeClock truncates with ``int``), which
    would wake us just before the grant time and cost a second sleep of 1 ns.
    """
    seconds = wait_ns / NS_PER_SECOND
    while int(seconds * NS_PER_SECOND) < wait_ns:
        seconds = math.nextafter(seconds, math.inf)
    return seconds


class _Log:
    """(ts, cost) entries in time order with prefix sums, so that "how much after t" and "when
    have the oldest ``n`` expired" are bisections, not scans of up to ``limit`` entries."""

    __slots__ = ("_base", "_cum", "_start", "_ts")

    def __init__(self) -> None:
        self._ts: list[int] = []
        self._cum: list[int] = []  # cumulative cost up to and including each entry
        self._start = 0  # entries before this index were pruned
        self._base = 0  # cumulative cost of everything pruned

    def _top(self) -> int:
        return self._cum[-1] if self._cum else self._base

    def append(self, ts: int, cost: int) -> None:
        # Keep the order even if the wall clock stepped back: counting an entry as slightly
        # later only makes it expire later, which errs on the safe side.
        if self._ts and ts < self._ts[-1]:
            ts = self._ts[-1]
        self._ts.append(ts)
        self._cum.append(self._top() + cost)

    def prune_through(self, cutoff: int) -> None:
        """Forget entries at or before ``cutoff``."""
        i = bisect_right(self._ts, cutoff, lo=self._start)
        if i > self._start:
            self._base = self._cum[i - 1]
            self._start = i
            if self._start > 64 and 2 * self._start > len(self._ts):
                del self._ts[: self._start]
                del self._cum[: self._start]
                self._start = 0

    def total(self) -> int:
        return self._top() - self._base

    def sum_after(self, ts: int) -> int:
        """Cost of the retained entries strictly after ``ts``."""
        i = bisect_right(self._ts, ts, lo=self._start)
        before = self._cum[i - 1] if i > self._start else self._base
        return self._top() - before

    def ts_reaching(self, amount: int) -> int:
        """Timestamp of the entry at which the oldest retained entries add up to ``amount``
        (``0 < amount <= total()``)."""
        i = bisect_left(self._cum, self._base + amount, lo=self._start)
        return self._ts[i]


class _Pool(Protocol):
    name: str
    limit: int

    def earliest(self, cost: int, now: int) -> int:
        """When ``cost`` would fit, if nothing else is consumed meanwhile. Availability only
        grows with time, so the max over pools is the earliest time they all fit."""
        ...

    def consume(self, cost: int, now: int) -> None: ...

    def observe(self, used: int, ts: int, now: int) -> None: ...

    def used(self, now: int) -> int: ...


class _FixedPool:
    def __init__(self, name: str, limit: int, interval_ns: int, now: int) -> None:
        self.name = name
        self.limit = limit
        self._interval = interval_ns
        self._window = now // interval_ns * interval_ns
        self._used = 0
        self._recent = _Log()  # our own grants, for counters read before they arrived

    def _roll(self, now: int) -> None:
        window = now // self._interval * self._interval
        # Never roll backwards: after the server told us its window had rolled (its clock is
        # ahead of ours), our own clock still reads the old window for a while.
        if window > self._window:
            self._window = window
            self._used = 0
        self._recent.prune_through(max(self._window, now - _IN_FLIGHT_NS) - 1)

    def earliest(self, cost: int, now: int) -> int:
        self._roll(now)
        if self._used + cost <= self.limit:
            return now
        return self._window + self._interval

    def consume(self, cost: int, now: int) -> None:
        self._roll(now)
        self._used += cost
        self._recent.append(now, cost)

    def observe(self, used: int, ts: int, now: int) -> None:
        self._roll(now)
        window = ts // self._interval * self._interval
        if window < self._window:
            return  # describes a window that is already over for us
        # The server could not have counted what we granted after it read its counter.
        server = used + self._recent.sum_after(ts)
        if window > self._window:
            # The server's window rolled before ours: its count is the truth for the new
            # window even if it is below what we sent in the old one.
            self._window = window
            self._used = server
        else:
            self._used = max(self._used, server)

    def used(self, now: int) -> int:
        self._roll(now)
        return self._used


class _RollingPool:
    def __init__(self, name: str, limit: int, interval_ns: int) -> None:
        self.name = name
        self.limit = limit
        self._interval = interval_ns
        self._log = _Log()  # grants, and usage the server reported that we cannot account for

    def _prune(self, now: int) -> None:
        # A grant at ts counts in the windows (t - interval, t] with t < ts + interval.
        self._log.prune_through(now - self._interval)

    def earliest(self, cost: int, now: int) -> int:
        self._prune(now)
        excess = self._log.total() + cost - self.limit
        if excess <= 0:
            return now
        return self._log.ts_reaching(excess) + self._interval

    def consume(self, cost: int, now: int) -> None:
        self._log.append(now, cost)

    def observe(self, used: int, ts: int, now: int) -> None:
        self._prune(now)
        if ts <= now - self._interval:
            return  # everything it counted has expired
        known = self._log.sum_after(ts - self._interval) - self._log.sum_after(ts)
        unknown = used - known
        if unknown > 0:
            # Someone else (another process on the same key) used this much at times we do not
            # know; charging it at ts is the latest it can have happened, hence the safe side.
            self._log.append(ts, unknown)

    def used(self, now: int) -> int:
        self._prune(now)
        return self._log.total()


class _BucketPool:
    def __init__(self, name: str, limit: int, interval_ns: int, now: int) -> None:
        self.name = name
        self.limit = limit
        self._interval = interval_ns
        # Level in tokens * interval_ns: refilling dt ns adds exactly dt * limit.
        self._capacity = limit * interval_ns
        self._level = self._capacity
        self._last = now
        self._recent = _Log()

    def _refill(self, now: int) -> None:
        if now > self._last:
            self._level = min(self._capacity, self._level + (now - self._last) * self.limit)
            self._last = now
        self._recent.prune_through(now - max(self._interval, _IN_FLIGHT_NS))

    def earliest(self, cost: int, now: int) -> int:
        self._refill(now)
        deficit = cost * self._interval - self._level
        if deficit <= 0:
            return now
        return max(now, self._last) + _ceil_div(deficit, self.limit)

    def consume(self, cost: int, now: int) -> None:
        self._refill(now)
        self._level -= cost * self._interval
        self._recent.append(now, cost)

    def observe(self, used: int, ts: int, now: int) -> None:
        self._refill(now)
        at = min(ts, self._last)
        server = min(self._capacity, (self.limit - used) * self._interval)
        server = min(self._capacity, server + (self._last - at) * self.limit)
        server -= self._recent.sum_after(at) * self._interval
        # Only ever lower our level: the server knows about other users of the key, but it
        # cannot know about our requests still in flight.
        self._level = min(self._level, server)

    def used(self, now: int) -> int:
        self._refill(now)
        return self.limit - self._level // self._interval


@dataclass(eq=False, slots=True)
class _Waiter:
    endpoint: str
    costs: tuple[tuple[_Pool, int], ...]
    deadline_ns: int | None
    future: asyncio.Future[None] = field(repr=False)


class Throttle:
    """Rate limiter for one venue. See the module docstring."""

    def __init__(
        self,
        venue: str,
        clock: Clock,
        limits: Sequence[RateLimit],
        costs: Mapping[str, Mapping[str, int]],
        *,
        log: structlog.typing.FilteringBoundLogger | None = None,
        on_alert: AlertHook | None = None,
    ) -> None:
        self.venue = venue
        self._clock = clock
        self._log = (log or structlog.get_logger("botd.throttle")).bind(venue=venue)
        self._on_alert = on_alert
        now = clock.time_ns()
        self._pools: dict[str, _Pool] = {}
        for rl in limits:
            self._pools[rl.pool] = self._make_pool(rl, now)
        self._costs: dict[str, tuple[tuple[_Pool, int], ...]] = {}
        for endpoint, per_pool in costs.items():
            self._costs[endpoint] = self._resolve_costs(endpoint, per_pool)
        self._pause_until = 0
        self._ban_until = 0
        self.pauses = 0  # 429s (pause() calls), for metrics
        self.bans = 0  # 418s (ban() calls)
        self._queue: list[tuple[int, int, _Waiter]] = []
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_target: int | None = None  # what the current timer is sleeping until
        self._wake_at: int | None = None  # when the head waiter can next be granted

    # -- construction ----------------------------------------------------------------------

    def _make_pool(self, rl: RateLimit, now: int) -> _Pool:
        if rl.pool in self._pools:
            raise ValueError(f"{self.venue}: rate limit pool {rl.pool!r} declared twice")
        if rl.limit <= 0 or not rl.interval_s > 0:
            raise ValueError(f"{self.venue}: pool {rl.pool!r} needs a positive limit and interval")
        # Intervals are nominal (60, 10, 86400, 0.7): round to whole ns so that a float artefact
        # cannot move a window boundary by 1 ns.
        interval_ns = round(rl.interval_s * NS_PER_SECOND)
        if rl.kind == "fixed":
            return _FixedPool(rl.pool, rl.limit, interval_ns, now)
        if rl.kind == "rolling":
            return _RollingPool(rl.pool, rl.limit, interval_ns)
        if rl.kind == "bucket":
            return _BucketPool(rl.pool, rl.limit, interval_ns, now)
        raise ValueError(f"{self.venue}: pool {rl.pool!r} has unknown kind {rl.kind!r}")

    def _resolve_costs(
        self, endpoint: str, per_pool: Mapping[str, int]
    ) -> tuple[tuple[_Pool, int], ...]:
        resolved: list[tuple[_Pool, int]] = []
        for pool_name, cost in per_pool.items():
            pool = self._pools.get(pool_name)
            if pool is None:
                raise ValueError(f"{self.venue}: {endpoint} costs {pool_name!r}, an unknown pool")
            if cost < 0:
                raise ValueError(f"{self.venue}: {endpoint} has a negative cost in {pool_name}")
            if cost > pool.limit:
                # It could never be granted, and as head of the queue it would block all others.
                raise ValueError(
                    f"{self.venue}: {endpoint} costs {cost} in {pool_name}, above its limit "
                    f"{pool.limit}"
                )
            if cost:
                resolved.append((pool, cost))
        return tuple(resolved)

    def _endpoint_costs(self, endpoint: str) -> tuple[tuple[_Pool, int], ...]:
        try:
            return self._costs[endpoint]
        except KeyError:
            raise ValueError(f"{self.venue}: unknown endpoint {endpoint!r}") from None

    # -- public API ------------------------------------------------------------------------

    @property
    def state(self) -> str:
        now = self._clock.time_ns()
        if now < self._ban_until:
            return "banned"
        if now < self._pause_until:
            return "paused"
        return "ok"

    def available_at(self, endpoint: str) -> int:
        """When a request to ``endpoint`` could be granted, ignoring queued waiters."""
        return self._earliest(self._endpoint_costs(endpoint), self._clock.time_ns())

    def usage(self) -> dict[str, tuple[int, int]]:
        now = self._clock.time_ns()
        return {name: (pool.used(now), pool.limit) for name, pool in self._pools.items()}

    async def acquire(
        self, endpoint: str, priority: Priority, *, deadline_ns: int | None = None
    ) -> None:
        """Wait until ``endpoint`` may be called, then consume its cost.

        Raises :class:`Throttled` if it could not be granted by ``deadline_ns`` (at once when
        that is already certain, or when it reaches the head of the queue), and
        :class:`~botd.errors.Banned` while the venue has banned us.
        """
        costs = self._endpoint_costs(endpoint)
        now = self._clock.time_ns()
        if now < self._ban_until:
            raise self._banned(now)
        if deadline_ns is not None:
            # A lower bound (the queue can only make it later): if even that misses the
            # deadline, the order would be stale, so tell the caller now.
            at = self._earliest(costs, now)
            if at > deadline_ns:
                raise self._throttled(endpoint, at, now)
        if not self._queue and self._earliest(costs, now) <= now:
            # Nobody waits and it fits now: granted at once, exactly as _pump would grant it
            # at the head of an empty queue (without a future or a heap entry).
            for pool, cost in costs:
                pool.consume(cost, now)
            self._schedule(None)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._queue,
            (int(priority), next(self._seq), _Waiter(endpoint, costs, deadline_ns, fut)),
        )
        self._pump()
        if not fut.done():
            try:
                await fut
            except asyncio.CancelledError:
                # Cancelling us cancels the future, which marks the waiter dead for _pump. If
                # the grant (or a Throttled) landed just before the cancellation, the cost stays
                # consumed: over-counting is safe, refunding a rolling log is not worth it.
                if fut.done() and not fut.cancelled():
                    fut.exception()  # retrieved, so asyncio does not log it as lost
                fut.cancel()
                # We may have been the head: let the next one go, or stop the idle timer.
                self._pump()
                raise
        fut.result()

    def observe(self, pool: str, used: int, ts_ns: int) -> None:
        """Adopt the server's counter ``used`` for ``pool`` (for Binance the
        ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` header of a response).

        ``ts_ns`` should be when the request that carried it was granted, on our clock: the
        server read its counter at or after that, so the counter is never carried into a window
        that began after it was read (a response crossing the minute must not fill the new
        minute with the old one's count), and our grants after ``ts_ns`` are added on top
        because the server may not have seen them. Our count is never lowered within a window;
        a counter from a window that is over is ignored; one from a later window (the server's
        clock is ahead) starts that window. Unknown pools are ignored: venues send headers for
        limits we do not model.
        """
        p = self._pools.get(pool)
        if p is None:
            return
        p.observe(used, ts_ns, self._clock.time_ns())
        # The head's wait may have changed either way (a server window that rolled before ours
        # frees capacity): re-evaluate it and the timer.
        self._pump()

    def pause(self, retry_after_s: float) -> None:
        """HTTP 429: send nothing of any kind for ``retry_after_s``."""
        self.pauses += 1
        now = self._clock.time_ns()
        until = now + _seconds_to_ns(retry_after_s)
        self._pause_until = max(self._pause_until, until)
        self._log.warning("rate_limited", retry_after_s=retry_after_s, until_ns=self._pause_until)
        self._alert(
            "rate_limited",
            {"venue": self.venue, "retry_after_s": retry_after_s, "until_ns": self._pause_until},
        )
        self._pump()

    def ban(self, retry_after_s: float | None) -> None:
        """HTTP 418: refuse every request with :class:`Banned` until the ban ends."""
        self.bans += 1
        seconds = DEFAULT_BAN_S if retry_after_s is None else retry_after_s
        now = self._clock.time_ns()
        self._ban_until = max(self._ban_until, now + _seconds_to_ns(seconds))
        self._log.error("banned", retry_after_s=seconds, until_ns=self._ban_until)
        self._alert(
            "banned", {"venue": self.venue, "retry_after_s": seconds, "until_ns": self._ban_until}
        )
        # Fails everyone queued: they would otherwise wait minutes to days in silence.
        self._pump()

    # -- internals -------------------------------------------------------------------------

    def _earliest(self, costs: tuple[tuple[_Pool, int], ...], now: int) -> int:
        at = max(now, self._pause_until, self._ban_until)
        for pool, cost in costs:
            at = max(at, pool.earliest(cost, now))
        return at

    def _banned(self, now: int) -> Banned:
        remaining = (self._ban_until - now) / NS_PER_SECOND
        return Banned(f"{self.venue}: banned for another {remaining:.1f} s", remaining)

    def _throttled(self, endpoint: str, at: int, now: int) -> Throttled:
        wait = (at - now) / NS_PER_SECOND
        return Throttled(
            f"{self.venue}: {endpoint} could not go for {wait:.3f} s, past its deadline", at
        )

    def _alert(self, kind: str, data: dict[str, object]) -> None:
        if self._on_alert is None:
            return
        try:
            self._on_alert(kind, data)
        except Exception:
            # pause()/ban() run inside the gateway's error handling; a broken alert hook must
            # not turn a 429 into a crash.
            self._log.exception("alert_hook_failed", kind=kind)

    def _pump(self) -> None:
        """Grant, in priority order, every waiter that fits now; then make sure the timer will
        wake exactly when the head fits.

        Strict head-of-line: a lower-priority request never overtakes a waiting higher one,
        even if it would fit, because it could take the very capacity the higher one waits
        for (a query eating the weight a cancel needs). The price is that a query may wait
        behind a submit held up by the order-count pool; submits carry deadlines, so that
        wait is short.
        """
        now = self._clock.time_ns()
        queue = self._queue
        wake_at: int | None = None
        while queue:
            waiter = queue[0][2]
            if waiter.future.done():  # cancelled by its caller
                heapq.heappop(queue)
                continue
            if now < self._ban_until:
                heapq.heappop(queue)
                waiter.future.set_exception(self._banned(now))
                continue
            at = self._earliest(waiter.costs, now)
            if waiter.deadline_ns is not None and at > waiter.deadline_ns:
                heapq.heappop(queue)
                waiter.future.set_exception(self._throttled(waiter.endpoint, at, now))
                continue
            if at > now:
                wake_at = at
                break
            for pool, cost in waiter.costs:
                pool.consume(cost, now)
            heapq.heappop(queue)
            waiter.future.set_result(None)
        self._schedule(wake_at)

    def _schedule(self, wake_at: int | None) -> None:
        self._wake_at = wake_at
        timer = self._timer
        if timer is not None and timer is _current_task():
            return  # the timer loop itself called us; it reads _wake_at when it goes round
        if wake_at is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is not None and not timer.done() and self._timer_target == wake_at:
            return
        # Replace rather than keep a timer set for another time: sleeping exactly until the
        # new head's grant time keeps waits exact (never early, never late).
        if timer is not None:
            timer.cancel()
        self._timer_target = wake_at
        self._timer = asyncio.get_running_loop().create_task(
            self._run_timer(), name=f"throttle:{self.venue}"
        )

    async def _run_timer(self) -> None:
        me = asyncio.current_task()
        try:
            # Await clock.sleep directly (no wrapper tasks): a FakeClock gives a woken sleeper
            # only a few loop iterations before it moves time on, and the grants and the next
            # sleep must all happen at the instant we woke.
            while (target := self._wake_at) is not None:
                self._timer_target = target
                wait_ns = max(0, target - self._clock.time_ns())
                await self._clock.sleep(_sleep_seconds(wait_ns))
                try:
                    self._pump()
                except Exception as exc:
                    # A bug here must not leave every caller hanging forever.
                    self._log.exception("throttle_failed")
                    self._fail_all(exc)
                    return
        finally:
            if self._timer is me:
                self._timer = None
                self._timer_target = None

    def _fail_all(self, exc: BaseException) -> None:
        queue, self._queue = self._queue, []
        self._wake_at = None
        for _, _, waiter in queue:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
