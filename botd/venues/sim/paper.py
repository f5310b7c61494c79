"""The paper venue: the matching engine and the synthetic market, in process.

It fulfils :class:`botd.venues.base.VenueAdapter` exactly as a network venue would: orders go
in through ``submit``/``cancel``, and everything that happens to them comes back through
``executions``. It is the default venue of ``botd run`` and needs no keys and no network.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal

from botd.clock import Clock
from botd.errors import OrderRejected
from botd.model import (
    Balance,
    ExecutionReport,
    Instrument,
    MarketEvent,
    Order,
    OrderStatus,
)
from botd.venues.base import SubmitAck, VenueCapabilities
from botd.venues.sim.engine import EngineResult, MatchingEngine
from botd.venues.sim.market import MarketGenerator, SymbolSpec, default_instruments

__all__ = ["PaperVenue", "UnknownSymbol"]

_ACCOUNT = "user"


class UnknownSymbol(ValueError):
    pass


class PaperVenue:
    def __init__(
        self,
        *,
        clock: Clock,
        symbols: Sequence[str],
        seed: int,
        event_rate: float,
        maker_fee: Decimal,
        taker_fee: Decimal,
        balances: Mapping[str, Decimal],
        name: str = "paper",
    ) -> None:
        known = default_instruments(name)
        missing = [s for s in symbols if s not in known]
        if missing:
            raise UnknownSymbol(
                f"the simulated exchange does not list {', '.join(missing)}; "
                f"it lists {', '.join(sorted(known))}"
            )
        self._name = name
        self._clock = clock
        self._specs: list[SymbolSpec] = [known[s] for s in symbols]
        self._instruments = {spec.symbol: _instrument(name, spec) for spec in self._specs}
        self._engine = MatchingEngine(
            name, self._instruments.values(), maker_fee=maker_fee, taker_fee=taker_fee
        )
        self._engine.open_account(_ACCOUNT, balances)
        self._market = MarketGenerator(self._engine, self._specs, seed=seed)
        self._interval = 1.0 / event_rate
        self._reports: asyncio.Queue[ExecutionReport] = asyncio.Queue()
        self._pending_market: deque[MarketEvent] = deque()
        self._capabilities = VenueCapabilities()

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> VenueCapabilities:
        return self._capabilities

    @property
    def engine(self) -> MatchingEngine:
        return self._engine

    async def connect(self) -> None:
        # Warm the book so the first strategy quote already has a market behind it.
        ts = self._clock.time_ns()
        for spec in self._specs:
            self._forward(self._market.step(spec.symbol, ts)[0])

    async def close(self) -> None:
        return None

    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    async def market_data(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]:
        wanted = [s for s in symbols if s in self._instruments]
        while True:
            await self._clock.sleep(self._interval)
            while self._pending_market:
                event = self._pending_market.popleft()
                if event.symbol in wanted:
                    yield event
            ts = self._clock.time_ns()
            for symbol in wanted:
                result, quote = self._market.step(symbol, ts)
                self._forward(result)
                for trade in result.trades:
                    yield trade
                if quote is not None:
                    yield quote

    async def executions(self) -> AsyncIterator[ExecutionReport]:
        while True:
            yield await self._reports.get()

    async def submit(self, order: Order) -> SubmitAck:
        ts = self._clock.time_ns()
        result = self._engine.submit(
            _ACCOUNT,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            qty=order.qty,
            price=order.price,
            tif=order.tif,
            post_only=order.post_only,
            ts=ts,
        )
        mine = [r.report for r in result.reports if r.account == _ACCOUNT]
        first = mine[0] if mine else None
        if first is not None and first.status is OrderStatus.REJECTED:
            raise OrderRejected(first.reason, first.extra.get("code", ""))
        self._forward(result)
        self._pending_market.extend(result.trades)
        venue_id = first.venue_order_id if first is not None else ""
        return SubmitAck(order.client_order_id, venue_id, OrderStatus.ACCEPTED, ts)

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        result = self._engine.cancel(_ACCOUNT, symbol, client_order_id, self._clock.time_ns())
        for item in result.reports:
            if item.account == _ACCOUNT and item.report.status is OrderStatus.REJECTED:
                raise OrderRejected(item.report.reason, item.report.extra.get("code", ""))
        self._forward(result)

    async def open_orders(self) -> list[ExecutionReport]:
        return self._engine.open_orders(_ACCOUNT)

    async def balances(self) -> dict[str, Balance]:
        return self._engine.balances(_ACCOUNT)

    def _forward(self, result: EngineResult) -> None:
        for item in result.reports:
            if item.account == _ACCOUNT:
                self._reports.put_nowait(item.report)


def _instrument(venue: str, spec: SymbolSpec) -> Instrument:
    return Instrument(
        venue=venue,
        symbol=spec.symbol,
        base=spec.base,
        quote=spec.quote,
        tick_size=spec.tick_size,
        step_size=spec.step_size,
        min_qty=spec.min_qty,
        min_notional=spec.min_notional,
    )
