"""A journal that cannot commit must say so at once and keep saying so.

Failures here are real SQLite failures (as root, file permissions are not enforced, so no
chmod tricks): another connection holding the write lock, and a full database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal as D
from pathlib import Path

import pytest

from botd.clock import FakeClock
from botd.model import Balance, Position
from botd.store import Journal, JournalError
from tests.unit.store.factories import T0, make_fill, make_order


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another process's writer: holds the database write lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def assert_every_durable_write_fails_fast(journal: Journal) -> None:
    writes = [
        journal.write_order(make_order("after")),
        journal.write_fill(make_fill()),
        journal.set_value("k", 1),
        journal.save_strategy_state("s", {}),
        journal.save_balances("v", {"X": Balance("X", D(1))}, T0),
        journal.save_position("s", Position("v", "X")),
        journal.next_sequence("n"),
        journal.flush(),
        journal.vacuum(),
    ]
    for write in writes:
        with pytest.raises(JournalError, match="unhealthy"):
            # Fails without queueing: no wait for a busy timeout, no writer round trip.
            await asyncio.wait_for(write, timeout=0.5)


async def test_lock_timeout_fails_the_write_and_marks_unhealthy(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "botd.db"
    journal = await Journal.open(path, clock=clock, busy_timeout=0.05)
    try:
        await journal.write_order(make_order("before"))
        with write_locked(path):
            with pytest.raises(JournalError) as info:
                await journal.write_order(make_order("locked-1"))
            message = str(info.value)
            assert "order locked-1" in message
            assert "database is locked" in message
            assert not journal.healthy
        # The lock is gone, but a journal that failed once stays failed: the daemon halts and
        # an operator restarts it, rather than trading on a journal with a hole in it.
        await assert_every_durable_write_fails_fast(journal)
        journal.update_order(make_order("dropped"))
        journal.append_event("dropped", {})
        assert journal.dropped == 2
        # Reads still work (diagnostics, cancel-only mode) and see only committed data.
        assert [o.client_order_id for o in await journal.orders()] == ["before"]
    finally:
        await journal.close()


async def test_every_writer_in_the_failed_batch_and_behind_it_gets_the_error(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "botd.db"
    journal = await Journal.open(path, clock=clock, busy_timeout=0.05)
    try:
        with write_locked(path):
            results = await asyncio.gather(
                *(journal.write_order(make_order(f"o-{i}")) for i in range(20)),
                journal.next_sequence("ids"),
                journal.flush(),
                return_exceptions=True,
            )
        assert all(isinstance(r, JournalError) for r in results), results
        assert journal.commits == 0
        assert await journal.orders() == []
    finally:
        await journal.close()


async def test_disk_full_rolls_back_and_fails_without_leaking_values(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "botd.db"
    journal = await Journal.open(path, clock=clock)
    try:
        await journal.write_order(make_order("kept"))
        # Simulate a full disk: the writer connection may not grow the file by one more page.
        writer = journal._writer
        async with writer.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await writer.execute(f"PRAGMA max_page_count = {row[0]}")
        secret = "sk-live-" + "x" * 50_000
        order_write = asyncio.ensure_future(journal.write_order(make_order("same-batch")))
        with pytest.raises(JournalError, match="full") as info:
            await journal.set_value("api_key", secret)
        with pytest.raises(JournalError, match="full"):
            await order_write
        assert "sk-live" not in str(info.value)
        assert "value api_key" in str(info.value)
        assert not journal.healthy
        await assert_every_durable_write_fails_fast(journal)
    finally:
        await journal.close()
    # Nothing of the failed transaction reached the file; everything before it did.
    reopened = await Journal.open(path, clock=clock)
    try:
        assert [o.client_order_id for o in await reopened.orders()] == ["kept"]
        assert await reopened.get_value("api_key") is None
        assert reopened.healthy
    finally:
        await reopened.close()


async def test_vacuum_failure_leaves_the_journal_healthy(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "botd.db"
    journal = await Journal.open(path, clock=clock, busy_timeout=0.05)
    try:
        await journal.write_order(make_order())
        with write_locked(path), pytest.raises(JournalError, match="vacuum failed"):
            await journal.vacuum()
        assert journal.healthy
        await journal.write_order(make_order("next"))
        assert len(await journal.orders()) == 2
    finally:
        await journal.close()


@pytest.mark.parametrize("started", [True, False])
async def test_writer_cancelled_without_close_fails_waiters(
    tmp_path: Path, clock: FakeClock, started: bool
) -> None:
    journal = await Journal.open(tmp_path / "botd.db", clock=clock)
    try:
        if started:
            await asyncio.sleep(0)  # the writer is waiting for work
        journal._task.cancel()
        await asyncio.sleep(0)
        assert not journal.healthy
        with pytest.raises(JournalError):
            await asyncio.wait_for(journal.write_order(make_order()), timeout=0.5)
        journal.update_order(make_order())
        assert journal.dropped == 1
    finally:
        await journal.close()
