"""Export of orders and fills (CSV and JSON lines) and vacuum."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from botd.clock import FakeClock
from botd.model import OrderStatus, OrderType
from botd.store import Journal
from tests.unit.store.factories import T0, make_fill, make_order


@pytest.fixture
async def filled(journal: Journal) -> Journal:
    await journal.write_order(make_order("o-1"))
    await journal.write_order(
        make_order(
            "o-2",
            type=OrderType.MARKET,
            price=None,
            avg_fill_price=None,
            venue_order_id=None,
            post_only=False,
            status=OrderStatus.PENDING,
            ts_created=T0 + 1,
        )
    )
    await journal.write_fill(make_fill("t-2", ts_event=T0 + 20))
    await journal.write_fill(make_fill("t-1", ts_event=T0 + 10))
    return journal


async def test_export_orders_csv(filled: Journal) -> None:
    out = io.StringIO()
    assert await filled.export("orders", "csv", out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["client_order_id"] for r in rows] == ["o-1", "o-2"]
    assert rows[0]["qty"] == "0.0100"
    assert rows[0]["price"] == "43250.10"
    assert rows[0]["side"] == "buy"
    assert rows[0]["post_only"] == "true"
    assert rows[0]["ts_created"] == str(T0)
    assert rows[1]["price"] == ""
    assert rows[1]["venue_order_id"] == ""
    assert rows[1]["status"] == "pending"
    assert out.getvalue().startswith("client_order_id,strategy_id,venue,symbol,side,type,qty,")


async def test_export_fills_json_lines(filled: Journal) -> None:
    out = io.StringIO()
    assert await filled.export("fills", "json", out) == 2
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["trade_id"] for r in records] == ["t-1", "t-2"]  # by event time
    assert records[0]["fee"] == "0.00000400"  # exact, as a string
    assert records[0]["liquidity"] == "maker"
    assert records[0]["ts_event"] == T0 + 10
    assert set(records[0]) == set(make_fill().__dataclass_fields__)


async def test_export_orders_json_has_nulls(filled: Journal) -> None:
    out = io.StringIO()
    await filled.export("orders", "json", out)
    second = json.loads(out.getvalue().splitlines()[1])
    assert second["price"] is None
    assert second["avg_fill_price"] is None
    assert second["post_only"] is False
    assert D(json.loads(out.getvalue().splitlines()[0])["qty"]) == D("0.0100")


async def test_export_empty_and_large(journal: Journal) -> None:
    out = io.StringIO()
    assert await journal.export("fills", "csv", out) == 0
    assert out.getvalue().count("\n") == 1  # the header only
    for i in range(1234):  # more than one fetch chunk
        journal.update_order(make_order(f"o-{i:05d}", ts_created=T0 + i))
    await journal.flush()
    out = io.StringIO()
    assert await journal.export("orders", "json", out) == 1234


async def test_export_rejects_unknown_choices(journal: Journal) -> None:
    with pytest.raises(ValueError, match="orders or fills"):
        await journal.export("trades", "csv", io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="csv or json"):
        await journal.export("orders", "xml", io.StringIO())  # type: ignore[arg-type]


def wal_size(db_path: Path) -> int:
    wal = Path(f"{db_path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_vacuum_keeps_data_and_shrinks_the_wal(db_path: Path, clock: FakeClock) -> None:
    journal = await Journal.open(db_path, clock=clock)
    try:
        for i in range(500):
            await journal.save_strategy_state(f"s{i % 5}", {"blob": "x" * 2000, "i": i})
        await journal.write_order(make_order())
        await journal.vacuum()
        assert wal_size(db_path) == 0
        assert await journal.order("o-1") == make_order()
        assert len(await journal.strategy_states()) == 5
        # Writes keep working after a vacuum.
        await journal.write_order(make_order("o-2"))
        assert journal.healthy
    finally:
        await journal.close()
