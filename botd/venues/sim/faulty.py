"""A venue that misbehaves on purpose, on a script: the fault-injection face of the simulator.

:class:`FaultyVenue` is a real :class:`~botd.venues.base.VenueAdapter` that forwards every call
to an inner adapter and injects the faults of a :class:`FaultPlan` at exact, counted points.
Nothing is random, so a test that fails fails the same way every run. The faults are the ones
the gateway must survive (see ``research/RELIABILITY.md`` §2): a request that times out after
the venue accepted it, 5xx/429/418 answers, a lost user-data stream, duplicated reports,
reports that overtake the ack, an order placed by hand on the venue, and a process crash at a
chosen point.

A fault matches a call of operation ``on`` once that operation has been called ``nth`` times
(1-based; None: from the first call), while its ``predicate`` (if any) accepts the call's
subject, and fires at most ``times`` times (:data:`ALWAYS` for every match). The subject is the
``Order`` for ``submit``, the client order id for ``cancel`` and ``query``, the symbol for
``cancel_all`` and ``fills``, the ``ExecutionReport`` for ``executions`` (whose "calls" are
the reports delivered), and None otherwise. Every fault that fires is appended to
``plan.log``; reports a dropped stream swallowed are in :attr:`FaultyVenue.lost`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, TypeVar

from botd.errors import Banned, OrderRejected, RateLimited, TransientVenueError
from botd.model import Balance, ExecutionReport, Instrument, MarketEvent, Order, VenueOrder
from botd.venues.base import SubmitAck, VenueAdapter, VenueCapabilities

__all__ = ["ALWAYS", "Fault", "FaultKind", "FaultPlan", "FaultyVenue", "InjectedFault"]

T = TypeVar("T")

ALWAYS: Final = sys.maxsize  # for ``Fault.times``: every matching call
OPERATIONS: Final = (
    "submit",
    "cancel",
    "cancel_all",
    "query",
    "open_orders",
    "fills",
    "balances",
    "executions",
)
WHEN: Final = ("before_forward", "after_forward", "after_return")
# How many loop turns REPORTS_BEFORE_ACK grants the consumer before answering anyway (an inner
# venue whose reports arrive later than that cannot be made to overtake the ack).
_OVERTAKE_TURNS = 100


class FaultKind(StrEnum):
    TIMEOUT_AFTER_ACCEPT = "timeout_after_accept"
    TIMEOUT_BEFORE_ACCEPT = "timeout_before_accept"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"
    DROP_STREAM = "drop_stream"
    DUPLICATE_REPORTS = "duplicate_reports"
    REPORTS_BEFORE_ACK = "reports_before_ack"
    FOREIGN_ORDER = "foreign_order"
    CRASH = "crash"


K = FaultKind
# Faults that refuse the call before it reaches the venue, in the order they are checked.
_REFUSALS = (K.TIMEOUT_BEFORE_ACCEPT, K.SERVER_ERROR, K.RATE_LIMITED, K.BANNED)
_ON_STREAM = frozenset({K.DROP_STREAM, K.DUPLICATE_REPORTS, K.CRASH})


@dataclass(slots=True)
class Fault:
    kind: FaultKind
    on: str = "submit"
    nth: int | None = None
    times: int = 1
    retry_after: float | None = None
    predicate: Callable[[object], bool] | None = None
    when: str = "before_forward"  # CRASH only
    order: Order | None = None  # FOREIGN_ORDER: what to place (default: a copy of the submit)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.on not in OPERATIONS:
            raise ValueError(f"{self.kind.value}: unknown operation {self.on!r}")
        if self.when not in WHEN:
            raise ValueError(f"{self.kind.value}: 'when' must be one of {WHEN}")
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"{self.kind.value}: nth counts from 1")
        if self.times < 1:
            raise ValueError(f"{self.kind.value}: times must be at least 1")
        stream = self.on == "executions"
        if stream and self.kind not in _ON_STREAM:
            raise ValueError(f"{self.kind.value} cannot apply to the execution stream")
        if self.kind is K.DUPLICATE_REPORTS and not stream:
            raise ValueError("duplicate_reports applies to on='executions'")
        if self.kind is K.REPORTS_BEFORE_ACK and self.on != "submit":
            raise ValueError("reports_before_ack applies to on='submit'")
        if self.kind is K.FOREIGN_ORDER and self.on != "submit" and self.order is None:
            raise ValueError("foreign_order needs an order unless it copies a submit")

    def matches(self, on: str, call: int, subject: object) -> bool:
        return (
            self.on == on
            and self.fired < self.times
            and call >= (self.nth or 1)
            and (self.predicate is None or self.predicate(subject))
        )


@dataclass(frozen=True, slots=True)
class InjectedFault:
    kind: FaultKind
    on: str
    call: int  # the operation's call number (the report number for ``executions``)
    detail: str = ""


@dataclass(slots=True)
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)
    log: list[InjectedFault] = field(default_factory=list)

    def fired(self, kind: FaultKind) -> list[InjectedFault]:
        return [entry for entry in self.log if entry.kind is kind]


class _Dropped:
    """Queued for the consumer when the stream is cut."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _exit_now() -> None:
    # 137 = 128 + SIGKILL: to a supervisor the crash looks like the kill it simulates.
    os._exit(137)


