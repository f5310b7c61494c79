"""A started Alpaca simulator on a fake clock, and a plain aiohttp client that speaks to it.

Times are given in New York local time; the simulator does not step by itself here
(``step_rate=None``): :meth:`Harness.advance` moves the clock and steps the market once.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from multidict import CIMultiDict

from botd.clock import NS_PER_SECOND, FakeClock
from botd.venues.sim.alpaca import AlpacaSimulator

KEY = "test-key-1"
SECRET = "test-secret-1"
OTHER_KEY = "test-key-2"
OTHER_SECRET = "test-secret-2"
AUTH = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
ET = ZoneInfo("America/New_York")


def et_ns(text: str) -> int:
    local = dt.datetime.fromisoformat(text).replace(tzinfo=ET)
    return int(local.timestamp()) * NS_PER_SECOND


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDict[str]


@dataclass
class Harness:
    sim: AlpacaSimulator
    clock: FakeClock
    session: aiohttp.ClientSession
    port: int
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def req(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        async with self.session.request(
            method, self.base + path, json=body, headers=AUTH if headers is None else headers
        ) as r:
            text = await r.text()
            return Reply(r.status, None if not text else await r.json(), r.headers.copy())

    async def order(self, **fields: Any) -> Reply:
        body = {"side": "buy", "type": "market", "time_in_force": "day", **fields}
        return await self.req("POST", "/v2/orders", body)

    async def advance(self, seconds: float, steps: int = 1) -> None:
        for _ in range(steps):
            await self.clock.advance(seconds / steps)
            self.sim.step()

    async def goto(self, et_text: str) -> None:
        """Jump to a New York time (forward only) and step once there."""
        target = et_ns(et_text)
        await self.clock.advance((target - self.clock.time_ns()) / NS_PER_SECOND)
        self.sim.step()

    async def ws(self, path: str, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
        ws: aiohttp.ClientWebSocketResponse = await self.session.ws_connect(
            self.base + path, **kwargs
        )
        self.closers.append(ws.close)
        return ws


def _is_loopback(host: object) -> bool:
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to resolve or reach a host other than loopback."""
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise OSError(f"test tried to reach {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture
async def alpaca() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    made: list[Harness] = []

    async def make(start: str, **kwargs: Any) -> Harness:
        clock = FakeClock(et_ns(start))
        options: dict[str, Any] = {
            "clock": clock,
            "seed": 11,
            "api_keys": {KEY: SECRET, OTHER_KEY: OTHER_SECRET},
            "step_rate": None,
            **kwargs,
        }
        sim = AlpacaSimulator(**options)
        port = await sim.start()
        session = aiohttp.ClientSession()
        h = Harness(sim, clock, session, port)
        made.append(h)
        await h.advance(0.5, steps=5)  # a few steps: books, last prices
        return h

    yield make
    for h in made:
        for close in h.closers:
            await close()
        await h.session.close()
        await h.sim.stop()
