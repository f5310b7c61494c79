"""Client order ids: ours, deterministic, unique across restarts, valid on every venue we target.

An id is ``bd`` + a strategy tag + ``-`` + a base-36 sequence number, e.g. ``bdpricet4k1-2s9``.
The tag is up to six characters of the strategy id plus three characters of its hash, so it is
readable and still tells apart ids that share a prefix. Sequence numbers come from a durable
counter in the journal, reserved in blocks, so no id is ever issued twice — not even after a
crash. The strictest venue we know allows 36 characters of ``[.A-Z:/a-z0-9_-]`` (Binance);
ours use lowercase letters, digits and one ``-``, and stay under 24 characters.
"""

from __future__ import annotations

import hashlib
import re
import string

__all__ = ["PREFIX", "ClientIdFactory", "IdsExhausted", "is_ours"]

PREFIX = "bd"
_ALPHABET = string.digits + string.ascii_lowercase
_OURS = re.compile(r"^bd[a-z0-9]{3,9}-[a-z0-9]{1,12}$")


class IdsExhausted(RuntimeError):
    pass


def _base36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def strategy_tag(strategy_id: str) -> str:
    readable = re.sub(r"[^a-z0-9]", "", strategy_id.lower())[:6]
    digest = int.from_bytes(hashlib.sha256(strategy_id.encode()).digest()[:4], "big")
    return readable + _base36(digest % 36**3).rjust(3, "0")


def is_ours(client_order_id: str) -> bool:
    """Whether an id has the shape of ours (an order placed by hand on the venue does not)."""
    return bool(_OURS.match(client_order_id))


class ClientIdFactory:
    """Hands out ids from reserved blocks of sequence numbers.

    ``next`` is synchronous (a strategy gets its id at once); the owner refills blocks
    asynchronously when ``remaining`` runs low.
    """

    def __init__(self, first: int = 0, limit: int | None = None) -> None:
        self._blocks: list[tuple[int, int | None]] = [(first, limit)]
        self._tags: dict[str, str] = {}

    @property
    def remaining(self) -> int | None:
        total = 0
        for first, limit in self._blocks:
            if limit is None:
                return None
            total += limit - first
        return total

    def add_block(self, first: int, limit: int) -> None:
        self._blocks.append((first, limit))

    def next(self, strategy_id: str) -> str:
        while self._blocks:
            first, limit = self._blocks[0]
            if limit is None or first < limit:
                self._blocks[0] = (first + 1, limit)
                tag = self._tags.get(strategy_id)
                if tag is None:
                    tag = self._tags[strategy_id] = strategy_tag(strategy_id)
                return f"{PREFIX}{tag}-{_base36(first)}"
            self._blocks.pop(0)
        raise IdsExhausted("no reserved client order ids left; the journal could not reserve more")
