"""One server-side WebSocket connection with a bounded outgoing queue and its writer task.

Publishing never waits: frames go into the queue and a writer task sends them. A connection
whose queue overflows is told so (by the caller's ``overflow`` frame) and closed.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSCloseCode, web

__all__ = ["WsConn"]

Frame = str | bytes


class WsConn:
    def __init__(self, ws: web.WebSocketResponse, queue_size: int) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=queue_size)
        self._closing = False
        self._writer = asyncio.get_running_loop().create_task(self._write())

    @property
    def closing(self) -> bool:
        return self._closing or self.ws.closed

    def send(self, frame: Frame, *, overflow: Frame | None = None) -> None:
        """Queue ``frame``; on overflow drop what is queued, send ``overflow`` and close."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self.close_after(overflow)

    def close_after(self, frame: Frame | None = None) -> None:
        """Send ``frame`` (if any) after what is already queued, then close."""
        if self.closing:
            return
        self._closing = True
        with contextlib.suppress(asyncio.QueueFull):
            if frame is not None:
                self._queue.put_nowait(frame)
        # The sentinel must get in even if the queue is full: make room for it.
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def _write(self) -> None:
        while True:
            frame = await self._queue.get()
            if frame is None:
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION)
                return
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    async def finish(self) -> None:
        """Stop the writer once the socket is done."""
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
