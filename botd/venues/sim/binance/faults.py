"""Wire faults for the Binance simulator, scripted or seeded, always deterministic.

A :class:`WireFaultPlan` is consulted by the simulator at a handful of *sites*, each an event
it can count:

==========  ===========================================  =========================================
site        counted event                                fault kinds
==========  ===========================================  =========================================
``stream``  each market-data message queued to a client  ``drop``, ``stall``, ``shutdown``
``depth``   each ``depthUpdate`` event of any symbol     ``depth_gap``, ``depth_dup``
``rest``    each REST request (method/path filtered)     ``http500``, ``http503``, ``timeout``
``wsapi``   each WS API request (method filtered)        ``http500``, ``http503``, ``timeout``,
                                                         ``drop``, ``stall``, ``shutdown``
``user``    each user-data event (see :meth:`reorder`)   ``reorder``
==========  ===========================================  =========================================

A fault goes to the ``wsapi`` site when its trigger names a WS API method (``method=order.place``:
any method that is not an HTTP verb) or ``path=/ws-api/v3`` (every WS API request); otherwise
to its kind's site above.

``skew`` is a state, not an event: from its trigger time on, the server's clock runs
``skew_ms`` off the injected clock (``GET /api/v3/time``, ``timestamp`` checks, event times).

Scripted faults fire once, at the first event of their site that meets their
:class:`Trigger` (the ``nth`` matching event, at or after ``at_s`` seconds from the start on
the injected clock, matching ``method``/``path``). Seeded faults fire with a probability per
event of their site, drawn from a generator per site seeded from ``seed``, so one site's
draws do not depend on how the others interleave. What fired is recorded in
:attr:`WireFaultPlan.fired`.

What each fault does:

* ``drop``: the connection that message was for is aborted (TCP closed, no close frame).
* ``stall``: that connection gets nothing more (no data, replies or pings) for ``seconds``
  (0: until it closes), but stays open; missed data are lost, not delayed.
* ``shutdown``: every stream connection gets ``serverShutdown`` and is closed after the
  stream config's ``shutdown_grace``.
* ``depth_gap``: the diff event is not sent; the next one starts after it, so ``U`` jumps.
* ``depth_dup``: the diff event is sent twice.
* ``http500`` / ``http503``: the request is answered with that status and Binance's
  ``-1001`` / ``-1016`` body; with ``after`` it is processed first (an order is placed).
* ``timeout``: the request is processed, then the connection is closed without an answer
  (``hang``: held open until the simulator stops). Matches ``POST /api/v3/order`` by default.
* ``reorder``: that user-data event is held back and delivered after the next one.

On a WS API request (``wsapi`` site): ``http500``/``http503`` answer it with
``{"id","status":500|503,"error":{"code":-1001|-1016,...}}`` (``after``: processed first);
``timeout`` processes it, then sends no reply and cuts the connection (``hang``: no reply,
the connection stays up), ``order.place`` only unless the trigger names another method;
``drop`` cuts the connection before the request is processed; ``stall`` leaves it
unprocessed and the connection silent (no replies, events or pings; requests ignored) for
``seconds``; ``shutdown`` sends ``serverShutdown`` on every WS API connection and closes them
after the grace period (the request itself is served).

Spec syntax (``botd sim binance --faults SPEC``), items separated by commas::

    seed=42                    seed of the probabilistic faults (default 0)
    KIND[=ARG]@TRIGGER         scripted: fires once
    KIND[=ARG]~P               seeded: each event of the site, with probability P
    KIND[=ARG]~P@FILTER        seeded, only on events FILTER matches
    TRIGGER := n=N | t=SECONDS | method=M | path=/api/v3/...   joined with '&'
    FILTER  := method=M | path=P                                 joined with '&'
    M       := an HTTP verb (REST) or a WS API method name, e.g. order.place (WS API)
    ARG     := skew: milliseconds (signed); stall: seconds; timeout: hang;
               http500/http503: after

e.g. ``depth_gap@n=5,drop@t=30,skew=2500@t=0,http503~0.01,timeout@n=1,seed=7``, or for the
WS API ``timeout@n=2&method=order.place,http503~0.05@path=/ws-api/v3``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from aiohttp import web

__all__ = [
    "WS_API_PATH",
    "Fault",
    "FaultKind",
    "FaultSpecError",
    "Fired",
    "ReorderingSink",
    "Trigger",
    "UserEventReorderer",
    "WireFaultPlan",
    "drop_request",
    "http_fault_response",
]

T = TypeVar("T")


class FaultKind(StrEnum):
    DROP = "drop"
    STALL = "stall"
    SHUTDOWN = "shutdown"
    DEPTH_GAP = "depth_gap"
    DEPTH_DUP = "depth_dup"
    HTTP_500 = "http500"
    HTTP_503 = "http503"
    TIMEOUT = "timeout"
    REORDER = "reorder"
    SKEW = "skew"


_SITES: Mapping[FaultKind, str] = {
    FaultKind.DROP: "stream",
    FaultKind.STALL: "stream",
    FaultKind.SHUTDOWN: "stream",
    FaultKind.DEPTH_GAP: "depth",
    FaultKind.DEPTH_DUP: "depth",
    FaultKind.HTTP_500: "rest",
    FaultKind.HTTP_503: "rest",
    FaultKind.TIMEOUT: "rest",
    FaultKind.REORDER: "user",
    FaultKind.SKEW: "clock",
}

#: The path that stands for the WS API in a trigger, and the kinds a WS API request can fire.
WS_API_PATH = "/ws-api/v3"
_WS_KINDS = frozenset(
    {
        FaultKind.HTTP_500,
        FaultKind.HTTP_503,
        FaultKind.TIMEOUT,
        FaultKind.DROP,
        FaultKind.STALL,
        FaultKind.SHUTDOWN,
    }
)
_HTTP_VERBS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})

#: Binance's bodies for the two 5xx answers (errors.md: -1001 DISCONNECTED, -1016
#: SERVICE_SHUTTING_DOWN). Either means "execution status unknown" to a client.
HTTP_BODIES: Mapping[int, tuple[int, str]] = {
    500: (-1001, "Internal error; unable to process your request. Please try again."),
    503: (-1016, "This service is no longer available."),
}


class FaultSpecError(ValueError):
    """A ``--faults`` spec that does not parse; the message names the item."""


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do. ``skew_ms`` for ``skew``; ``seconds`` for ``stall`` (0: until the
    connection closes); ``hang`` for ``timeout``; ``after`` for ``http500``/``http503``."""

    kind: FaultKind
    skew_ms: int = 0
    seconds: float = 0.0
    hang: bool = False
    after: bool = False

    @property
    def site(self) -> str:
        return _SITES[self.kind]

    @property
    def is_http(self) -> bool:
        return self.kind in (FaultKind.HTTP_500, FaultKind.HTTP_503)

    @property
    def status(self) -> int:
        """The HTTP status of a 5xx fault."""
        return 500 if self.kind is FaultKind.HTTP_500 else 503


