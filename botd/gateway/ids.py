"""Client order ids: ours, deterministic, and valid on every venue we target.

The id is ``bd`` + a session tag + a sequence number. The strictest venue we know allows 36
characters of ``[.A-Z:/a-z0-9_-]`` (Binance); ours use only lowercase letters and digits and
stay under 24 characters.
"""

from __future__ import annotations

import string

__all__ = ["ClientIdFactory", "session_tag"]

_ALPHABET = string.digits + string.ascii_lowercase


def _base36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def session_tag(start_ns: int) -> str:
    """A short tag that differs between daemon runs started at different milliseconds."""
    return _base36(start_ns // 1_000_000).rjust(9, "0")


class ClientIdFactory:
    def __init__(self, session: str, start: int = 0) -> None:
        self._session = session
        self._next = start

    def next(self) -> str:
        seq = self._next
        self._next += 1
        return f"bd{self._session}{_base36(seq).rjust(5, '0')}"
