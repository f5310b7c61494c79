"""The paper venue: the matching engine and the synthetic market, in process.

It fulfils :class:`botd.venues.base.VenueAdapter` exactly as a network venue would: orders go
in through ``submit``/``cancel``, everything that happens to them comes back through
``executions``, and ``query_order``/``open_orders``/``fills`` answer reconciliation. It is the
default venue of ``botd run`` and needs no keys and no network.

With a ``state_path`` the user's account outlives the process, like an account on a real
exchange (see :mod:`botd.venues.sim.snapshot` for the files):

* ``connect()`` restores it: balances (free and locked), open orders back in the book with
  their ids and time priority, the order and execution history, the id counters (venue order
  ids and trade ids never repeat), and each symbol's fair price and regime. The market's RNG
  is re-seeded from ``(seed, restarts)``: a restored run must not replay the first run's
  random path from a different price, and the same file restored twice in the same way gives
  the same market. The balances passed to the constructor only fund a *new* account.
* It persists before it answers: a submit or cancel that changed the account is durable
  before ``submit()`` returns its ack or any report is forwarded, and a market step that
  filled a user order is durable before its reports are. If the write fails the call raises
  ``TransientVenueError`` (the outcome is unknown to the caller, as after a timeout) and the
  reports are held back until a later write succeeds: the venue never tells anything it might
  forget.
* Between such writes the market's drift is checkpointed every ``checkpoint_s`` of clock time.

Without a ``state_path`` nothing of this runs (backtests stay fast).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from botd.clock import NS_PER_SECOND, Clock
from botd.errors import OrderRejected, TransientVenueError
from botd.model import (
    Balance,
    ExecutionReport,
    Instrument,
    MarketEvent,
    Order,
    OrderStatus,
    OrderType,
    VenueOrder,
)
from botd.venues.base import RateLimit, SubmitAck, VenueCapabilities
from botd.venues.sim.engine import EngineResult, MatchingEngine
from botd.venues.sim.market import MarketGenerator, SymbolSpec, default_instruments
from botd.venues.sim.snapshot import PaperDelta, PaperState, PaperStateError, StateStore

__all__ = ["PAPER_CAPABILITIES", "PaperStateError", "PaperVenue", "UnknownSymbol", "market_seed"]

_ACCOUNT = "user"

# The paper venue enforces nothing itself, but declares Binance spot's limits so that
# strategies meet the same budget on paper as they will live (and the limiter is exercised).
PAPER_CAPABILITIES = VenueCapabilities(
    order_types=frozenset(OrderType),  # stops wait off the book for the last trade price
    rate_limits=(
        RateLimit("REQUEST_WEIGHT", 6000, 60.0, scope="ip", kind="fixed"),
        RateLimit("ORDERS_10S", 50, 10.0, scope="account", kind="fixed"),
        RateLimit("ORDERS_1D", 160_000, 86_400.0, scope="account", kind="fixed"),
    ),
    endpoint_costs={
        "order.submit": {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1D": 1},
        "order.cancel": {"REQUEST_WEIGHT": 1},
        "order.cancel_all": {"REQUEST_WEIGHT": 1},
        "order.query": {"REQUEST_WEIGHT": 4},
        "order.open_orders": {"REQUEST_WEIGHT": 6},
        "account.fills": {"REQUEST_WEIGHT": 20},
        "account.balances": {"REQUEST_WEIGHT": 20},
    },
)


class UnknownSymbol(ValueError):
    pass


def market_seed(seed: int, restarts: int) -> int:
    """The market generator's seed after ``restarts`` restores of a persisted account; the
    configured seed itself for a new account."""
    if restarts == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}/{restarts}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


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
        state_path: Path | None = None,
        checkpoint_s: float = 10.0,
        compact_every: int = 1000,
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
        self._seed = seed
        self._maker_fee = maker_fee
        self._taker_fee = taker_fee
        self._specs: list[SymbolSpec] = [known[s] for s in symbols]
        self._instruments = {spec.symbol: _instrument(name, spec) for spec in self._specs}
        self._engine = self._new_engine()
        self._engine.open_account(_ACCOUNT, balances)
        self._market = MarketGenerator(self._engine, self._specs, seed=seed)
        self._interval = 1.0 / event_rate
        self._reports: asyncio.Queue[ExecutionReport] = asyncio.Queue()
        self._pending_market: deque[MarketEvent] = deque()
        self._capabilities = PAPER_CAPABILITIES
        # Persistence; all of it idle when state_path is None.
        self._store = (
            StateStore(state_path, compact_every=compact_every) if state_path is not None else None
        )
        self._loaded = False
        self._restarts = 0
        self._unsaved: list[ExecutionReport] = []  # reports held back until durable
        self._snapshot_due = False
        self._checkpoint_ns = int(checkpoint_s * NS_PER_SECOND)
        self._saved_ns = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> VenueCapabilities:
        return self._capabilities

    @property
    def pending_reports(self) -> int:
        """Execution reports produced but not yet read from :meth:`executions`."""
        return self._reports.qsize()

    @property
    def engine(self) -> MatchingEngine:
        """The engine; a restoring ``connect()`` replaces it with one rebuilt from the file."""
        return self._engine

    @property
    def market(self) -> MarketGenerator:
        return self._market

    @property
    def restarts(self) -> int:
        """How many times the persisted account has been restored (0: new, or not persisted)."""
        return self._restarts

    async def connect(self) -> None:
        if self._store is not None and not self._loaded:
            self._load(self._store)
            self._loaded = True
        # Warm the book so the first strategy quote already has a market behind it.
        ts = self._clock.time_ns()
        for spec in self._specs:
            self._commit(self._engine.trigger_stops(self._market.step(spec.symbol, ts)[0], ts))

    async def close(self) -> None:
        if self._store is None or not self._loaded:
            return
        try:
            # Everything acknowledged is on disk already; this saves the market's drift.
            self._persist(force=True)
        except TransientVenueError:
            pass
        finally:
            self._store.close()

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
                self._commit(self._engine.trigger_stops(result, ts))
                for trade in result.trades:
                    yield trade
                if quote is not None:
                    yield quote
            if self._store is not None and ts - self._saved_ns >= self._checkpoint_ns:
                self._persist(force=True)

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
            stop_price=order.stop_price,
        )
        self._engine.trigger_stops(result, ts)  # our own trades may reach waiting stops
        mine = [r.report for r in result.reports if r.account == _ACCOUNT]
        first = mine[0] if mine else None
        if first is not None and first.status is OrderStatus.REJECTED:
            raise OrderRejected(first.reason, first.extra.get("code", ""))
        self._pending_market.extend(result.trades)
        self._commit(result)
        venue_id = first.venue_order_id if first is not None else ""
        return SubmitAck(order.client_order_id, venue_id, OrderStatus.ACCEPTED, ts)

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        result = self._engine.cancel(_ACCOUNT, symbol, client_order_id, self._clock.time_ns())
        for item in result.reports:
            if item.account == _ACCOUNT and item.report.status is OrderStatus.REJECTED:
                raise OrderRejected(item.report.reason, item.report.extra.get("code", ""))
        self._commit(result)

    async def cancel_all(self, symbol: str) -> None:
        if symbol not in self._instruments:
            raise OrderRejected(f"unknown symbol {symbol}", "UNKNOWN_SYMBOL")
        self._commit(self._engine.cancel_all(_ACCOUNT, symbol, self._clock.time_ns()))

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        found = self._engine.order_state(_ACCOUNT, client_order_id)
        return found if found is not None and found.symbol == symbol else None

    async def open_orders(self) -> list[VenueOrder]:
        return self._engine.open_venue_orders(_ACCOUNT)

    async def fills(self, symbol: str, since_ns: int) -> list[ExecutionReport]:
        return self._engine.executions(_ACCOUNT, symbol, since_ns)

    async def balances(self) -> dict[str, Balance]:
        return self._engine.balances(_ACCOUNT)

    # -- internals ----------------------------------------------------------------------------

    def _new_engine(self) -> MatchingEngine:
        return MatchingEngine(
            self._name,
            self._instruments.values(),
            maker_fee=self._maker_fee,
            taker_fee=self._taker_fee,
        )

    def _commit(self, result: EngineResult) -> None:
        """Forward the user's reports of ``result``, after making them durable if persisting."""
        mine = [item.report for item in result.reports if item.account == _ACCOUNT]
        if self._store is None:
            for report in mine:
                self._reports.put_nowait(report)
            return
        self._unsaved.extend(mine)
        self._persist()
        for report in self._unsaved:
            self._reports.put_nowait(report)
        self._unsaved.clear()

    def _persist(self, *, force: bool = False) -> None:
        """Write what changed in the account (or, with ``force``, the market state at least).
        Raises ``TransientVenueError`` if the disk refuses."""
        store = self._store
        assert store is not None
        engine = self._engine
        if not (force or self._snapshot_due or engine.has_changes(_ACCOUNT)):
            return
        try:
            if self._snapshot_due or store.compaction_due:
                engine.take_changes(_ACCOUNT)  # the snapshot holds them
                self._snapshot_due = True  # until it is written
                store.write_snapshot(self._state())
                self._snapshot_due = False
            else:
                changes = engine.take_changes(_ACCOUNT) if engine.has_changes(_ACCOUNT) else None
                if changes is not None:
                    # Taken from the engine: if this write fails only a snapshot has them.
                    self._snapshot_due = True
                order_seq, trade_seq = engine.counters
                store.append(PaperDelta(order_seq, trade_seq, self._market_state(), changes))
                self._snapshot_due = False
        except OSError as exc:
            raise TransientVenueError(
                f"paper venue could not save its account to {store.path}: {exc}"
            ) from exc
        self._saved_ns = self._clock.time_ns()

    def _load(self, store: StateStore) -> None:
        state = store.load()
        if state is not None:
            self._restore(state, store)
        self._engine.track_changes(_ACCOUNT)
        try:
            # A new account becomes durable at once; a restored one records its restart.
            store.write_snapshot(self._state())
        except OSError as exc:
            raise TransientVenueError(
                f"paper venue could not save its account to {store.path}: {exc}"
            ) from exc
        self._saved_ns = self._clock.time_ns()

    def _restore(self, state: PaperState, store: StateStore) -> None:
        if state.venue != self._name:
            raise PaperStateError(
                f"paper account state file {store.path} belongs to venue {state.venue!r}, "
                f"not {self._name!r}"
            )
        stranded = sorted(
            {o.symbol for o in state.account.open if o.symbol not in self._instruments}
        )
        if stranded:
            raise PaperStateError(
                f"paper account state file {store.path} holds open orders in "
                f"{', '.join(stranded)}, which paper.symbols no longer lists; add them back "
                "(and cancel those orders) rather than lose them"
            )
        self._restarts = state.restarts + 1
        engine = self._new_engine()
        engine.restore_counters(state.order_seq, state.trade_seq)
        try:
            engine.restore_account(_ACCOUNT, state.account)
        except ValueError as exc:
            raise PaperStateError(
                f"paper account state file {store.path} is inconsistent: {exc}"
            ) from exc
        market = MarketGenerator(engine, self._specs, seed=market_seed(self._seed, self._restarts))
        for symbol, (fair, regime) in state.market.items():
            if symbol in self._instruments:
                try:
                    market.resume(symbol, fair, regime)
                except ValueError as exc:
                    raise PaperStateError(
                        f"paper account state file {store.path} is corrupt: {exc}"
                    ) from exc
        self._engine, self._market = engine, market

    def _state(self) -> PaperState:
        order_seq, trade_seq = self._engine.counters
        return PaperState(
            venue=self._name,
            restarts=self._restarts,
            order_seq=order_seq,
            trade_seq=trade_seq,
            market=self._market_state(),
            account=self._engine.export_account(_ACCOUNT),
        )

    def _market_state(self) -> dict[str, tuple[float, str]]:
        return {spec.symbol: self._market.fair_state(spec.symbol) for spec in self._specs}


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