@dataclass(frozen=True, slots=True)
class Trigger:
    """When a scripted fault fires: at the first event of its site that is at least the
    ``nth`` matching one (1-based), at or after ``at_s`` seconds from the plan's start, and
    (``rest`` site) of that ``method`` and ``path``."""

    nth: int | None = None
    at_s: float | None = None
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == path
        )


@dataclass(frozen=True, slots=True)
class Fired:
    """A fault that fired: its kind, site, the site's event count and the clock (ms)."""

    kind: FaultKind
    site: str
    event: int
    at_ms: int


@dataclass(slots=True)
class _Scripted:
    trigger: Trigger
    fault: Fault
    site: str
    seen: int = 0
    done: bool = False


@dataclass(slots=True)
class _Site:
    rng: random.Random
    count: int = 0
    rates: list[tuple[Fault, float, Trigger]] = field(default_factory=list)


def _site_of(fault: Fault, trigger: Trigger) -> str:
    """Where a fault is counted: ``wsapi`` if its trigger names a WS API method or path."""
    method = trigger.method
    if trigger.path != WS_API_PATH and (method is None or method in _HTTP_VERBS):
        return fault.site
    if fault.kind not in _WS_KINDS:
        raise ValueError(f"{fault.kind} cannot be triggered by a WS API request")
    return "wsapi"


