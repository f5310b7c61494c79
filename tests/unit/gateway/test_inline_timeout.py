"""``within``: the gateway's submit timeout, armed only for a venue call that waits. It must
behave as ``async with asyncio.timeout(...)`` around the ``await``: results, exceptions,
timeouts and cancellation all pass through, on a real event loop."""

from __future__ import annotations

import asyncio

import pytest

from botd.errors import OrderRejected
from botd.gateway.inline import within


async def _immediate(value: int) -> int:
    return value


async def _refused() -> int:
    raise OrderRejected("no", "CODE")


async def _waits(seconds: float, value: int) -> int:
    await asyncio.sleep(seconds)
    await asyncio.sleep(0)  # suspends more than once
    return value


async def _waits_then_fails() -> int:
    await asyncio.sleep(0)
    raise OrderRejected("late refusal", "LATE")


async def test_a_call_that_never_waits_arms_no_timer() -> None:
    loop = asyncio.get_running_loop()
    before = len(getattr(loop, "_scheduled", []))
    assert await within(_immediate(7), 0.01) == 7
    assert len(getattr(loop, "_scheduled", [])) == before
    with pytest.raises(OrderRejected, match="no"):
        await within(_refused(), 0.01)


async def test_a_call_that_waits_returns_or_raises_as_awaited() -> None:
    assert await within(_waits(0.001, 5), 1.0) == 5
    with pytest.raises(OrderRejected, match="late refusal"):
        await within(_waits_then_fails(), 1.0)


async def test_a_call_that_waits_too_long_times_out_and_is_cancelled() -> None:
    cleaned: list[str] = []

    async def hangs() -> int:
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(10)
        finally:
            cleaned.append("finally")
        return 1

    with pytest.raises(TimeoutError):
        await within(hangs(), 0.02)
    assert cleaned == ["finally"]


async def test_cancelling_the_caller_cancels_the_call() -> None:
    seen: list[str] = []

    async def venue_call() -> int:
        await asyncio.sleep(0)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return 1

    task = asyncio.create_task(within(venue_call(), 5.0))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_a_call_may_catch_the_timeout_and_answer() -> None:
    """As inside ``asyncio.timeout``: the callee sees the cancellation and may still return;
    the timeout then reports the expiry, exactly as the plain form does."""

    async def stubborn() -> int:
        await asyncio.sleep(0)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return 9
        return 1

    async def plain() -> int:
        async with asyncio.timeout(0.02):
            return await stubborn()

    plain_outcome: object
    try:
        plain_outcome = await plain()
    except TimeoutError:
        plain_outcome = TimeoutError
    ours: object
    try:
        ours = await within(stubborn(), 0.02)
    except TimeoutError:
        ours = TimeoutError
    assert ours == plain_outcome
