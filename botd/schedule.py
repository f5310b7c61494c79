"""Timers for strategies and housekeeping, on the injected clock.

``every`` sleeps on the daemon's :class:`~botd.clock.Clock`, so timers run in simulated time in
tests and backtests exactly as they do live. ``cron`` uses APScheduler's crontab semantics
(``CronTrigger``) to compute each next fire time and then sleeps on the same clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from apscheduler.triggers.cron import CronTrigger

from botd.clock import NS_PER_SECOND, Clock

__all__ = ["Job", "ScheduleError", "Scheduler", "standard_cron"]

_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ScheduleError(ValueError):
    pass


@dataclass(eq=False)
class Job:
    name: str
    owner: str
    description: str
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    runs: int = 0

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def standard_cron(expr: str) -> str:
    """Translate numeric weekdays to names so they mean what they mean in crontab(5).

    APScheduler 3 numbers weekdays from Monday = 0, while cron uses Sunday = 0 (and 7): left
    alone, ``30 15 * * 1-5`` would fire Tuesday to Saturday.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ScheduleError(f"a cron expression has 5 fields, got {len(fields)} in {expr!r}")
    parts: list[str] = []
    for part in fields[4].split(","):
        base, slash, step = part.partition("/")
        first, dash, last = base.partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())):
            parts.append(part)
            continue
        lo, hi = int(first), int(last) if dash else None
        if lo > 7 or (hi is not None and hi > 7):
            raise ScheduleError(f"weekday out of range 0-7 in {expr!r}")
        if hi is None:
            parts.append(_DAY_NAMES[lo] + slash + step)
        elif lo == 0 and not slash:
            # Sunday-first ranges wrap in APScheduler's numbering: split off Sunday.
            parts.append("sun")
            if hi >= 1:
                parts.append(f"mon-{_DAY_NAMES[hi]}" if hi < 7 else "mon-sun")
        else:
            parts.append(f"{_DAY_NAMES[lo]}-{_DAY_NAMES[hi] if hi < 7 else 'sun'}{slash}{step}")
    fields[4] = ",".join(parts)
    return " ".join(fields)


class Scheduler:
    def __init__(
        self, clock: Clock, *, log: structlog.typing.FilteringBoundLogger | None = None
    ) -> None:
        self._clock = clock
        self._log = log or structlog.get_logger("botd.schedule")
        self._jobs: set[Job] = set()

    def every(self, interval_s: float, fn: Callable[[], None], *, owner: str, name: str) -> Job:
        if not interval_s > 0:
            raise ScheduleError(f"interval must be positive, got {interval_s!r}")
        job = Job(name, owner, f"every {interval_s:g}s")
        job.task = asyncio.get_running_loop().create_task(
            self._every(job, interval_s, fn, self._clock.monotonic_ns()),
            name=f"timer:{owner}:{name}",
        )
        self._jobs.add(job)
        return job

    def cron(
        self, expr: str, fn: Callable[[], None], *, owner: str, name: str, tz: str = "UTC"
    ) -> Job:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {tz!r}") from None
        try:
            trigger = CronTrigger.from_crontab(standard_cron(expr), timezone=zone)
        except ValueError as exc:
            raise ScheduleError(f"bad cron expression {expr!r}: {exc}") from None
        job = Job(name, owner, f"cron {expr!r} {tz}")
        job.task = asyncio.get_running_loop().create_task(
            self._cron(job, trigger, zone, fn), name=f"cron:{owner}:{name}"
        )
        self._jobs.add(job)
        return job

    def series(
        self,
        next_after: Callable[[int], int | None],
        fn: Callable[[int], None],
        *,
        owner: str,
        name: str,
        description: str = "series",
    ) -> Job:
        """Call ``fn(t)`` at each time ``t`` (ns since the epoch, the clock's ``time_ns``)
        that ``next_after`` gives after now, then after ``t``, until it gives None. Times the
        loop was too busy to reach are skipped, not replayed."""
        job = Job(name, owner, description)
        job.task = asyncio.get_running_loop().create_task(
            self._series(job, next_after, fn), name=f"series:{owner}:{name}"
        )
        self._jobs.add(job)
        return job

    def jobs(self, owner: str | None = None) -> list[Job]:
        return [j for j in self._jobs if owner is None or j.owner == owner]

    def cancel_owner(self, owner: str) -> int:
        jobs = self.jobs(owner)
        for job in jobs:
            job.cancel()
            self._jobs.discard(job)
        return len(jobs)

    async def close(self) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        self._jobs.clear()
        await asyncio.gather(*(j.task for j in jobs if j.task), return_exceptions=True)

    async def _every(
        self, job: Job, interval_s: float, fn: Callable[[], None], created_ns: int
    ) -> None:
        # Fixed rate from the moment the timer was asked for, so it does not drift by the
        # time each call takes; ticks missed while the loop was blocked are skipped, not
        # replayed in a burst.
        interval_ns = int(interval_s * NS_PER_SECOND)
        due = created_ns + interval_ns
        while True:
            wait_ns = due - self._clock.monotonic_ns()
            if wait_ns > 0:
                await self._clock.sleep(wait_ns / NS_PER_SECOND)
            job.runs += 1
            fn()
            now = self._clock.monotonic_ns()
            due += interval_ns
            if due <= now:
                due = now + interval_ns - (now - due) % interval_ns

    async def _series(
        self, job: Job, next_after: Callable[[int], int | None], fn: Callable[[int], None]
    ) -> None:
        ref = self._clock.time_ns()
        while True:
            due = next_after(ref)
            if due is None:
                return
            wait_ns = due - self._clock.time_ns()
            if wait_ns > 0:
                await self._clock.sleep(wait_ns / NS_PER_SECOND)
            job.runs += 1
            fn(due)
            ref = max(due, self._clock.time_ns())

    async def _cron(
        self, job: Job, trigger: CronTrigger, zone: ZoneInfo, fn: Callable[[], None]
    ) -> None:
        previous: datetime | None = None
        while True:
            now = datetime.fromtimestamp(self._clock.time_ns() / NS_PER_SECOND, tz=UTC)
            nxt = trigger.get_next_fire_time(previous, now.astimezone(zone))
            if nxt is None:
                return
            delay = (nxt - now).total_seconds()
            if delay > 0:
                await self._clock.sleep(delay)
            previous = nxt
            job.runs += 1
            fn()
