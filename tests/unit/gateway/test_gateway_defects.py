"""Four gateway defects found while building the Binance adapter, each pinned by a test:
self-trades, fill recovery retries, a worker surviving a bug in an adapter, and recovery that
does not hold up the report stream. Real components: the paper venue, the journal, FakeClock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import structlog

from botd.clock import FakeClock
from botd.gateway import Alert
from botd.model import ExecutionReport, OrderStatus, OrderType, Side, VenueOrder
from botd.store import Journal
from botd.store.schema import MIGRATIONS
from botd.venues.sim.faulty import Fault, FaultKind, FaultPlan
from tests.rig import Rig
from tests.rig import make_intent as intent


async def _self_trade(rig: Rig) -> tuple[str, str]:
    """Our sell rests at the best ask behind the book's own size there; our buy at that price
    sweeps the level, the last of it against our sell: one trade, both sides ours."""
    _, ask = rig.paper.engine.top_of_book("BTCUSDT")
    assert ask is not None
    maker = rig.gateway.submit(
        intent(strategy_id="maker", side=Side.SELL, type=OrderType.LIMIT, price=ask.price)
    )
    taker = rig.gateway.submit(
        intent(
            strategy_id="taker",
            side=Side.BUY,
            type=OrderType.LIMIT,
            price=ask.price,
            qty=ask.size + D("0.01"),
        )
    )
    await _settle_until(
        rig, lambda: all(_status(rig, c) is OrderStatus.FILLED for c in (maker, taker))
    )
    return maker, taker


def _sweep_qty(rig: Rig, price: D) -> D:
    """What a buy limited at ``price`` must take to empty every ask level up to it."""
    _, asks = rig.paper.engine.depth("BTCUSDT", 1000)
    return sum((level.size for level in asks if level.price <= price), D(0))


async def _rest_sell(rig: Rig, above: str = "0") -> str:
    """Our sell, resting ``above`` over the best ask (behind the book's own size there): far
    enough up, the market's own trading does not reach it in a test's few seconds."""
    _, ask = rig.paper.engine.top_of_book("BTCUSDT")
    assert ask is not None
    price = ask.price + D(above)
    return rig.gateway.submit(
        intent(strategy_id="maker", side=Side.SELL, type=OrderType.LIMIT, price=price)
    )


def _sweep(rig: Rig, maker: str) -> str:
    """Our buy that empties the ask side up to our resting sell, that sell included."""
    order = rig.gateway.order(maker)
    assert order is not None and order.price is not None
    qty = _sweep_qty(rig, order.price)
    return rig.gateway.submit(
        intent(strategy_id="taker", side=Side.BUY, type=OrderType.LIMIT, price=order.price, qty=qty)
    )


def _status(rig: Rig, cid: str) -> OrderStatus | None:
    order = rig.gateway.order(cid)
    return None if order is None else order.status


async def _settle_until(rig: Rig, done: Callable[[], bool], rounds: int = 50) -> None:
    """Settle (without moving the clock) until ``done``: each fill is a journal commit, real
    I/O, and a burst of them may outlast one settle."""
    for _ in range(rounds):
        if done():
            return
        await rig.settle()
        await asyncio.sleep(0.01)


async def test_self_trade_between_two_strategies_books_both_fills() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.5)
        maker, taker = await _self_trade(rig)
        await rig.settle()
        journal_fills = await rig.journal.fills()
        maker_order, taker_order = rig.gateway.order(maker), rig.gateway.order(taker)
        maker_pos = rig.host.position("maker", "paper", "BTCUSDT")
        taker_pos = rig.host.position("taker", "paper", "BTCUSDT")
    assert maker_order is not None and taker_order is not None
    maker_fills = [f for f in rig.fills if f.client_order_id == maker]
    assert [f.qty for f in maker_fills] == [D("0.01")]
    crossed = [f for f in rig.fills if f.trade_id == maker_fills[0].trade_id]
    assert {f.client_order_id for f in crossed} == {maker, taker}  # one trade id, two fills
    assert maker_order.status is OrderStatus.FILLED
    assert taker_order.status is OrderStatus.FILLED
    assert maker_pos.qty == D("-0.01")  # the maker's fee was in USDT
    taker_fees = sum((f.fee for f in rig.fills if f.client_order_id == taker), D(0))
    assert taker_pos.qty == taker_order.qty - taker_fees  # the taker's fee was in BTC
    assert rig.gateway.duplicate_fills == 0
    # The journal keeps both sides too, so a restart does not lose one.
    stored = [(f.trade_id, f.client_order_id) for f in journal_fills]
    assert (maker_fills[0].trade_id, maker) in stored
    assert (maker_fills[0].trade_id, taker) in stored


async def test_a_repeated_report_of_one_order_and_trade_still_counts_once() -> None:
    rig = Rig()
    async with rig.running():
        await rig.advance(0.5)
        maker, _ = await _self_trade(rig)
        fill = next(f for f in rig.fills if f.client_order_id == maker)
        again = ExecutionReport(
            venue="paper",
            symbol="BTCUSDT",
            client_order_id=maker,
            venue_order_id=fill.venue_order_id,
            status=OrderStatus.FILLED,
            ts_event=fill.ts_event,
            last_qty=fill.qty,
            last_price=fill.price,
            fee=fill.fee,
            fee_asset=fill.fee_asset,
            trade_id=fill.trade_id,
        )
        await rig.gateway.apply(again)
        await rig.settle()
        maker_order = rig.gateway.order(maker)
        stored = [f for f in await rig.journal.fills() if f.client_order_id == maker]
    assert rig.gateway.duplicate_fills == 1
    assert maker_order is not None and maker_order.filled_qty == D("0.01")
    assert [f.qty for f in rig.fills if f.client_order_id == maker] == [D("0.01")]
    assert len(stored) == 1


async def test_a_journal_from_before_the_migration_keeps_its_fills(tmp_path: Path) -> None:
    """Version 3 rebuilds the fills table: rows written under version 2 survive it, and the
    new uniqueness takes both sides of a self-trade."""
    db = tmp_path / "botd.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        conn.execute(statement)
    row = ("paper", "7", "c1", "s1", "BTCUSDT", "buy", "0.1", "100", "0", "", "taker", "v1", 1, 2)
    conn.execute(
        "INSERT INTO fills (venue, trade_id, client_order_id, strategy_id, symbol, side, qty, "
        "price, fee, fee_asset, liquidity, venue_order_id, ts_event, ts_recv) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    journal = await Journal.open(db, clock=FakeClock())
    try:
        [old] = await journal.fills()
        other_side = replace(old, client_order_id="c2", side=Side.SELL, strategy_id="s2")
        assert await journal.write_fill(other_side)
        assert not await journal.write_fill(other_side)
        after = await journal.fills()
    finally:
        await journal.close()
    assert (old.trade_id, old.client_order_id, old.qty) == ("7", "c1", D("0.1"))
    assert sorted(f.client_order_id for f in after) == ["c1", "c2"]


# -- fill recovery is retried -------------------------------------------------------------------


async def test_failed_fill_recovery_is_retried_with_backoff_until_the_fills_are_in() -> None:
    """The maker's fill report is lost with the stream; recovery finds the order filled, but
    the venue's fills endpoint fails three times. The gateway keeps asking, on the clock."""
    ids: dict[str, str] = {}
    lose_maker_fill = Fault(
        FaultKind.DROP_STREAM,
        on="executions",
        predicate=lambda r: (
            isinstance(r, ExecutionReport)
            and r.client_order_id == ids.get("maker")
            and r.last_qty > 0
        ),
    )
    fills_fail = Fault(FaultKind.SERVER_ERROR, on="fills", times=3)
    rig = Rig(faults=FaultPlan([lose_maker_fill, fills_fail]))
    async with rig.running():
        await rig.advance(0.5)
        ids["maker"] = maker = await _rest_sell(rig, above="50")
        await rig.settle()
        _sweep(rig, maker)
        await _settle_until(rig, lambda: lose_maker_fill.fired == 1)
        assert lose_maker_fill.fired == 1
        assert rig.gateway.order(maker).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
        await rig.advance(1.0)  # reconnect, recover: the first fills() call fails
        assert fills_fail.fired >= 1
        await rig.advance(6.0)  # backoff 0.5, 1, 2 s: the fourth call succeeds
        order = rig.gateway.order(maker)
        fills_calls = rig.venue.calls("fills")  # type: ignore[attr-defined]
    assert fills_fail.fired == 3
    assert fills_calls == 4
    assert order is not None and order.status is OrderStatus.FILLED
    assert [f.qty for f in rig.fills if f.client_order_id == maker] == [D("0.01")]


# -- an unexpected exception in a command ---------------------------------------------------


def _break_once(rig: Rig, name: str, exc: Exception, *, after_forward: bool) -> list[int]:
    """Make the paper venue's ``name`` raise ``exc`` on its first call (after doing the work,
    with ``after_forward``); return the call counter."""
    inner = getattr(rig.paper, name)
    calls = [0]

    async def broken(*args: object) -> object:
        calls[0] += 1
        if calls[0] > 1:
            return await inner(*args)
        if after_forward:
            await inner(*args)
        raise exc

    setattr(rig.paper, name, broken)
    return calls


async def test_a_submit_that_raises_a_bug_ends_resolved_by_query_and_the_worker_goes_on() -> None:
    rig = Rig()
    alerts: list[Alert] = []
    rig.bus.subscribe(Alert, alerts.append)
    submits = _break_once(rig, "submit", RuntimeError("adapter bug"), after_forward=True)
    async with rig.running():
        await rig.advance(0.5)
        price = rig.resting_buy_price()
        first = rig.gateway.submit(intent(type=OrderType.LIMIT, price=price))
        with structlog.testing.capture_logs() as logs:
            await rig.settle()
        assert rig.gateway.order(first).status in (  # type: ignore[union-attr]
            OrderStatus.UNKNOWN,
            OrderStatus.ACCEPTED,
        )
        second = rig.gateway.submit(intent(type=OrderType.LIMIT, price=price))
        await rig.advance(3.0)
        on_venue = sorted(o.client_order_id for o in await rig.paper.open_orders())
        orders = rig.gateway.order(first), rig.gateway.order(second)
    assert orders[0] is not None and orders[0].status is OrderStatus.ACCEPTED
    assert orders[1] is not None and orders[1].status is OrderStatus.ACCEPTED
    assert "unknown" in rig.statuses(first)
    assert submits[0] == 2  # one per order: the first was not sent again
    assert on_venue == sorted([first, second])
    assert [a.kind for a in alerts] == ["command_failed"]
    assert "RuntimeError" in alerts[0].message
    assert "adapter bug" not in alerts[0].message  # exception text stays in the redacted log
    [failed] = [e for e in logs if e["event"] == "command failed unexpectedly"]
    assert isinstance(failed["exc_info"], RuntimeError)  # logged with its traceback
    assert failed["client_order_id"] == first


async def test_a_submit_that_raises_before_reaching_the_venue_is_rejected_after_queries() -> None:
    rig = Rig()
    _break_once(rig, "submit", KeyError("oops"), after_forward=False)
    async with rig.running():
        await rig.advance(0.5)
        first = rig.gateway.submit(intent())
        second = rig.gateway.submit(intent())
        await rig.advance(5.0)
        orders = rig.gateway.order(first), rig.gateway.order(second)
    assert orders[0] is not None and orders[0].status is OrderStatus.REJECTED
    assert "not received by the venue" in orders[0].reason
    assert orders[1] is not None and orders[1].status is OrderStatus.FILLED


async def test_a_cancel_that_raises_a_bug_is_retried() -> None:
    rig = Rig()
    alerts: list[Alert] = []
    rig.bus.subscribe(Alert, alerts.append)
    cancels = _break_once(rig, "cancel", AssertionError("adapter bug"), after_forward=False)
    async with rig.running():
        await rig.advance(0.5)
        cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=rig.resting_buy_price()))
        await rig.settle()
        rig.gateway.cancel(cid)
        await rig.settle()
        assert rig.gateway.order(cid).status is OrderStatus.PENDING_CANCEL  # type: ignore[union-attr]
        later = rig.gateway.submit(intent())
        await rig.advance(2.0)
        orders = rig.gateway.order(cid), rig.gateway.order(later)
    assert orders[0] is not None and orders[0].status is OrderStatus.CANCELED
    assert orders[1] is not None and orders[1].status is OrderStatus.FILLED
    assert cancels[0] == 2
    assert [a.kind for a in alerts] == ["command_failed"]


