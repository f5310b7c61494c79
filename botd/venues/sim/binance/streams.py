"""Binance market-data WebSocket streams for the simulator (WIRE_FACTS §1.5).

Raw ``/ws/<stream>`` (bare events), combined ``/stream?streams=a/b`` (``{"stream","data"}``
envelopes), and the live ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/
``GET_PROPERTY`` requests. The server calls :meth:`StreamHub.publish` after every change of a
symbol's book, with the REST ``lastUpdateId`` the change produced, so the diff stream's ``U``/``u``
follow the same counter as ``GET /api/v3/depth`` and the documented snapshot + diff sync works.

Publishing never waits: each connection has a bounded queue drained by its own writer task;
a connection whose queue overflows is closed (1008, "slow consumer"), as the exchange does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import WSCloseCode, WSMsgType, web

from botd.model import BookLevel, Side, Trade

__all__ = ["StreamConfig", "StreamHub"]

_STREAM_RE = re.compile(r"^([a-z0-9]+)@(bookTicker|trade|depth(5|10|20)?(@100ms)?)$")
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_MAX_STREAMS = 1024
_INT64_MAX = 2**63 - 1

Levels = tuple[list[BookLevel], list[BookLevel]]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """``heartbeat``: seconds between server ping frames (a client that does not answer
    within half of it is dropped — aiohttp's rule); ``queue_size``: events buffered per
    connection before it counts as a slow consumer; ``depth_levels``: how many levels per
    side the diff stream covers (a level leaving that window is sent with quantity 0)."""

    heartbeat: float = 20.0
    queue_size: int = 1000
    depth_levels: int = 1000


def _fmt(value: Decimal) -> str:
    return f"{value:.8f}"


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _Conn:
    def __init__(self, ws: web.WebSocketResponse, combined: bool, queue_size: int) -> None:
        self.ws = ws
        self.combined = combined
        self.streams: dict[str, None] = {}  # insertion-ordered set
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[bool] | None = None


@dataclass(slots=True)
class _DepthShadow:
    """What the diff-stream subscribers of a symbol last saw, and its update id."""

    update_id: int
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class StreamHub:
    """``symbols`` are the venue's (uppercase) names; ``depth(symbol, n)`` reads the book and
    ``update_id(symbol)`` the REST ``lastUpdateId``; ``now_ms`` is the injected clock."""

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        depth: Callable[[str, int], Levels],
        update_id: Callable[[str], int],
        now_ms: Callable[[], int],
        config: StreamConfig | None = None,
    ) -> None:
        self._symbols = {s.lower(): s for s in symbols}
        self._depth = depth
        self._update_id = update_id
        self._now_ms = now_ms
        self._cfg = config or StreamConfig()
        self._subs: dict[str, set[_Conn]] = {}
        self._conns: set[_Conn] = set()
        self._shadows: dict[str, _DepthShadow] = {}
        self._tops: dict[str, tuple[BookLevel | None, BookLevel | None]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._raw)
        app.router.add_get("/ws/{stream}", self._raw)
        app.router.add_get("/stream", self._combined)
        app.on_shutdown.append(self._on_shutdown)

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- connections --------------------------------------------------------------------------

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        stream = request.match_info.get("stream", "")
        return await self._serve(request, [stream] if stream else [], combined=False)

    async def _combined(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("streams", "")
        return await self._serve(request, [s for s in raw.split("/") if s], combined=True)

    async def _serve(
        self, request: web.Request, streams: Sequence[str], *, combined: bool
    ) -> web.StreamResponse:
        for name in streams:
            if self._parse(name) is None:
                return web.json_response(
                    {"code": -1121, "msg": f"Invalid stream name: {name}"}, status=400
                )
        if len(streams) > _MAX_STREAMS:
            return web.json_response({"code": -1, "msg": "Too many streams."}, status=400)
        ws = web.WebSocketResponse(heartbeat=self._cfg.heartbeat)
        await ws.prepare(request)
        conn = _Conn(ws, combined, self._cfg.queue_size)
        self._conns.add(conn)
        conn.writer = asyncio.create_task(self._write(conn))
        try:
            for name in streams:
                self._subscribe(conn, name)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    reply = self._handle(conn, msg.data)
                    if reply is not None:
                        self._enqueue(conn, reply)
                elif msg.type is WSMsgType.BINARY:
                    self._enqueue(
                        conn, _dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
                    )
        finally:
            self._drop(conn)
            conn.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.writer
            if conn.closer is not None:
                with contextlib.suppress(Exception):
                    await conn.closer
        return ws

    async def _write(self, conn: _Conn) -> None:
        while True:
            text = await conn.queue.get()
            try:
                await conn.ws.send_str(text)
            except ConnectionError:
                return

    def _enqueue(self, conn: _Conn, text: str) -> None:
        if conn.overflowed:
            return
        try:
            conn.queue.put_nowait(text)
        except asyncio.QueueFull:
            conn.overflowed = True
            self._drop(conn)
            conn.closer = asyncio.get_running_loop().create_task(
                conn.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow consumer")
            )

    def _drop(self, conn: _Conn) -> None:
        for name in list(conn.streams):
            self._unsubscribe(conn, name)
        self._conns.discard(conn)

    async def _on_shutdown(self, _app: web.Application) -> None:
        for conn in list(self._conns):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # -- subscriptions ------------------------------------------------------------------------

    def _parse(self, name: str) -> tuple[str, str] | None:
        """(venue symbol, stream kind after the '@') of a stream name we serve."""
        m = _STREAM_RE.match(name)
        if m is None or m.group(1) not in self._symbols:
            return None
        return self._symbols[m.group(1)], m.group(2)

    def _subscribe(self, conn: _Conn, name: str) -> None:
        if name in conn.streams:
            return
        parsed = self._parse(name)
        assert parsed is not None
        symbol, kind = parsed
        if kind in ("depth", "depth@100ms") and symbol not in self._shadows:
            bids, asks = self._depth(symbol, self._cfg.depth_levels)
            self._shadows[symbol] = _DepthShadow(
                self._update_id(symbol),
                {b.price: b.size for b in bids},
                {a.price: a.size for a in asks},
            )
        conn.streams[name] = None
        self._subs.setdefault(name, set()).add(conn)

    def _unsubscribe(self, conn: _Conn, name: str) -> None:
        conn.streams.pop(name, None)
        subs = self._subs.get(name)
        if subs is None:
            return
        subs.discard(conn)
        if subs:
            return
        del self._subs[name]
        parsed = self._parse(name)
        if parsed is not None and not self._wants_diffs(parsed[0]):
            self._shadows.pop(parsed[0], None)

    def _wants_diffs(self, symbol: str) -> bool:
        low = symbol.lower()
        return f"{low}@depth" in self._subs or f"{low}@depth@100ms" in self._subs

    def _handle(self, conn: _Conn, text: str) -> str | None:
        req_id: object = None
        try:
            try:
                req = json.loads(text)
            except ValueError:
                raise _BadRequest(3, "Invalid JSON: expected value") from None
            if not isinstance(req, dict):
                raise _BadRequest(3, "Invalid JSON: expected an object")
            req_id = req.get("id")
            if not _valid_id(req_id):
                req_id = None
                raise _BadRequest(2, "Invalid request: request ID must be an unsigned integer")
            method = req.get("method")
            if method is None:
                raise _BadRequest(2, "Invalid request: missing field `method`")
            if method not in _METHODS:
                expected = ", ".join(f"`{m}`" for m in _METHODS)
                raise _BadRequest(
                    2, f"Invalid request: unknown variant `{method}`, expected one of {expected}"
                )
            params = req.get("params", [])
            if not isinstance(params, list):
                raise _BadRequest(2, "Invalid request: params must be an array")
            result = self._run(conn, str(method), params)
        except _BadRequest as e:
            return _dumps({"error": {"code": e.code, "msg": e.msg}, "id": req_id})
        return _dumps({"result": result, "id": req_id})

    def _run(self, conn: _Conn, method: str, params: list[object]) -> object:
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            names: list[str] = []
            for p in params:
                if not isinstance(p, str) or self._parse(p) is None:
                    raise _BadRequest(2, f"Invalid request: invalid stream name `{p}`")
                names.append(p)
            if method == "SUBSCRIBE":
                if len(dict.fromkeys([*conn.streams, *names])) > _MAX_STREAMS:
                    raise _BadRequest(2, "Invalid request: too many streams")
                for n in names:
                    self._subscribe(conn, n)
            else:
                for n in names:
                    self._unsubscribe(conn, n)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            return list(conn.streams)
        if not params or not isinstance(params[0], str):
            raise _BadRequest(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise _BadRequest(0, "Unknown property")
        if method == "GET_PROPERTY":
            return conn.combined
        if len(params) != 2 or not isinstance(params[1], bool):
            raise _BadRequest(1, "Invalid value type: expected Boolean")
        conn.combined = params[1]
        return None

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, symbol: str, trades: Sequence[Trade], *, quote: bool) -> None:
        """Send what changed in ``symbol`` since the last call: its public ``trades``, the
        new top of book (always when ``quote``, else only if it moved), partial-depth
        snapshots and the depth diff. Call it after the REST update id has moved."""
        if not self._subs:
            return
        low = symbol.lower()
        now_ms = self._now_ms()
        uid = self._update_id(symbol)
        name = f"{low}@trade"
        if name in self._subs:
            for t in trades:
                self._send(
                    name,
                    {
                        "e": "trade",
                        "E": now_ms,
                        "s": symbol,
                        "t": int(t.trade_id),
                        "p": _fmt(t.price),
                        "q": _fmt(t.size),
                        "T": t.ts_event // 1_000_000,
                        # The buyer is the maker when the aggressor sold.
                        "m": t.side is Side.SELL,
                        "M": True,
                    },
                )
        name = f"{low}@bookTicker"
        if name in self._subs:
            bids, asks = self._depth(symbol, 1)
            top = (bids[0] if bids else None, asks[0] if asks else None)
            if quote or self._tops.get(symbol) != top:
                self._tops[symbol] = top
                bid, ask = top
                self._send(
                    name,
                    {
                        "u": uid,
                        "s": symbol,
                        "b": _fmt(bid.price if bid else Decimal(0)),
                        "B": _fmt(bid.size if bid else Decimal(0)),
                        "a": _fmt(ask.price if ask else Decimal(0)),
                        "A": _fmt(ask.size if ask else Decimal(0)),
                    },
                )
        for levels in (5, 10, 20):
            names = (f"{low}@depth{levels}", f"{low}@depth{levels}@100ms")
            if any(n in self._subs for n in names):
                bids, asks = self._depth(symbol, levels)
                data = {
                    "lastUpdateId": uid,
                    "bids": [[_fmt(b.price), _fmt(b.size)] for b in bids],
                    "asks": [[_fmt(a.price), _fmt(a.size)] for a in asks],
                }
                for n in names:
                    self._send(n, data)
        shadow = self._shadows.get(symbol)
        if shadow is not None:
            self._publish_diff(symbol, shadow, uid, now_ms)

    def _publish_diff(self, symbol: str, shadow: _DepthShadow, uid: int, now_ms: int) -> None:
        bids, asks = self._depth(symbol, self._cfg.depth_levels)
        new_bids = {b.price: b.size for b in bids}
        new_asks = {a.price: a.size for a in asks}
        b_diff = _diff(shadow.bids, new_bids)
        a_diff = _diff(shadow.asks, new_asks)
        if not b_diff and not a_diff:
            return  # nothing to say; the next event's U still starts after shadow.update_id
        data = {
            "e": "depthUpdate",
            "E": now_ms,
            "s": symbol,
            "U": shadow.update_id + 1,
            "u": uid,
            "b": b_diff,
            "a": a_diff,
        }
        shadow.update_id, shadow.bids, shadow.asks = uid, new_bids, new_asks
        low = symbol.lower()
        for n in (f"{low}@depth", f"{low}@depth@100ms"):
            self._send(n, data)

    def _send(self, name: str, data: object) -> None:
        subs = self._subs.get(name)
        if not subs:
            return
        raw = _dumps(data)
        wrapped = f'{{"stream":{_dumps(name)},"data":{raw}}}'
        for conn in list(subs):
            self._enqueue(conn, wrapped if conn.combined else raw)


def _valid_id(value: object) -> bool:
    """int64, an alphanumeric string of at most 36 characters, or null."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64_MAX - 1 <= value <= _INT64_MAX
    return isinstance(value, str) and _ID_RE.match(value) is not None


def _diff(old: dict[Decimal, Decimal], new: dict[Decimal, Decimal]) -> list[list[str]]:
    out = [[_fmt(p), _fmt(q)] for p, q in new.items() if old.get(p) != q]
    out.extend([_fmt(p), _fmt(Decimal(0))] for p in old if p not in new)
    return out
