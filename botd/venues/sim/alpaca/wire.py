"""Alpaca's wire formats: RFC 3339 timestamps, decimal strings, UUIDs, JSON and msgpack."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from decimal import Decimal
from typing import Any

import msgpack  # type: ignore[import-untyped]

from botd.venues.sim.alpaca.hours import ET

__all__ = [
    "IdSource",
    "dec",
    "dumps",
    "encode_json",
    "loads_msgpack",
    "pack",
    "rfc3339",
    "rfc3339_et",
    "stamp",
]

_NS = 1_000_000_000


def rfc3339(ns: int) -> str:
    """UTC with nanoseconds, as Alpaca sends them: ``2024-01-03T15:15:37.123456789Z``."""
    seconds, frac = divmod(ns, _NS)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def rfc3339_et(ns: int, *, fraction: bool = True) -> str:
    """New York time with its offset, as ``/v2/clock`` sends it."""
    seconds, frac = divmod(ns, _NS)
    local = dt.datetime.fromtimestamp(seconds, ET)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    offset = local.strftime("%z")
    if fraction:
        text += f".{frac:09d}"
    return f"{text}{offset[:3]}:{offset[3:]}"


def dec(value: Decimal | None) -> str | None:
    """A decimal as a plain string without exponent or trailing zeros (None stays None)."""
    if value is None:
        return None
    if value == 0:
        return "0"
    text = f"{value.normalize():f}"
    return text


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _ext(obj: object) -> object:
    if isinstance(obj, _Time):
        return msgpack.Timestamp.from_unix_nano(obj.ns)
    raise TypeError(f"cannot pack {type(obj).__name__}")


class _Time:
    """A timestamp that renders per encoding: RFC 3339 in JSON, the msgpack Timestamp
    extension (type -1) in msgpack, which is what alpaca-py's ``to_datetime()`` needs."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


def stamp(ns: int) -> _Time:
    return _Time(ns)


def _to_json(obj: object) -> Any:
    if isinstance(obj, _Time):
        return rfc3339(obj.ns)
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_json(v) for v in obj]
    return obj


def encode_json(obj: object) -> str:
    return dumps(_to_json(obj))


def pack(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, default=_ext)
    return data


def loads_msgpack(data: bytes) -> Any:
    return msgpack.unpackb(data, timestamp=3)


class IdSource:
    """UUID v4 values from a seeded generator: the same seed and requests give the same ids."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"alpaca-ids-{seed}")

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
