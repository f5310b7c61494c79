"""Alpaca's trading API limit: requests per minute per account (200 by default).

The window is aligned to the minute of the injected clock, so it resets all at once; every
authenticated reply carries ``X-Ratelimit-Limit``, ``X-Ratelimit-Remaining`` and
``X-Ratelimit-Reset`` (epoch seconds of the reset), and a request over the limit gets 429.
"""

from __future__ import annotations

from botd.venues.sim.alpaca.errors import rate_limited

__all__ = ["RateLimiter"]

_MINUTE_NS = 60 * 1_000_000_000


class RateLimiter:
    def __init__(self, per_minute: int = 200) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._limit = per_minute
        self._windows: dict[str, tuple[int, int]] = {}  # account -> (window index, count)

    def charge(self, account: str, now_ns: int) -> dict[str, str]:
        """Count one request; the headers to send, or raise the 429 (which carries them)."""
        index = now_ns // _MINUTE_NS
        seen, count = self._windows.get(account, (index, 0))
        if seen != index:
            count = 0
        reset = str((index + 1) * _MINUTE_NS // 1_000_000_000)
        if count >= self._limit:
            raise rate_limited(self._headers(0, reset))
        count += 1
        self._windows[account] = (index, count)
        return self._headers(self._limit - count, reset)

    def _headers(self, remaining: int, reset: str) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(self._limit),
            "X-Ratelimit-Remaining": str(remaining),
            "X-Ratelimit-Reset": reset,
        }
