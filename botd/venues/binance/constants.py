"""Binance Spot facts as data: hosts, declared rate limits and endpoint weights, error codes.

Every number cites WIRE_FACTS §1 (snapshot of binance-spot-api-docs a5e0bc3d). Numbers not in
WIRE_FACTS are marked [U] with where they come from, so they are checked before relied on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from botd.errors import (
    AuthError,
    Banned,
    BotdError,
    OrderRejected,
    RateLimited,
    TransientVenueError,
)
from botd.model.enums import OrderType, TimeInForce
from botd.venues.base import RateLimit, VenueCapabilities

__all__ = [
    "BINANCE_CAPABILITIES",
    "BINANCE_ENDPOINT_COSTS",
    "BINANCE_ERROR_CODES",
    "BINANCE_RATE_LIMITS",
    "CONNECTION_LIFETIME_S",
    "CONNECT_ATTEMPTS",
    "CONNECT_WINDOW_S",
    "DEFAULT_MAX_CONNECTION_AGE_S",
    "KLINE_INTERVALS",
    "LIVE",
    "ORDERS_1D",
    "ORDERS_10S",
    "REQUEST_WEIGHT",
    "TESTNET",
    "USAGE_HEADERS",
    "WS_API_PATH",
    "BinanceUrls",
    "ClockSkew",
    "depth_weight",
    "is_unknown_order",
    "map_error",
    "retry_after_from_headers",
    "retry_after_from_ws",
    "usage_from_headers",
    "usage_from_ws",
    "ws_api_url_from_rest",
]


@dataclass(frozen=True, slots=True)
class BinanceUrls:
    """Where one Binance environment lives. ``rest`` is the host; paths start with /api/v3.
    ``streams`` takes ``/ws/<name>`` (raw) or ``/stream?streams=a/b`` (combined)."""

    rest: str
    streams: str
    ws_api: str


# WIRE_FACTS §1.1.
LIVE = BinanceUrls(
    rest="https://api.binance.com",
    streams="wss://stream.binance.com:9443",
    ws_api="wss://ws-api.binance.com:443/ws-api/v3",
)
TESTNET = BinanceUrls(
    # WIRE_FACTS gives ".../api" and ".../ws": the suffixes are the path prefixes our code adds.
    rest="https://testnet.binance.vision",
    streams="wss://stream.testnet.binance.vision",
    ws_api="wss://ws-api.testnet.binance.vision/ws-api/v3",
)

# WIRE_FACTS §1.1: the WS API's path on its host (the simulator serves it next to REST).
WS_API_PATH = "/ws-api/v3"

# WIRE_FACTS §1.5/§1.6: a stream or WS API connection lives at most 24 h; at most 300
# connection attempts per 5 minutes per IP (streams and WS API alike).
CONNECTION_LIFETIME_S = 86_400.0
# Replace a connection this long after it opened, well before the venue's cut.
DEFAULT_MAX_CONNECTION_AGE_S = 84_600.0  # 23.5 h
CONNECT_ATTEMPTS = 300
CONNECT_WINDOW_S = 300.0
# The kline (candlestick) intervals of ``<symbol>@kline_<interval>`` and GET /api/v3/klines.
KLINE_INTERVALS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip


def ws_api_url_from_rest(base_url: str) -> str:
    """The WS API URL of a REST base that serves both (the simulator): ``http://h:p`` ->
    ``ws://h:p/ws-api/v3``. Binance's own hosts differ: use :data:`LIVE`/:data:`TESTNET`."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + WS_API_PATH


# Pool names match PAPER_CAPABILITIES so paper and live strategies meet the same budget.
REQUEST_WEIGHT = "REQUEST_WEIGHT"
ORDERS_10S = "ORDERS_10S"
ORDERS_1D = "ORDERS_1D"

# WIRE_FACTS §1.7: REQUEST_WEIGHT 6000 / 1 MINUTE per IP; ORDERS 50 / 10 SECOND and 160000 /
# 1 DAY per account (counting unfilled orders). All windows are fixed and aligned (the minute
# on the minute, 10 s at :00/:10/..., the day at 00:00 UTC), hence kind="fixed".
# RAW_REQUESTS (61000 / 5 min, an enums example) is not declared: with every request costing
# at least 1 weight, 6000/min caps us at 30000 per 5 min, so it can never bind first.
BINANCE_RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit(REQUEST_WEIGHT, 6000, 60.0, scope="ip", kind="fixed"),
    RateLimit(ORDERS_10S, 50, 10.0, scope="account", kind="fixed"),
    RateLimit(ORDERS_1D, 160_000, 86_400.0, scope="account", kind="fixed"),
)


