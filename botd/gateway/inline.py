"""``asyncio.timeout`` only for a call that actually waits.

A timeout can only fire while the awaiting task is suspended. A venue call that answers without
ever suspending (the backtest's in-memory venue, every order of a run) needs no timer; arming
and cancelling one per order is a measurable share of a backtest's time. :func:`within` runs
the coroutine's first step at once: if it finishes there, its result (or exception) is the
answer; if it suspends, the rest of it runs under ``asyncio.timeout(seconds)`` exactly as an
``await`` inside ``async with asyncio.timeout(seconds)`` would (cancellation and exceptions are
passed into it, its result out of it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["within"]

T = TypeVar("T")


async def within(coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """``await coro`` under ``asyncio.timeout(seconds)``, without a timer if it never waits."""
    try:
        pending = coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    except BaseException:
        coro.close()
        raise
    async with asyncio.timeout(seconds):
        rest: T = await _Resumed(coro, pending)
    return rest


class _Resumed:
    """Awaits the rest of a coroutine that already ran up to its first suspension: the object
    it suspended on goes to the task first, then it is driven as ``yield from`` would."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        self._pending = None
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # CancelledError from the timeout or the caller
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return done.value
