"""SimClock: the replay feed moves time; sleepers wake in deadline order, never early."""

from __future__ import annotations

import asyncio

from botd.clock import NS_PER_SECOND, SimClock


async def test_time_moves_only_forward_and_wakes_sleepers_in_order() -> None:
    clock = SimClock(1_000 * NS_PER_SECOND)
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.time_ns()))

    tasks = [asyncio.create_task(sleeper("b", 2.0)), asyncio.create_task(sleeper("a", 1.0))]
    await asyncio.sleep(0)
    start = 1_000 * NS_PER_SECOND
    assert not clock.due(start + NS_PER_SECOND - 1)
    clock.set(start + NS_PER_SECOND - 1)
    assert woke == []
    assert clock.due(start + NS_PER_SECOND)
    await clock.advance_to(start + 5 * NS_PER_SECOND)
    assert woke == [("a", start + NS_PER_SECOND), ("b", start + 2 * NS_PER_SECOND)]
    assert clock.time_ns() == start + 5 * NS_PER_SECOND
    clock.set(start)  # never backwards
    assert clock.time_ns() == start + 5 * NS_PER_SECOND
    await asyncio.gather(*tasks)
