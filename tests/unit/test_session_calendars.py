"""Exchange calendars on any clock, and the scheduler's ``series`` timer that drives the
session hooks."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from botd.clock import NS_PER_SECOND, FakeClock
from botd.schedule import Scheduler
from botd.sessions import ALWAYS_OPEN, ExchangeCalendar, Sessions, venue_calendar_code

ET = ZoneInfo("America/New_York")


def ns(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> int:
    return int(dt.datetime(y, mo, d, h, mi, s, tzinfo=ET).timestamp()) * NS_PER_SECOND


def et(value: int) -> str:
    return dt.datetime.fromtimestamp(value / NS_PER_SECOND, ET).strftime("%Y-%m-%d %H:%M")


@pytest.fixture(scope="module")
def xnys() -> ExchangeCalendar:
    return ExchangeCalendar("XNYS")


def test_regular_hours_weekends_holidays_and_early_closes(xnys: ExchangeCalendar) -> None:
    assert not xnys.is_open(ns(2024, 7, 1, 9, 29, 59))
    assert xnys.is_open(ns(2024, 7, 1, 9, 30))
    assert xnys.is_open(ns(2024, 7, 1, 15, 59, 59))
    assert not xnys.is_open(ns(2024, 7, 1, 16, 0))
    assert not xnys.is_open(ns(2024, 7, 6, 12, 0))  # Saturday
    assert not xnys.is_open(ns(2024, 7, 4, 12, 0))  # Independence Day
    assert xnys.is_open(ns(2024, 7, 3, 12, 59))  # the day before closes early
    assert not xnys.is_open(ns(2024, 7, 3, 13, 0))


def test_next_change_walks_opens_and_closes_across_a_holiday(xnys: ExchangeCalendar) -> None:
    t = ns(2024, 7, 3, 12, 0)
    changes = []
    for _ in range(4):
        nxt = xnys.next_change(t)
        assert nxt is not None
        assert nxt > t
        changes.append(et(nxt))
        t = nxt
    assert changes == [
        "2024-07-03 13:00",
        "2024-07-05 09:30",  # the 4th is a holiday
        "2024-07-05 16:00",
        "2024-07-08 09:30",  # then a weekend
    ]


def test_outside_the_calendar_range_it_is_closed_and_never_changes(
    xnys: ExchangeCalendar,
) -> None:
    far = ns(2199, 1, 6, 12, 0)
    assert not xnys.is_open(far)
    assert xnys.next_change(far) is None


def test_unknown_calendar_codes_are_value_errors() -> None:
    with pytest.raises(ValueError, match="NOPE"):
        ExchangeCalendar("NOPE")


def test_sessions_load_each_calendar_once_and_default_to_around_the_clock() -> None:
    asked: list[tuple[str, str]] = []

    def code_of(venue: str, symbol: str) -> str | None:
        asked.append((venue, symbol))
        return "XNYS" if venue == "alpaca" and "/" not in symbol else None

    sessions = Sessions(code_of)
    first = sessions.calendar("alpaca", "AAPL")
    assert sessions.calendar("alpaca", "MSFT") is first
    assert sessions.calendar("alpaca", "BTC/USD") is ALWAYS_OPEN
    assert sessions.calendar("binance", "BTCUSDT") is ALWAYS_OPEN
    assert ALWAYS_OPEN.is_open(0)
    assert ALWAYS_OPEN.next_change(0) is None
    assert len(asked) == 4


def test_venue_calendar_code_reads_the_optional_adapter_method() -> None:
    class Equities:
        def session_calendar(self, symbol: str) -> str | None:
            return "XNYS"

    assert venue_calendar_code(Equities(), "AAPL") == "XNYS"
    assert venue_calendar_code(object(), "AAPL") is None
    assert venue_calendar_code(None, "AAPL") is None


async def test_series_fires_at_each_given_time_on_the_injected_clock() -> None:
    clock = FakeClock(start_ns=1_000 * NS_PER_SECOND)
    scheduler = Scheduler(clock)
    times = [1_010, 1_020, 1_025]
    fired: list[tuple[int, int]] = []

    def next_after(t: int) -> int | None:
        later = [x * NS_PER_SECOND for x in times if x * NS_PER_SECOND > t]
        return later[0] if later else None

    job = scheduler.series(
        next_after, lambda due: fired.append((due, clock.time_ns())), owner="o", name="n"
    )
    await asyncio.sleep(0)
    await clock.advance(9)
    assert fired == []
    await clock.advance(30)
    assert [d // NS_PER_SECOND for d, _ in fired] == times
    assert all(now == due for due, now in fired)
    assert job.runs == 3
    await asyncio.sleep(0)
    assert job.task is not None and job.task.done()  # None: the series ended
    await scheduler.close()
