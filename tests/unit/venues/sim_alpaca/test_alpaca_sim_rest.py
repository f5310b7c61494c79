"""The Alpaca trading API v2 simulator over loopback, spoken to with plain aiohttp."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

D = Decimal
WEEKDAY = "2026-11-24T10:00:00"  # a Tuesday, market open
SATURDAY = "2026-11-21T12:00:00"

Make = Callable[..., Awaitable[Any]]


async def test_auth_is_required_and_wrong_keys_get_alpacas_401(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    for headers in ({}, {"APCA-API-KEY-ID": "test-key-1", "APCA-API-SECRET-KEY": "wrong"}):
        r = await h.req("GET", "/v2/account", headers=headers)
        assert r.status == 401
        assert r.body == {"code": 40110000, "message": "request is not authorized"}
        assert "X-Ratelimit-Limit" not in r.headers


async def test_rate_limit_headers_count_down_then_429_until_the_next_minute(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T10:00:10", requests_per_minute=3)
    minute_end = (h.clock.time_ns() // 60_000_000_000 + 1) * 60
    remaining = []
    for _ in range(3):
        r = await h.req("GET", "/v2/clock")
        assert r.status == 200
        assert r.headers["X-Ratelimit-Limit"] == "3"
        assert r.headers["X-Ratelimit-Reset"] == str(minute_end)
        remaining.append(r.headers["X-Ratelimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    r = await h.req("GET", "/v2/account")
    assert r.status == 429
    assert r.body == {"code": 42910000, "message": "rate limit exceeded"}
    assert r.headers["X-Ratelimit-Remaining"] == "0"
    # Another account has its own budget.
    other = {"APCA-API-KEY-ID": "test-key-2", "APCA-API-SECRET-KEY": "test-secret-2"}
    assert (await h.req("GET", "/v2/clock", headers=other)).status == 200
    await h.advance(50)
    r = await h.req("GET", "/v2/clock")
    assert r.status == 200
    assert r.headers["X-Ratelimit-Remaining"] == "2"


async def test_account_assets_and_clock(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY, cash={"test-key-1": D("25000")})
    acct = (await h.req("GET", "/v2/account")).body
    assert acct["cash"] == "25000"
    assert acct["buying_power"] == "25000"
    assert acct["status"] == "ACTIVE"
    assets = (await h.req("GET", "/v2/assets")).body
    by_symbol = {a["symbol"]: a for a in assets}
    assert set(by_symbol) == {"AAPL", "MSFT", "SPY", "FAKEPACA", "BTC/USD", "ETH/USD"}
    assert by_symbol["AAPL"]["fractionable"] is True
    assert by_symbol["FAKEPACA"]["fractionable"] is False
    assert by_symbol["BTC/USD"]["class"] == "crypto"
    crypto = (await h.req("GET", "/v2/assets?asset_class=crypto")).body
    assert [a["symbol"] for a in crypto] == ["BTC/USD", "ETH/USD"]
    for name in ("BTC/USD", "BTCUSD", by_symbol["BTC/USD"]["id"]):
        assert (await h.req("GET", f"/v2/assets/{name}")).body["symbol"] == "BTC/USD"
    r = await h.req("GET", "/v2/assets/NOPE")
    assert r.status == 404
    assert r.body["code"] == 40410000
    clock = (await h.req("GET", "/v2/clock")).body
    assert clock["is_open"] is True
    assert clock["timestamp"].startswith("2026-11-24T10:00:00.")
    assert clock["timestamp"].endswith("-05:00")
    assert clock["next_close"] == "2026-11-24T16:00:00-05:00"
    assert clock["next_open"] == "2026-11-25T09:30:00-05:00"


async def test_market_buy_fills_and_shows_as_a_position(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    r = await h.order(symbol="AAPL", qty="3", client_order_id="buy-1")
    assert r.status == 200
    o = r.body
    assert o["status"] == "filled"
    assert o["filled_qty"] == "3"
    assert o["client_order_id"] == "buy-1"
    assert o["order_class"] == ""
    price = D(o["filled_avg_price"])
    pos = (await h.req("GET", "/v2/positions/AAPL")).body
    assert pos["qty"] == "3"
    assert D(pos["avg_entry_price"]) == price.quantize(D("0.01"))
    assert pos["side"] == "long"
    acct = (await h.req("GET", "/v2/account")).body
    assert D(acct["cash"]) == (D(100000) - 3 * price).quantize(D("0.01"))
    assert (await h.req("GET", "/v2/positions/MSFT")).status == 404


async def test_notional_buy_sizes_in_fractions(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    o = (await h.order(symbol="AAPL", notional="500")).body
    assert o["status"] == "filled"
    assert o["notional"] == "500"
    assert o["qty"] is None
    filled = D(o["filled_qty"])
    assert filled % 1 != 0
    assert D(450) < filled * D(o["filled_avg_price"]) <= D(500)


async def test_limit_order_rests_cancel_gives_204_then_422(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    o = (await h.order(symbol="MSFT", qty="1", type="limit", limit_price="300.00")).body
    assert o["status"] == "new"
    assert o["limit_price"] == "300"
    r = await h.req("DELETE", f"/v2/orders/{o['id']}")
    assert r.status == 204
    assert r.body is None
    after = (await h.req("GET", f"/v2/orders/{o['id']}")).body
    assert after["status"] == "canceled"
    assert after["canceled_at"] is not None
    r = await h.req("DELETE", f"/v2/orders/{o['id']}")
    assert r.status == 422
    assert r.body == {"code": 42210000, "message": 'order is already in "canceled" state'}
    filled = (await h.order(symbol="MSFT", qty="1")).body
    r = await h.req("DELETE", f"/v2/orders/{filled['id']}")
    assert r.status == 422
    assert r.body["message"] == 'order is already in "filled" state'
    r = await h.req("DELETE", "/v2/orders/00000000-0000-4000-8000-000000000000")
    assert r.status == 404
    assert r.body == {"code": 40410000, "message": "order is not found."}


async def test_client_order_id_is_unique_even_after_the_order_closed(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    first = await h.order(symbol="SPY", qty="1", client_order_id="same")
    assert first.body["status"] == "filled"
    again = await h.order(symbol="SPY", qty="1", client_order_id="same")
    assert again.status == 422
    assert again.body == {"code": 40010001, "message": "client_order_id must be unique"}
    # Another account may use it.
    other = {"APCA-API-KEY-ID": "test-key-2", "APCA-API-SECRET-KEY": "test-secret-2"}
    body = {"symbol": "SPY", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    r = await h.req("POST", "/v2/orders", {**body, "client_order_id": "same"}, headers=other)
    assert r.status == 200
    got = (await h.req("GET", "/v2/orders:by_client_order_id?client_order_id=same")).body
    assert got["id"] == first.body["id"]
    missing = await h.req("GET", "/v2/orders:by_client_order_id?client_order_id=nope")
    assert missing.status == 404


INVALID = [
    ({"symbol": "AAPL"}, "qty or notional is required, not both"),
    ({"symbol": "AAPL", "qty": "1", "notional": "10"}, "qty or notional is required, not both"),
    ({"symbol": "AAPL", "qty": "0"}, "qty must be > 0"),
    ({"symbol": "AAPL", "qty": "1", "type": "limit"}, "limit_price is required for limit orders"),
    (
        {"symbol": "AAPL", "qty": "1", "type": "limit", "limit_price": "100.001"},
        "sub-penny increment does not fulfill minimum pricing criteria",
    ),
    (
        {"symbol": "AAPL", "qty": "1", "extended_hours": True},
        "extended hours order must be DAY limit orders",
    ),
    ({"symbol": "FAKEPACA", "qty": "0.5"}, "fractional orders are not supported for FAKEPACA"),
    (
        {"symbol": "AAPL", "qty": "0.5", "time_in_force": "gtc"},
        "fractional orders must be DAY orders",
    ),
    (
        {"symbol": "AAPL", "notional": "10", "type": "limit", "limit_price": "1"},
        "notional orders must be market orders",
    ),
    (
        {"symbol": "AAPL", "qty": "1", "client_order_id": "x" * 49},
        "client_order_id must be no more than 48 characters",
    ),
    ({"symbol": "AAPL", "qty": "1", "side": "short"}, "side must be buy or sell"),
    ({"symbol": "AAPL", "qty": "1", "time_in_force": "gtd"}, "invalid time_in_force: gtd"),
    (
        {"symbol": "BTC/USD", "qty": "1", "time_in_force": "day"},
        "invalid crypto time_in_force: day",
    ),
    ({"symbol": "ZZZZ", "qty": "1"}, 'asset "ZZZZ" not found'),
    (
        {"symbol": "AAPL", "qty": "1", "order_class": "bracket"},
        "order_class bracket is not supported by this simulator",
    ),
]


@pytest.mark.parametrize(("fields", "message"), INVALID)
async def test_invalid_orders_get_422_with_alpacas_body(
    alpaca: Make, fields: dict[str, Any], message: str
) -> None:
    h = await alpaca(WEEKDAY)
    r = await h.order(**fields)
    assert r.status == 422
    assert r.body == {"code": 40010001, "message": message}
    assert (await h.req("GET", "/v2/orders?status=all")).body == []


async def test_insufficient_buying_power_and_qty_get_403(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY, cash={"test-key-1": D("1000")})
    r = await h.order(symbol="SPY", qty="10")
    assert r.status == 403
    assert r.body["code"] == 40310000
    assert r.body["message"] == "insufficient buying power"
    assert r.body["buying_power"] == "1000"
    r = await h.order(symbol="AAPL", qty="2", side="sell")
    assert r.status == 403
    assert r.body["message"] == "insufficient qty available for order (requested: 2, available: 0)"
    assert r.body["symbol"] == "AAPL"
    r = await h.order(symbol="ETH/USD", qty="1", side="sell", time_in_force="gtc")
    assert r.status == 403
    assert r.body["message"].startswith("insufficient balance for ETH")
    # A resting buy holds its cash: the next one no longer fits.
    ok = await h.order(symbol="AAPL", qty="5", type="limit", limit_price="150.00")
    assert ok.status == 200
    r = await h.order(symbol="AAPL", qty="2", type="limit", limit_price="150.00")
    assert r.status == 403


async def test_replace_creates_a_new_order_and_marks_the_old_replaced(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    old = (
        await h.order(
            symbol="AAPL", qty="2", type="limit", limit_price="150.00", client_order_id="r1"
        )
    ).body
    r = await h.req(
        "PATCH", f"/v2/orders/{old['id']}", {"limit_price": "151.00", "client_order_id": "r2"}
    )
    assert r.status == 200
    new = r.body
    assert new["id"] != old["id"]
    assert new["replaces"] == old["id"]
    assert new["limit_price"] == "151"
    assert new["qty"] == "2"
    assert new["status"] == "new"
    before = (await h.req("GET", f"/v2/orders/{old['id']}")).body
    assert before["status"] == "replaced"
    assert before["replaced_by"] == new["id"]
    assert (await h.req("GET", "/v2/orders:by_client_order_id?client_order_id=r2")).body[
        "id"
    ] == new["id"]
    r = await h.req("PATCH", f"/v2/orders/{old['id']}", {"limit_price": "152.00"})
    assert r.status == 422
    open_orders = (await h.req("GET", "/v2/orders")).body
    assert [o["id"] for o in open_orders] == [new["id"]]


async def test_cancel_all_answers_207_with_one_entry_per_order(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    ids = set()
    for price in ("150.00", "151.00"):
        o = (await h.order(symbol="AAPL", qty="1", type="limit", limit_price=price)).body
        ids.add(o["id"])
    crypto = await h.order(
        symbol="BTC/USD", qty="0.01", type="limit", limit_price="50000", time_in_force="gtc"
    )
    ids.add(crypto.body["id"])
    r = await h.req("DELETE", "/v2/orders")
    assert r.status == 207
    assert {e["id"] for e in r.body} == ids
    assert {e["status"] for e in r.body} == {200}
    assert (await h.req("GET", "/v2/orders")).body == []
    balances = h.sim.engine.balances("test-key-1")
    assert balances["USD"].locked == 0


async def test_order_list_filters(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    a = (await h.order(symbol="AAPL", qty="1")).body
    await h.advance(1)
    b = (await h.order(symbol="MSFT", qty="1", type="limit", limit_price="100.00")).body
    await h.advance(1)
    c = (await h.order(symbol="SPY", qty="1")).body

    async def ids(query: str) -> list[str]:
        return [o["id"] for o in (await h.req("GET", f"/v2/orders?{query}")).body]

    assert await ids("") == [b["id"]]
    assert await ids("status=closed") == [c["id"], a["id"]]
    assert await ids("status=all&direction=asc") == [a["id"], b["id"], c["id"]]
    assert await ids("status=all&limit=1") == [c["id"]]
    assert await ids("status=all&symbols=AAPL,SPY") == [c["id"], a["id"]]
    assert await ids(f"status=all&after={b['created_at']}") == [c["id"]]
    assert await ids(f"status=all&until={b['created_at']}") == [a["id"]]
    assert (await h.req("GET", "/v2/orders?status=weird")).status == 422


async def test_close_position_sells_everything(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    await h.order(symbol="AAPL", qty="4")
    r = await h.req("DELETE", "/v2/positions/AAPL")
    assert r.status == 200
    assert r.body["side"] == "sell"
    assert r.body["qty"] == "4"
    assert r.body["status"] == "filled"
    assert (await h.req("GET", "/v2/positions")).body == []
    assert (await h.req("DELETE", "/v2/positions/AAPL")).status == 404


async def test_crypto_trades_on_a_saturday(alpaca: Make) -> None:
    h = await alpaca(SATURDAY)
    o = (await h.order(symbol="BTC/USD", qty="0.01", time_in_force="gtc")).body
    assert o["status"] == "filled"
    positions = (await h.req("GET", "/v2/positions")).body
    assert [p["symbol"] for p in positions] == ["BTCUSD"]
    assert positions[0]["asset_class"] == "crypto"
    assert (await h.req("GET", "/v2/positions/BTC/USD")).body["qty"] == "0.01"


async def test_same_seed_same_requests_same_replies(alpaca: Make) -> None:
    async def run() -> list[Any]:
        h = await alpaca(WEEKDAY)
        out = [(await h.order(symbol="AAPL", qty="2")).body]
        await h.advance(3, steps=30)
        out.append((await h.order(symbol="BTC/USD", qty="0.1", time_in_force="gtc")).body)
        out.append((await h.req("GET", "/v2/positions")).body)
        return out

    assert await run() == await run()


async def test_malformed_body_and_unknown_path(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    async with h.session.post(
        h.base + "/v2/orders",
        data="{not json",
        headers={**{"APCA-API-KEY-ID": "test-key-1", "APCA-API-SECRET-KEY": "test-secret-1"}},
    ) as r:
        assert r.status == 400
        assert (await r.json())["code"] == 40010000
    r = await h.req("GET", "/v2/nothing-here")
    assert r.status == 404


async def test_fill_activities_page_through_every_execution(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    orders = []
    for _ in range(3):
        orders.append((await h.order(symbol="AAPL", qty="1")).body)
        await h.advance(1)
    fills = (await h.req("GET", "/v2/account/activities/FILL?direction=asc")).body
    assert [f["order_id"] for f in fills] == [o["id"] for o in orders]
    first = fills[0]
    assert first["activity_type"] == "FILL"
    assert first["type"] == "fill"
    assert first["qty"] == "1"
    assert first["price"] == orders[0]["filled_avg_price"]
    assert first["leaves_qty"] == "0"
    assert first["id"].startswith("20261124150000")
    assert first["id"].split("::")[1] != ""
    page = (await h.req("GET", "/v2/account/activities?activity_types=FILL&page_size=2")).body
    assert [f["id"] for f in page] == [fills[2]["id"], fills[1]["id"]]
    rest = await h.req(
        "GET", f"/v2/account/activities?activity_types=FILL&page_size=2&page_token={page[1]['id']}"
    )
    assert [f["id"] for f in rest.body] == [fills[0]["id"]]
    after = await h.req("GET", f"/v2/account/activities/FILL?after={orders[0]['filled_at']}")
    assert {f["order_id"] for f in after.body} == {orders[1]["id"], orders[2]["id"]}
    assert (await h.req("GET", "/v2/account/activities/DIV")).body == []


async def test_calendar_lists_sessions_with_early_closes(alpaca: Make) -> None:
    h = await alpaca(WEEKDAY)
    days = (await h.req("GET", "/v2/calendar?start=2026-11-25&end=2026-11-30")).body
    assert days == [
        {"date": "2026-11-25", "open": "09:30", "close": "16:00",
         "session_open": "0400", "session_close": "2000"},
        {"date": "2026-11-27", "open": "09:30", "close": "13:00",
         "session_open": "0400", "session_close": "1700"},
        {"date": "2026-11-30", "open": "09:30", "close": "16:00",
         "session_open": "0400", "session_close": "2000"},
    ]  # fmt: skip
