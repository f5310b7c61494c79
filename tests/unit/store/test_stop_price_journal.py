"""The journal keeps a stop order's trigger price, and a database written before stops existed
migrates in place."""

from __future__ import annotations

import io
import json
import sqlite3
from decimal import Decimal as D
from pathlib import Path

import aiosqlite

from botd.clock import FakeClock
from botd.model import OrderType, Side
from botd.store import SCHEMA_VERSION, Journal
from botd.store.codec import order_row
from botd.store.schema import MIGRATIONS, migrate
from tests.unit.store.factories import make_order


async def test_stop_orders_round_trip_exactly(journal: Journal) -> None:
    stop = make_order(
        "s-1", type=OrderType.STOP, price=None, post_only=False, stop_price=D("41000.50")
    )
    stop_limit = make_order(
        "s-2",
        side=Side.SELL,
        type=OrderType.STOP_LIMIT,
        price=D("40990.00"),
        post_only=False,
        stop_price=D("41000.00"),
    )
    plain = make_order("p-1")
    for order in (stop, stop_limit, plain):
        await journal.write_order(order)
    assert await journal.order("s-1") == stop
    back = await journal.order("s-2")
    assert back == stop_limit
    assert back is not None and str(back.stop_price) == "41000.00"  # trailing zeros kept
    plain_back = await journal.order("p-1")
    assert plain_back is not None and plain_back.stop_price is None
    out = io.StringIO()
    await journal.export("orders", "json", out)
    rows = {r["client_order_id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert rows["s-2"]["stop_price"] == "41000.00"
    assert rows["s-2"]["type"] == "stop_limit"
    assert rows["p-1"]["stop_price"] is None


async def test_a_database_from_before_stops_migrates_and_keeps_its_orders(
    db_path: Path, clock: FakeClock
) -> None:
    db_path.parent.mkdir(parents=True)
    old = make_order()
    # Schema 1 exactly as it shipped, with one order written by that botd.
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:1]) == [1]
        row = order_row(old)[:-1]  # schema 1 had no stop_price column
        await conn.execute(
            f"INSERT INTO orders VALUES ({', '.join('?' * len(row))})",
            row,
        )
    journal = await Journal.open(db_path, clock=clock)
    try:
        assert await journal.order("o-1") == old  # its stop_price reads as None
        stop = make_order(
            "s-1", type=OrderType.STOP, price=None, post_only=False, stop_price=D("99.5")
        )
        await journal.write_order(stop)
        assert await journal.order("s-1") == stop
    finally:
        await journal.close()
    conn2 = sqlite3.connect(db_path)
    try:
        assert conn2.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = [r[1] for r in conn2.execute("PRAGMA table_info(orders)")]
        assert "stop_price" in columns
    finally:
        conn2.close()
