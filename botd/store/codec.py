"""Domain values to SQLite rows and back, and to export records.

Decimals travel as their ``str`` (exact: ``Decimal("0.10")`` comes back as ``Decimal("0.10")``,
not ``0.1``), enums as their value, timestamps as integer nanoseconds, booleans as 0/1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import Decimal
from enum import Enum
from typing import Any

from botd.model import Balance, Fill, Liquidity, Order, OrderStatus, OrderType, Position, Side
from botd.model import TimeInForce as Tif

__all__ = [
    "FILL_COLUMNS",
    "ORDER_COLUMNS",
    "POSITION_COLUMNS",
    "Row",
    "balance_row",
    "fill_row",
    "order_row",
    "position_row",
    "record",
    "row_balance",
    "row_fill",
    "row_order",
    "row_position",
    "text_cell",
]

Row = Sequence[Any]

# Column order == field order of the dataclass; a unit test holds them together so that a new
# field on Order cannot be silently left out of the journal.
ORDER_COLUMNS = (
    "client_order_id",
    "strategy_id",
    "venue",
    "symbol",
    "side",
    "type",
    "qty",
    "price",
    "tif",
    "post_only",
    "status",
    "filled_qty",
    "avg_fill_price",
    "venue_order_id",
    "reason",
    "ts_created",
    "ts_updated",
    "stop_price",
)

FILL_COLUMNS = (
    "client_order_id",
    "strategy_id",
    "venue",
    "symbol",
    "side",
    "qty",
    "price",
    "fee",
    "fee_asset",
    "liquidity",
    "trade_id",
    "venue_order_id",
    "ts_event",
    "ts_recv",
)

# Position fields after the key (strategy_id is not a field of Position).
POSITION_COLUMNS = (
    "venue",
    "symbol",
    "qty",
    "avg_price",
    "realized_pnl",
    "fees_quote",
    "min_tradable",
)


def _dec(value: Decimal) -> str:
    return str(value)


def _opt_dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _to_opt_dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def order_row(o: Order) -> tuple[Any, ...]:
    return (
        o.client_order_id,
        o.strategy_id,
        o.venue,
        o.symbol,
        o.side.value,
        o.type.value,
        _dec(o.qty),
        _opt_dec(o.price),
        o.tif.value,
        int(o.post_only),
        o.status.value,
        _dec(o.filled_qty),
        _opt_dec(o.avg_fill_price),
        o.venue_order_id,
        o.reason,
        int(o.ts_created),
        int(o.ts_updated),
        _opt_dec(o.stop_price),
    )


def row_order(r: Row) -> Order:
    return Order(
        client_order_id=r[0],
        strategy_id=r[1],
        venue=r[2],
        symbol=r[3],
        side=Side(r[4]),
        type=OrderType(r[5]),
        qty=Decimal(r[6]),
        price=_to_opt_dec(r[7]),
        tif=Tif(r[8]),
        post_only=bool(r[9]),
        status=OrderStatus(r[10]),
        filled_qty=Decimal(r[11]),
        avg_fill_price=_to_opt_dec(r[12]),
        venue_order_id=r[13],
        reason=r[14],
        ts_created=r[15],
        ts_updated=r[16],
        stop_price=_to_opt_dec(r[17]),
    )


def fill_row(f: Fill) -> tuple[Any, ...]:
    return (
        f.client_order_id,
        f.strategy_id,
        f.venue,
        f.symbol,
        f.side.value,
        _dec(f.qty),
        _dec(f.price),
        _dec(f.fee),
        f.fee_asset,
        f.liquidity.value,
        f.trade_id,
        f.venue_order_id,
        int(f.ts_event),
        int(f.ts_recv),
    )


def row_fill(r: Row) -> Fill:
    return Fill(
        client_order_id=r[0],
        strategy_id=r[1],
        venue=r[2],
        symbol=r[3],
        side=Side(r[4]),
        qty=Decimal(r[5]),
        price=Decimal(r[6]),
        fee=Decimal(r[7]),
        fee_asset=r[8],
        liquidity=Liquidity(r[9]),
        trade_id=r[10],
        venue_order_id=r[11],
        ts_event=r[12],
        ts_recv=r[13],
    )


def position_row(p: Position) -> tuple[Any, ...]:
    return (
        p.venue,
        p.symbol,
        _dec(p.qty),
        _dec(p.avg_price),
        _dec(p.realized_pnl),
        _dec(p.fees_quote),
        _dec(p.min_tradable),
    )


def row_position(r: Row) -> Position:
    return Position(
        venue=r[0],
        symbol=r[1],
        qty=Decimal(r[2]),
        avg_price=Decimal(r[3]),
        realized_pnl=Decimal(r[4]),
        fees_quote=Decimal(r[5]),
        min_tradable=Decimal(r[6]),
    )


def balance_row(b: Balance) -> tuple[str, str, str]:
    return (b.asset, _dec(b.free), _dec(b.locked))


def row_balance(r: Row) -> Balance:
    return Balance(asset=r[0], free=Decimal(r[1]), locked=Decimal(r[2]))


def _plain(value: object) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # a string, so JSON consumers do not round it through a float
    if isinstance(value, Enum):
        return value.value
    return value


def record(value: Order | Fill) -> dict[str, Any]:
    """A JSON-ready dict of every field, named as in the dataclass."""
    return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}


def text_cell(value: object) -> str:
    """One CSV cell: empty for None, lower-case booleans, exact decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_plain(value))
