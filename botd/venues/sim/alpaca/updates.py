"""The ``trade_updates`` stream on the trading host's ``/stream`` (WIRE_FACTS §2.5).

The client authenticates with ``{"action":"authenticate","data":{"key_id","secret_key"}}``
(what alpaca-py sends) or ``{"action":"auth","key","secret"}``, then listens with
``{"action":"listen","data":{"streams":["trade_updates"]}}``. Like the paper host, every
server frame is binary (JSON in bytes).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from botd.venues.sim.alpaca.wire import dumps
from botd.venues.sim.alpaca.wsconn import WsConn

__all__ = ["TradeUpdatesHub"]

_STREAMS = ("trade_updates",)


@dataclass(eq=False)
class _Conn:
    io: WsConn
    key: str | None = None
    listening: bool = False


def _frame(obj: object) -> bytes:
    return dumps(obj).encode()


class TradeUpdatesHub:
    def __init__(self, keys: Mapping[str, str], queue_size: int = 1000) -> None:
        self._keys = keys
        self._queue_size = queue_size
        self._conns: set[_Conn] = set()
        self.malformed = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/stream", self._serve)
        app.on_shutdown.append(self._on_shutdown)

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def listeners(self) -> int:
        return sum(1 for c in self._conns if c.listening)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = _Conn(WsConn(ws, self._queue_size))
        self._conns.add(conn)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._handle(conn, msg.data)
        finally:
            self._conns.discard(conn)
            await conn.io.finish()
        return ws

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.drop_all()

    async def drop_all(self) -> None:
        """Close every connection, as the venue does on a restart."""
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.io.ws.close()

    def _send(self, conn: _Conn, obj: object) -> None:
        conn.io.send(_frame(obj))

    def _handle(self, conn: _Conn, data: str | bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self.malformed += 1
            self._send(conn, {"stream": "error", "data": {"error_message": "invalid syntax"}})
            return
        action = msg.get("action")
        data_ = msg.get("data") if isinstance(msg.get("data"), dict) else {}
        assert isinstance(data_, dict)
        if action in ("authenticate", "auth"):
            key = str(data_.get("key_id", msg.get("key", "")))
            secret = str(data_.get("secret_key", msg.get("secret", "")))
            ok = bool(key) and self._keys.get(key) == secret
            reply = {
                "stream": "authorization",
                "data": {
                    "action": "authenticate",
                    "status": "authorized" if ok else "unauthorized",
                },
            }
            if ok:
                conn.key = key
                self._send(conn, reply)
            else:
                conn.io.close_after(_frame(reply))
        elif action == "listen":
            if conn.key is None:
                reply = {
                    "stream": "authorization",
                    "data": {"action": "listen", "status": "unauthorized"},
                }
                self._send(conn, reply)
                return
            streams = data_.get("streams")
            wanted = [s for s in streams if s in _STREAMS] if isinstance(streams, list) else []
            conn.listening = "trade_updates" in wanted
            self._send(conn, {"stream": "listening", "data": {"streams": wanted}})
        else:
            self.malformed += 1
            self._send(conn, {"stream": "error", "data": {"error_message": "invalid action"}})

    def publish(self, key: str, data: dict[str, Any]) -> None:
        frame: bytes | None = None
        for conn in self._conns:
            if conn.key == key and conn.listening and not conn.io.closing:
                frame = frame or _frame({"stream": "trade_updates", "data": data})
                conn.io.send(frame)