def _costs(**by_pool: int) -> Mapping[str, int]:
    return MappingProxyType(dict(by_pool))


# Weights from WIRE_FACTS §1.3 unless marked [U].
BINANCE_ENDPOINT_COSTS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        # POST /api/v3/order: weight 1 plus one unfilled-order count in each ORDERS pool.
        "order.submit": _costs(REQUEST_WEIGHT=1, ORDERS_10S=1, ORDERS_1D=1),
        "order.cancel": _costs(REQUEST_WEIGHT=1),  # DELETE /api/v3/order
        # DELETE /api/v3/openOrders: [U] WIRE_FACTS gives no weight; Binance's rest-api.md lists 1.
        "order.cancel_all": _costs(REQUEST_WEIGHT=1),
        "order.query": _costs(REQUEST_WEIGHT=4),  # GET /api/v3/order
        # GET /api/v3/openOrders: 6 per symbol, 80 without one. The gateway's open_orders()
        # asks for every symbol at once, so it pays 80; the per-symbol form is declared too.
        "order.open_orders": _costs(REQUEST_WEIGHT=80),
        "order.open_orders.symbol": _costs(REQUEST_WEIGHT=6),
        # GET /api/v3/myTrades: [U] not in WIRE_FACTS; Binance's rest-api.md lists 20
        # (5 with orderId). Same as PAPER_CAPABILITIES.
        "account.fills": _costs(REQUEST_WEIGHT=20),
        "account.balances": _costs(REQUEST_WEIGHT=20),  # GET /api/v3/account
        "account.order_rate_limits": _costs(REQUEST_WEIGHT=40),  # GET /api/v3/rateLimit/order
        "market.server_time": _costs(REQUEST_WEIGHT=1),  # GET /api/v3/time
        "market.exchange_info": _costs(REQUEST_WEIGHT=20),  # GET /api/v3/exchangeInfo
        # GET /api/v3/depth at limit=5000, the depth the book-sync procedure asks for;
        # other limits cost depth_weight(limit).
        "market.depth": _costs(REQUEST_WEIGHT=250),
        # GET /api/v3/klines: [U] not in WIRE_FACTS; Binance's rest-api.md lists 2.
        "market.klines": _costs(REQUEST_WEIGHT=2),
    }
)


def depth_weight(limit: int) -> int:
    """Weight of GET /api/v3/depth for ``limit`` levels (WIRE_FACTS §1.3)."""
    if not 1 <= limit <= 5000:
        raise ValueError(f"depth limit {limit} outside 1..5000")
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


BINANCE_CAPABILITIES = VenueCapabilities(
    order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
    time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
    post_only=True,  # LIMIT_MAKER
    rate_limits=BINANCE_RATE_LIMITS,
    endpoint_costs=BINANCE_ENDPOINT_COSTS,
)


# Response headers carrying the server's own counters (WIRE_FACTS §1.7) -> our pool names.
# The limiter adopts these so its view never drifts from the server's.
USAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "X-MBX-USED-WEIGHT-1M": REQUEST_WEIGHT,
        "X-MBX-ORDER-COUNT-10S": ORDERS_10S,
        "X-MBX-ORDER-COUNT-1D": ORDERS_1D,
    }
)


def usage_from_headers(headers: Mapping[str, str]) -> dict[str, int]:
    """Pool usage the server reported, e.g. ``{"REQUEST_WEIGHT": 12}``.

    Header names compare case-insensitively (HTTP semantics; a plain dict may hold any case).
    A malformed or negative value is skipped: a bad header must not take trading down.
    """
    usage: dict[str, int] = {}
    for name, value in headers.items():
        pool = USAGE_HEADERS.get(name.upper())
        if pool is None:
            continue
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 18:
            usage[pool] = int(text)
    return usage


# WS API ``rateLimits`` entries (WIRE_FACTS §1.3) -> our pool names, by (type, interval, n).
_WS_POOLS: Mapping[tuple[str, str, int], str] = MappingProxyType(
    {
        ("REQUEST_WEIGHT", "MINUTE", 1): REQUEST_WEIGHT,
        ("ORDERS", "SECOND", 10): ORDERS_10S,
        ("ORDERS", "DAY", 1): ORDERS_1D,
    }
)


def usage_from_ws(rate_limits: Sequence[tuple[str, str, int, int]]) -> dict[str, int]:
    """Pool usage from a WS API reply's ``rateLimits`` as (rateLimitType, interval,
    intervalNum, count) rows; rows of pools we do not declare, or negative counts, are
    skipped."""
    usage: dict[str, int] = {}
    for kind, interval, num, count in rate_limits:
        pool = _WS_POOLS.get((kind, interval, num))
        if pool is not None and count >= 0:
            usage[pool] = count
    return usage


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds from a REST ``Retry-After`` header (Binance sends integer seconds on 429/418);
    None when absent or unreadable, so the limiter falls back to its own window arithmetic."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            text = value.strip()
            if text.isascii() and text.isdigit() and len(text) <= 9:
                return float(text)
            return None
    return None


