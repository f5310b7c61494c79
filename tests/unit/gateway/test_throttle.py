"""Throttle: exact waits per limit kind, priorities, deadlines, server counters, 429 and 418.

Every wait is checked to the nanosecond on a FakeClock: one ns before the computed time the
request is still waiting, at it the request has been granted.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from botd.clock import NS_PER_SECOND as NS
from botd.clock import FakeClock, LiveClock
from botd.errors import Banned
from botd.gateway.throttle import Priority, Throttle, Throttled
from botd.venues.base import RateLimit

START = 1_700_000_000 * NS  # 2023-11-14 22:13:20 UTC: 20 s past the minute
MINUTE = 60 * NS

BINANCE_LIMITS = (
    RateLimit("REQUEST_WEIGHT", 6000, 60, kind="fixed"),
    RateLimit("ORDERS_10S", 50, 10, scope="account", kind="fixed"),
    RateLimit("ORDERS_1D", 160_000, 86_400, scope="account", kind="fixed"),
)
BINANCE_COSTS: Mapping[str, Mapping[str, int]] = {
    "order.submit": {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1D": 1},
    "order.cancel": {"REQUEST_WEIGHT": 1},
    "order.query": {"REQUEST_WEIGHT": 4},
    "account.balances": {"REQUEST_WEIGHT": 20},
    "bulk": {"REQUEST_WEIGHT": 1000},
    "free": {},
}


def _seconds(ns: int) -> float:
    """A float FakeClock turns back into exactly ``ns`` (it truncates ``seconds * 1e9``)."""
    s = ns / NS
    while int(s * NS) < ns:
        s = math.nextafter(s, math.inf)
    while int(s * NS) > ns:
        s = math.nextafter(s, -math.inf)
    return s


async def advance_to(clock: FakeClock, t_ns: int) -> None:
    # Let tasks started since the last step reach their first await before time moves.
    await settle()
    await clock.advance(_seconds(t_ns - clock.time_ns()))
    await settle()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def next_boundary(t_ns: int, interval_ns: int) -> int:
    return (t_ns // interval_ns + 1) * interval_ns


def binance(
    clock: FakeClock,
    alerts: list[tuple[str, dict[str, object]]] | None = None,
) -> Throttle:
    hook = None if alerts is None else (lambda kind, data: alerts.append((kind, data)))
    return Throttle("binance", clock, BINANCE_LIMITS, BINANCE_COSTS, on_alert=hook)


def small(
    clock: FakeClock,
    limits: Sequence[RateLimit],
    costs: Mapping[str, Mapping[str, int]],
) -> Throttle:
    return Throttle("small", clock, limits, costs)


class Recorder:
    """Starts acquires as tasks and records the order and time of each outcome."""

    def __init__(self, throttle: Throttle, clock: FakeClock) -> None:
        self.throttle = throttle
        self.clock = clock
        self.done: list[tuple[str, int]] = []
        self.errors: dict[str, BaseException] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(
        self, name: str, endpoint: str, priority: Priority, deadline_ns: int | None = None
    ) -> None:
        async def run() -> None:
            try:
                await self.throttle.acquire(endpoint, priority, deadline_ns=deadline_ns)
            except (Throttled, Banned) as exc:
                self.errors[name] = exc
                self.done.append((f"!{name}", self.clock.time_ns()))
            else:
                self.done.append((name, self.clock.time_ns()))

        self.tasks[name] = asyncio.create_task(run())

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.done]


# -- fixed windows --------------------------------------------------------------------------


async def test_fixed_6001st_weight_waits_exactly_until_the_next_minute() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    for _ in range(6):
        await t.acquire("bulk", Priority.QUERY)  # granted without waiting
    assert t.usage()["REQUEST_WEIGHT"] == (6000, 6000)
    boundary = next_boundary(START, MINUTE)
    assert boundary - START == 40 * NS
    assert t.available_at("order.cancel") == boundary

    rec = Recorder(t, clock)
    rec.start("w6001", "order.cancel", Priority.CANCEL)
    await settle()
    assert clock.pending_sleepers == 1  # one exact sleep, no polling
    await advance_to(clock, boundary - 1)
    assert rec.done == []
    await advance_to(clock, boundary)
    assert rec.done == [("w6001", boundary)]
    assert t.usage()["REQUEST_WEIGHT"] == (1, 6000)
    assert clock.pending_sleepers == 0  # the timer stops when nobody waits


async def test_fixed_daily_window_resets_at_utc_midnight() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("ORDERS_1D", 2, 86_400, kind="fixed")], {"s": {"ORDERS_1D": 1}})
    await t.acquire("s", Priority.SUBMIT)
    await t.acquire("s", Priority.SUBMIT)
    start_dt = datetime.fromtimestamp(START / NS, tz=UTC)
    midnight = datetime.combine(start_dt.date() + timedelta(days=1), datetime.min.time(), UTC)
    expected = int(midnight.timestamp()) * NS
    assert t.available_at("s") == expected

    rec = Recorder(t, clock)
    rec.start("third", "s", Priority.SUBMIT)
    await advance_to(clock, expected - 1)
    assert rec.done == []
    await advance_to(clock, expected)
    assert rec.done == [("third", expected)]


async def test_costs_apply_to_every_pool_an_endpoint_uses() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    for _ in range(50):
        await t.acquire("order.submit", Priority.SUBMIT)
    assert t.usage() == {
        "REQUEST_WEIGHT": (50, 6000),
        "ORDERS_10S": (50, 50),
        "ORDERS_1D": (50, 160_000),
    }
    ten_s = next_boundary(START, 10 * NS)
    assert t.available_at("order.submit") == ten_s
    assert t.available_at("order.query") == START  # weight is plentiful

    rec = Recorder(t, clock)
    rec.start("submit51", "order.submit", Priority.SUBMIT)
    await settle()
    # A cancel only costs weight, and outranks the waiting submit anyway.
    rec.start("cancel", "order.cancel", Priority.CANCEL)
    await settle()
    assert rec.done == [("cancel", START)]
    await advance_to(clock, ten_s - 1)
    assert rec.names == ["cancel"]
    await advance_to(clock, ten_s)
    assert rec.done[-1] == ("submit51", ten_s)
    assert t.usage() == {
        "REQUEST_WEIGHT": (52, 6000),
        "ORDERS_10S": (1, 50),
        "ORDERS_1D": (51, 160_000),
    }


# -- rolling windows and buckets ------------------------------------------------------------


async def test_rolling_waits_until_the_oldest_grants_expire() -> None:
    clock = FakeClock(START)
    t = small(
        clock,
        [RateLimit("REQ", 200, 60, scope="account", kind="rolling")],
        {"one": {"REQ": 1}, "fifty": {"REQ": 50}},
    )
    for _ in range(2):
        await t.acquire("fifty", Priority.QUERY)  # 100 at START
    await advance_to(clock, START + 10 * NS)
    for _ in range(2):
        await t.acquire("fifty", Priority.QUERY)  # 100 at START + 10 s
    assert t.usage()["REQ"] == (200, 200)
    # Any 60 s window may hold 200: the first 100 stop counting at START + 60 s exactly.
    assert t.available_at("one") == START + MINUTE

    rec = Recorder(t, clock)
    rec.start("a", "fifty", Priority.QUERY)
    rec.start("b", "fifty", Priority.QUERY)
    rec.start("c", "fifty", Priority.QUERY)  # needs the second 100 to expire
    await advance_to(clock, START + MINUTE - 1)
    assert rec.done == []
    await advance_to(clock, START + MINUTE)
    assert rec.done == [("a", START + MINUTE), ("b", START + MINUTE)]
    assert t.usage()["REQ"] == (200, 200)
    await advance_to(clock, START + 70 * NS - 1)
    assert len(rec.done) == 2
    await advance_to(clock, START + 70 * NS)
    assert rec.done[-1] == ("c", START + 70 * NS)


async def test_bucket_waits_deficit_over_rate_rounded_up() -> None:
    clock = FakeClock(START)
    t = small(
        clock,
        [RateLimit("TOKENS", 3, 1, kind="bucket")],
        {"one": {"TOKENS": 1}, "two": {"TOKENS": 2}},
    )
    for _ in range(3):
        await t.acquire("one", Priority.QUERY)
    # 3 tokens per second: one token takes 333 333 333.3 ns, so the grant is at ...334.
    assert t.available_at("one") == START + 333_333_334
    assert t.available_at("two") == START + 666_666_667

    rec = Recorder(t, clock)
    rec.start("one", "one", Priority.QUERY)
    rec.start("two", "two", Priority.QUERY)
    await advance_to(clock, START + 333_333_333)
    assert rec.done == []
    await advance_to(clock, START + 333_333_334)
    assert rec.done == [("one", START + 333_333_334)]
    # The 0.33 ns left over after the first grant is not lost: two more tokens at 1 s exactly.
    await advance_to(clock, START + NS - 1)
    assert len(rec.done) == 1
    await advance_to(clock, START + NS)
    assert rec.done[-1] == ("two", START + NS)
    assert t.usage()["TOKENS"] == (3, 3)


async def test_bucket_refills_to_capacity_only() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("T", 10, 1, kind="bucket")], {"x": {"T": 1}})
    await advance_to(clock, START + 100 * NS)
    for _ in range(10):
        await t.acquire("x", Priority.QUERY)
    assert t.available_at("x") == START + 100 * NS + NS // 10


# -- priorities -----------------------------------------------------------------------------


async def test_cancel_jumps_queued_submits_and_queries_go_last() -> None:
    clock = FakeClock(START)
    t = small(
        clock,
        [RateLimit("W", 2, 1, kind="fixed")],
        {"cancel": {"W": 1}, "submit": {"W": 1}, "query": {"W": 1}},
    )
    await t.acquire("query", Priority.QUERY)
    await t.acquire("query", Priority.QUERY)
    rec = Recorder(t, clock)
    rec.start("q1", "query", Priority.QUERY)
    rec.start("s1", "submit", Priority.SUBMIT)
    rec.start("s2", "submit", Priority.SUBMIT)
    rec.start("q2", "query", Priority.QUERY)
    rec.start("s3", "submit", Priority.SUBMIT)
    await settle()
    rec.start("c1", "cancel", Priority.CANCEL)  # arrives last, goes first
    await settle()
    assert rec.done == []
    b1 = next_boundary(START, NS)
    await advance_to(clock, b1)
    assert rec.done == [("c1", b1), ("s1", b1)]
    await advance_to(clock, b1 + NS)
    assert rec.names[2:] == ["s2", "s3"]
    await advance_to(clock, b1 + 2 * NS)
    assert rec.names[4:] == ["q1", "q2"]
    assert clock.pending_sleepers == 0


async def test_new_head_with_an_earlier_grant_time_reschedules_the_timer() -> None:
    clock = FakeClock(START)
    t = small(
        clock,
        [RateLimit("SLOW", 1, 60, kind="fixed"), RateLimit("FAST", 1, 10, kind="fixed")],
        {"submit": {"SLOW": 1}, "cancel": {"FAST": 1}},
    )
    await t.acquire("submit", Priority.SUBMIT)
    await t.acquire("cancel", Priority.CANCEL)
    rec = Recorder(t, clock)
    rec.start("submit", "submit", Priority.SUBMIT)  # waits for the minute (40 s)
    await settle()
    rec.start("cancel", "cancel", Priority.CANCEL)  # waits for the 10 s boundary only
    await settle()
    assert clock.pending_sleepers == 1
    ten = next_boundary(START, 10 * NS)
    await advance_to(clock, ten)
    assert rec.done == [("cancel", ten)]
    minute = next_boundary(START, MINUTE)
    await advance_to(clock, minute)
    assert rec.done[-1] == ("submit", minute)


async def test_waiting_higher_priority_blocks_lower_even_when_lower_would_fit() -> None:
    clock = FakeClock(START)
    t = small(
        clock,
        [RateLimit("FAST", 1, 10, kind="fixed"), RateLimit("SLOW", 1, 60, kind="fixed")],
        {"submit": {"FAST": 1}, "cancel": {"SLOW": 1}},
    )
    await t.acquire("submit", Priority.SUBMIT)
    await t.acquire("cancel", Priority.CANCEL)
    rec = Recorder(t, clock)
    rec.start("submit", "submit", Priority.SUBMIT)  # could go at the 10 s boundary ...
    await settle()
    rec.start("cancel", "cancel", Priority.CANCEL)  # ... but a cancel waits for the minute
    await settle()
    await advance_to(clock, next_boundary(START, 10 * NS))
    assert rec.done == []
    minute = next_boundary(START, MINUTE)
    await advance_to(clock, minute)
    assert rec.done == [("cancel", minute), ("submit", minute)]


# -- deadlines and cancellation -------------------------------------------------------------


async def test_deadline_before_earliest_grant_raises_throttled_at_once() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    for _ in range(6):
        await t.acquire("bulk", Priority.QUERY)
    boundary = next_boundary(START, MINUTE)
    with pytest.raises(Throttled) as info:
        await t.acquire("order.cancel", Priority.SUBMIT, deadline_ns=boundary - 1)
    assert info.value.available_at_ns == boundary
    assert clock.pending_sleepers == 0

    rec = Recorder(t, clock)
    rec.start("on_time", "order.cancel", Priority.SUBMIT, deadline_ns=boundary)
    await advance_to(clock, boundary)
    assert rec.done == [("on_time", boundary)]


async def test_deadline_checked_again_when_the_waiter_reaches_the_head() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("W", 1, 1, kind="fixed")], {"s": {"W": 1}})
    await t.acquire("s", Priority.SUBMIT)
    b1 = next_boundary(START, NS)
    rec = Recorder(t, clock)
    rec.start("first", "s", Priority.SUBMIT)
    # On its own it could go at b1, so it is queued; behind "first" it would go at b1 + 1 s.
    rec.start("stale", "s", Priority.SUBMIT, deadline_ns=b1 + NS // 2)
    rec.start("patient", "s", Priority.SUBMIT)
    await settle()
    assert rec.done == []
    await advance_to(clock, b1)
    assert rec.done == [("first", b1), ("!stale", b1)]
    err = rec.errors["stale"]
    assert isinstance(err, Throttled)
    assert err.available_at_ns == b1 + NS
    await advance_to(clock, b1 + NS)
    assert rec.done[-1] == ("patient", b1 + NS)


async def test_cancelled_waiter_is_removed_and_consumes_nothing() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("W", 1, 1, kind="fixed")], {"s": {"W": 1}})
    await t.acquire("s", Priority.SUBMIT)
    rec = Recorder(t, clock)
    rec.start("head", "s", Priority.CANCEL)
    head = rec.tasks["head"]
    rec.start("next", "s", Priority.SUBMIT)
    await settle()
    head.cancel()
    await settle()
    assert head.cancelled()
    b1 = next_boundary(START, NS)
    await advance_to(clock, b1)
    assert rec.done == [("next", b1)]
    assert t.usage()["W"] == (1, 1)


async def test_cancelling_the_last_waiter_stops_the_timer() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("W", 1, 1, kind="fixed")], {"s": {"W": 1}})
    await t.acquire("s", Priority.SUBMIT)
    rec = Recorder(t, clock)
    rec.start("only", "s", Priority.QUERY)
    only = rec.tasks["only"]
    await settle()
    assert clock.pending_sleepers == 1
    only.cancel()
    await settle()
    assert clock.pending_sleepers == 0
    assert t.available_at("s") == next_boundary(START, NS)  # nothing consumed


async def test_a_request_that_fits_is_granted_without_yielding() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    coro = t.acquire("order.query", Priority.QUERY)
    with pytest.raises(StopIteration):
        coro.send(None)  # completed on the first step: it never suspended
    assert t.usage()["REQUEST_WEIGHT"] == (4, 6000)
    await t.acquire("free", Priority.QUERY)  # an endpoint that costs nothing anywhere


# -- server counters ------------------------------------------------------------------------


async def test_observe_adopts_higher_server_usage_but_never_lowers_ours() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    for _ in range(10):
        await t.acquire("order.cancel", Priority.CANCEL)
    t.observe("REQUEST_WEIGHT", 5990, clock.time_ns())  # another process shares our IP
    assert t.usage()["REQUEST_WEIGHT"] == (5990, 6000)
    t.observe("REQUEST_WEIGHT", 3, clock.time_ns())
    assert t.usage()["REQUEST_WEIGHT"] == (5990, 6000)
    await t.acquire("order.query", Priority.QUERY)
    assert t.usage()["REQUEST_WEIGHT"] == (5994, 6000)
    boundary = next_boundary(START, MINUTE)
    assert t.available_at("account.balances") == boundary
    await advance_to(clock, boundary)
    assert t.usage()["REQUEST_WEIGHT"] == (0, 6000)
    t.observe("NOT_A_POOL", 1, clock.time_ns())  # headers for limits we do not model


async def test_observe_adds_our_grants_after_the_counter_was_read() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    await t.acquire("order.query", Priority.QUERY)
    sent_at = clock.time_ns()
    await advance_to(clock, START + NS)
    for _ in range(5):
        await t.acquire("order.cancel", Priority.CANCEL)  # in flight when the reply comes
    t.observe("REQUEST_WEIGHT", 100, sent_at)
    assert t.usage()["REQUEST_WEIGHT"] == (105, 6000)


async def test_observe_respects_window_alignment() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    for _ in range(20):
        await t.acquire("order.cancel", Priority.CANCEL)
    sent_in_old_window = clock.time_ns()
    boundary = next_boundary(START, MINUTE)
    await advance_to(clock, boundary + NS)
    await t.acquire("order.cancel", Priority.CANCEL)
    # A reply to a request of the previous minute must not fill the new minute.
    t.observe("REQUEST_WEIGHT", 5000, sent_in_old_window)
    assert t.usage()["REQUEST_WEIGHT"] == (1, 6000)
    # The server's window rolled before ours (its clock is ahead): its count wins even
    # though it is below what we sent in our current window.
    for _ in range(30):
        await t.acquire("order.cancel", Priority.CANCEL)
    assert t.usage()["REQUEST_WEIGHT"] == (31, 6000)
    t.observe("REQUEST_WEIGHT", 2, boundary + MINUTE)
    assert t.usage()["REQUEST_WEIGHT"] == (2, 6000)


async def test_observed_usage_over_the_limit_waits_for_the_next_window() -> None:
    clock = FakeClock(START)
    t = binance(clock)
    t.observe("REQUEST_WEIGHT", 6100, clock.time_ns())
    boundary = next_boundary(START, MINUTE)
    assert t.available_at("order.cancel") == boundary
    rec = Recorder(t, clock)
    rec.start("c", "order.cancel", Priority.CANCEL)
    await advance_to(clock, boundary - 1)
    assert rec.done == []
    await advance_to(clock, boundary)
    assert rec.done == [("c", boundary)]


async def test_observe_rolling_charges_unknown_usage_at_the_report_time() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("REQ", 200, 60, kind="rolling")], {"one": {"REQ": 1}})
    for _ in range(10):
        await t.acquire("one", Priority.QUERY)
    await advance_to(clock, START + 5 * NS)
    t.observe("REQ", 150, clock.time_ns())
    assert t.usage()["REQ"] == (150, 200)
    for _ in range(50):
        await t.acquire("one", Priority.QUERY)
    # Our own 10 expire first; the 140 someone else used count until START + 65 s.
    assert t.available_at("one") == START + MINUTE
    await advance_to(clock, START + MINUTE)
    assert t.usage()["REQ"] == (190, 200)
    t.observe("REQ", 10, clock.time_ns())  # lower than what we know: ignored
    assert t.usage()["REQ"] == (190, 200)


async def test_observe_bucket_lowers_the_level() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("T", 10, 1, kind="bucket")], {"x": {"T": 1}})
    t.observe("T", 10, clock.time_ns())
    assert t.usage()["T"] == (10, 10)
    assert t.available_at("x") == START + NS // 10
    t.observe("T", 0, clock.time_ns())  # never raises our own estimate
    assert t.available_at("x") == START + NS // 10


# -- 429 and 418 ----------------------------------------------------------------------------


async def test_pause_holds_every_request_until_retry_after() -> None:
    clock = FakeClock(START)
    alerts: list[tuple[str, dict[str, object]]] = []
    t = binance(clock, alerts)
    t.pause(2.5)
    assert t.state == "paused"
    assert alerts == [
        (
            "rate_limited",
            {"venue": "binance", "retry_after_s": 2.5, "until_ns": START + 2_500_000_000},
        )
    ]
    assert t.available_at("free") == START + 2_500_000_000
    rec = Recorder(t, clock)
    rec.start("free", "free", Priority.CANCEL)
    rec.start("q", "order.query", Priority.QUERY)
    await advance_to(clock, START + 2_500_000_000 - 1)
    assert rec.done == []
    await advance_to(clock, START + 2_500_000_000)
    assert rec.done == [("free", START + 2_500_000_000), ("q", START + 2_500_000_000)]
    assert t.state == "ok"


async def test_pause_rejects_queued_orders_whose_deadline_it_passes() -> None:
    clock = FakeClock(START)
    t = small(clock, [RateLimit("W", 1, 1, kind="fixed")], {"s": {"W": 1}})
    await t.acquire("s", Priority.SUBMIT)
    b1 = next_boundary(START, NS)
    rec = Recorder(t, clock)
    rec.start("s", "s", Priority.SUBMIT, deadline_ns=b1 + NS)
    await settle()
    t.pause(30)
    await settle()
    assert rec.done == [("!s", START)]
    assert isinstance(rec.errors["s"], Throttled)


async def test_ban_latches_until_retry_after_then_recovers() -> None:
    clock = FakeClock(START)
    alerts: list[tuple[str, dict[str, object]]] = []
    t = binance(clock, alerts)
    for _ in range(6):
        await t.acquire("bulk", Priority.QUERY)
    rec = Recorder(t, clock)
    rec.start("queued", "order.cancel", Priority.CANCEL)
    await settle()
    t.ban(30)
    await settle()
    assert t.state == "banned"
    assert alerts == [
        ("banned", {"venue": "binance", "retry_after_s": 30, "until_ns": START + 30 * NS})
    ]
    assert rec.names == ["!queued"]  # a queued request does not sit out the ban in silence
    assert isinstance(rec.errors["queued"], Banned)
    with pytest.raises(Banned) as info:
        await t.acquire("free", Priority.CANCEL)
    assert info.value.retry_after == pytest.approx(30)
    await advance_to(clock, START + 10 * NS)
    t.pause(1)  # a 429 while banned does not lift the ban
    with pytest.raises(Banned) as info:
        await t.acquire("order.cancel", Priority.CANCEL)
    assert info.value.retry_after == pytest.approx(20)
    await advance_to(clock, START + 30 * NS - 1)
    assert t.state == "banned"
    await advance_to(clock, START + 30 * NS)
    assert t.state == "ok"
    await t.acquire("free", Priority.CANCEL)
    # The ban did not reset the weight we had used before it.
    assert t.available_at("order.cancel") == next_boundary(START, MINUTE)


async def test_ban_without_retry_after_lasts_two_minutes() -> None:
    clock = FakeClock(START)
    alerts: list[tuple[str, dict[str, object]]] = []
    t = binance(clock, alerts)
    t.ban(None)
    assert alerts[0][1]["until_ns"] == START + 120 * NS
    await advance_to(clock, START + 120 * NS - 1)
    with pytest.raises(Banned):
        await t.acquire("order.cancel", Priority.CANCEL)
    await advance_to(clock, START + 120 * NS)
    await t.acquire("order.cancel", Priority.CANCEL)


def test_a_failing_alert_hook_does_not_break_pause() -> None:
    def hook(kind: str, data: dict[str, object]) -> None:
        raise RuntimeError("pager down")

    t = Throttle("v", FakeClock(START), BINANCE_LIMITS, BINANCE_COSTS, on_alert=hook)
    t.pause(1)  # no running loop needed either
    t.ban(1)
    assert t.state == "banned"


# -- configuration --------------------------------------------------------------------------


async def test_unknown_endpoint_is_a_value_error() -> None:
    t = binance(FakeClock(START))
    with pytest.raises(ValueError, match="unknown endpoint"):
        await t.acquire("order.teleport", Priority.SUBMIT)
    with pytest.raises(ValueError, match="unknown endpoint"):
        t.available_at("order.teleport")


@pytest.mark.parametrize(
    ("limits", "costs", "match"),
    [
        ([RateLimit("W", 10, 1, kind="fixed")], {"e": {"X": 1}}, "unknown pool"),
        ([RateLimit("W", 10, 1, kind="fixed")], {"e": {"W": 11}}, "above its limit"),
        ([RateLimit("W", 10, 1, kind="fixed")], {"e": {"W": -1}}, "negative"),
        ([RateLimit("W", 10, 1, kind="leaky")], {}, "unknown kind"),
        ([RateLimit("W", 0, 1, kind="fixed")], {}, "positive"),
        ([RateLimit("W", 1, 1), RateLimit("W", 2, 1)], {}, "twice"),
    ],
)
def test_bad_limits_or_costs_are_value_errors(
    limits: list[RateLimit], costs: dict[str, dict[str, int]], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Throttle("v", FakeClock(START), limits, costs)


async def test_works_on_the_live_clock() -> None:
    t = Throttle("live", LiveClock(), [RateLimit("T", 100, 1, kind="bucket")], {"x": {"T": 50}})
    await t.acquire("x", Priority.QUERY)
    await t.acquire("x", Priority.QUERY)
    await asyncio.wait_for(t.acquire("x", Priority.QUERY), timeout=5)  # ~0.5 s of refill
    assert t.state == "ok"
