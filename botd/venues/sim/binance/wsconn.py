"""Connection rules the simulator's market streams and WS API share (WIRE_FACTS §1.5, §1.6).

Both Binance servers ping every 20 s, cut a connection that answered no ping for a minute,
close every connection at 24 h and count connection attempts per IP (300 per 5 minutes).
:func:`keep_alive` runs the first three for one connection on the injected clock;
:class:`ConnectAttempts` is the per-IP attempt window, one instance shared by both servers so
that streams and WS API connections count against the same limit.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import WSCloseCode, web

from botd.clock import Clock

__all__ = ["ConnectAttempts", "Liveness", "keep_alive", "note_pong", "refuse_connection"]


class Liveness(Protocol):
    """What :func:`keep_alive` keeps about a connection (times on the monotonic ms clock):
    when it opened, the last pong that answered a ping, and the payloads of pings not
    answered yet."""

    opened_ms: int
    last_pong_ms: int
    pings: dict[bytes, None]


def note_pong(conn: Liveness, payload: bytes, now_ms: int) -> None:
    """A pong arrived: it keeps the connection alive only if it echoes a ping we sent
    (unsolicited pongs are allowed but do not count, WIRE_FACTS §1.5)."""
    if payload in conn.pings:
        conn.pings.clear()
        conn.last_pong_ms = now_ms


async def keep_alive(
    conn: Liveness,
    clock: Clock,
    *,
    mono_ms: Callable[[], int],
    ping_interval: float,
    pong_timeout: float,
    max_lifetime: float,
    closing: Callable[[], bool],
    stalled: Callable[[], bool],
    ping: Callable[[bytes], Awaitable[None]],
    close: Callable[[WSCloseCode, bytes], None],
) -> None:
    """Ping ``conn`` every ``ping_interval`` seconds, ``close`` it when no pong answered a ping
    for ``pong_timeout`` (1008 "pong timeout") or once it is ``max_lifetime`` old (1001
    "connection lifetime exceeded"); returns when it closes or ``closing()`` turns true.
    While ``stalled()`` the server neither pings nor times the connection out."""
    interval = max(1, int(ping_interval * 1000))
    next_ping = conn.opened_ms + interval
    end = conn.opened_ms + int(max_lifetime * 1000)
    while not closing():
        now = mono_ms()
        if now >= end:
            close(WSCloseCode.GOING_AWAY, b"connection lifetime exceeded")
            return
        is_stalled = stalled()
        if is_stalled:
            conn.last_pong_ms = now  # a stalled server neither pings nor times out
            conn.pings.clear()
        deadline = conn.last_pong_ms + int(pong_timeout * 1000)
        if now >= deadline:
            close(WSCloseCode.POLICY_VIOLATION, b"pong timeout")
            return
        if now >= next_ping:
            if not is_stalled:
                payload = str(now).encode()
                conn.pings[payload] = None
                with contextlib.suppress(ConnectionError):
                    await ping(payload)
            next_ping = now + interval
        wake = min(next_ping, deadline, end)
        await clock.sleep(max(wake - now, 1) / 1000)


class ConnectAttempts:
    """Connection attempts per IP in a sliding window of ``window_s`` seconds; at most
    ``limit`` are let through (attempts refused do not count)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self._window = int(window_s * 1000)
        self._seen: dict[str, deque[int]] = {}

    def admit(self, ip: str, now_ms: int) -> int | None:
        """Count an attempt from ``ip`` at ``now_ms``; ``None`` if allowed, else the seconds
        until one would be."""
        seen = self._seen.setdefault(ip, deque())
        while seen and seen[0] <= now_ms - self._window:
            seen.popleft()
        if len(seen) >= self.limit:
            return max(1, math.ceil((seen[0] + self._window - now_ms) / 1000))
        seen.append(now_ms)
        return None


def refuse_connection(limit: int, retry_s: int) -> web.Response:
    """The handshake answer beyond the attempt limit. Binance documents the limit, not the
    answer; a 429 with ``Retry-After`` is what its other rate limits give. [U]"""
    return web.json_response(
        {"code": -1003, "msg": f"Too many connection attempts; limit is {limit}."},
        status=429,
        headers={"Retry-After": str(retry_s)},
    )
