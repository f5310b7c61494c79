"""Edge-triggered rules: ``self.when(condition, action)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from botd.clock import NS_PER_SECOND

__all__ = ["WhenRule", "crosses_above", "crosses_below"]


@dataclass(eq=False, slots=True)
class WhenRule:
    condition: Callable[[], object]
    action: Callable[[], object]
    once: bool = False
    cooldown_s: float | None = None
    name: str = ""
    was_true: bool = False
    fired: int = 0
    last_fired_ns: int | None = None

    def check(self, now_ns: int) -> bool:
        """Evaluate the condition; True when the action should run now.

        The edge is consumed even when cooldown or ``once`` suppress the action, so a condition
        that stays true never fires late.
        """
        is_true = bool(self.condition())
        rising = is_true and not self.was_true
        self.was_true = is_true
        if not rising:
            return False
        if self.once and self.fired:
            return False
        if (
            self.cooldown_s is not None
            and self.last_fired_ns is not None
            and now_ns - self.last_fired_ns < self.cooldown_s * NS_PER_SECOND
        ):
            return False
        self.fired += 1
        self.last_fired_ns = now_ns
        return True


class _Cross:
    """Remembers the previous pair of values of one call site."""

    __slots__ = ("prev",)

    def __init__(self) -> None:
        self.prev: tuple[float, float] | None = None


def _cross(
    a: Callable[[], float | None], b: Callable[[], float | None], above: bool
) -> Callable[[], bool]:
    state = _Cross()

    def check() -> bool:
        x, y = a(), b()
        if x is None or y is None:
            state.prev = None
            return False
        prev, state.prev = state.prev, (float(x), float(y))
        if prev is None:
            return False
        px, py = prev
        if above:
            return px <= py and x > y
        return px >= py and x < y

    return check


def crosses_above(
    a: Callable[[], float | None], b: Callable[[], float | None]
) -> Callable[[], bool]:
    """A condition that is true on the evaluation where ``a()`` rises through ``b()``."""
    return _cross(a, b, above=True)


def crosses_below(
    a: Callable[[], float | None], b: Callable[[], float | None]
) -> Callable[[], bool]:
    """A condition that is true on the evaluation where ``a()`` falls through ``b()``."""
    return _cross(a, b, above=False)
