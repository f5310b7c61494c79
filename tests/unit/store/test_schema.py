"""Versioned schema: fresh databases, reopening, newer databases, failing migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from botd.clock import FakeClock
from botd.store import SCHEMA_VERSION, Journal, JournalError
from botd.store.schema import MIGRATIONS, NewerSchemaError, migrate, schema_version
from tests.unit.store.factories import make_order


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {r[0] for r in rows}
    finally:
        conn.close()


async def test_fresh_database_gets_the_current_schema(db_path: Path, clock: FakeClock) -> None:
    journal = await Journal.open(db_path, clock=clock)
    await journal.close()
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    assert user_version(db_path) == SCHEMA_VERSION
    assert {"orders", "fills", "positions", "balances", "strategy_state", "kv", "events"} <= (
        tables(db_path)
    )


async def test_reopening_keeps_data_and_version(db_path: Path, clock: FakeClock) -> None:
    journal = await Journal.open(db_path, clock=clock)
    await journal.write_order(make_order())
    await journal.close()
    journal = await Journal.open(db_path, clock=clock)
    try:
        assert await journal.order("o-1") == make_order()
    finally:
        await journal.close()
    assert user_version(db_path) == SCHEMA_VERSION


async def test_indices_serve_the_hot_queries(db_path: Path, clock: FakeClock) -> None:
    journal = await Journal.open(db_path, clock=clock)
    await journal.close()
    conn = sqlite3.connect(db_path)
    try:

        def plan(sql: str) -> str:
            return " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))

        assert "orders_status_venue" in plan(
            "SELECT * FROM orders WHERE status IN ('accepted', 'pending') AND venue = 'v'"
        )
        assert "fills_time" in plan("SELECT * FROM fills WHERE ts_event >= 5 ORDER BY ts_event")
        assert "fills_strategy_time" in plan(
            "SELECT * FROM fills WHERE strategy_id = 's' AND ts_event >= 5"
        )
    finally:
        conn.close()


async def test_a_newer_database_is_refused_untouched(db_path: Path, clock: FakeClock) -> None:
    journal = await Journal.open(db_path, clock=clock)
    await journal.close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError) as info:
        await Journal.open(db_path, clock=clock)
    assert (
        f"written by a newer botd (schema {SCHEMA_VERSION + 5}, this botd knows {SCHEMA_VERSION})"
    ) in str(info.value)
    assert user_version(db_path) == SCHEMA_VERSION + 5


async def test_migrations_apply_in_order_and_stop_at_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    v1 = ("CREATE TABLE a (x INTEGER)",)
    v2 = ("ALTER TABLE a ADD COLUMN y TEXT", "CREATE INDEX a_y ON a (y)")
    broken = ("CREATE TABLE b (x INTEGER)", "THIS IS NOT SQL")
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, [v1]) == [1]
        await conn.execute("INSERT INTO a (x) VALUES (1)")
        assert await migrate(conn, [v1]) == []  # already there: nothing to do
        assert await migrate(conn, [v1, v2]) == [2]
        assert await schema_version(conn) == 2
        with pytest.raises(sqlite3.OperationalError):
            await migrate(conn, [v1, v2, broken])
        # The failed migration left nothing behind, not even its first statement.
        assert await schema_version(conn) == 2
        assert not conn.in_transaction
        async with conn.execute("SELECT name FROM sqlite_master WHERE name = 'b'") as cur:
            assert await cur.fetchone() is None
        async with conn.execute("SELECT x, y FROM a") as cur:
            assert list(await cur.fetchall()) == [(1, None)]
        with pytest.raises(NewerSchemaError, match=r"schema 2, this botd knows 1"):
            await migrate(conn, [v1])
