"""Binance error replies -> typed errors; declared limits; usage headers."""

from __future__ import annotations

import pytest

from botd.errors import (
    AuthError,
    Banned,
    BotdError,
    OrderRejected,
    RateLimited,
    TransientVenueError,
)
from botd.venues.binance.constants import (
    BINANCE_CAPABILITIES,
    BINANCE_ENDPOINT_COSTS,
    BINANCE_RATE_LIMITS,
    LIVE,
    TESTNET,
    ClockSkew,
    depth_weight,
    is_unknown_order,
    map_error,
    retry_after_from_headers,
    retry_after_from_ws,
    usage_from_headers,
)
from botd.venues.binance.schemas import ErrorBody, decode_error

# (http status, code, msg, expected type) — codes and messages from WIRE_FACTS §1.7.
CASES: list[tuple[int, int | None, str, type[BotdError]]] = [
    (400, -1021, "Timestamp for this request is outside of the recvWindow.", ClockSkew),
    (400, -1022, "Signature for this request is not valid.", AuthError),
    (401, -2014, "API-key format invalid.", AuthError),
    (401, -2015, "Invalid API-key, IP, or permissions for action.", AuthError),
    (401, None, "", AuthError),
    (400, -1002, "You are not authorized to execute this request.", AuthError),
    (400, -1013, "Filter failure: PRICE_FILTER", OrderRejected),
    (400, -1013, "Filter failure: NOTIONAL", OrderRejected),
    (400, -2010, "Account has insufficient balance for requested action.", OrderRejected),
    (400, -2010, "Duplicate order sent.", OrderRejected),
    (400, -2010, "Order would immediately match and take.", OrderRejected),
    (400, -2011, "Unknown order sent.", OrderRejected),
    (400, -2013, "Order does not exist.", OrderRejected),
    (
        400,
        -2026,
        "Order was canceled or expired with no executed qty over 90 days ago.",
        OrderRejected,
    ),
    (400, -1100, "Illegal characters found in a parameter.", OrderRejected),
    (400, -1102, "Mandatory parameter 'price' was not sent.", OrderRejected),
    (400, -1111, "Parameter 'quantity' has too much precision.", OrderRejected),
    (400, -1121, "Invalid symbol.", OrderRejected),
    (400, -1006, "An unexpected response was received from the message bus.", TransientVenueError),
    (400, -1007, "Timeout waiting for response from backend server.", TransientVenueError),
    (400, -1001, "Internal error; unable to process your request.", TransientVenueError),
    (503, -1008, "Server is currently overloaded with other requests.", TransientVenueError),
    (500, None, "", TransientVenueError),
    (502, None, "Bad Gateway", TransientVenueError),
    (504, -1013, "Filter failure", TransientVenueError),  # a 5xx is unknown whatever the code
    (429, -1003, "Too many requests.", RateLimited),
    (400, -1015, "Too many new orders.", RateLimited),
    (418, -1003, "Way too much request weight used; IP banned until 1659146400000.", Banned),
    (403, None, "", RateLimited),
]


@pytest.mark.parametrize(("status", "code", "msg", "expected"), CASES)
def test_map_error_type(status: int, code: int | None, msg: str, expected: type) -> None:
    error = map_error(status, code, msg, None)
    assert type(error) is expected


@pytest.mark.parametrize(
    ("status", "code", "msg", "expected"),
    [c for c in CASES if c[3] is OrderRejected],
)
def test_rejections_carry_code_and_reason(
    status: int, code: int | None, msg: str, expected: type
) -> None:
    error = map_error(status, code, msg, None)
    assert isinstance(error, OrderRejected)
    assert error.code == str(code)
    assert error.reason == msg


def test_rejection_without_code_names_the_status() -> None:
    error = map_error(404, None, "", None)
    assert isinstance(error, OrderRejected)
    assert error.code == "HTTP_404"


def test_clock_skew_is_transient() -> None:
    assert issubclass(ClockSkew, TransientVenueError)


def test_unknown_outcome_is_said_so() -> None:
    assert "outcome unknown" in str(map_error(500, None, "", None))
    assert "outcome unknown" in str(map_error(400, -1007, "Timeout", None))


@pytest.mark.parametrize(("status", "kind"), [(429, RateLimited), (418, Banned)])
def test_retry_after_is_carried(status: int, kind: type[RateLimited]) -> None:
    error = map_error(status, -1003, "slow down", 42.0)
    assert type(error) is kind
    assert isinstance(error, RateLimited)
    assert error.retry_after == 42.0
    assert isinstance(map_error(status, None, "", None), kind)


def test_error_text_names_code_and_message() -> None:
    text = str(map_error(400, -1022, "Signature for this request is not valid.", None))
    assert "-1022" in text
    assert "Signature" in text


def test_error_body_round_trip() -> None:
    body = decode_error(b'{"code":-1121,"msg":"Invalid symbol."}')
    assert body == ErrorBody(code=-1121, msg="Invalid symbol.")
    ws = decode_error(
        b'{"code":-1003,"msg":"Way too much request weight used; IP banned until 1659146400000.",'
        b'"data":{"serverTime":1659142907531,"retryAfter":1659146400000}}'
    )
    assert ws.data == {"serverTime": 1659142907531, "retryAfter": 1659146400000}


