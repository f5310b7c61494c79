"""What every venue adapter must do, as one reusable suite.

Subclass :class:`VenueContract` as ``TestXxxContract``, name the symbol to trade, and provide
``make_venue`` (a funded, not yet connected adapter). Adapters whose time is simulated override
``let_time_pass``. Nothing here knows a particular venue: symbols, quantities and expected
rejection codes come from the subclass, so network adapters (against the protocol servers or a
testnet) run the very same tests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import pytest

from botd.errors import OrderRejected
from botd.model import (
    Balance,
    ExecutionReport,
    Instrument,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    TimeInForce,
    Trade,
)
from botd.model.orders import Order
from botd.venues.base import SubmitAck, VenueAdapter

_ids = itertools.count(1)


class StreamRecorder:
    """Consumes ``executions()`` in the background, as the gateway does."""

    def __init__(self, venue: VenueAdapter) -> None:
        self.reports: list[ExecutionReport] = []
        self._task = asyncio.create_task(self._run(venue))

    async def _run(self, venue: VenueAdapter) -> None:
        async for report in venue.executions():
            self.reports.append(report)

    def of(self, client_order_id: str) -> list[ExecutionReport]:
        return [r for r in self.reports if r.client_order_id == client_order_id]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class VenueContract:
    symbol: str = ""
    other_symbol: str | None = None  # a second listed symbol, for market-data filtering
    insufficient_balance_code: str | None = None  # expected OrderRejected.code, if known
    bad_tick_code: str | None = None
    unknown_order_code: str = "UNKNOWN_ORDER"
    max_wait_s: float = 10.0  # venue time allowed for something to happen

    # -- what a subclass provides ---------------------------------------------------------------

    async def make_venue(self, tmp_path: Path) -> VenueAdapter:
        raise NotImplementedError

    async def let_time_pass(self, venue: VenueAdapter, seconds: float) -> None:
        """Let the venue's time move on (real time by default)."""
        await asyncio.sleep(seconds)

    def client_id(self) -> str:
        """A client order id the venue has never seen (override for venues that remember
        ids across runs)."""
        return f"ct{next(_ids)}"

    # -- fixtures and helpers -------------------------------------------------------------------

    @pytest.fixture
    async def venue(self, tmp_path: Path) -> AsyncIterator[VenueAdapter]:
        v = await self.make_venue(tmp_path)
        await v.connect()
        try:
            yield v
        finally:
            await v.close()

    @pytest.fixture
    async def stream(self, venue: VenueAdapter) -> AsyncIterator[StreamRecorder]:
        rec = StreamRecorder(venue)
        await asyncio.sleep(0)
        try:
            yield rec
        finally:
            await rec.stop()

    async def wait_for(self, venue: VenueAdapter, done: Callable[[], bool]) -> None:
        step = 0.05
        waited = 0.0
        while not done():
            if waited > self.max_wait_s:
                raise AssertionError("timed out waiting for the venue")
            await self.let_time_pass(venue, step)
            for _ in range(5):
                await asyncio.sleep(0)
            waited += step

    async def quote(self, venue: VenueAdapter) -> Quote:
        events = venue.market_data([self.symbol])
        got: list[Quote] = []

        async def first() -> None:
            async for event in events:
                if isinstance(event, Quote):
                    got.append(event)
                    return

        task = asyncio.create_task(first())
        try:
            await self.wait_for(venue, task.done)
            await task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await events.aclose()  # type: ignore[attr-defined]
        return got[0]

    def instrument(self, venue: VenueAdapter) -> Instrument:
        return venue.instruments()[self.symbol]

    def small_qty(self, inst: Instrument, price: Decimal) -> Decimal:
        """The smallest order that clears every filter at ``price``, with some headroom."""
        by_notional = inst.min_notional * Decimal("1.5") / price
        qty = max(inst.min_qty, inst.step_size, by_notional)
        return (qty / inst.step_size).to_integral_value(ROUND_CEILING) * inst.step_size

    def order(
        self,
        venue: VenueAdapter,
        side: Side,
        qty: Decimal,
        *,
        type: OrderType = OrderType.MARKET,
        price: Decimal | None = None,
        symbol: str | None = None,
    ) -> Order:
        return Order(
            client_order_id=self.client_id(),
            strategy_id="contract",
            venue=venue.name,
            symbol=symbol or self.symbol,
            side=side,
            type=type,
            qty=qty,
            price=price,
            tif=TimeInForce.GTC if type is OrderType.LIMIT else TimeInForce.IOC,
        )

    async def resting_buy(self, venue: VenueAdapter) -> tuple[Order, SubmitAck]:
        """A limit buy far below the market: it rests and nothing fills it."""
        inst = self.instrument(venue)
        q = await self.quote(venue)
        price = inst.round_price(q.bid * Decimal("0.8"), Side.BUY)
        order = self.order(
            venue, Side.BUY, self.small_qty(inst, price), type=OrderType.LIMIT, price=price
        )
        return order, await venue.submit(order)

    # -- the contract ---------------------------------------------------------------------------

    async def test_instruments_have_sane_filters(self, venue: VenueAdapter) -> None:
        instruments = venue.instruments()
        assert self.symbol in instruments
        for symbol, inst in instruments.items():
            assert inst.symbol == symbol
            assert inst.venue == venue.name
            assert inst.base and inst.quote and inst.base != inst.quote
            assert inst.tick_size > 0
            assert inst.step_size > 0
            assert inst.min_qty >= 0
            assert inst.min_notional >= 0
            assert inst.max_qty is None or inst.max_qty > inst.min_qty

    async def test_market_data_yields_sane_quotes_and_trades_for_requested_symbols(
        self, venue: VenueAdapter
    ) -> None:
        events = venue.market_data([self.symbol])
        seen: list[object] = []

        async def collect() -> None:
            async for event in events:
                seen.append(event)
                quotes = sum(isinstance(e, Quote) for e in seen)
                if quotes >= 5 and any(isinstance(e, Trade) for e in seen):
                    return

        task = asyncio.create_task(collect())
        try:
            await self.wait_for(venue, task.done)
            await task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert seen
        for event in seen:
            assert isinstance(event, Quote | Trade)
            assert event.symbol == self.symbol
            assert event.venue == venue.name
            if isinstance(event, Quote):
                assert 0 < event.bid < event.ask
                assert event.bid_size > 0
                assert event.ask_size > 0
            else:
                assert event.price > 0
                assert event.size > 0
                assert event.trade_id

    async def test_market_buy_fills_with_unique_trades_and_fees(
        self, venue: VenueAdapter, stream: StreamRecorder
    ) -> None:
        inst = self.instrument(venue)
        q = await self.quote(venue)
        before = await venue.balances()
        order = self.order(venue, Side.BUY, self.small_qty(inst, q.ask))
        ack = await venue.submit(order)
        assert isinstance(ack, SubmitAck)
        assert ack.client_order_id == order.client_order_id
        assert ack.venue_order_id

        def filled() -> bool:
            return any(r.status is OrderStatus.FILLED for r in stream.of(order.client_order_id))

        await self.wait_for(venue, filled)
        fills = [r for r in stream.of(order.client_order_id) if r.last_qty > 0]
        assert sum(r.last_qty for r in fills) == order.qty
        assert len({r.trade_id for r in fills}) == len(fills)
        assert all(r.trade_id for r in fills)
        assert all(r.venue_order_id == ack.venue_order_id for r in fills)
        assert all(r.fee >= 0 and r.fee_asset for r in fills)
        # Balances follow the fills: quote spent = sum(qty * price); fees in the asset got.
        await self.wait_for(venue, lambda: True)
        after = await venue.balances()
        spent = sum((r.last_qty * r.last_price for r in fills), Decimal(0))
        fee_base = sum((r.fee for r in fills if r.fee_asset == inst.base), Decimal(0))
        fee_quote = sum((r.fee for r in fills if r.fee_asset == inst.quote), Decimal(0))
        assert {r.fee_asset for r in fills} <= {inst.base, inst.quote}

        def total(bal: dict[str, Balance], asset: str) -> Decimal:
            b = bal.get(asset)
            return Decimal(0) if b is None else b.total

        assert total(after, inst.quote) == total(before, inst.quote) - spent - fee_quote
        assert total(after, inst.base) == total(before, inst.base) + order.qty - fee_base
        # The same executions, with the same trade ids, through fill recovery.
        recovered = await venue.fills(self.symbol, ack.ts_event)
        mine = [r for r in recovered if r.client_order_id == order.client_order_id]
        assert [r.trade_id for r in mine] == [r.trade_id for r in fills]
        assert [(r.last_qty, r.last_price, r.fee) for r in mine] == [
            (r.last_qty, r.last_price, r.fee) for r in fills
        ]
        assert all(a.ts_event <= b.ts_event for a, b in itertools.pairwise(recovered))
        found = await venue.query_order(self.symbol, order.client_order_id)
        assert found is not None
        assert found.status is OrderStatus.FILLED
        assert found.filled_qty == order.qty

    async def test_far_limit_rests_and_is_queryable(
        self, venue: VenueAdapter, stream: StreamRecorder
    ) -> None:
        order, ack = await self.resting_buy(venue)
        open_ids = {o.client_order_id: o for o in await venue.open_orders()}
        assert order.client_order_id in open_ids
        listed = open_ids[order.client_order_id]
        found = await venue.query_order(self.symbol, order.client_order_id)
        assert found is not None
        for view in (listed, found):
            assert view.status is OrderStatus.ACCEPTED
            assert view.filled_qty == 0
            assert view.qty == order.qty
            assert view.price == order.price
            assert view.side is Side.BUY
            assert view.symbol == self.symbol
            assert view.venue_order_id == ack.venue_order_id
        await self.wait_for(venue, lambda: bool(stream.of(order.client_order_id)))
        assert stream.of(order.client_order_id)[0].status is OrderStatus.ACCEPTED
        # It locks funds.
        balances = await venue.balances()
        inst = self.instrument(venue)
        assert order.price is not None
        assert balances[inst.quote].locked >= order.qty * order.price

    async def test_cancel_then_cancel_again(
        self, venue: VenueAdapter, stream: StreamRecorder
    ) -> None:
        order, _ = await self.resting_buy(venue)
        await venue.cancel(self.symbol, order.client_order_id)

        def canceled() -> bool:
            return any(r.status is OrderStatus.CANCELED for r in stream.of(order.client_order_id))

        await self.wait_for(venue, canceled)
        assert order.client_order_id not in {o.client_order_id for o in await venue.open_orders()}
        found = await venue.query_order(self.symbol, order.client_order_id)
        assert found is not None
        assert found.status is OrderStatus.CANCELED
        with pytest.raises(OrderRejected) as err:
            await venue.cancel(self.symbol, order.client_order_id)
        assert err.value.code == self.unknown_order_code

    async def test_cancel_all_cancels_only_that_symbol(
        self, venue: VenueAdapter, stream: StreamRecorder
    ) -> None:
        first, _ = await self.resting_buy(venue)
        second, _ = await self.resting_buy(venue)
        await venue.cancel_all(self.symbol)
        ids = {first.client_order_id, second.client_order_id}

        def both() -> bool:
            done = {r.client_order_id for r in stream.reports if r.status is OrderStatus.CANCELED}
            return ids <= done

        await self.wait_for(venue, both)
        remaining = [o for o in await venue.open_orders() if o.symbol == self.symbol]
        assert not ids & {o.client_order_id for o in remaining}
        await venue.cancel_all(self.symbol)  # nothing left: not an error

    async def test_query_unknown_order_is_none(self, venue: VenueAdapter) -> None:
        assert await venue.query_order(self.symbol, self.client_id()) is None

    async def test_insufficient_balance_is_rejected_and_leaves_nothing(
        self, venue: VenueAdapter
    ) -> None:
        inst = self.instrument(venue)
        q = await self.quote(venue)
        free_quote = (await venue.balances())[inst.quote].free
        price = inst.round_price(q.bid * Decimal("0.9"), Side.BUY)
        qty = inst.round_qty(free_quote / price * 2)
        if inst.max_qty is not None:
            qty = min(qty, inst.max_qty)
        order = self.order(venue, Side.BUY, qty, type=OrderType.LIMIT, price=price)
        with pytest.raises(OrderRejected) as err:
            await venue.submit(order)
        assert err.value.code
        if self.insufficient_balance_code is not None:
            assert err.value.code == self.insufficient_balance_code
        assert await venue.query_order(self.symbol, order.client_order_id) is None
        assert order.client_order_id not in {o.client_order_id for o in await venue.open_orders()}

    async def test_bad_tick_is_rejected_and_leaves_nothing(self, venue: VenueAdapter) -> None:
        inst = self.instrument(venue)
        q = await self.quote(venue)
        price = inst.round_price(q.bid * Decimal("0.9"), Side.BUY) + inst.tick_size / 2
        order = self.order(
            venue, Side.BUY, self.small_qty(inst, price), type=OrderType.LIMIT, price=price
        )
        with pytest.raises(OrderRejected) as err:
            await venue.submit(order)
        assert err.value.code
        if self.bad_tick_code is not None:
            assert err.value.code == self.bad_tick_code
        assert await venue.query_order(self.symbol, order.client_order_id) is None
        assert order.client_order_id not in {o.client_order_id for o in await venue.open_orders()}

    async def test_fills_since_excludes_older_executions(
        self, venue: VenueAdapter, stream: StreamRecorder
    ) -> None:
        inst = self.instrument(venue)
        q = await self.quote(venue)
        first = self.order(venue, Side.BUY, self.small_qty(inst, q.ask))
        await venue.submit(first)
        await self.wait_for(venue, lambda: bool(stream.of(first.client_order_id)))
        await self.let_time_pass(venue, 0.5)
        q = await self.quote(venue)
        second = self.order(venue, Side.BUY, self.small_qty(inst, q.ask))
        ack = await venue.submit(second)

        def done() -> bool:
            return any(r.status.is_terminal for r in stream.of(second.client_order_id))

        await self.wait_for(venue, done)
        recovered = await venue.fills(self.symbol, ack.ts_event)
        ids = {r.client_order_id for r in recovered}
        assert second.client_order_id in ids
        assert first.client_order_id not in ids
        streamed = {r.trade_id for r in stream.of(second.client_order_id) if r.last_qty > 0}
        assert {r.trade_id for r in recovered if r.client_order_id == second.client_order_id} == (
            streamed
        )

    async def test_a_far_stop_waits_untriggered_and_cancels(
        self, venue: VenueAdapter, stream: StreamRecorder
    ) -> None:
        if not {OrderType.STOP, OrderType.STOP_LIMIT} <= venue.capabilities.order_types:
            pytest.skip(f"{venue.name} declares no stop orders")
        inst = self.instrument(venue)
        q = await self.quote(venue)
        stop = inst.round_price(q.ask * Decimal("1.5"), Side.SELL)  # far above: never reached
        order = Order(
            client_order_id=self.client_id(),
            strategy_id="contract",
            venue=venue.name,
            symbol=self.symbol,
            side=Side.BUY,
            type=OrderType.STOP,
            qty=self.small_qty(inst, stop),
            price=None,
            tif=TimeInForce.GTC,
            stop_price=stop,
        )
        ack = await venue.submit(order)
        assert ack.status is OrderStatus.ACCEPTED
        listed = {o.client_order_id: o for o in await venue.open_orders()}
        found = await venue.query_order(self.symbol, order.client_order_id)
        assert found is not None
        for view in (listed[order.client_order_id], found):
            assert (view.status, view.type, view.stop_price) == (
                OrderStatus.ACCEPTED,
                OrderType.STOP,
                stop,
            )
            assert view.filled_qty == 0
        await venue.cancel(self.symbol, order.client_order_id)

        def canceled() -> bool:
            return any(r.status is OrderStatus.CANCELED for r in stream.of(order.client_order_id))

        await self.wait_for(venue, canceled)
        assert order.client_order_id not in {o.client_order_id for o in await venue.open_orders()}
