import asyncio
from datetime import UTC, datetime

import pytest

from botd.clock import NS_PER_SECOND, FakeClock
from botd.schedule import ScheduleError, Scheduler, standard_cron


async def test_every_runs_on_the_injected_clock_and_cancels_by_owner() -> None:
    clock = FakeClock(start_ns=0)
    sched = Scheduler(clock)
    a: list[int] = []
    b: list[int] = []
    sched.every(1.0, lambda: a.append(clock.time_ns()), owner="s1", name="a")
    sched.every(2.5, lambda: b.append(clock.time_ns()), owner="s2", name="b")
    await asyncio.sleep(0)
    await clock.advance(5.0)
    assert a == [i * NS_PER_SECOND for i in range(1, 6)]
    assert b == [int(2.5 * NS_PER_SECOND), 5 * NS_PER_SECOND]
    assert sched.cancel_owner("s1") == 1
    await clock.advance(3.0)
    assert len(a) == 5
    assert len(b) == 3
    await sched.close()
    assert sched.jobs() == []


async def test_cron_fires_at_wall_times_in_simulated_time() -> None:
    start = datetime(2026, 11, 23, 15, 29, tzinfo=UTC)  # a Monday
    clock = FakeClock(start_ns=int(start.timestamp()) * NS_PER_SECOND)
    sched = Scheduler(clock)
    fired: list[datetime] = []
    sched.cron(
        "30 15 * * 1-5",
        lambda: fired.append(datetime.fromtimestamp(clock.time_ns() / NS_PER_SECOND, UTC)),
        owner="s",
        name="close",
    )
    await asyncio.sleep(0)
    await clock.advance(7 * 24 * 3600)
    await sched.close()
    assert [d.strftime("%a %H:%M") for d in fired] == [
        "Mon 15:30",
        "Tue 15:30",
        "Wed 15:30",
        "Thu 15:30",
        "Fri 15:30",
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("30 15 * * 1-5", "30 15 * * mon-fri"),
        ("0 9 * * 0", "0 9 * * sun"),
        ("0 9 * * 7", "0 9 * * sun"),
        ("0 9 * * 0-2", "0 9 * * sun,mon-tue"),
        ("0 9 * * 6,0", "0 9 * * sat,sun"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("*/5 * * * *", "*/5 * * * *"),
    ],
)
def test_weekdays_mean_what_crontab_means(expr: str, expected: str) -> None:
    assert standard_cron(expr) == expected


async def test_bad_schedules_are_refused() -> None:
    sched = Scheduler(FakeClock())
    with pytest.raises(ScheduleError, match="5 fields"):
        sched.cron("* * *", lambda: None, owner="s", name="x")
    with pytest.raises(ScheduleError, match="bad cron"):
        sched.cron("61 * * * *", lambda: None, owner="s", name="x")
    with pytest.raises(ScheduleError, match="time zone"):
        sched.cron("* * * * *", lambda: None, owner="s", name="x", tz="Mars/Base")
    with pytest.raises(ScheduleError, match="positive"):
        sched.every(0, lambda: None, owner="s", name="x")
