"""Parity: a paper session traded live (the real stack on a FakeClock) and recorded, then
replayed through the backtest, gives the same orders and the same fills."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from botd.backtest import run
from botd.model import Fill, Order, OrderUpdate, Quote, Trade
from botd.recording import RecordingWriter
from botd.strategy.loader import load_file
from tests.rig import Rig

EXAMPLES = Path(__file__).resolve().parents[2] / "strategies"


def record(path: Path, rig: Rig) -> RecordingWriter:
    """Record the rig's market data as `botd record` does: the same writer, the same format."""
    writer = RecordingWriter(path, venue="paper", symbols=["BTCUSDT"], started_ns=0)
    rig.bus.subscribe(Quote, writer.write, symbol="BTCUSDT")
    rig.bus.subscribe(Trade, writer.write, symbol="BTCUSDT")
    return writer


def order_view(o: Order) -> tuple[object, ...]:
    return (o.client_order_id, o.ts_created, o.side, o.type, o.qty, o.price, o.status)


def fill_view(f: Fill) -> tuple[object, ...]:
    return (f.client_order_id, f.ts_event, f.side, f.qty, f.price, f.fee, f.liquidity.value)


@pytest.mark.parametrize(
    ("file", "overrides"),
    [
        ("price_threshold.py", {"below": "64990", "above": "65010"}),
        ("grid.py", {"levels": 2, "spacing": "0.0001"}),
        ("sma_cross.py", {"fast": 2, "slow": 4, "symbol": "BTCUSDT", "size": "0.001"}),
    ],
)
async def test_recorded_paper_session_replays_to_the_same_orders_and_fills(
    tmp_path: Path, file: str, overrides: dict[str, object]
) -> None:
    (loaded,), errors = load_file(EXAMPLES / file)
    assert errors == []
    sid = loaded.id
    rig = Rig(
        symbols=("BTCUSDT",),
        seed=11,
        balances={"USDT": Decimal(100_000)},
        overrides={sid: overrides},
    )
    recording = tmp_path / "BTCUSDT-session.ndjson.gz"
    writer = record(recording, rig)
    live_orders: dict[str, Order] = {}
    rig.bus.subscribe(OrderUpdate, lambda u: live_orders.__setitem__(u.client_order_id, u.order))
    async with rig.running():
        assert rig.host.start(loaded) is not None
        await rig.advance(120.0)
        rig.host.stop(sid)
        await rig.settle()
    live_fills = [f for f in rig.fills if f.strategy_id == sid]
    assert len(live_fills) >= 2, "the live session should trade"
    assert writer.events
    await writer.close()
    result = run(
        EXAMPLES / file,
        recording,
        cash=Decimal(100_000),
        fees=Decimal("0.002"),  # the rig's paper venue: taker 0.2 %, maker 0.1 %
        maker_fees=Decimal("0.001"),
        tick=Decimal("0.01"),
        step=Decimal("0.00001"),
        min_notional=Decimal(5),
        params={k: str(v) for k, v in overrides.items() if k != "symbol"},
    )

    live = sorted(
        (order_view(o) for o in live_orders.values() if o.strategy_id == sid),
        key=lambda v: str(v[0]),
    )
    replayed = sorted((order_view(o) for o in result.orders), key=lambda v: str(v[0]))
    # Orders still open when the live session stopped are open at the end of the replay too.
    assert replayed == live
    replay_fills = [(f.order_id, f.ts_ns, f.side, f.price, f.liquidity) for f in result.fills]
    assert replay_fills == [
        (f.client_order_id, f.ts_event, f.side, f.price, f.liquidity.value) for f in live_fills
    ]
    # Quantities and fees: the replay reports the buy's base-asset fee in quote.
    for rec, f in zip(result.fills, live_fills, strict=True):
        fee_quote = f.fee * f.price if f.fee_asset == "BTC" else f.fee
        qty = f.qty - f.fee if f.fee_asset == "BTC" else f.qty
        assert (rec.quantity, rec.fee) == (qty, fee_quote)