# -- recovery runs beside the report stream -----------------------------------------------


async def test_reports_are_applied_while_a_slow_recovery_is_out() -> None:
    """A stream gap starts recovery; its order query hangs. Meanwhile our resting sell is
    filled: the stream's reports are applied at once, and the recovery's older answer, when it
    finally comes, neither counts a fill twice nor moves the order back."""
    ids: dict[str, str] = {}
    drop = Fault(
        FaultKind.DROP_STREAM,
        on="executions",
        predicate=lambda r: (
            isinstance(r, ExecutionReport) and r.client_order_id == ids.get("trigger")
        ),
    )
    rig = Rig(faults=FaultPlan([drop]))
    gate = asyncio.Event()
    queried: list[str] = []
    inner_query = rig.paper.query_order

    async def slow_query(symbol: str, client_order_id: str) -> VenueOrder | None:
        found = await inner_query(symbol, client_order_id)  # the view as of now...
        queried.append(client_order_id)
        await gate.wait()  # ...answered late
        return found

    rig.paper.query_order = slow_query  # type: ignore[method-assign]
    async with rig.running():
        await rig.advance(0.5)
        maker = await _rest_sell(rig, above="50")
        await rig.settle()
        # Its first report cuts the stream.
        ids["trigger"] = rig.gateway.submit(
            intent(type=OrderType.LIMIT, price=rig.resting_buy_price())
        )
        await rig.settle()
        assert drop.fired == 1
        await rig.advance(1.0)  # reconnected; recovery is waiting on its query of the maker
        assert queried == [maker]
        taker = _sweep(rig, maker)
        await _settle_until(rig, lambda: _status(rig, maker) is OrderStatus.FILLED)
        assert not gate.is_set() and queried == [maker]  # the recovery is still waiting
        during = rig.gateway.order(maker), rig.gateway.order(taker)
        gate.set()
        await rig.advance(0.5)
        after = rig.gateway.order(maker)
    assert during[0] is not None and during[0].status is OrderStatus.FILLED
    assert during[1] is not None and during[1].status is OrderStatus.FILLED
    assert after is not None and after.status is OrderStatus.FILLED
    assert [f.qty for f in rig.fills if f.client_order_id == maker] == [D("0.01")]
    assert rig.statuses(maker)[-1] == "filled"
    assert rig.gateway.illegal_transitions == 0


