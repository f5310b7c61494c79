"""Reconciliation: make our view of orders, fills and balances agree with the venue's.

Run at start-up before any strategy trades, after the execution stream was lost, and
periodically. Every difference is logged and recorded as a journal event saying what was
corrected. A venue that cannot be reconciled is not traded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from botd.clock import Clock
from botd.errors import RateLimited, TransientVenueError
from botd.gateway.gateway import Gateway
from botd.gateway.throttle import Priority, Throttled
from botd.model import OrderStatus, VenueOrder
from botd.store import Journal

__all__ = ["ReconcileReport", "Reconciler"]

_NO_RECORD = "the venue has no record of this order"


@dataclass(slots=True)
class ReconcileReport:
    venue: str
    checked: int = 0
    corrected: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    recovered_fills: int = 0
    balance_changes: dict[str, tuple[str, str]] = field(default_factory=dict)


class Reconciler:
    def __init__(
        self,
        gateway: Gateway,
        journal: Journal,
        clock: Clock,
        *,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._gateway = gateway
        self._clock = clock
        self._journal = journal
        self._log = log or structlog.get_logger("botd.reconcile")

    async def reconcile(self, venue: str) -> ReconcileReport:
        """Raises ``TransientVenueError`` (or ``RateLimited``) if the venue cannot answer."""
        gw = self._gateway
        adapter = gw.adapter(venue)
        throttle = gw.throttle(venue)
        report = ReconcileReport(venue)
        log = self._log.bind(venue=venue)

        await throttle.acquire("order.open_orders", Priority.QUERY)
        venue_open = {o.client_order_id: o for o in await adapter.open_orders()}
        ours = [o for o in gw.open_orders() if o.venue == venue]
        report.checked = len(ours)
        fills_before = gw.trades_seen

        for order in ours:
            before = (order.status, order.filled_qty)
            found: VenueOrder | None = venue_open.get(order.client_order_id)
            if found is None:
                await throttle.acquire("order.query", Priority.QUERY)
                found = await adapter.query_order(order.symbol, order.client_order_id)
            if found is None:
                reason = (
                    "never sent: botd stopped before sending it"
                    if order.status is OrderStatus.PENDING
                    else _NO_RECORD
                )
                gw.close_missing(order.client_order_id, reason)
            else:
                await gw.adopt(found)
            after = gw.order(order.client_order_id)
            if after is not None and (after.status, after.filled_qty) != before:
                change = (
                    f"{order.client_order_id}: {before[0].value} {before[1]} -> "
                    f"{after.status.value} {after.filled_qty}"
                )
                report.corrected.append(change)

        for cid, foreign in venue_open.items():
            if not gw.known(cid):
                report.foreign.append(cid)
                log.warning(
                    "open order on the venue that botd did not place; leaving it alone",
                    client_order_id=cid,
                    symbol=foreign.symbol,
                    side=foreign.side.value,
                    qty=str(foreign.qty),
                    price=None if foreign.price is None else str(foreign.price),
                )

        report.recovered_fills = gw.trades_seen - fills_before
        await self._balances(venue, report)

        for change in report.corrected:
            log.warning("reconciliation corrected an order", change=change)
        self._journal.append_event(
            "reconcile",
            {
                "venue": venue,
                "checked": report.checked,
                "corrected": report.corrected,
                "foreign": report.foreign,
                "balance_changes": {k: list(v) for k, v in report.balance_changes.items()},
            },
        )
        log.info(
            "reconciled",
            checked=report.checked,
            corrected=len(report.corrected),
            foreign=len(report.foreign),
        )
        return report

    async def _balances(self, venue: str, report: ReconcileReport) -> None:
        previous = await self._journal.latest_balances(venue)
        await self._gateway.refresh_balances(venue)
        current = {
            asset: self._gateway.balance(venue, asset)
            for asset in set(previous) | set(self._gateway.balances(venue))
        }
        for asset, bal in current.items():
            old = previous.get(asset)
            if old is None or old.total != bal.total:
                report.balance_changes[asset] = (
                    "none" if old is None else str(old.total),
                    str(bal.total),
                )
        await self._journal.save_balances(
            venue,
            {a: b for a, b in current.items() if b.total != Decimal(0) or a in previous},
            self._clock.time_ns(),
        )


RECONCILE_ERRORS = (TransientVenueError, RateLimited, Throttled, OSError, TimeoutError)
