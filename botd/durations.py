"""Human durations: ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``, or plain seconds."""

from __future__ import annotations

import re

__all__ = ["DurationError", "parse_duration", "timeframe_ns"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_TIMEFRAME = re.compile(r"^([1-9]\d{0,5})(s|m|h|d)$")


class DurationError(ValueError):
    pass


def parse_duration(value: str | float | int) -> float:
    """Seconds from a duration string or a number of seconds; must be positive."""
    if isinstance(value, bool):
        raise DurationError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _PATTERN.match(value)
        if match is None:
            raise DurationError(
                f"not a duration: {value!r} (expected e.g. '500ms', '30s', '5m', '1h', '1d')"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds > 0 or seconds == float("inf"):
        raise DurationError(f"a duration must be positive, got {value!r}")
    return seconds


def timeframe_ns(timeframe: str) -> int:
    """Bar length in ns from ``"1s"``, ``"5s"``, ``"1m"``, ``"15m"``, ``"1h"``, ``"1d"``."""
    match = _TIMEFRAME.match(timeframe)
    if match is None:
        raise DurationError(
            f"not a timeframe: {timeframe!r} (expected a whole number and s, m, h or d, e.g. '1m')"
        )
    return int(match.group(1)) * int(_UNITS[match.group(2)]) * 1_000_000_000