class FaultyVenue:
    def __init__(
        self,
        inner: VenueAdapter,
        plan: FaultPlan,
        *,
        crash: Callable[[], None] = _exit_now,
        foreign_prefix: str = "web-",
    ) -> None:
        self._inner = inner
        self.plan = plan
        self._crash = crash
        self._foreign_prefix = foreign_prefix
        self._calls: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self._foreign = 0
        self.lost: list[ExecutionReport] = []
        # The execution stream: a pump task reads the inner stream, so reports that arrive
        # while our consumer is "disconnected" can be discarded, as a real socket would.
        self._queue: asyncio.Queue[ExecutionReport | _Dropped | _Failed] = asyncio.Queue()
        self._pump_task: asyncio.Task[None] | None = None
        self._stream_up = False
        self._pumped = 0
        self._consumed = 0

    @property
    def inner(self) -> VenueAdapter:
        return self._inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def capabilities(self) -> VenueCapabilities:
        return self._inner.capabilities

    def calls(self, on: str) -> int:
        """How many times ``on`` has been called (reports delivered, for ``executions``)."""
        return self._calls[on]

    async def connect(self) -> None:
        await self._inner.connect()

    async def close(self) -> None:
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._inner.close()

    def instruments(self) -> Mapping[str, Instrument]:
        return self._inner.instruments()

    def market_data(self, symbols: Sequence[str]) -> AsyncIterator[MarketEvent]:
        return self._inner.market_data(symbols)

    # -- requests -----------------------------------------------------------------------------

    async def submit(self, order: Order) -> SubmitAck:
        return await self._call("submit", order, lambda: self._inner.submit(order))

    async def cancel(self, symbol: str, client_order_id: str) -> None:
        await self._call(
            "cancel", client_order_id, lambda: self._inner.cancel(symbol, client_order_id)
        )

    async def cancel_all(self, symbol: str) -> None:
        await self._call("cancel_all", symbol, lambda: self._inner.cancel_all(symbol))

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        return await self._call(
            "query", client_order_id, lambda: self._inner.query_order(symbol, client_order_id)
        )

    async def open_orders(self) -> list[VenueOrder]:
        return await self._call("open_orders", None, self._inner.open_orders)

    async def fills(self, symbol: str, since_ns: int) -> list[ExecutionReport]:
        return await self._call("fills", symbol, lambda: self._inner.fills(symbol, since_ns))

    async def balances(self) -> dict[str, Balance]:
        return await self._call("balances", None, self._inner.balances)

    async def _call(self, on: str, subject: object, forward: Callable[[], Awaitable[T]]) -> T:
        self._calls[on] += 1
        call = self._calls[on]

        def due_all(kind: FaultKind, when: str | None = None) -> list[Fault]:
            out = [
                f
                for f in self.plan.faults
                if f.kind is kind
                and (when is None or f.when == when)
                and f.matches(on, call, subject)
            ]
            for fault in out:
                fault.fired += 1
            return out

        def due(kind: FaultKind, when: str | None = None) -> Fault | None:
            # One fault of a kind per call is enough: a second 503 adds nothing to the first.
            for fault in self.plan.faults:
                if (
                    fault.kind is kind
                    and (when is None or fault.when == when)
                    and fault.matches(on, call, subject)
                ):
                    fault.fired += 1
                    return fault
            return None

        def note(kind: FaultKind, detail: str = "") -> None:
            self.plan.log.append(InjectedFault(kind, on, call, detail))

        if due(K.CRASH, "before_forward"):
            note(K.CRASH, "before_forward")
            self._crash()
        if due(K.DROP_STREAM):
            note(K.DROP_STREAM)
            self._drop()
        for foreign in due_all(K.FOREIGN_ORDER):
            note(K.FOREIGN_ORDER, await self._place_foreign(foreign, subject))
        for kind in _REFUSALS:
            fault = due(kind)
            if fault is not None:
                note(kind)
                raise _refusal(kind, on, fault.retry_after)

        result = await forward()

        if on == "submit" and due(K.REPORTS_BEFORE_ACK):
            assert isinstance(subject, Order)
            note(K.REPORTS_BEFORE_ACK, subject.client_order_id)
            await self._let_reports_overtake()
        if due(K.CRASH, "after_forward"):
            note(K.CRASH, "after_forward")
            self._crash()
        if due(K.TIMEOUT_AFTER_ACCEPT):
            note(K.TIMEOUT_AFTER_ACCEPT)
            raise TransientVenueError(f"{on}: timed out waiting for the answer (injected)")
        if due(K.CRASH, "after_return"):
            note(K.CRASH, "after_return")
            asyncio.get_running_loop().call_soon(self._crash)
        return result

    async def _place_foreign(self, fault: Fault, subject: object) -> str:
        """Place a real order under an id the caller never issued, as a person on the venue's
        website would."""
        template = fault.order if fault.order is not None else subject
        assert isinstance(template, Order)
        self._foreign += 1
        order = replace(template, client_order_id=f"{self._foreign_prefix}{self._foreign}")
        try:
            await self._inner.submit(order)
        except OrderRejected as exc:
            return f"{order.client_order_id} rejected: {exc.code} {exc.reason}"
        return order.client_order_id

    async def _let_reports_overtake(self) -> None:
        # Done once the consumer has finished with at least one new report and nothing is
        # waiting for it; reports of an in-process venue are already queued by now.
        seen = self._consumed
        for _ in range(_OVERTAKE_TURNS):
            if self._consumed > seen and self._consumed >= self._pumped and self._queue.empty():
                return
            await asyncio.sleep(0)

    # -- the execution stream -----------------------------------------------------------------

    async def executions(self) -> AsyncIterator[ExecutionReport]:
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump(), name=f"{self.name}.faulty.pump")
        self._stream_up = True
        while True:
            item = await self._queue.get()
            if isinstance(item, _Dropped):
                raise TransientVenueError("execution stream: connection lost (injected)")
            if isinstance(item, _Failed):
                raise item.exc
            self._calls["executions"] += 1
            call = self._calls["executions"]
            faults = [f for f in self.plan.faults if f.matches("executions", call, item)]
            for fault in faults:
                fault.fired += 1
                self.plan.log.append(
                    InjectedFault(fault.kind, "executions", call, _describe(fault, item))
                )
            kinds = {(f.kind, f.when) for f in faults}
            if (K.CRASH, "before_forward") in kinds:
                self._crash()
            if any(kind is K.DROP_STREAM for kind, _ in kinds):
                self.lost.append(item)
                self._consumed += 1
                self._drop(queue_marker=False)
                raise TransientVenueError("execution stream: connection lost (injected)")
            yield item
            if any(kind is K.DUPLICATE_REPORTS for kind, _ in kinds):
                yield item
            self._consumed += 1
            if (K.CRASH, "after_forward") in kinds:
                self._crash()
            if (K.CRASH, "after_return") in kinds:
                asyncio.get_running_loop().call_soon(self._crash)

    async def _pump(self) -> None:
        try:
            async for report in self._inner.executions():
                if self._stream_up:
                    self._pumped += 1
                    self._queue.put_nowait(report)
                else:
                    self.lost.append(report)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the inner stream failed: the consumer must hear it
            self._queue.put_nowait(_Failed(exc))
        else:
            self._queue.put_nowait(_Failed(TransientVenueError("execution stream ended")))

    def _drop(self, *, queue_marker: bool = True) -> None:
        """Cut the stream: what is queued and what arrives until the next ``executions()``
        call is lost."""
        self._stream_up = False
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, ExecutionReport):
                self.lost.append(item)
                self._consumed += 1
        if queue_marker:
            self._queue.put_nowait(_Dropped())


def _refusal(kind: FaultKind, on: str, retry_after: float | None) -> TransientVenueError:
    if kind is K.TIMEOUT_BEFORE_ACCEPT:
        return TransientVenueError(f"{on}: timed out before the venue received it (injected)")
    if kind is K.SERVER_ERROR:
        return TransientVenueError(f"{on}: HTTP 503 Service Unavailable (injected)")
    if kind is K.RATE_LIMITED:
        return RateLimited(f"{on}: HTTP 429 Too Many Requests (injected)", retry_after)
    return Banned(f"{on}: HTTP 418 IP banned (injected)", retry_after)


def _describe(fault: Fault, report: ExecutionReport) -> str:
    what = f"{report.client_order_id} {report.status.value}"
    return f"{fault.when} {what}" if fault.kind is K.CRASH else what
