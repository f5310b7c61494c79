"""Alpaca's market-data WebSocket streams (WIRE_FACTS §2.4) for the simulator.

Endpoints: ``/v2/iex`` and ``/v2/sip`` (the listed equities), ``/v2/test`` (FAKEPACA, always
on) and ``/v1beta3/crypto/us``. Every server message is an array; control messages go one per
array, data of one market step goes in one array. A client that connects with
``Content-Type: application/msgpack`` (as alpaca-py does) talks msgpack both ways, with ``t``
as the msgpack Timestamp extension; anyone else gets JSON text.

Crypto order books: a subscriber first gets the whole book (``"r": true``, the top
``book_levels`` per side), then only the levels that changed, a removed level with ``s: 0``
(Alpaca does not document removals; this is the simulator's choice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from botd.clock import Clock
from botd.venues.sim.alpaca.wire import encode_json, loads_msgpack, pack, stamp
from botd.venues.sim.alpaca.wsconn import WsConn

__all__ = ["FEEDS", "DataStreamConfig", "DataStreamHub"]

# path -> the feed it carries (an asset's ``feed``)
FEEDS = {
    "/v2/iex": "stocks",
    "/v2/sip": "stocks",
    "/v2/test": "test",
    "/v1beta3/crypto/us": "crypto",
}
_STOCK_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
_CRYPTO_CHANNELS = ("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars")
_CHANNEL_OF = {"t": "trades", "q": "quotes", "b": "bars", "o": "orderbooks"}

Levels = dict[Decimal, Decimal]


@dataclass(frozen=True, slots=True)
class DataStreamConfig:
    """``auth_timeout``: seconds on the injected clock to authenticate (Alpaca: ~10);
    ``symbol_limit``: distinct symbols per connection over trades, quotes and bars (None: no
    limit; the free IEX plan allows 30); ``sip_keys``: keys allowed on ``/v2/sip`` (None:
    every key); ``queue_size``: frames buffered per connection before it is a slow client."""

    auth_timeout: float = 10.0
    symbol_limit: int | None = None
    sip_keys: frozenset[str] | None = None
    queue_size: int = 1000
    book_levels: int = 10


@dataclass(eq=False)
class _Conn:
    io: WsConn
    path: str
    feed: str
    binary: bool
    key: str | None = None
    subs: dict[str, dict[str, None]] = field(default_factory=dict)

    def encode(self, messages: list[dict[str, Any]]) -> str | bytes:
        return pack(messages) if self.binary else encode_json(messages)


def _control(**fields: object) -> list[dict[str, object]]:
    return [dict(fields)]


class DataStreamHub:
    def __init__(
        self, keys: Mapping[str, str], clock: Clock, config: DataStreamConfig | None = None
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._cfg = config or DataStreamConfig()
        self._conns: set[_Conn] = set()
        self._active: set[tuple[str, str]] = set()  # (key, path) with an authenticated conn
        self._books: dict[str, tuple[Levels, Levels]] = {}
        self._book_ns: dict[str, int] = {}
        self.malformed = 0

    def add_routes(self, app: web.Application) -> None:
        for path in FEEDS:
            app.router.add_get(path, self._serve)
        app.on_shutdown.append(self._on_shutdown)

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- connections --------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        binary = request.headers.get("Content-Type", "").startswith("application/msgpack")
        conn = _Conn(WsConn(ws, self._cfg.queue_size), request.path, FEEDS[request.path], binary)
        channels = _CRYPTO_CHANNELS if conn.feed == "crypto" else _STOCK_CHANNELS
        conn.subs = {c: {} for c in channels}
        self._conns.add(conn)
        self._reply(conn, _control(T="success", msg="connected"))
        timer: asyncio.Task[None] | None = None
        try:
            key = request.headers.get("APCA-API-KEY-ID")
            if key is not None:
                self._auth(conn, key, request.headers.get("APCA-API-SECRET-KEY", ""))
            if conn.key is None and not conn.io.closing:
                timer = asyncio.get_running_loop().create_task(self._auth_timeout(conn))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._handle(conn, msg.data, text=True)
                elif msg.type is WSMsgType.BINARY:
                    self._handle(conn, msg.data, text=False)
        finally:
            if timer is not None:
                timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer
            self._conns.discard(conn)
            if conn.key is not None:
                self._active.discard((conn.key, conn.path))
            await conn.io.finish()
        return ws

    async def _auth_timeout(self, conn: _Conn) -> None:
        await self._clock.sleep(self._cfg.auth_timeout)
        if conn.key is None:
            self._fatal(conn, 404, "auth timeout")

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.drop_all()

    async def drop_all(self) -> None:
        """Close every connection, as the venue does on a restart."""
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.io.ws.close()

    def _reply(self, conn: _Conn, messages: list[dict[str, object]]) -> None:
        conn.io.send(conn.encode(messages), overflow=self._slow(conn))

    def _error(self, conn: _Conn, code: int, msg: str) -> None:
        self._reply(conn, _control(T="error", code=code, msg=msg))

    def _fatal(self, conn: _Conn, code: int, msg: str) -> None:
        conn.io.close_after(conn.encode(_control(T="error", code=code, msg=msg)))

    def _slow(self, conn: _Conn) -> str | bytes:
        return conn.encode(_control(T="error", code=407, msg="slow client"))

    # -- client messages ----------------------------------------------------------------------

    def _handle(self, conn: _Conn, data: str | bytes, *, text: bool) -> None:
        try:
            msg = json.loads(data) if isinstance(data, str) else loads_msgpack(data)
        except Exception:
            msg = None
        if not isinstance(msg, dict):
            self.malformed += 1
            self._error(conn, 400, "invalid syntax")
            return
        action = msg.get("action")
        if action == "auth":
            if conn.key is not None:
                self._error(conn, 403, "already authenticated")
                return
            self._auth(conn, str(msg.get("key", "")), str(msg.get("secret", "")))
        elif action in ("subscribe", "unsubscribe"):
            if conn.key is None:
                self._error(conn, 401, "not authenticated")
                return
            self._subscribe(conn, msg, add=action == "subscribe")
        else:
            self.malformed += 1
            self._error(conn, 400, "invalid syntax")

    def _auth(self, conn: _Conn, key: str, secret: str) -> None:
        if self._keys.get(key) != secret or not key:
            self._fatal(conn, 402, "auth failed")
            return
        sip = self._cfg.sip_keys
        if conn.path == "/v2/sip" and sip is not None and key not in sip:
            self._fatal(conn, 409, "insufficient subscription")
            return
        if (key, conn.path) in self._active:
            self._fatal(conn, 406, "connection limit exceeded")
            return
        conn.key = key
        self._active.add((key, conn.path))
        self._reply(conn, _control(T="success", msg="authenticated"))

    def _subscribe(self, conn: _Conn, msg: dict[str, Any], *, add: bool) -> None:
        wanted: dict[str, list[str]] = {}
        raw: object
        for channel in conn.subs:
            raw = msg.get(channel)
            if raw is None:
                continue
            if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
                self.malformed += 1
                self._error(conn, 400, "invalid syntax")
                return
            wanted[channel] = raw
        after = {c: dict(s) for c, s in conn.subs.items()}
        for channel, symbols in wanted.items():
            for s in symbols:
                if add:
                    after[channel][s] = None
                else:
                    after[channel].pop(s, None)
        limit = self._cfg.symbol_limit
        if limit is not None:
            distinct = {
                s for c in ("trades", "quotes", "bars") for s in after.get(c, {}) if s != "*"
            }
            if len(distinct) > limit:
                self._error(conn, 405, "symbol limit exceeded")
                return
        new_books = [
            s for s in after.get("orderbooks", {}) if s not in conn.subs.get("orderbooks", {})
        ]
        conn.subs = after
        reply: dict[str, object] = {"T": "subscription"}
        for channel, names in after.items():
            reply[channel] = list(names)
        if conn.feed != "crypto":
            reply["corrections"] = list(after["trades"])
            reply["cancelErrors"] = list(after["trades"])
        self._reply(conn, [reply])
        for symbol in new_books:
            books = list(self._books) if symbol == "*" else [symbol]
            for name in books:
                snapshot = self._book_message(name, full=True)
                if snapshot is not None:
                    self._reply(conn, [snapshot])

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, feed: str, messages: Sequence[dict[str, Any]]) -> None:
        """Send each authenticated subscriber of ``feed`` the messages it subscribed to."""
        if not messages:
            return
        for conn in self._conns:
            if conn.feed != feed or conn.key is None or conn.io.closing:
                continue
            chosen = [m for m in messages if self._wants(conn, m)]
            if chosen:
                conn.io.send(conn.encode(chosen), overflow=self._slow(conn))

    @staticmethod
    def _wants(conn: _Conn, message: dict[str, Any]) -> bool:
        subs = conn.subs.get(_CHANNEL_OF.get(str(message.get("T")), ""), {})
        return "*" in subs or message.get("S") in subs

    def book(
        self,
        symbol: str,
        bids: Sequence[tuple[Decimal, Decimal]],
        asks: Sequence[tuple[Decimal, Decimal]],
        ts: int,
    ) -> dict[str, Any] | None:
        """Record the current top of ``symbol``'s book; the update message (changed levels
        only) if anything changed since the last call, else None."""
        new_bids, new_asks = dict(bids), dict(asks)
        old = self._books.get(symbol)
        self._books[symbol] = (new_bids, new_asks)
        self._book_ns[symbol] = ts
        if old is None:
            return self._book_message(symbol, full=True)
        b = _diff(old[0], new_bids)
        a = _diff(old[1], new_asks)
        if not b and not a:
            return None
        return {"T": "o", "S": symbol, "t": stamp(ts), "b": b, "a": a}

    def _book_message(self, symbol: str, *, full: bool) -> dict[str, Any] | None:
        book = self._books.get(symbol)
        if book is None:
            return None
        bids, asks = book
        return {
            "T": "o",
            "S": symbol,
            "t": stamp(self._book_ns[symbol]),
            "b": [{"p": float(p), "s": float(s)} for p, s in bids.items()],
            "a": [{"p": float(p), "s": float(s)} for p, s in asks.items()],
            "r": full,
        }


def _diff(old: Levels, new: Levels) -> list[dict[str, float]]:
    out = [{"p": float(p), "s": float(s)} for p, s in new.items() if old.get(p) != s]
    out += [{"p": float(p), "s": 0.0} for p in old if p not in new]
    return out
