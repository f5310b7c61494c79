"""User data stream events of the Binance simulator (WIRE_FACTS §1.6).

The server tells :class:`UserEvents` about every change of an API account's orders and balances,
in the order they happen; it turns them into ``executionReport``, ``outboundAccountPosition``
and ``balanceUpdate`` payloads and hands them to a sink (the WS API) that delivers them to the
account's subscriptions. Nothing is built for an account nobody listens to.

One order transition is one ``executionReport``: ``NEW`` when the order is accepted (also for
an IOC, FOK or MARKET order that never rests), one ``TRADE`` per execution, then ``CANCELED``
or ``EXPIRED`` if it ends that way. Orders the venue refuses (``-2010`` and the like) produce
no event, as on Binance, where ``REJECTED`` only follows a cancel-replace. After the events of
one operation (a request, a market step) each account that changed gets one
``outboundAccountPosition`` with the assets the operation could have touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Protocol

from botd.model import Balance, ExecutionReport, Liquidity, OrderStatus

__all__ = ["OrderRecord", "UserEventSink", "UserEvents"]

_ZERO = Decimal(0)
_OPEN = ("NEW", "PARTIALLY_FILLED")


def _fmt(value: Decimal) -> str:
    return f"{value:.8f}"


class OrderRecord(Protocol):
    """The server's view of one order, as it stands after the change being reported."""

    @property
    def order_id(self) -> int: ...
    @property
    def account(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def client_order_id(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def tif(self) -> str: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def orig_qty(self) -> Decimal: ...
    @property
    def orig_quote_qty(self) -> Decimal: ...
    @property
    def time_ms(self) -> int: ...
    @property
    def executed(self) -> Decimal: ...
    @property
    def cum_quote(self) -> Decimal: ...
    @property
    def status(self) -> str: ...


class UserEventSink(Protocol):
    def subscribed(self, account: str) -> bool: ...
    def publish(self, account: str, event: dict[str, object]) -> None: ...


def _rests(o: OrderRecord) -> bool:
    """Whether the order goes on the book (is not done on arrival) by its terms."""
    return o.type == "LIMIT_MAKER" or (o.type == "LIMIT" and o.tif == "GTC")


class UserEvents:
    """``assets(symbol)`` gives a symbol's (base, quote); ``balances(account)`` the account's
    balances now."""

    def __init__(
        self,
        *,
        assets: Callable[[str], tuple[str, str]],
        balances: Callable[[str], Mapping[str, Balance]],
        sink: UserEventSink,
    ) -> None:
        self._assets = assets
        self._balances = balances
        self._sink = sink
        self._exec_seq = 0
        self._touched: dict[str, dict[str, None]] = {}  # account -> assets (ordered set)

    def new_order(self, order: OrderRecord, now_ms: int) -> None:
        """The order was accepted; call before any of its executions are reported."""
        if not self._sink.subscribed(order.account):
            return
        self._execution(order, "NEW", "NEW", now_ms, executed=_ZERO, cum_quote=_ZERO)

    def report(
        self, order: OrderRecord, report: ExecutionReport, now_ms: int, cancel_id: str | None
    ) -> None:
        """An engine report about ``order``, applied to the record already. ``cancel_id`` is
        the cancel request's ``newClientOrderId`` when the report is its cancellation."""
        if report.status is OrderStatus.ACCEPTED or not self._sink.subscribed(order.account):
            return  # the acceptance went out as NEW already, from new_order
        if report.last_qty > 0:
            self._execution(
                order,
                "TRADE",
                order.status,
                now_ms,
                last_qty=report.last_qty,
                last_price=report.last_price,
                commission=report.fee,
                commission_asset=report.fee_asset,
                trade_id=int(report.trade_id),
                maker=report.liquidity is Liquidity.MAKER,
            )
        elif report.status is OrderStatus.CANCELED:
            self._execution(order, "CANCELED", "CANCELED", now_ms, cancel_id=cancel_id)
        elif report.status is OrderStatus.EXPIRED:
            self._execution(order, "EXPIRED", "EXPIRED", now_ms)

    def balance_update(self, account: str, asset: str, delta: Decimal, now_ms: int) -> None:
        """A deposit (``delta`` > 0) or withdrawal outside trading."""
        if not self._sink.subscribed(account):
            return
        self._sink.publish(
            account,
            {"e": "balanceUpdate", "E": now_ms, "a": asset, "d": _fmt(delta), "T": now_ms},
        )
        self._touched.setdefault(account, {})[asset] = None

    def flush(self, now_ms: int) -> None:
        """End of an operation: one ``outboundAccountPosition`` per account it changed."""
        touched, self._touched = self._touched, {}
        for account, assets in touched.items():
            balances = self._balances(account)
            rows: list[dict[str, object]] = []
            for asset in assets:
                b = balances.get(asset)
                rows.append(
                    {
                        "a": asset,
                        "f": _fmt(b.free if b else _ZERO),
                        "l": _fmt(b.locked if b else _ZERO),
                    }
                )
            self._sink.publish(
                account, {"e": "outboundAccountPosition", "E": now_ms, "u": now_ms, "B": rows}
            )

    def _execution(
        self,
        o: OrderRecord,
        exec_type: str,
        status: str,
        now_ms: int,
        *,
        executed: Decimal | None = None,
        cum_quote: Decimal | None = None,
        last_qty: Decimal = _ZERO,
        last_price: Decimal = _ZERO,
        commission: Decimal | None = None,
        commission_asset: str | None = None,
        trade_id: int = -1,
        maker: bool = False,
        cancel_id: str | None = None,
    ) -> None:
        self._exec_seq += 1
        on_book = _rests(o) and status in _OPEN
        event: dict[str, object] = {
            "e": "executionReport",
            "E": now_ms,
            "s": o.symbol,
            "c": cancel_id if cancel_id is not None else o.client_order_id,
            "S": o.side,
            "o": o.type,
            "f": o.tif,
            "q": _fmt(o.orig_qty),
            "p": _fmt(o.price),
            "P": _fmt(_ZERO),
            "F": _fmt(_ZERO),
            "g": -1,
            "C": o.client_order_id if cancel_id is not None else "",
            "x": exec_type,
            "X": status,
            "r": "NONE",
            "i": o.order_id,
            "l": _fmt(last_qty),
            "z": _fmt(o.executed if executed is None else executed),
            "L": _fmt(last_price),
            "n": _fmt(commission) if commission is not None else "0",
            "N": commission_asset,
            "T": now_ms,
            "t": trade_id,
            "I": self._exec_seq,
            "w": on_book,
            "m": maker,
            "M": False,
            "O": o.time_ms,
            "Z": _fmt(o.cum_quote if cum_quote is None else cum_quote),
            "Y": _fmt(last_qty * last_price),
            "Q": _fmt(o.orig_quote_qty),
        }
        if _rests(o):
            event["W"] = o.time_ms
        event["V"] = "NONE"
        self._sink.publish(o.account, event)
        base, quote = self._assets(o.symbol)
        assets = self._touched.setdefault(o.account, {})
        assets[base] = None
        assets[quote] = None