async def test_gaps_during_a_recovery_coalesce_into_one_more_run() -> None:
    triggers: set[str] = set()
    drop = Fault(
        FaultKind.DROP_STREAM,
        on="executions",
        times=3,
        predicate=lambda r: isinstance(r, ExecutionReport) and r.client_order_id in triggers,
    )
    rig = Rig(faults=FaultPlan([drop]))
    gate = asyncio.Event()
    queried: list[str] = []
    inner_query = rig.paper.query_order

    async def slow_query(symbol: str, client_order_id: str) -> VenueOrder | None:
        queried.append(client_order_id)
        await gate.wait()
        return await inner_query(symbol, client_order_id)

    rig.paper.query_order = slow_query  # type: ignore[method-assign]
    async with rig.running():
        await rig.advance(0.5)
        resting = rig.gateway.submit(intent(type=OrderType.LIMIT, price=rig.resting_buy_price()))
        await rig.settle()
        for fired in (1, 2, 3):  # three gaps, the last two while the first recovery waits
            triggers.add(
                rig.gateway.submit(intent(type=OrderType.LIMIT, price=rig.resting_buy_price()))
            )
            await _settle_until(rig, lambda n=fired: drop.fired == n)  # type: ignore[misc]
            await rig.advance(2.5)  # reconnect (backoff 0.5, 1, 2 s), ask for a recovery
        assert drop.fired == 3
        assert queried == [resting]  # one recovery, waiting on its first query
        gate.set()
        await rig.advance(0.5)
        statuses = [_status(rig, cid) for cid in (resting, *triggers)]
    # The running recovery, then exactly one more for the gaps reported meanwhile.
    assert queried.count(resting) == 2
    assert statuses == [OrderStatus.ACCEPTED] * 4