@pytest.mark.parametrize(
    ("code", "msg", "unknown"),
    [
        (-2011, "Unknown order sent.", True),
        (-2013, "Order does not exist.", True),
        (-2011, "Order was not canceled due to cancel restrictions.", False),
        (-2010, "Duplicate order sent.", False),
    ],
)
def test_is_unknown_order(code: int, msg: str, unknown: bool) -> None:
    error = map_error(400, code, msg, None)
    assert isinstance(error, OrderRejected)
    assert is_unknown_order(error) is unknown


# --------------------------------------------------------------------------- headers


def test_usage_from_headers_maps_every_pool() -> None:
    headers = {
        "X-MBX-USED-WEIGHT-1M": "12",
        "x-mbx-order-count-10s": "3",  # any case: HTTP header names are case-insensitive
        "X-Mbx-Order-Count-1d": "140",
        "Content-Type": "application/json",
        "X-MBX-USED-WEIGHT-1H": "99",  # a pool we do not declare
    }
    assert usage_from_headers(headers) == {"REQUEST_WEIGHT": 12, "ORDERS_10S": 3, "ORDERS_1D": 140}


@pytest.mark.parametrize("value", ["", "abc", "-1", "1.5", "٣", "9" * 40, "0x10"])
def test_usage_from_headers_skips_garbage(value: str) -> None:
    assert usage_from_headers({"X-MBX-USED-WEIGHT-1M": value}) == {}


def test_usage_from_headers_tolerates_whitespace() -> None:
    assert usage_from_headers({"X-MBX-USED-WEIGHT-1M": " 7 "}) == {"REQUEST_WEIGHT": 7}


# --------------------------------------------------------------------------- declared data


def test_rate_limits_are_the_documented_fixed_windows() -> None:
    pools = {r.pool: r for r in BINANCE_RATE_LIMITS}
    assert (pools["REQUEST_WEIGHT"].limit, pools["REQUEST_WEIGHT"].interval_s) == (6000, 60.0)
    assert (pools["ORDERS_10S"].limit, pools["ORDERS_10S"].interval_s) == (50, 10.0)
    assert (pools["ORDERS_1D"].limit, pools["ORDERS_1D"].interval_s) == (160_000, 86_400.0)
    assert pools["REQUEST_WEIGHT"].scope == "ip"
    assert pools["ORDERS_10S"].scope == pools["ORDERS_1D"].scope == "account"
    assert {r.kind for r in BINANCE_RATE_LIMITS} == {"fixed"}


def test_every_gateway_endpoint_is_costed_in_declared_pools() -> None:
    gateway = {
        "order.submit",
        "order.cancel",
        "order.cancel_all",
        "order.query",
        "order.open_orders",
        "account.fills",
        "account.balances",
    }
    assert gateway <= set(BINANCE_ENDPOINT_COSTS)
    pools = {r.pool for r in BINANCE_RATE_LIMITS}
    for costs in BINANCE_ENDPOINT_COSTS.values():
        assert set(costs) <= pools
        assert all(c > 0 for c in costs.values())
    assert BINANCE_ENDPOINT_COSTS["order.submit"] == {
        "REQUEST_WEIGHT": 1,
        "ORDERS_10S": 1,
        "ORDERS_1D": 1,
    }
    assert BINANCE_ENDPOINT_COSTS["order.query"] == {"REQUEST_WEIGHT": 4}
    assert BINANCE_ENDPOINT_COSTS["account.balances"] == {"REQUEST_WEIGHT": 20}
    assert BINANCE_ENDPOINT_COSTS["market.exchange_info"] == {"REQUEST_WEIGHT": 20}
    assert BINANCE_CAPABILITIES.rate_limits == BINANCE_RATE_LIMITS
    assert BINANCE_CAPABILITIES.endpoint_costs is BINANCE_ENDPOINT_COSTS


def test_declared_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        BINANCE_ENDPOINT_COSTS["x"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        BINANCE_ENDPOINT_COSTS["order.submit"]["REQUEST_WEIGHT"] = 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)],
)
def test_depth_weight(limit: int, weight: int) -> None:
    assert depth_weight(limit) == weight


@pytest.mark.parametrize("limit", [0, 5001])
def test_depth_weight_rejects_out_of_range(limit: int) -> None:
    with pytest.raises(ValueError, match="depth limit"):
        depth_weight(limit)


def test_urls() -> None:
    assert LIVE.rest == "https://api.binance.com"
    assert TESTNET.rest == "https://testnet.binance.vision"
    assert LIVE.ws_api.endswith("/ws-api/v3")
    assert TESTNET.ws_api == "wss://ws-api.testnet.binance.vision/ws-api/v3"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": " 3 "}, 3.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "-5"}, None),
        ({}, None),
    ],
)
def test_retry_after_from_headers(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_from_headers(headers) == expected


def test_retry_after_from_ws_is_an_instant() -> None:
    assert retry_after_from_ws(1659146400000, 1659146390000) == 10.0
    assert retry_after_from_ws(1659146400000, 1659146500000) == 0.0
    error = map_error(418, -1003, "banned", retry_after_from_ws(1659146400000, 1659146398500))
    assert isinstance(error, Banned)
    assert error.retry_after == 1.5
