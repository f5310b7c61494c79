"""US equity trading hours from the XNYS calendar (exchange_calendars), on any clock.

A session day has a regular session (09:30 to 16:00 ET, or an early close) and extended hours
around it: pre-market from 04:00 ET to the open and after-hours from the close for four hours
(to 20:00 ET on a normal day). Sessions are cached per date, so a market step costs a dict
lookup and integer comparisons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = ["ET", "AlwaysOpenHours", "Phase", "Session", "UsEquityHours"]

ET = ZoneInfo("America/New_York")
_NS = 1_000_000_000
_PRE_OPEN_NS = 5 * 3600 * _NS + 30 * 60 * _NS  # 04:00 ET is 5 h 30 before 09:30
_POST_CLOSE_NS = 4 * 3600 * _NS
_SEARCH_DAYS = 15  # longer than any run of closed days on the NYSE calendar


class Phase(StrEnum):
    CLOSED = "closed"
    PRE = "pre"
    REGULAR = "regular"
    POST = "post"


@dataclass(frozen=True, slots=True)
class Session:
    date: dt.date
    open_ns: int
    close_ns: int

    @property
    def pre_ns(self) -> int:
        return self.open_ns - _PRE_OPEN_NS

    @property
    def post_ns(self) -> int:
        return self.close_ns + _POST_CLOSE_NS

    def phase(self, ns: int) -> Phase:
        if self.open_ns <= ns < self.close_ns:
            return Phase.REGULAR
        if self.pre_ns <= ns < self.open_ns:
            return Phase.PRE
        if self.close_ns <= ns < self.post_ns:
            return Phase.POST
        return Phase.CLOSED


def et_date(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ns / _NS, ET).date()


class UsEquityHours:
    def __init__(self) -> None:
        # Imported here: pandas and the calendars take a second to import, and only a running
        # simulator needs them (not ``import botd.venues.sim.alpaca``).
        import exchange_calendars as xcals  # type: ignore[import-untyped]
        import pandas as pd  # type: ignore[import-untyped]

        self._pd = pd
        self._cal = xcals.get_calendar("XNYS")
        self._sessions: dict[dt.date, Session | None] = {}

    def session_on(self, date: dt.date) -> Session | None:
        if date in self._sessions:
            return self._sessions[date]
        label = self._pd.Timestamp(date)
        found: Session | None = None
        if self._cal.first_session <= label <= self._cal.last_session and self._cal.is_session(
            label
        ):
            found = Session(
                date,
                int(self._cal.session_open(label).value),
                int(self._cal.session_close(label).value),
            )
        self._sessions[date] = found
        return found

    def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        """Every session from ``start`` to ``end`` (inclusive) within the calendar's range."""
        rows = self._cal.schedule.loc[self._pd.Timestamp(start) : self._pd.Timestamp(end)]
        return [
            Session(label.date(), int(row.open.value), int(row.close.value))
            for label, row in zip(rows.index, rows.itertuples(), strict=True)
        ]

    @property
    def bounds(self) -> tuple[dt.date, dt.date]:
        return self._cal.first_session.date(), self._cal.last_session.date()

    def today(self, ns: int) -> Session | None:
        return self.session_on(et_date(ns))

    def phase(self, ns: int) -> Phase:
        session = self.today(ns)
        return Phase.CLOSED if session is None else session.phase(ns)

    def is_open(self, ns: int) -> bool:
        return self.phase(ns) is Phase.REGULAR

    def next_session(self, ns: int, *, extended: bool = False) -> Session:
        """The session an order sent at ``ns`` works in: today's while its regular (or, with
        ``extended``, its extended) hours have not ended, else the next one."""
        date = et_date(ns)
        for i in range(_SEARCH_DAYS):
            session = self.session_on(date + dt.timedelta(days=i))
            if session is None:
                continue
            end = session.post_ns if extended else session.close_ns
            if ns < end:
                return session
        raise ValueError("no NYSE session within two weeks: outside the calendar's range")

    def next_open(self, ns: int) -> int:
        """The first regular open after ``ns`` (the next day's while the market is open)."""
        session = self.next_session(ns)
        if session.open_ns > ns:
            return session.open_ns
        return self.next_session(session.close_ns).open_ns

    def next_close(self, ns: int) -> int:
        return self.next_session(ns).close_ns


class AlwaysOpenHours(UsEquityHours):
    """Every calendar day (ET) is one session from midnight to midnight: the equities trade
    whatever the time. For tests and demos run while the real market is closed
    (``botd sim alpaca --session always-open``); never what Alpaca does."""

    def __init__(self) -> None:  # no calendar to load
        self._sessions = {}

    def session_on(self, date: dt.date) -> Session | None:
        found = self._sessions.get(date)
        if found is None:
            start = dt.datetime.combine(date, dt.time(), ET)
            end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), ET)
            found = Session(date, int(start.timestamp()) * _NS, int(end.timestamp()) * _NS)
            self._sessions[date] = found
        return found

    def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        days = (end - start).days + 1
        return [s for i in range(days) if (s := self.session_on(start + dt.timedelta(i)))]

    @property
    def bounds(self) -> tuple[dt.date, dt.date]:
        return dt.date(1970, 1, 2), dt.date(9999, 12, 30)
