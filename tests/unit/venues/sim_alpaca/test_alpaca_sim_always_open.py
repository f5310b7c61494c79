"""``botd sim alpaca --session always-open``: the equities trade whatever the calendar says
(for tests and demos run while the NYSE is closed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from botd.venues.sim.alpaca.hours import AlwaysOpenHours, Phase
from tests.unit.venues.sim_alpaca.conftest import et_ns

Make = Callable[..., Awaitable[Any]]


def test_every_moment_is_the_regular_session() -> None:
    hours = AlwaysOpenHours()
    for when in ("2026-11-21T03:00:00", "2026-11-26T12:00:00", "2026-11-24T23:59:59"):
        assert hours.phase(et_ns(when)) is Phase.REGULAR  # Saturday, Thanksgiving, late night
    saturday = et_ns("2026-11-21T11:00:00")
    assert hours.next_close(saturday) == et_ns("2026-11-22T00:00:00")
    assert hours.next_open(saturday) == et_ns("2026-11-22T00:00:00")
    first, _ = hours.bounds
    assert len(hours.sessions(first.replace(year=2026), first.replace(year=2026, day=8))) == 7


async def test_a_saturday_market_order_for_a_stock_fills_at_once(alpaca: Make) -> None:
    h = await alpaca("2026-11-21T11:00:00", hours=AlwaysOpenHours())
    clock = (await h.req("GET", "/v2/clock")).body
    assert clock["is_open"] is True
    before = h.sim.engine.top_of_book("AAPL")
    o = (await h.order(symbol="AAPL", qty="1")).body
    await h.advance(1, steps=5)
    after = (await h.req("GET", f"/v2/orders/{o['id']}")).body
    assert after["status"] == "filled"
    assert h.sim.engine.top_of_book("AAPL") != before  # the stock market moves on a Saturday
