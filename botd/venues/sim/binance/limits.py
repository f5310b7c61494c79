"""Binance's fixed-window rate limits: request weight per IP, new orders per account.

Windows are aligned to the clock (the minute starts on the minute, the 10 s window at :00,
:10, ..., the day at 00:00 UTC), so the count resets all at once, as on the venue.

Bans are the one rule Binance does not publish in numbers: we answer 418 once an IP goes on
sending over the limit after ``ban_after_429s`` 429s in the same window, and each further ban
of that IP lasts twice as long as the previous one, from ``ban_base_s`` (2 min, the documented
minimum) up to ``ban_max_s`` (3 days, the documented maximum).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botd.venues.sim.binance.errors import BinanceError

__all__ = ["RateLimitConfig", "RateLimiter"]

MINUTE_MS = 60_000
TEN_S_MS = 10_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """The production numbers by default; tests shrink them to stay fast."""

    request_weight_per_minute: int = 6000
    orders_per_10s: int = 50
    orders_per_day: int = 160_000
    ban_after_429s: int = 1
    ban_base_s: int = 120
    ban_max_s: int = 3 * 86_400

    def rate_limits_json(self) -> list[dict[str, object]]:
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.request_weight_per_minute,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": self.orders_per_10s,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "DAY",
                "intervalNum": 1,
                "limit": self.orders_per_day,
            },
        ]


@dataclass(slots=True)
class _Window:
    index: int = -1
    count: int = 0

    def current(self, now_ms: int, size_ms: int) -> int:
        index = now_ms // size_ms
        if index != self.index:
            self.index, self.count = index, 0
        return self.count


@dataclass(slots=True)
class _IpState:
    weight: _Window = field(default_factory=_Window)
    strikes_window: int = -1  # the minute in which ``strikes`` 429s were answered
    strikes: int = 0
    banned_until_ms: int = 0
    bans: int = 0


@dataclass(slots=True)
class _AccountState:
    ten_s: _Window = field(default_factory=_Window)
    day: _Window = field(default_factory=_Window)


def _retry_after_s(until_ms: int, now_ms: int) -> str:
    return str(max(1, -(-(until_ms - now_ms) // 1000)))


class RateLimiter:
    def __init__(self, config: RateLimitConfig) -> None:
        self._config = config
        self._ips: dict[str, _IpState] = {}
        self._accounts: dict[str, _AccountState] = {}

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def used_weight(self, ip: str, now_ms: int) -> int:
        return self._ips.setdefault(ip, _IpState()).weight.current(now_ms, MINUTE_MS)

    def charge_weight(self, ip: str, weight: int, now_ms: int) -> None:
        """Count ``weight`` for ``ip``, or raise the 429/418 the venue would answer."""
        cfg = self._config
        st = self._ips.setdefault(ip, _IpState())
        if now_ms < st.banned_until_ms:
            raise self._banned(st, now_ms)
        used = st.weight.current(now_ms, MINUTE_MS)
        if used + weight <= cfg.request_weight_per_minute:
            st.weight.count = used + weight
            return
        window = now_ms // MINUTE_MS
        if st.strikes_window != window:
            st.strikes_window, st.strikes = window, 0
        if st.strikes >= cfg.ban_after_429s:
            duration_s = min(cfg.ban_base_s * 2**st.bans, cfg.ban_max_s)
            st.bans += 1
            st.banned_until_ms = now_ms + duration_s * 1000
            st.strikes = 0
            raise self._banned(st, now_ms)
        st.strikes += 1
        window_end = (window + 1) * MINUTE_MS
        raise BinanceError(
            -1003,
            f"Too much request weight used; current limit is {cfg.request_weight_per_minute} "
            "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to "
            "avoid polling the API.",
            status=429,
            headers={"Retry-After": _retry_after_s(window_end, now_ms)},
            retry_after_ms=window_end,
        )

    @staticmethod
    def _banned(st: _IpState, now_ms: int) -> BinanceError:
        return BinanceError(
            -1003,
            f"Way too much request weight used; IP banned until {st.banned_until_ms}. Please "
            "use WebSocket Streams for live updates to avoid bans.",
            status=418,
            headers={"Retry-After": _retry_after_s(st.banned_until_ms, now_ms)},
            retry_after_ms=st.banned_until_ms,
        )

    def order_counts(self, account: str, now_ms: int) -> tuple[int, int]:
        st = self._accounts.setdefault(account, _AccountState())
        return st.ten_s.current(now_ms, TEN_S_MS), st.day.current(now_ms, DAY_MS)

    def check_order(self, account: str, now_ms: int) -> None:
        """Raise -1015 if one more new order would go over either ORDERS limit."""
        cfg = self._config
        ten_s, day = self.order_counts(account, now_ms)
        for count, limit, label, size in (
            (ten_s, cfg.orders_per_10s, "10 SECOND", TEN_S_MS),
            (day, cfg.orders_per_day, "1 DAY", DAY_MS),
        ):
            if count >= limit:
                raise BinanceError(
                    -1015,
                    f"Too many new orders; current limit is {limit} orders per {label}.",
                    status=429,
                    retry_after_ms=(now_ms // size + 1) * size,
                )

    def count_order(self, account: str, now_ms: int) -> tuple[int, int]:
        """Count one new order; the counts afterwards (10 s, day)."""
        st = self._accounts.setdefault(account, _AccountState())
        st.ten_s.current(now_ms, TEN_S_MS)
        st.day.current(now_ms, DAY_MS)
        st.ten_s.count += 1
        st.day.count += 1
        return st.ten_s.count, st.day.count
