"""Builders for the journal tests: realistic values with every optional field exercised."""

from __future__ import annotations

from decimal import Decimal as D

from botd.model import Fill, Liquidity, Order, OrderStatus, OrderType, Side, TimeInForce

T0 = 1_700_000_000_000_000_000


def make_order(cid: str = "o-1", **changes: object) -> Order:
    fields: dict[str, object] = {
        "client_order_id": cid,
        "strategy_id": "s1",
        "venue": "paper",
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "qty": D("0.0100"),
        "price": D("43250.10"),
        "tif": TimeInForce.GTC,
        "post_only": True,
        "status": OrderStatus.ACCEPTED,
        "filled_qty": D("0.0040"),
        "avg_fill_price": D("43250.05"),
        "venue_order_id": "V-77",
        "reason": "",
        "ts_created": T0,
        "ts_updated": T0 + 5,
    }
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


def make_fill(trade_id: str = "t-1", **changes: object) -> Fill:
    fields: dict[str, object] = {
        "client_order_id": "o-1",
        "strategy_id": "s1",
        "venue": "paper",
        "symbol": "BTCUSDT",
        "side": Side.SELL,
        "qty": D("0.0040"),
        "price": D("43250.05"),
        "fee": D("0.00000400"),
        "fee_asset": "BNB",
        "liquidity": Liquidity.MAKER,
        "trade_id": trade_id,
        "venue_order_id": "V-77",
        "ts_event": T0 + 10,
        "ts_recv": T0 + 12,
    }
    fields.update(changes)
    return Fill(**fields)  # type: ignore[arg-type]