class WireFaultPlan:
    """``scripted``: ``(trigger, fault)`` pairs, each firing once. ``rates``: a probability
    per event of the fault's site for each seeded fault (``Fault`` or a bare kind), with
    generators seeded from ``seed``; ``filtered``: ``(filter, fault, probability)`` seeded
    faults that fire only on events of that ``method``/``path`` (a WS API method or path puts
    them on the ``wsapi`` site). A plan keeps counters: use one per simulator."""

    def __init__(
        self,
        scripted: Iterable[tuple[Trigger, Fault]] = (),
        *,
        seed: int = 0,
        rates: Mapping[Fault | FaultKind | str, float] | None = None,
        filtered: Iterable[tuple[Trigger, Fault, float]] = (),
    ) -> None:
        self._seed = seed
        self._scripted = [_Scripted(t, f, _site_of(f, t)) for t, f in scripted]
        for s in self._scripted:
            if s.trigger.nth is not None and s.trigger.nth < 1:
                raise ValueError("a trigger's nth counts from 1")
        self._sites: dict[str, _Site] = {}
        for site in ("stream", "depth", "rest", "user", "wsapi"):
            self._sites[site] = _Site(random.Random(f"{seed}/{site}"))
        seeded: list[tuple[Trigger, Fault, float]] = [
            (Trigger(), key if isinstance(key, Fault) else Fault(FaultKind(key)), p)
            for key, p in (rates or {}).items()
        ]
        seeded.extend(filtered)
        for trig, fault, p in seeded:
            if fault.kind is FaultKind.SKEW:
                raise ValueError("skew is a state: give it a trigger, not a rate")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"the rate of {fault.kind} must be within [0, 1], not {p}")
            filt = Trigger(method=trig.method, path=trig.path)
            self._sites[_site_of(fault, filt)].rates.append((fault, p, filt))
        self._start_ms: int | None = None
        self.fired: list[Fired] = []

    @classmethod
    def parse(cls, spec: str) -> WireFaultPlan:
        """A plan from the ``--faults`` syntax (see the module docstring)."""
        seed = 0
        scripted: list[tuple[Trigger, Fault]] = []
        rates: dict[Fault | FaultKind | str, float] = {}
        filtered: list[tuple[Trigger, Fault, float]] = []
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            if item.startswith("seed="):
                try:
                    seed = int(item[5:])
                except ValueError:
                    raise FaultSpecError(f"{item!r}: seed must be an integer") from None
                continue
            if "~" in item:
                head, _, tail = item.partition("~")
                prob, at, filt = tail.partition("@")
                fault = _parse_fault(head, item)
                try:
                    p = float(prob)
                except ValueError:
                    raise FaultSpecError(f"{item!r}: probability must be a number") from None
                if fault.kind is FaultKind.SKEW or not 0.0 <= p <= 1.0:
                    raise FaultSpecError(f"{item!r}: needs a probability in [0, 1] (not skew)")
                if not at:
                    rates[fault] = p
                    continue
                only = _parse_trigger(filt, item)
                if only.nth is not None or only.at_s or (only.method, only.path) == (None, None):
                    raise FaultSpecError(f"{item!r}: a rate's filter takes method=M, path=P only")
                narrow = Trigger(method=only.method, path=only.path)
                _check_site(fault, narrow, item)
                filtered.append((narrow, fault, p))
                continue
            head, at, trig = item.partition("@")
            fault = _parse_fault(head, item)
            trigger = _parse_trigger(trig, item) if at else Trigger(at_s=0.0)
            if fault.kind is FaultKind.SKEW and trigger.nth is not None:
                raise FaultSpecError(f"{item!r}: skew takes a time trigger (t=), not n=")
            _check_site(fault, trigger, item)
            scripted.append((trigger, fault))
        try:
            return cls(scripted, seed=seed, rates=rates, filtered=filtered)
        except ValueError as e:
            raise FaultSpecError(str(e)) from None

    @property
    def seed(self) -> int:
        return self._seed

    def bind(self, start_ms: int) -> None:
        """Start counting ``at_s`` triggers from ``start_ms`` (the simulator does this when
        it starts; before that, time triggers count from the first consultation)."""
        if self._start_ms is None:
            self._start_ms = start_ms

    # -- consultation ------------------------------------------------------------------------

    def skew_ms(self, clock_ms: int) -> int:
        """The server clock's offset from the injected clock at ``clock_ms`` (the latest
        ``skew`` whose time has come; a skew has no event count, only ``at_s``)."""
        start = self._started(clock_ms)
        offset = 0
        best: float = -1.0
        for s in self._scripted:
            if s.fault.kind is not FaultKind.SKEW:
                continue
            at = s.trigger.at_s or 0.0
            if clock_ms >= start + at * 1000 and at >= best:
                best, offset = at, s.fault.skew_ms
                if not s.done:
                    s.done = True
                    self.fired.append(Fired(FaultKind.SKEW, "clock", 0, clock_ms))
        return offset

    def on_stream(self, now_ms: int) -> Fault | None:
        """A market-data message is about to be queued to a client."""
        return self._consult("stream", now_ms)

    def on_depth(self, now_ms: int) -> Fault | None:
        """A ``depthUpdate`` event is about to be sent."""
        return self._consult("depth", now_ms)

    def on_rest(self, method: str, path: str, now_ms: int) -> Fault | None:
        """A REST request arrived (before the simulator processes it)."""
        return self._consult("rest", now_ms, method, path)

    def on_ws_api(self, method: str, now_ms: int) -> Fault | None:
        """A WS API request of ``method`` (e.g. ``order.place``) arrived, before it is
        processed."""
        return self._consult("wsapi", now_ms, method, WS_API_PATH)

    def on_user_event(self, now_ms: int) -> Fault | None:
        """A user-data event is about to be sent (see :class:`UserEventReorderer`)."""
        return self._consult("user", now_ms)

    def reorder(self, events: Sequence[T], now_ms: int) -> list[T]:
        """``events`` (one batch, e.g. what one engine result produced) in delivery order:
        an event hit by ``reorder`` swaps places with the one after it (the last one of a
        batch has none and stays). Each event counts once at the ``user`` site."""
        out = list(events)
        i = 0
        while i < len(out):
            fault = self._consult("user", now_ms, fire=i + 1 < len(out))
            if fault is not None and fault.kind is FaultKind.REORDER:
                out[i], out[i + 1] = out[i + 1], out[i]
                self._consult("user", now_ms, fire=False)  # the event that moved ahead
                i += 1
            i += 1
        return out

    def _started(self, now_ms: int) -> int:
        if self._start_ms is None:
            self._start_ms = now_ms
        return self._start_ms

    def _consult(
        self, site_name: str, now_ms: int, method: str = "", path: str = "", *, fire: bool = True
    ) -> Fault | None:
        """Count one event of the site; the fault it triggers (none when not ``fire``: the
        event is counted and the draws made, but nothing fires on it)."""
        start = self._started(now_ms)
        site = self._sites[site_name]
        site.count += 1
        chosen: Fault | None = None
        filtered = site_name in ("rest", "wsapi")
        for s in self._scripted:
            if s.done or s.site != site_name:
                continue
            trig = s.trigger
            if filtered and not _rest_match(s.fault, trig, method, path):
                continue
            s.seen += 1
            if trig.nth is not None and s.seen < trig.nth:
                continue
            if trig.at_s is not None and now_ms < start + trig.at_s * 1000:
                continue
            if chosen is None and fire:
                s.done = True
                chosen = s.fault
        # Draw for every seeded fault of the site on every event, fired or not, so the
        # sequence of draws depends on the event count only.
        for fault, p, filt in site.rates:
            hit = site.rng.random() < p
            if hit and chosen is None and fire:
                if filtered and not _rest_match(fault, filt, method, path):
                    continue
                chosen = fault
        if chosen is not None:
            self.fired.append(Fired(chosen.kind, site_name, site.count, now_ms))
        return chosen


