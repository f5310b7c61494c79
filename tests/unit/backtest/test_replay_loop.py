"""The backtest's event loop: asyncio's scheduling, an ``idle`` test, and no lost wake-ups from
other threads although most turns skip the ``select`` call."""

from __future__ import annotations

import asyncio
import threading
import time

from botd.backtest.loop import ReplayLoop


def _run(coro_fn: object) -> object:
    with asyncio.Runner(loop_factory=ReplayLoop) as runner:
        return runner.run(coro_fn())  # type: ignore[operator]


def test_idle_is_true_only_when_no_callback_is_ready() -> None:
    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, ReplayLoop)
        seen = [loop.idle()]  # nothing else scheduled
        event = asyncio.Event()
        waiter = asyncio.create_task(event.wait())
        seen.append(loop.idle())  # the new task's first step is ready
        await asyncio.sleep(0)
        seen.append(loop.idle())  # it now waits on the event: nothing can run
        event.set()
        seen.append(loop.idle())  # its wake-up is ready
        await waiter
        return seen

    assert _run(main) == [True, False, True, False]


def test_order_of_callbacks_is_asyncio_s() -> None:
    async def main() -> list[str]:
        order: list[str] = []

        async def worker(name: str) -> None:
            for i in range(3):
                order.append(f"{name}{i}")
                await asyncio.sleep(0)

        await asyncio.gather(worker("a"), worker("b"))
        return order

    with asyncio.Runner() as runner:
        expected = runner.run(main())
    assert _run(main) == expected


def test_a_thread_s_callback_runs_while_the_loop_spins() -> None:
    """The loop never blocks here (every turn has work), so it polls only now and then; a
    callback from another thread must still run, and its wake-up byte be drained."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        threading.Thread(target=lambda: loop.call_soon_threadsafe(done.set)).start()
        turns = 0
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)
            assert turns < 1_000_000
        return turns

    assert isinstance(_run(main), int)


def test_waiting_for_a_thread_blocks_in_select_and_wakes() -> None:
    async def main() -> float:
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.05)
        return time.monotonic() - started

    elapsed = _run(main)
    assert isinstance(elapsed, float) and 0.04 <= elapsed < 5
