"""One ordered, duplicate-free flow of execution reports from several Binance sources.

Reports about one order reach the adapter from up to three places: the reply to its own
request (a submit's ``FULL`` fills, a cancel's final status), the user-data stream, and, during
a connection handover, the user-data stream of two connections at once. They may also arrive
out of order (a fill event after the cancel reply that followed it, a reordered stream).
:class:`ReportSequencer` passes each fact on exactly once and in an order the gateway accepts:

* a fill (a report with a trade id) once per trade id;
* a bare status once per status, and ``ACCEPTED`` not at all once the order has moved on;
* a report whose cumulative quantity says earlier fills are still missing is held until
  they arrive. A report held longer than ``hold_s`` means a fill was lost or went elsewhere
  (reconciliation reads fills over REST): :meth:`ReportSequencer.expire` releases it and
  tells the caller, who makes the gateway reconcile first.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from botd.clock import NS_PER_SECOND, Clock
from botd.model import ExecutionReport, OrderStatus

__all__ = ["ReportSequencer"]

log = logging.getLogger(__name__)

_ZERO: Final = Decimal(0)
_FINAL: Final = frozenset({OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


@dataclass(slots=True)
class _Held:
    report: ExecutionReport
    cum_qty: Decimal | None
    since_ns: int


@dataclass(slots=True)
class _Progress:
    cum_qty: Decimal = _ZERO
    trades: set[str] = field(default_factory=set)
    statuses: set[OrderStatus] = field(default_factory=set)
    moved_on: bool = False  # a fill or a final status went out: ACCEPTED is stale now
    queried_on: bool = False  # a query found it past ACCEPTED (the gateway knows too)
    held: list[_Held] = field(default_factory=list)


class ReportSequencer:
    """``emit`` receives each report that should reach the gateway, in order.

    Progress is kept per client order id for the last ``max_orders`` orders seen (an order
    evicted and then reported again is at worst reported twice; the gateway's own trade-id
    check still holds).
    """

    def __init__(
        self,
        emit: Callable[[ExecutionReport], None],
        clock: Clock,
        *,
        hold_s: float = 2.0,
        max_orders: int = 10_000,
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._hold_ns = int(hold_s * NS_PER_SECOND)
        self._max_orders = max_orders
        self._orders: OrderedDict[str, _Progress] = OrderedDict()
        self.duplicates = 0
        self.held_total = 0
        self._holding = 0  # reports held now, over all orders (read on every push)

    @property
    def holding(self) -> int:
        return self._holding

    def push(self, report: ExecutionReport, cum_qty: Decimal | None = None) -> None:
        """One report; ``cum_qty``: the order's cumulative executed quantity after it, when
        the source says (stream events and cancel replies do; a submit's fills do not)."""
        progress = self._progress(report.client_order_id)
        if self._offer(progress, report, cum_qty):
            self._release(progress)

    def observe(self, client_order_id: str, status: OrderStatus, filled_qty: Decimal) -> None:
        """What a query said about the order (the gateway applies such answers itself): later
        reports must not take it back, and must not wait for fills it already has."""
        progress = self._progress(client_order_id)
        if filled_qty > progress.cum_qty:
            progress.cum_qty = filled_qty
        if status is not OrderStatus.ACCEPTED:
            progress.moved_on = progress.queried_on = True
        if status in _FINAL:
            progress.statuses.add(status)
        self._release(progress)

    def stale(self, report: ExecutionReport) -> bool:
        """True for a bare ``ACCEPTED`` passed before a query found the order further on: the
        gateway has adopted that answer and would call the step back illegal."""
        if report.trade_id or report.status is not OrderStatus.ACCEPTED:
            return False
        progress = self._orders.get(report.client_order_id)
        return progress is not None and progress.queried_on

    def expire(self) -> int:
        """Release, in arrival order, every report held longer than ``hold_s``; how many."""
        now = self._clock.monotonic_ns()
        released = 0
        for progress in list(self._orders.values()):
            if not progress.held or now - progress.held[0].since_ns < self._hold_ns:
                continue
            held, progress.held = progress.held, []
            self._holding -= len(held)
            for item in held:
                log.warning(
                    "Binance report for %s released after waiting for earlier fills",
                    item.report.client_order_id,
                )
                # The missing fills are the gateway's to find now: pass on what we have.
                self._pass(progress, item.report, item.cum_qty)
                released += 1
        return released

    def next_expiry_s(self) -> float | None:
        """Seconds until the oldest held report expires; None when nothing is held."""
        oldest = min((p.held[0].since_ns for p in self._orders.values() if p.held), default=None)
        if oldest is None:
            return None
        return max(0.0, (oldest + self._hold_ns - self._clock.monotonic_ns()) / NS_PER_SECOND)

    # -- internals ----------------------------------------------------------------------------

    def _progress(self, client_order_id: str) -> _Progress:
        progress = self._orders.get(client_order_id)
        if progress is None:
            progress = self._orders[client_order_id] = _Progress()
            if len(self._orders) > self._max_orders:
                for cid, old in list(self._orders.items())[: len(self._orders) // 10]:
                    if not old.held:
                        del self._orders[cid]
        else:
            self._orders.move_to_end(client_order_id)
        return progress

    def _offer(self, progress: _Progress, report: ExecutionReport, cum_qty: Decimal | None) -> bool:
        """Pass ``report`` on, drop it as a duplicate, or hold it; True if it went out."""
        verdict = self._verdict(progress, report, cum_qty)
        if verdict == "dup":
            self.duplicates += 1
            return False
        if verdict == "hold":
            self.held_total += 1
            self._holding += 1
            progress.held.append(_Held(report, cum_qty, self._clock.monotonic_ns()))
            return False
        self._pass(progress, report, cum_qty)
        return True

    @staticmethod
    def _verdict(progress: _Progress, report: ExecutionReport, cum_qty: Decimal | None) -> str:
        if report.trade_id:
            if report.trade_id in progress.trades:
                return "dup"
            if cum_qty is not None and cum_qty - report.last_qty > progress.cum_qty:
                return "hold"  # an earlier fill of this order has not arrived yet
            return "pass"
        status = report.status
        if status in progress.statuses or (status is OrderStatus.ACCEPTED and progress.moved_on):
            return "dup"
        if status in _FINAL and cum_qty is not None and cum_qty > progress.cum_qty:
            return "hold"  # it ended after fills we have not passed on yet
        return "pass"

    def _pass(self, progress: _Progress, report: ExecutionReport, cum_qty: Decimal | None) -> None:
        if report.trade_id:
            if report.trade_id in progress.trades:
                self.duplicates += 1
                return
            progress.trades.add(report.trade_id)
            progress.cum_qty = max(progress.cum_qty + report.last_qty, cum_qty or _ZERO)
            progress.moved_on = True
        else:
            if report.status in progress.statuses:
                self.duplicates += 1
                return
            progress.statuses.add(report.status)
            if report.status is not OrderStatus.ACCEPTED:
                progress.moved_on = True
        self._emit(report)

    def _release(self, progress: _Progress) -> None:
        """Pass on held reports that can go now, until none can."""
        moved = True
        while moved and progress.held:
            moved = False
            for item in list(progress.held):
                verdict = self._verdict(progress, item.report, item.cum_qty)
                if verdict == "hold":
                    continue
                progress.held.remove(item)
                self._holding -= 1
                if verdict == "dup":
                    self.duplicates += 1
                else:
                    self._pass(progress, item.report, item.cum_qty)
                    moved = True