def _rest_match(fault: Fault, trig: Trigger, method: str, path: str) -> bool:
    """Whether a REST or WS API request matches; ``timeout`` with no method named takes
    orders only (``POST /api/v3/order``, WS API ``order.place``)."""
    if fault.kind is FaultKind.TIMEOUT and trig.method is None:
        if path == WS_API_PATH:
            return method == "order.place"
        if trig.path is None:
            return method == "POST" and path == "/api/v3/order"
    return trig.matches(method, path)


def _check_site(fault: Fault, trigger: Trigger, item: str) -> None:
    try:
        _site_of(fault, trigger)
    except ValueError as e:
        raise FaultSpecError(f"{item!r}: {e}") from None


def _parse_fault(head: str, item: str) -> Fault:
    name, eq, arg = head.partition("=")
    try:
        kind = FaultKind(name.strip())
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise FaultSpecError(f"{item!r}: unknown fault {name!r}; known: {known}") from None
    arg = arg.strip()
    if kind is FaultKind.SKEW:
        try:
            return Fault(kind, skew_ms=int(arg))
        except ValueError:
            raise FaultSpecError(f"{item!r}: skew needs milliseconds, e.g. skew=2500") from None
    if kind is FaultKind.STALL:
        try:
            seconds = float(arg) if eq else 0.0
        except ValueError:
            raise FaultSpecError(f"{item!r}: stall takes seconds, e.g. stall=5") from None
        return Fault(kind, seconds=seconds)
    if kind is FaultKind.TIMEOUT and eq:
        if arg != "hang":
            raise FaultSpecError(f"{item!r}: timeout takes no argument or 'hang'")
        return Fault(kind, hang=True)
    if kind in (FaultKind.HTTP_500, FaultKind.HTTP_503) and eq:
        if arg != "after":
            raise FaultSpecError(f"{item!r}: {kind} takes no argument or 'after'")
        return Fault(kind, after=True)
    if eq:
        raise FaultSpecError(f"{item!r}: {kind} takes no argument")
    return Fault(kind)