def retry_after_from_ws(retry_after_ms: int, now_ms: int) -> float:
    """Seconds to wait from a WS API ``error.data.retryAfter`` (an epoch-ms instant, not a
    duration), given the current time from the injected clock; never negative."""
    return max(0.0, (retry_after_ms - now_ms) / 1000.0)


class ClockSkew(TransientVenueError):
    """-1021: our timestamp fell outside recvWindow. The request was refused before reaching
    the matching engine, so it is safe to resynchronise the clock offset and retry."""


# code -> (name, what it means to us). Codes from WIRE_FACTS §1.7 and Binance errors.md.
BINANCE_ERROR_CODES: Mapping[int, str] = MappingProxyType(
    {
        -1000: "UNKNOWN",
        -1001: "DISCONNECTED",
        -1002: "UNAUTHORIZED",
        -1003: "TOO_MANY_REQUESTS",
        -1006: "UNEXPECTED_RESP",
        -1007: "TIMEOUT",
        -1008: "SERVER_BUSY",
        -1013: "INVALID_MESSAGE",  # filter failures
        -1015: "TOO_MANY_ORDERS",
        -1021: "INVALID_TIMESTAMP",
        -1022: "INVALID_SIGNATURE",
        -1100: "ILLEGAL_CHARS",
        -1101: "TOO_MANY_PARAMETERS",
        -1102: "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
        -1103: "UNKNOWN_PARAM",
        -1104: "UNREAD_PARAMETERS",
        -1105: "PARAM_EMPTY",
        -1106: "PARAM_NOT_REQUIRED",
        -1111: "BAD_PRECISION",
        -1121: "BAD_SYMBOL",
        -2010: "NEW_ORDER_REJECTED",
        -2011: "CANCEL_REJECTED",
        -2013: "NO_SUCH_ORDER",
        -2014: "BAD_API_KEY_FMT",
        -2015: "REJECTED_MBX_KEY",
        -2026: "ORDER_ARCHIVED",
        -2039: "CLIENT_ORDER_ID_INVALID",
    }
)

_AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
# The server failed while handling the request: a write may or may not have happened.
_UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1001, -1006, -1007})
_RATE_CODES = frozenset({-1003, -1015})


def map_error(http_status: int, code: int | None, msg: str, retry_after: float | None) -> BotdError:
    """The typed error for a Binance error reply (REST status + ``{code, msg}`` body, or a WS
    API ``status`` + ``error``). ``retry_after`` is in seconds (the REST ``Retry-After``
    header; convert the WS API's epoch-ms ``retryAfter`` before calling).

    Order of the checks matters: a ban or a 5xx says more than the code that came with it.
    """
    label = f"Binance HTTP {http_status}" + (f" code {code}" if code is not None else "")
    text = f"{label}: {msg}" if msg else label
    if http_status == 418:
        return Banned(text, retry_after)
    if http_status >= 500:
        # WIRE_FACTS §1.7: 5XX means the execution status is UNKNOWN, never a failure.
        return TransientVenueError(f"{text} (outcome unknown)")
    if http_status == 429 or code in _RATE_CODES:
        return RateLimited(text, retry_after)
    if http_status == 403 and code is None:
        # A WAF block: a limit we broke, not a credential problem; back off.
        return RateLimited(text, retry_after)
    if code in _UNKNOWN_OUTCOME_CODES:
        return TransientVenueError(f"{text} (outcome unknown)")
    if code == -1008:
        # Server busy: the request was refused before processing, so retrying is safe.
        return TransientVenueError(text)
    if code == -1021:
        return ClockSkew(text)
    if code in _AUTH_CODES or http_status == 401:
        return AuthError(text)
    # Everything else is a definitive refusal of this request (filters, -2010 balance or
    # duplicate id, -2011 unknown order, -2013, parameter errors -11xx): never retry.
    reject_code = str(code) if code is not None else f"HTTP_{http_status}"
    return OrderRejected(msg or label, code=reject_code)


def is_unknown_order(error: OrderRejected) -> bool:
    """True when the venue has no such open order (cancel of a filled/cancelled/never-seen
    order, or a query of an unknown one); the adapter reports these as ``UNKNOWN_ORDER``.
    -2011 also covers "not canceled due to cancel restrictions", which is not this case."""
    if error.code == "-2013":
        return True
    return error.code == "-2011" and "unknown order" in error.reason.lower()
