"""Market hours on the injected clock: /v2/clock and when equity orders may trade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Make = Callable[..., Awaitable[Any]]


async def order_status(h: Any, order_id: str) -> str:
    status: str = (await h.req("GET", f"/v2/orders/{order_id}")).body["status"]
    return status


async def test_saturday_market_closed_day_order_queued_until_monday_open(alpaca: Make) -> None:
    h = await alpaca("2026-11-21T11:00:00")
    clock = (await h.req("GET", "/v2/clock")).body
    assert clock["is_open"] is False
    assert clock["next_open"] == "2026-11-23T09:30:00-05:00"
    assert clock["next_close"] == "2026-11-23T16:00:00-05:00"
    o = (await h.order(symbol="AAPL", qty="1")).body
    assert o["status"] == "accepted"
    assert o["expires_at"] == "2026-11-23T21:00:00.000000000Z"  # Monday's close
    # The equity market does not move on a weekend: steps leave the book alone.
    before = h.sim.engine.top_of_book("AAPL")
    await h.advance(5, steps=20)
    assert h.sim.engine.top_of_book("AAPL") == before
    assert await order_status(h, o["id"]) == "accepted"
    await h.goto("2026-11-23T09:29:59")
    assert await order_status(h, o["id"]) == "accepted"
    await h.goto("2026-11-23T09:30:00")
    after = (await h.req("GET", f"/v2/orders/{o['id']}")).body
    assert after["status"] == "filled"
    assert after["filled_at"].startswith("2026-11-23T14:30:00")


async def test_one_minute_before_the_open(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T09:27:00")
    opg = await h.order(symbol="SPY", qty="1", time_in_force="opg")
    assert opg.status == 200
    assert opg.body["status"] == "accepted"
    await h.goto("2026-11-24T09:29:00")
    clock = (await h.req("GET", "/v2/clock")).body
    assert clock["is_open"] is False
    assert clock["next_open"] == "2026-11-24T09:30:00-05:00"
    late = await h.order(symbol="SPY", qty="1", time_in_force="opg")
    assert late.status == 422
    assert late.body["message"] == "opg orders are not accepted between 09:28 and 19:00 ET"
    day = (await h.order(symbol="MSFT", qty="1")).body
    assert day["status"] == "accepted"
    await h.goto("2026-11-24T09:30:00")
    assert await order_status(h, day["id"]) == "filled"
    assert await order_status(h, opg.body["id"]) == "filled"


async def test_at_the_open(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T09:30:00")
    clock = (await h.req("GET", "/v2/clock")).body
    assert clock["is_open"] is True
    assert clock["next_close"] == "2026-11-24T16:00:00-05:00"
    assert clock["next_open"] == "2026-11-25T09:30:00-05:00"
    assert (await h.order(symbol="AAPL", qty="1")).body["status"] == "filled"


async def test_thanksgiving_is_closed_and_friday_closes_early(alpaca: Make) -> None:
    h = await alpaca("2026-11-26T12:00:00")
    clock = (await h.req("GET", "/v2/clock")).body
    assert clock["is_open"] is False
    assert clock["next_open"] == "2026-11-27T09:30:00-05:00"
    assert clock["next_close"] == "2026-11-27T13:00:00-05:00"
    o = (await h.order(symbol="AAPL", qty="1", type="limit", limit_price="100.00")).body
    assert o["status"] == "accepted"
    assert o["expires_at"] == "2026-11-27T18:00:00.000000000Z"
    await h.goto("2026-11-27T10:00:00")
    assert await order_status(h, o["id"]) == "new"
    await h.goto("2026-11-27T13:00:00")
    expired = (await h.req("GET", f"/v2/orders/{o['id']}")).body
    assert expired["status"] == "expired"
    assert expired["expired_at"] is not None


async def test_extended_hours_limit_trades_pre_market_a_plain_one_waits(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T08:00:00")
    assert (await h.req("GET", "/v2/clock")).body["is_open"] is False
    ask = h.sim.engine.top_of_book("AAPL")[1].price
    ext = await h.order(
        symbol="AAPL", qty="1", type="limit", limit_price=str(ask + 1), extended_hours=True
    )
    assert ext.body["status"] == "filled"
    plain = await h.order(symbol="AAPL", qty="1", type="limit", limit_price=str(ask + 1))
    assert plain.body["status"] == "accepted"
    # A resting extended order ends with after-hours (20:00 ET), a plain DAY one at 16:00.
    rest_ext = await h.order(
        symbol="MSFT", qty="1", type="limit", limit_price="100.00", extended_hours=True
    )
    await h.goto("2026-11-24T16:00:00")
    assert await order_status(h, rest_ext.body["id"]) == "new"
    await h.goto("2026-11-24T20:00:00")
    assert await order_status(h, rest_ext.body["id"]) == "expired"


async def test_gtc_rests_overnight_without_trading_and_day_expires(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T15:59:00")
    gtc = (await h.order(symbol="AAPL", qty="1", type="limit", limit_price="100.00",
                         time_in_force="gtc")).body  # fmt: skip
    day = (await h.order(symbol="AAPL", qty="1", type="limit", limit_price="100.00")).body
    assert gtc["status"] == day["status"] == "new"
    await h.goto("2026-11-24T16:00:00")
    assert await order_status(h, day["id"]) == "expired"
    assert await order_status(h, gtc["id"]) == "new"
    # Off the book overnight (its cash stays reserved), back in at the next open.
    assert h.sim.engine.open_venue_orders("test-key-1") == []
    acct = (await h.req("GET", "/v2/account")).body
    assert float(acct["buying_power"]) == float(acct["cash"]) - 100
    await h.goto("2026-11-25T09:30:00")
    assert len(h.sim.engine.open_venue_orders("test-key-1")) == 1


async def test_cls_order_window_and_fill_at_the_close(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T15:00:00")
    cls = await h.order(symbol="SPY", qty="1", time_in_force="cls")
    assert cls.body["status"] == "accepted"
    await h.goto("2026-11-24T15:51:00")
    assert (await h.order(symbol="SPY", qty="1", time_in_force="cls")).status == 422
    await h.goto("2026-11-24T16:00:00")
    done = (await h.req("GET", f"/v2/orders/{cls.body['id']}")).body
    assert done["status"] == "filled"
    assert done["filled_at"].startswith("2026-11-24T21:00:00")
    await h.goto("2026-11-24T19:00:00")
    assert (await h.order(symbol="SPY", qty="1", time_in_force="cls")).status == 200


async def test_stop_order_waits_for_its_trigger(alpaca: Make) -> None:
    h = await alpaca("2026-11-24T10:00:00")
    last = h.sim.engine.top_of_book("AAPL")[1].price
    stop = await h.order(symbol="AAPL", qty="1", type="stop", stop_price=str(last + 1000))
    assert stop.body["status"] == "new"
    await h.advance(2, steps=20)
    assert await order_status(h, stop.body["id"]) == "new"
    low = await h.order(symbol="AAPL", qty="1", type="stop", stop_price=str(last - 50))
    await h.advance(0.1)
    assert await order_status(h, low.body["id"]) == "filled"
