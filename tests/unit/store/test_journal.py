"""Journal behaviour on real SQLite files: round trips, upserts, dedup, filters, group commit."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botd.clock import FakeClock
from botd.model import Balance, Fill, Order, OrderStatus, OrderType, Position, Side
from botd.store import Journal, JournalError
from botd.store.codec import FILL_COLUMNS, ORDER_COLUMNS, POSITION_COLUMNS
from tests.unit.store.factories import T0, make_fill, make_order

# -- round trips ---------------------------------------------------------------------------------


def test_codec_columns_cover_every_field() -> None:
    # A new field on Order/Fill/Position must get a column (and a migration), not vanish.
    assert tuple(f.name for f in dataclasses.fields(Order)) == ORDER_COLUMNS
    assert tuple(f.name for f in dataclasses.fields(Fill)) == FILL_COLUMNS
    # Position.cost is derived state: the daemon rebuilds positions from the journaled fills
    # at start-up (exact cost included); a stored snapshot without it falls back to
    # avg_price * qty (tests/unit/model/test_position_cost.py).
    derived = {"cost"}
    fields = tuple(f.name for f in dataclasses.fields(Position) if f.name not in derived)
    assert fields == POSITION_COLUMNS


async def test_order_round_trip_every_field(journal: Journal) -> None:
    order = make_order(reason="venue said: ok", venue_order_id="V-1")
    await journal.write_order(order)
    back = await journal.order("o-1")
    assert back == order
    assert back is not None
    # Exact decimals: trailing zeros and all.
    assert str(back.qty) == "0.0100"
    assert str(back.price) == "43250.10"
    assert back.post_only is True


async def test_order_round_trip_with_nones(journal: Journal) -> None:
    order = make_order(
        type=OrderType.MARKET,
        price=None,
        avg_fill_price=None,
        venue_order_id=None,
        filled_qty=D(0),
        status=OrderStatus.PENDING,
        post_only=False,
    )
    await journal.write_order(order)
    assert await journal.order("o-1") == order


async def test_missing_order_is_none(journal: Journal) -> None:
    assert await journal.order("nope") is None


async def test_fill_round_trip(journal: Journal) -> None:
    fill = make_fill()
    assert await journal.write_fill(fill) is True
    assert await journal.fills() == [fill]
    assert str((await journal.fills())[0].fee) == "0.00000400"


async def test_position_round_trip(journal: Journal) -> None:
    pos = Position(
        "paper",
        "BTCUSDT",
        qty=D("-0.5000"),
        avg_price=D("43000.1"),
        realized_pnl=D("-12.345"),
        fees_quote=D("0.01"),
        min_tradable=D("0.00001"),
    )
    await journal.save_position("s1", pos)
    assert await journal.positions() == {("s1", "paper", "BTCUSDT"): pos}


async def test_balance_round_trip(journal: Journal) -> None:
    balances = {
        "BTC": Balance("BTC", D("1.00000000"), D("0.25")),
        "USDT": Balance("USDT", D("100.5")),
    }
    await journal.save_balances("paper", balances, T0)
    assert await journal.latest_balances("paper") == balances
    assert await journal.latest_balances("other") == {}


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 40
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qty=decimals, price=st.none() | decimals)
def test_any_decimal_round_trips_exactly(
    tmp_path_factory: pytest.TempPathFactory, qty: D, price: D | None
) -> None:
    path = tmp_path_factory.mktemp("h") / "botd.db"

    async def go() -> Order | None:
        j = await Journal.open(path, clock=FakeClock())
        try:
            await j.write_order(make_order(qty=qty, price=price))
            return await j.order("o-1")
        finally:
            await j.close()

    back = asyncio.run(go())
    assert back is not None
    assert str(back.qty) == str(qty)
    assert str(back.price) == str(price) if price is not None else back.price is None


# -- upserts and dedup ---------------------------------------------------------------------------


async def test_write_order_upserts_every_field(journal: Journal) -> None:
    first = make_order(status=OrderStatus.SUBMITTED, filled_qty=D(0), avg_fill_price=None)
    await journal.write_order(first)
    later = first.with_fill(D("0.0100"), D("43000"), T0 + 99)
    later = dataclasses.replace(later, venue_order_id="V-9", reason="done")
    await journal.write_order(later)
    assert await journal.order("o-1") == later
    assert len(await journal.orders()) == 1


async def test_fill_is_recorded_once_per_venue_and_trade_id(journal: Journal) -> None:
    fill = make_fill("t-1")
    assert await journal.write_fill(fill) is True
    # The same trade repeated (a replayed stream, a REST recovery): ignored, first copy kept.
    assert await journal.write_fill(dataclasses.replace(fill, qty=D("9"))) is False
    # The same trade id on another venue is another trade.
    assert await journal.write_fill(dataclasses.replace(fill, venue="other")) is True
    fills = await journal.fills()
    assert len(fills) == 2
    assert fills[0].qty == D("0.0040")


async def test_duplicate_fills_in_one_batch(journal: Journal) -> None:
    results = await asyncio.gather(*(journal.write_fill(make_fill("t-dup")) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


# -- filters -------------------------------------------------------------------------------------


def ids(orders: list[Order]) -> list[str]:
    return [o.client_order_id for o in orders]


def trade_ids(fills: list[Fill]) -> list[str]:
    return [f.trade_id for f in fills]


async def test_open_only_returns_every_non_terminal_status(journal: Journal) -> None:
    for i, status in enumerate(OrderStatus):
        await journal.write_order(make_order(f"o-{status.value}", status=status, ts_created=T0 + i))
    open_ids = {o.client_order_id for o in await journal.orders(open_only=True)}
    assert open_ids == {f"o-{s.value}" for s in OrderStatus if not s.is_terminal}
    assert len(await journal.orders()) == len(OrderStatus)
    # Creation order is kept.
    assert [o.status for o in await journal.orders()] == list(OrderStatus)


async def test_order_filters_by_venue_and_strategy(journal: Journal) -> None:
    await journal.write_order(make_order("a", venue="v1", strategy_id="s1"))
    await journal.write_order(make_order("b", venue="v2", strategy_id="s1"))
    await journal.write_order(make_order("c", venue="v1", strategy_id="s2"))
    await journal.write_order(make_order("d", venue="v1", status=OrderStatus.FILLED))
    assert ids(await journal.orders(venue="v1")) == ["a", "c", "d"]
    assert ids(await journal.orders(strategy_id="s1", venue="v1")) == ["a", "d"]
    assert ids(await journal.orders(open_only=True, venue="v1", strategy_id="s1")) == ["a"]


async def test_fills_filter_and_order_by_event_time_then_arrival(journal: Journal) -> None:
    await journal.write_fill(make_fill("late", ts_event=T0 + 300))
    await journal.write_fill(make_fill("early", ts_event=T0 + 100, strategy_id="s2"))
    await journal.write_fill(make_fill("tie-1", ts_event=T0 + 200, venue="v2"))
    await journal.write_fill(make_fill("tie-2", ts_event=T0 + 200))
    assert trade_ids(await journal.fills()) == ["early", "tie-1", "tie-2", "late"]
    assert trade_ids(await journal.fills(since_ns=T0 + 200)) == ["tie-1", "tie-2", "late"]
    assert trade_ids(await journal.fills(strategy_id="s1", venue="paper")) == ["tie-2", "late"]
    assert trade_ids(await journal.fills(strategy_id="s2")) == ["early"]


# -- strategy state, kv, positions, balances -----------------------------------------------------


async def test_key_values(journal: Journal) -> None:
    assert await journal.get_value("kill_switch") is None
    await journal.set_value("kill_switch", {"engaged": True, "reason": "operator"})
    await journal.set_value("counter", 3)
    await journal.set_value("counter", 4)
    await journal.set_value("list", [1, "two", None, 2.5])
    assert await journal.get_value("kill_switch") == {"engaged": True, "reason": "operator"}
    assert await journal.get_value("counter") == 4
    assert await journal.get_value("list") == [1, "two", None, 2.5]


async def test_values_that_are_not_json_fail_in_the_caller(journal: Journal) -> None:
    with pytest.raises(TypeError):
        await journal.set_value("bad", {"x": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        await journal.save_strategy_state("s", {"d": D("1")})
    # Nothing was queued, so nothing was poisoned.
    assert journal.healthy
    await journal.set_value("ok", 1)


async def test_strategy_states(journal: Journal) -> None:
    await journal.save_strategy_state("s1", {"n": 1, "levels": [1.5, 2.5]})
    await journal.save_strategy_state("s2", {})
    await journal.save_strategy_state("s1", {"n": 2})
    assert await journal.strategy_states() == {"s1": {"n": 2}, "s2": {}}


async def test_positions_upsert_by_strategy_venue_symbol(journal: Journal) -> None:
    p1 = Position("paper", "BTCUSDT", qty=D("1"), avg_price=D("100"))
    await journal.save_position("s1", p1)
    await journal.save_position("s2", p1)
    p1b = p1.apply_fill(Side.SELL, D("0.4"), D("110"))
    await journal.save_position("s1", p1b)
    eth = Position("paper", "ETHUSDT")
    await journal.save_position("s1", eth)
    assert await journal.positions() == {
        ("s1", "paper", "BTCUSDT"): p1b,
        ("s2", "paper", "BTCUSDT"): p1,
        ("s1", "paper", "ETHUSDT"): eth,
    }


async def test_latest_balance_snapshot_wins_even_when_empty(journal: Journal) -> None:
    await journal.save_balances("paper", {"BTC": Balance("BTC", D("1"))}, T0)
    await journal.save_balances("paper", {"USDT": Balance("USDT", D("50"))}, T0 + 1)
    await journal.save_balances("other", {"ETH": Balance("ETH", D("3"))}, T0 + 2)
    assert await journal.latest_balances("paper") == {"USDT": Balance("USDT", D("50"))}
    await journal.save_balances("paper", {}, T0 + 3)
    assert await journal.latest_balances("paper") == {}
    assert await journal.latest_balances("other") == {"ETH": Balance("ETH", D("3"))}


# -- events --------------------------------------------------------------------------------------


async def test_events_append_and_query(journal: Journal, clock: FakeClock) -> None:
    journal.append_event("start", {"version": "1"})
    await clock.advance(1)
    journal.append_event("kill", {"reason": "x"})
    journal.append_event("start", {"version": "2"}, ts_ns=42)
    await journal.flush()
    events = await journal.events()
    assert [(e.id, e.kind, e.data) for e in events] == [
        (1, "start", {"version": "1"}),
        (2, "kill", {"reason": "x"}),
        (3, "start", {"version": "2"}),
    ]
    # Timestamps from the injected clock unless given.
    assert [e.ts_ns for e in events] == [clock.time_ns() - 1_000_000_000, clock.time_ns(), 42]
    assert [e.id for e in await journal.events(since_id=1)] == [2, 3]
    assert [e.id for e in await journal.events(kinds={"start"})] == [1, 3]
    assert [e.id for e in await journal.events(kinds=["start"], limit=1, since_id=1)] == [3]
    assert await journal.events(kinds=[]) == []
    assert await journal.events(limit=0) == []


async def test_event_log_is_append_only_in_the_database(journal: Journal, db_path: Path) -> None:
    journal.append_event("e", {})
    await journal.flush()
    other = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            other.execute("UPDATE events SET kind = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            other.execute("DELETE FROM events")
    finally:
        other.close()


# -- sequences -----------------------------------------------------------------------------------


async def test_sequences_reserve_ranges_and_survive_reopen(db_path: Path, clock: FakeClock) -> None:
    j = await Journal.open(db_path, clock=clock)
    assert await j.next_sequence("orders") == 1
    assert await j.next_sequence("orders", 10) == 2
    assert await j.next_sequence("orders") == 12
    assert await j.next_sequence("other") == 1
    with pytest.raises(ValueError, match="at least 1"):
        await j.next_sequence("orders", 0)
    await j.close()
    j = await Journal.open(db_path, clock=clock)
    try:
        assert await j.next_sequence("orders") == 13
        assert await j.next_sequence("other", 3) == 2
    finally:
        await j.close()


async def test_concurrent_sequences_get_disjoint_ranges(journal: Journal) -> None:
    counts = [1 + (i % 7) for i in range(100)]
    firsts = await asyncio.gather(*(journal.next_sequence("ids", c) for c in counts))
    numbers = [n for first, c in zip(firsts, counts, strict=True) for n in range(first, first + c)]
    assert sorted(numbers) == list(range(1, sum(counts) + 1))


# -- group commit and ordering -------------------------------------------------------------------


async def test_group_commit_batches_concurrent_writers(journal: Journal, db_path: Path) -> None:
    before = journal.commits
    orders = [make_order(f"g-{i}", ts_created=T0 + i) for i in range(200)]
    await asyncio.gather(*(journal.write_order(o) for o in orders))
    commits = journal.commits - before
    assert 1 <= commits < 200
    # Durable: a separate connection (another process, in effect) sees every one of them.
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("SELECT count(*) FROM orders").fetchone()[0] == 200
    finally:
        other.close()
    assert await journal.orders() == orders


async def test_update_order_after_write_order_keeps_the_final_state(journal: Journal) -> None:
    order = make_order(status=OrderStatus.PENDING, filled_qty=D(0), avg_fill_price=None)
    await journal.write_order(order)
    order = order.transition(OrderStatus.SUBMITTED, T0 + 1)
    journal.update_order(order)
    order = order.transition(OrderStatus.ACCEPTED, T0 + 2)
    journal.update_order(order)
    final = order.with_fill(order.qty, D("43000"), T0 + 3)
    journal.update_order(final)
    await journal.flush()
    assert await journal.order("o-1") == final


async def test_update_then_durable_write_in_one_batch(journal: Journal) -> None:
    # Queue order is commit order whatever the mix of awaited and fire-and-forget writes.
    a = make_order(status=OrderStatus.SUBMITTED)
    journal.update_order(a)
    b = dataclasses.replace(a, status=OrderStatus.CANCELED, ts_updated=T0 + 9)
    task = asyncio.ensure_future(journal.write_order(b))
    await asyncio.sleep(0)  # let write_order enqueue
    journal.update_order(dataclasses.replace(b, reason="late report"))
    await task
    await journal.flush()
    got = await journal.order("o-1")
    assert got is not None
    assert got.reason == "late report"


async def test_flush_with_nothing_queued(journal: Journal) -> None:
    await journal.flush()
    assert journal.healthy


async def test_cancelled_writer_still_commits(journal: Journal) -> None:
    task = asyncio.ensure_future(journal.write_order(make_order("c-1")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await journal.flush()
    assert await journal.order("c-1") is not None


# -- lifecycle -----------------------------------------------------------------------------------


async def test_close_commits_queued_writes_and_is_idempotent(
    db_path: Path, clock: FakeClock
) -> None:
    j = await Journal.open(db_path, clock=clock)
    for i in range(50):
        j.update_order(make_order(f"q-{i}"))
    j.append_event("stop", {})
    await asyncio.gather(j.close(), j.close())
    await j.close()
    with pytest.raises(JournalError, match="closed"):
        await j.write_order(make_order())
    with pytest.raises(JournalError, match="closed"):
        await j.orders()
    j.update_order(make_order())  # dropped, not raised: the caller may be mid-shutdown
    assert j.dropped == 1
    j2 = await Journal.open(db_path, clock=clock)
    try:
        assert len(await j2.orders()) == 50
        assert [e.kind for e in await j2.events()] == ["stop"]
    finally:
        await j2.close()


async def test_open_creates_parent_dirs_and_uses_wal(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "a" / "b" / "botd.db"
    j = await Journal.open(path, clock=clock)
    try:
        assert j.path == path
        assert path.is_file()
        other = sqlite3.connect(path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            other.close()
        # Per-connection settings of the writer: FULL (2) so a commit survives power loss.
        for pragma, expected in (("synchronous", 2), ("foreign_keys", 1), ("busy_timeout", 5000)):
            async with j._writer.execute(f"PRAGMA {pragma}") as cur:
                row = await cur.fetchone()
            assert row is not None
            assert row[0] == expected, pragma
    finally:
        await j.close()


async def test_open_rejects_a_file_that_is_not_a_database(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "botd.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="cannot open the journal"):
        await Journal.open(path, clock=clock)


async def test_interleaved_writes_keep_each_tables_order_in_one_commit(journal: Journal) -> None:
    from botd.model import OrderStatus

    first = make_order("o-9", status=OrderStatus.ACCEPTED)
    await journal.write_order(first)
    commits = journal.commits
    statuses = [OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL, OrderStatus.CANCELED]
    order = first
    for n, status in enumerate(statuses):
        order = order.transition(status, n + 1)
        journal.update_order(order)
        journal.append_event("step", {"n": n, "status": status.value})
    await journal.flush()
    stored = await journal.order("o-9")
    assert stored is not None
    assert stored.status is OrderStatus.CANCELED
    events = await journal.events(kinds=["step"])
    assert [e.data["n"] for e in events] == [0, 1, 2]
    assert journal.commits - commits == 1
