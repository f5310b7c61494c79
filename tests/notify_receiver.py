"""A local stand-in for a webhook receiver and the Telegram Bot API, for notification tests.

Real aiohttp server on 127.0.0.1. Answers are scripted per request (status, JSON, headers);
every request is recorded with its exact body and headers.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    payload: Any = field(default_factory=lambda: {"ok": True, "result": {}})
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Answer] = deque()
        self.gate: asyncio.Event | None = None  # when set to an unset Event, requests wait
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        answer = self.script.popleft() if self.script else Answer()
        return web.json_response(answer.payload, status=answer.status, headers=answer.headers)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()


@contextmanager
def threaded_receiver() -> Iterator[Receiver]:
    """A Receiver on its own event loop in a thread, for tests that block (subprocesses)."""
    loop = asyncio.new_event_loop()
    receiver: Receiver | None = None
    started = threading.Event()

    def run() -> None:
        nonlocal receiver
        asyncio.set_event_loop(loop)
        receiver = Receiver()
        loop.run_until_complete(receiver.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    assert receiver is not None
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
