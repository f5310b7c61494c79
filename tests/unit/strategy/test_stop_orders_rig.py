"""Stop orders from a strategy through the whole in-process stack (tests/rig.py): strategy
API, risk, gateway, journal and the paper venue's engine."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from botd import Fill, Quote, Strategy, Trade
from botd.model import OrderStatus, OrderType
from botd.strategy.loader import LoadedStrategy
from botd.venues.sim.paper import PAPER_CAPABILITIES
from tests.rig import Rig
from tests.rig import make_intent as intent

TICK = D("0.01")


def loaded(cls: type[Strategy], sid: str) -> LoadedStrategy:
    return LoadedStrategy(sid, cls, Path("inline.py"))


class StopLoser(Strategy):
    """Buys once, then protects the position with a stop-loss 5 bps under the market."""

    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.bought = False
        self.stop_id: str | None = None
        self.last_trade: D | None = None
        self.fills: list[Fill] = []

    def on_trade(self, trade: Trade) -> None:
        self.last_trade = trade.price

    def on_quote(self, quote: Quote) -> None:
        if not self.bought:
            self.bought = True
            self.buy(D("0.01"))
        elif self.stop_id is None and not self.position.is_flat and self.last_trade:
            under = min(quote.bid, self.last_trade) * D("0.9995")
            self.stop_id = self.stop_loss(under.quantize(TICK))

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)


async def test_a_stop_loss_closes_the_position_when_the_market_falls_to_it() -> None:
    rig = Rig(seed=7)
    async with rig.running():
        hosted = rig.host.start(loaded(StopLoser, "sl"))
        strat = hosted.strategy
        assert isinstance(strat, StopLoser)
        for _ in range(600):  # at most 60 s of market
            await rig.advance(0.1, step=0.1)
            if strat.stop_id is not None and strat.position.is_flat:
                break
        stop_id = strat.stop_id
        assert stop_id is not None
        order = rig.gateway.order(stop_id)
        assert order is not None
        assert (order.type, order.status) == (OrderType.STOP, OrderStatus.FILLED)
        assert order.stop_price is not None
        # Accepted (waiting untriggered) first, then filled under the same client order id.
        assert rig.statuses(stop_id)[:2] == ["submitted", "accepted"]
        assert rig.statuses(stop_id)[-1] == "filled"
        stop_fills = [f for f in strat.fills if f.client_order_id == stop_id]
        assert sum(f.qty for f in stop_fills) == order.qty
        assert all(f.price <= order.stop_price for f in stop_fills)
        assert strat.position.is_flat
        await rig.settle()
        journaled = await rig.journal.order(stop_id)
        assert journaled is not None
        assert (journaled.type, journaled.stop_price, journaled.status) == (
            OrderType.STOP,
            order.stop_price,
            OrderStatus.FILLED,
        )


class Placer(Strategy):
    """Places a far buy stop sized by quote amount and a far sell stop-limit, once."""

    symbol = "BTCUSDT"

    def on_start(self) -> None:
        self.ids: list[str] = []

    def on_quote(self, quote: Quote) -> None:
        if not self.ids:
            high = (quote.ask * D("1.5")).quantize(TICK)
            low = (quote.bid * D("0.5")).quantize(TICK)
            self.ids.append(self.buy(quote=D("1000"), stop=high))
            self.ids.append(self.sell(D("0.01"), stop=low, price=low - 1))


async def test_strategy_stop_and_stop_limit_orders_wait_and_cancel() -> None:
    rig = Rig()
    async with rig.running():
        hosted = rig.host.start(loaded(Placer, "placer"))
        strat = hosted.strategy
        assert isinstance(strat, Placer)
        await rig.advance(1.0)
        buy_id, sell_id = strat.ids
        buy, sell = rig.gateway.order(buy_id), rig.gateway.order(sell_id)
        assert buy is not None and sell is not None
        assert (buy.type, buy.status, buy.price) == (OrderType.STOP, OrderStatus.ACCEPTED, None)
        assert buy.stop_price is not None
        assert buy.qty == (D("1000") / buy.stop_price).quantize(D("0.00001"), rounding="ROUND_DOWN")
        assert (sell.type, sell.status) == (OrderType.STOP_LIMIT, OrderStatus.ACCEPTED)
        assert sell.price == sell.stop_price - 1  # type: ignore[operator]
        venue_view = {o.client_order_id: o for o in await rig.paper.open_orders()}
        assert venue_view[buy_id].stop_price == buy.stop_price
        assert venue_view[sell_id].type is OrderType.STOP_LIMIT
        strat.cancel_all()
        await rig.settle()
        await rig.gateway.drain()
        await rig.settle()
        assert rig.gateway.open_orders("placer") == []
        assert rig.statuses(buy_id)[-1] == "canceled"
        assert await rig.paper.open_orders() == []


async def test_a_venue_without_stops_refuses_them_before_sending() -> None:
    rig = Rig()
    rig.paper._capabilities = replace(
        PAPER_CAPABILITIES,
        order_types=frozenset(OrderType) - {OrderType.STOP, OrderType.STOP_LIMIT},
    )
    async with rig.running(feed=False):
        cid = rig.gateway.submit(intent(type=OrderType.STOP, stop_price=D("50000")))
        await rig.settle()
    order = rig.gateway.order(cid)
    assert order is not None and order.status is OrderStatus.REJECTED
    assert order.reason == (
        "UNSUPPORTED_ORDER_TYPE: venue 'paper' does not support stop orders "
        "(it takes: limit, market)"
    )
    assert await rig.paper.open_orders() == []  # never reached the venue
