"""The journal of a backtest: the gateway's write-ahead calls, kept in memory.

A backtest replays history; nothing it does must survive the process, and an fsync per order
would dominate its run time. The gateway still makes every call it makes live (it cannot tell
the difference), so its order lifecycle is the live one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botd.model import Fill, Order
from botd.store import Journal

__all__ = ["MemoryJournal"]


class MemoryJournal(Journal):
    """Accepts every write at once and keeps only counters."""

    keeps_events = False

    def __init__(self) -> None:  # no SQLite connections: the parent's state is not used
        self.orders_written = 0
        self.fills_written = 0
        self._sequences: dict[str, int] = {}

    @property
    def healthy(self) -> bool:
        return True

    @property
    def backlog(self) -> int:
        return 0

    async def close(self) -> None:
        return None

    async def write_order(self, order: Order) -> None:
        self.orders_written += 1

    async def write_fill(self, fill: Fill) -> bool:
        self.fills_written += 1
        return True

    async def next_sequence(self, name: str, count: int = 1) -> int:
        first = self._sequences.get(name, 0) + 1
        self._sequences[name] = first + count - 1
        return first

    async def flush(self) -> None:
        return None

    def update_order(self, order: Order) -> None:
        return None

    def append_event(self, kind: str, data: Mapping[str, Any], ts_ns: int | None = None) -> None:
        return None
