"""Property tests for the throttle: random pools, costs and arrival schedules on a FakeClock.

Every grant is recorded with its time and the order in which things happened, then checked
against the pools' own definitions (independently of the throttle's arithmetic):

1. no pool is ever exceeded: every epoch-aligned fixed window, every interval-long window
   ending at a grant for rolling pools, a simulated token bucket never below zero;
2. under saturation the binding pool is used to at least 95 % of what it allows;
3. priorities: nothing is granted while an earlier-arrived waiter of higher (or, FIFO, the
   same) priority is still waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botd.clock import NS_PER_SECOND as NS
from botd.clock import FakeClock
from botd.errors import Banned
from botd.gateway.throttle import Priority, Throttle, Throttled
from botd.venues.base import RateLimit

BASE = 1_700_000_000 * NS
KINDS = ("fixed", "rolling", "bucket")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seconds(ns: int) -> float:
    s = ns / NS
    while int(s * NS) < ns:
        s = math.nextafter(s, math.inf)
    while int(s * NS) > ns:
        s = math.nextafter(s, -math.inf)
    return s


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def _advance_to(clock: FakeClock, t_ns: int) -> None:
    await _settle()
    await clock.advance(_seconds(max(0, t_ns - clock.time_ns())))
    await _settle()


# -- strategies -----------------------------------------------------------------------------


@st.composite
def limit_sets(draw: st.DrawFn) -> list[RateLimit]:
    n = draw(st.integers(1, 3))
    return [
        RateLimit(
            f"P{i}",
            draw(st.integers(1, 10)),
            draw(st.integers(200, 2000)) / 1000,  # whole ms: the checks' ns match the throttle's
            kind=draw(st.sampled_from(KINDS)),
        )
        for i in range(n)
    ]


@st.composite
def cost_map(draw: st.DrawFn, limits: Sequence[RateLimit], nonempty: bool) -> dict[str, int]:
    chosen = draw(
        st.lists(st.sampled_from(limits), min_size=1 if nonempty else 0, unique_by=lambda r: r.pool)
    )
    return {rl.pool: draw(st.integers(1, rl.limit)) for rl in chosen}


@dataclass(frozen=True)
class Req:
    at_ms: int
    endpoint: str
    priority: Priority
    deadline_ms: int | None  # after arrival


@dataclass
class Outcome:
    req: Req
    arrived_seq: int
    arrived_ns: int
    end_seq: int | None = None
    end_ns: int | None = None
    granted: bool = False


@dataclass
class Run:
    start_ns: int
    outcomes: list[Outcome] = field(default_factory=list)

    def grants(self) -> list[Outcome]:
        return sorted((o for o in self.outcomes if o.granted), key=lambda o: o.end_seq or 0)


async def _drive(
    start_ns: int,
    limits: Sequence[RateLimit],
    costs: Mapping[str, Mapping[str, int]],
    reqs: Sequence[Req],
    end_ns: int,
) -> Run:
    """Issue each request at its arrival time and let the clock run until ``end_ns``.

    Arrivals are started only between clock steps, after the previous step has settled, so
    the recorded order of arrivals and grants is the order the throttle saw them in.
    """
    clock = FakeClock(start_ns)
    throttle = Throttle("prop", clock, limits, costs)
    seq = itertools.count()
    run = Run(start_ns)

    async def one(req: Req) -> None:
        out = Outcome(req, next(seq), clock.time_ns())
        run.outcomes.append(out)
        deadline = (
            None if req.deadline_ms is None else clock.time_ns() + req.deadline_ms * 1_000_000
        )
        try:
            await throttle.acquire(req.endpoint, req.priority, deadline_ns=deadline)
        except (Throttled, Banned):
            out.end_seq, out.end_ns = next(seq), clock.time_ns()
        else:
            out.end_seq, out.end_ns, out.granted = next(seq), clock.time_ns(), True

    tasks: list[asyncio.Task[None]] = []
    for req in sorted(reqs, key=lambda r: r.at_ms):
        await _advance_to(clock, start_ns + req.at_ms * 1_000_000)
        tasks.append(asyncio.create_task(one(req)))
        await _settle()
    await _advance_to(clock, end_ns)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert clock.pending_sleepers == 0, "the timer must stop once nobody waits"
    return run


# -- checks ---------------------------------------------------------------------------------


def _check_pools_never_exceeded(
    run: Run, limits: Sequence[RateLimit], costs: Mapping[str, Mapping[str, int]]
) -> None:
    grants = run.grants()
    for rl in limits:
        interval = round(rl.interval_s * NS)
        charged = [
            (o.end_ns or 0, costs[o.req.endpoint][rl.pool])
            for o in grants
            if rl.pool in costs[o.req.endpoint]
        ]
        if rl.kind == "fixed":
            per_window: dict[int, int] = defaultdict(int)
            for ts, cost in charged:
                per_window[ts // interval] += cost
                assert per_window[ts // interval] <= rl.limit, (rl, ts)
        elif rl.kind == "rolling":
            for ts, _ in charged:
                in_window = sum(c for t, c in charged if ts - interval < t <= ts)
                assert in_window <= rl.limit, (rl, ts)
        else:
            level = rl.limit * interval  # tokens * interval_ns; full at construction
            last = run.start_ns
            for ts, cost in charged:
                level = min(rl.limit * interval, level + (ts - last) * rl.limit)
                last = ts
                level -= cost * interval
                assert level >= 0, (rl, ts)


def _check_priorities(run: Run) -> None:
    """A grant never overtakes an earlier arrival of higher or equal priority that is still
    waiting (strict priority, FIFO within a priority)."""
    for g in run.grants():
        assert g.end_seq is not None
        for w in run.outcomes:
            if w is g or w.arrived_seq > g.end_seq or w.req.priority > g.req.priority:
                continue
            if w.req.priority == g.req.priority and w.arrived_seq > g.arrived_seq:
                continue
            still_waiting = w.end_seq is None or w.end_seq > g.end_seq
            assert not still_waiting, (
                f"{g.req} granted while {w.req} (arrived earlier, priority "
                f"{w.req.priority.name}) was still waiting"
            )


def _max_grants(rl: RateLimit, cost: int, start_ns: int, horizon_ns: int) -> int:
    """What one pool alone allows of requests costing ``cost`` in [start, start + horizon)."""
    interval = round(rl.interval_s * NS)
    per_window = rl.limit // cost
    if rl.kind == "fixed":
        windows = (start_ns + horizon_ns - 1) // interval - start_ns // interval + 1
        return windows * per_window
    if rl.kind == "rolling":
        return -(-horizon_ns // interval) * per_window
    tokens_scaled = rl.limit * interval + (horizon_ns - 1) * rl.limit
    return tokens_scaled // (cost * interval)


# -- properties -----------------------------------------------------------------------------


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, list[RateLimit], dict[str, dict[str, int]], list[Req]]:
    limits = draw(limit_sets())
    n_endpoints = draw(st.integers(1, 3))
    costs = {f"e{i}": draw(cost_map(limits, nonempty=False)) for i in range(n_endpoints)}
    reqs = draw(
        st.lists(
            st.builds(
                Req,
                at_ms=st.integers(0, 8000),
                endpoint=st.sampled_from(sorted(costs)),
                priority=st.sampled_from(Priority),
                deadline_ms=st.none() | st.integers(0, 3000),
            ),
            min_size=1,
            max_size=40,
        )
    )
    offset = draw(st.integers(0, 10 * NS))  # so fixed windows are not aligned to the start
    return BASE + offset, limits, costs, reqs


@SETTINGS
@given(schedules())
def test_random_schedules_never_exceed_a_pool_and_respect_priority(
    case: tuple[int, list[RateLimit], dict[str, dict[str, int]], list[Req]],
) -> None:
    start, limits, costs, reqs = case
    end = start + 60 * NS  # long enough to drain: at most 40 requests, each fits a window
    run = asyncio.run(_drive(start, limits, costs, reqs, end))
    _check_pools_never_exceeded(run, limits, costs)
    _check_priorities(run)
    for o in run.outcomes:
        assert o.end_ns is None or o.end_ns >= o.arrived_ns
        if not o.granted and o.end_ns is not None:
            assert o.req.deadline_ms is not None  # only deadlines reject here (no ban)
    assert all(o.end_seq is not None for o in run.outcomes), "every request was drained"


@st.composite
def saturations(
    draw: st.DrawFn,
) -> tuple[int, list[RateLimit], dict[str, int], list[Priority]]:
    limits = draw(limit_sets())
    costs = draw(cost_map(limits, nonempty=True))
    offset = draw(st.integers(0, 10 * NS))
    priorities = draw(st.lists(st.sampled_from(Priority), min_size=1, max_size=8))
    return BASE + offset, limits, costs, priorities


@SETTINGS
@given(saturations())
def test_saturation_uses_the_binding_pool_fully(
    case: tuple[int, list[RateLimit], dict[str, int], list[Priority]],
) -> None:
    start, limits, endpoint_costs, priorities = case
    used = [rl for rl in limits if rl.pool in endpoint_costs]
    horizon = 25 * max(round(rl.interval_s * NS) for rl in used)
    binding = min(_max_grants(rl, endpoint_costs[rl.pool], start, horizon) for rl in used)
    demand = binding + 5  # more than the budget, all queued at t=0
    reqs = [Req(0, "e", priorities[i % len(priorities)], None) for i in range(demand)]
    run = asyncio.run(_drive(start, limits, {"e": endpoint_costs}, reqs, start + horizon - 1))
    _check_pools_never_exceeded(run, limits, {"e": endpoint_costs})
    _check_priorities(run)
    granted = len(run.grants())
    assert granted <= binding  # sanity of the bound itself
    assert granted >= 0.95 * binding, (granted, binding, used)
