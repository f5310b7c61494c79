import asyncio

from botd.clock import NS_PER_SECOND, FakeClock, LiveClock


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock(start_ns=0)
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.time_ns()))

    tasks = [asyncio.create_task(sleeper("late", 2)), asyncio.create_task(sleeper("early", 1))]
    await asyncio.sleep(0)
    assert clock.pending_sleepers == 2
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(2)
    await asyncio.gather(*tasks)
    assert woke == [("early", NS_PER_SECOND), ("late", 2 * NS_PER_SECOND)]
    assert clock.time_ns() == int(2.5 * NS_PER_SECOND)
    assert clock.monotonic_ns() == clock.time_ns()


async def test_fake_clock_repeated_sleeps_within_one_advance() -> None:
    clock = FakeClock(start_ns=0)
    ticks: list[int] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(0.1)
            ticks.append(clock.time_ns())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await clock.advance(1.0)
    task.cancel()
    assert len(ticks) == 10
    assert ticks[-1] == NS_PER_SECOND


async def test_live_clock_moves() -> None:
    clock = LiveClock()
    a = clock.monotonic_ns()
    await clock.sleep(0.01)
    assert clock.monotonic_ns() > a
    assert clock.time_ns() > 1_600_000_000 * NS_PER_SECOND
