"""The event loop a backtest replays on: asyncio's own, minus work a replay never needs.

A replay lets the loop turn thousands of times a second of CPU (the gateway, the venue's report
stream and the balance refresh take turns after every order), yet has nothing to poll: the
venue answers in memory and time is simulated. So:

* a turn that must not block (``select(0)``) skips the system call, except every
  ``_POLL_EVERY``-th time, so that a byte written by another thread (``call_soon_threadsafe``,
  a signal) is still drained; any turn that may block polls as usual;
* :meth:`ReplayLoop.idle` tells the replay when no callback is ready, i.e. when nothing can
  move until the replay itself publishes the next event or moves the clock.

Scheduling order is asyncio's: the same callbacks run in the same turns as on the default loop.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Sized

__all__ = ["ReplayLoop"]

_POLL_EVERY = 64


class _ReplaySelector(selectors.DefaultSelector):
    """The platform's selector; a zero timeout polls only now and then."""

    def __init__(self) -> None:
        super().__init__()
        self._skipped = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            self._skipped += 1
            if self._skipped < _POLL_EVERY:
                return []
        self._skipped = 0
        return super().select(timeout)


class ReplayLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__(_ReplaySelector())
        # asyncio's queue of ready callbacks (an implementation detail of every Python this
        # project supports); without it, ``idle`` is never true and the replay falls back to
        # counting quiet turns.
        ready = getattr(self, "_ready", None)
        self._ready_queue: Sized | None = ready if isinstance(ready, Sized) else None

    def idle(self) -> bool:
        """True if no callback is ready to run: every task waits on something that only the
        replay (the next event, the clock) can bring."""
        ready = self._ready_queue
        return ready is not None and not ready
