"""Trading sessions: when a venue's symbol trades, on whatever clock the caller reads.

A :class:`SessionCalendar` answers two questions about a time in ns since the epoch: is the
regular session open, and when does that next change. Crypto and the paper venue trade around
the clock (:data:`ALWAYS_OPEN`); US equities follow an exchange calendar
(:class:`ExchangeCalendar`, from the exchange_calendars library: holidays and early closes
included). Nothing here reads the wall clock, so the same answers hold live, in tests on a
``FakeClock`` and in backtests.

Venues say which calendar a symbol follows through an optional adapter method
``session_calendar(symbol) -> str | None`` (an exchange code such as ``"XNYS"``, or None for
around the clock); :class:`Sessions` turns those codes into calendars, loading each once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "ALWAYS_OPEN",
    "AlwaysOpen",
    "ExchangeCalendar",
    "SessionCalendar",
    "SessionSource",
    "Sessions",
    "venue_calendar_code",
]

_NS: Final = 1_000_000_000
# Longer than any run of closed days on a major exchange calendar (NYSE: 4 days).
_SEARCH_DAYS: Final = 15


class SessionCalendar(Protocol):
    @property
    def name(self) -> str: ...

    def is_open(self, ns: int) -> bool:
        """Whether the regular session is open at ``ns``."""
        ...

    def next_change(self, ns: int) -> int | None:
        """The first open or close strictly after ``ns``; None if it never changes (or lies
        beyond the calendar's range)."""
        ...


class SessionSource(Protocol):
    def calendar(self, venue: str, symbol: str) -> SessionCalendar: ...


class AlwaysOpen:
    """Around the clock: crypto, the paper venue, anything without a calendar."""

    @property
    def name(self) -> str:
        return "24/7"

    def is_open(self, ns: int) -> bool:
        return True

    def next_change(self, ns: int) -> int | None:
        return None


ALWAYS_OPEN: Final = AlwaysOpen()


class ExchangeCalendar:
    """Regular sessions (open to close; lunch breaks are not modelled) of one exchange
    calendar, e.g. ``"XNYS"``. exchange_calendars (and pandas) load on construction, which
    takes about a second: build one per code and share it."""

    def __init__(self, code: str) -> None:
        import exchange_calendars as xcals  # type: ignore[import-untyped]
        import pandas as pd  # type: ignore[import-untyped]

        try:
            self._cal: Any = xcals.get_calendar(code)
        except Exception as exc:  # InvalidCalendarName and friends
            raise ValueError(f"unknown exchange calendar {code!r}: {exc}") from None
        self._pd: Any = pd
        self._code = code
        self._tz = ZoneInfo(str(self._cal.tz))
        self._first: dt.date = self._cal.first_session.date()
        self._last: dt.date = self._cal.last_session.date()
        self._days: dict[dt.date, tuple[int, int] | None] = {}

    @property
    def name(self) -> str:
        return self._code

    def session_on(self, date: dt.date) -> tuple[int, int] | None:
        """(open, close) in ns of the session labelled ``date``; None if there is none."""
        if date in self._days:
            return self._days[date]
        found: tuple[int, int] | None = None
        if self._first <= date <= self._last:
            label = self._pd.Timestamp(date)
            if self._cal.is_session(label):
                found = (
                    int(self._cal.session_open(label).value),
                    int(self._cal.session_close(label).value),
                )
        self._days[date] = found
        return found

    def _local_date(self, ns: int) -> dt.date:
        return dt.datetime.fromtimestamp(ns / _NS, self._tz).date()

    def is_open(self, ns: int) -> bool:
        day = self._local_date(ns)
        for offset in (-1, 0, 1):  # sessions that start the evening before (futures)
            session = self.session_on(day + dt.timedelta(days=offset))
            if session is not None and session[0] <= ns < session[1]:
                return True
        return False

    def next_change(self, ns: int) -> int | None:
        day = self._local_date(ns)
        for offset in range(-1, _SEARCH_DAYS):
            session = self.session_on(day + dt.timedelta(days=offset))
            if session is None:
                continue
            opens, closes = session
            if opens > ns:
                return opens
            if closes > ns:
                return closes
        return None


def venue_calendar_code(adapter: object, symbol: str) -> str | None:
    """The calendar code an adapter declares for ``symbol`` (None: around the clock)."""
    declare = getattr(adapter, "session_calendar", None)
    if declare is None:
        return None
    code = declare(symbol)
    return code if isinstance(code, str) and code else None


class Sessions:
    """:class:`SessionSource` over a function naming each (venue, symbol)'s calendar code;
    one :class:`ExchangeCalendar` per code, loaded on first use."""

    def __init__(self, code_of: Callable[[str, str], str | None]) -> None:
        self._code_of = code_of
        self._calendars: dict[str, SessionCalendar] = {}

    def preload(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Load the calendars these (venue, symbol) pairs need now (e.g. on a worker thread
        at start-up) rather than on the event loop when a strategy first asks."""
        for venue, symbol in pairs:
            self.calendar(venue, symbol)

    def calendar(self, venue: str, symbol: str) -> SessionCalendar:
        code = self._code_of(venue, symbol)
        if code is None:
            return ALWAYS_OPEN
        found = self._calendars.get(code)
        if found is None:
            found = self._calendars[code] = ExchangeCalendar(code)
        return found