def _parse_trigger(text: str, item: str) -> Trigger:
    nth: int | None = None
    at_s: float | None = None
    method: str | None = None
    path: str | None = None
    for part in text.split("&"):
        key, eq, value = part.partition("=")
        key = key.strip()
        value = value.strip()
        try:
            if not eq:
                raise ValueError
            if key == "n":
                nth = int(value)
                if nth < 1:
                    raise ValueError
            elif key == "t":
                at_s = float(value)
            elif key == "method":
                # An HTTP verb (REST, any case) or a WS API method name (as the API spells it).
                upper = value.upper()
                method = upper if upper in _HTTP_VERBS else value.removeprefix("v3/")
                if not method:
                    raise ValueError
            elif key == "path":
                path = value
            else:
                raise ValueError
        except ValueError:
            raise FaultSpecError(
                f"{item!r}: bad trigger {part!r}; use n=N, t=SECONDS, method=M, path=P"
            ) from None
    if nth is None and at_s is None:
        at_s = 0.0
    return Trigger(nth=nth, at_s=at_s, method=method, path=path)


def http_fault_response(fault: Fault) -> web.Response:
    """The 5xx answer of an ``http500``/``http503`` fault, in Binance's error shape."""
    code, msg = HTTP_BODIES[fault.status]
    return web.Response(
        status=fault.status,
        text=json.dumps({"code": code, "msg": msg}, separators=(",", ":")),
        content_type="application/json",
    )


async def drop_request(request: web.Request, fault: Fault, stopping: asyncio.Event) -> None:
    """Leave a processed request unanswered: close its connection now, or (``hang``) once
    ``stopping`` is set."""
    if fault.hang:
        await stopping.wait()
    transport = request.transport
    if transport is not None:
        transport.abort()


class UserEventReorderer(Generic[T]):
    """One-at-a-time form of :meth:`WireFaultPlan.reorder` for a sender that emits user-data
    events as they happen: :meth:`push` returns what to send now; an event hit by
    ``reorder`` is held and sent right after the next one. Call :meth:`flush` when the
    stream goes idle or closes so a held event is not kept forever."""

    def __init__(self, plan: WireFaultPlan | None, now_ms: Callable[[], int]) -> None:
        self._plan = plan
        self._now_ms = now_ms
        self._held: list[T] = []

    def push(self, event: T) -> list[T]:
        if self._held:
            return [event, *self.flush()]
        if self._plan is not None:
            fault = self._plan.on_user_event(self._now_ms())
            if fault is not None and fault.kind is FaultKind.REORDER:
                self._held.append(event)
                return []
        return [event]

    def flush(self) -> list[T]:
        held, self._held = self._held, []
        return held


class _UserSink(Protocol):
    def subscribed(self, account: str) -> bool: ...
    def publish(self, account: str, event: dict[str, object]) -> None: ...


class ReorderingSink:
    """A user-data sink (``subscribed``/``publish``, as the WS API is) that applies the plan's
    ``reorder`` faults on the way: an event hit is handed on right after the next event of the
    same account, or at the end of the current event-loop turn if none comes by then (so a
    reordered event is late, never lost). The simulator wraps its WS API in one when it has a
    fault plan."""

    def __init__(self, inner: _UserSink, plan: WireFaultPlan, now_ms: Callable[[], int]) -> None:
        self._inner = inner
        self._plan = plan
        self._now_ms = now_ms
        self._held: dict[str, dict[str, object]] = {}
        self._release_scheduled = False

    def subscribed(self, account: str) -> bool:
        return self._inner.subscribed(account)

    def publish(self, account: str, event: dict[str, object]) -> None:
        held = self._held.pop(account, None)
        if held is not None:
            self._inner.publish(account, event)
            self._inner.publish(account, held)
            return
        fault = self._plan.on_user_event(self._now_ms())
        if fault is None or fault.kind is not FaultKind.REORDER:
            self._inner.publish(account, event)
            return
        self._held[account] = event
        if not self._release_scheduled:
            self._release_scheduled = True
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        self._release_scheduled = False
        held, self._held = self._held, {}
        for account, event in held.items():
            self._inner.publish(account, event)
