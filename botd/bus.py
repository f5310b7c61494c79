"""Typed publish/subscribe with synchronous fan-out on the event loop.

Subscriptions are keyed by event type (matching subclasses too) and optionally narrowed to one
venue and/or symbol. ``publish`` resolves the handler list once per (type, venue, symbol) and
caches it, so the hot path is one dict lookup and a loop over a tuple.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

__all__ = ["Bus", "Subscription"]

E = TypeVar("E")
Handler = Callable[[Any], None]
_Key = tuple[type, str | None, str | None]


@dataclass(frozen=True, slots=True, eq=False)
class Subscription:
    event_type: type
    handler: Handler
    venue: str | None
    symbol: str | None
    name: str

    def matches(self, event_type: type, venue: str | None, symbol: str | None) -> bool:
        return (
            issubclass(event_type, self.event_type)
            and (self.venue is None or self.venue == venue)
            and (self.symbol is None or self.symbol == symbol)
        )


class Bus:
    def __init__(self, log: structlog.typing.FilteringBoundLogger | None = None) -> None:
        self._subs: list[Subscription] = []
        self._cache: dict[_Key, tuple[Subscription, ...]] = {}
        self._log = log or structlog.get_logger("botd.bus")
        # Events published, by type (the metrics read it at scrape time).
        self.counts: Counter[type] = Counter()
        self.handler_errors: Counter[str] = Counter()

    def subscribe(
        self,
        event_type: type[E],
        handler: Callable[[E], None],
        *,
        venue: str | None = None,
        symbol: str | None = None,
        name: str | None = None,
    ) -> Subscription:
        sub = Subscription(
            event_type,
            handler,
            venue,
            symbol,
            name or str(getattr(handler, "__qualname__", repr(handler))),
        )
        self._subs.append(sub)
        self._cache.clear()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            return
        self._cache.clear()

    def publish(self, event: object) -> None:
        key = (type(event), getattr(event, "venue", None), getattr(event, "symbol", None))
        subs = self._cache.get(key)
        if subs is None:
            subs = tuple(s for s in self._subs if s.matches(*key))
            self._cache[key] = subs
        self.counts[key[0]] += 1
        for sub in subs:
            try:
                sub.handler(event)
            except Exception:
                # One broken subscriber must never starve the others.
                self.handler_errors[sub.name] += 1
                self._log.exception(
                    "bus handler failed",
                    handler=sub.name,
                    event_type=key[0].__name__,
                    failures=self.handler_errors[sub.name],
                )

    @property
    def published(self) -> int:
        return sum(self.counts.values())

    @property
    def subscriptions(self) -> int:
        return len(self._subs)
