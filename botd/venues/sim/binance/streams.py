"""Binance market-data WebSocket streams for the simulator (WIRE_FACTS §1.5).

Raw ``/ws/<stream>`` (bare events), combined ``/stream?streams=a/b`` (``{"stream","data"}``
envelopes), and the live ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/
``GET_PROPERTY`` requests. The server calls :meth:`StreamHub.publish` after every change of a
symbol's book, with the REST ``lastUpdateId`` the change produced, so the diff stream's ``U``/``u``
follow the same counter as ``GET /api/v3/depth`` and the documented snapshot + diff sync works.

Publishing never waits: each connection has a bounded queue drained by its own writer task;
a connection whose queue overflows is closed (1008, "slow consumer"), as the exchange does.

``<symbol>@aggTrade`` groups the trades of one taker order at one price; ``<symbol>@kline_<i>``
reads the server's :class:`~botd.venues.sim.binance.klines.KlineBook` (the bars REST serves)
and pushes the open bar every 2 s (1 s for ``1s``) and the final bar (``x`` true) once its
interval is over.

Connection rules (:class:`StreamConfig`, all on the injected clock): a ping frame every 20 s
and a close when no pong answering one came for 60 s (unsolicited pongs do not count); a close
at 24 h; a close when more than 5 frames (text, binary, ping, pong) arrive within a second;
at most 1024 streams; at most 300 connection attempts per 5 minutes per IP, WS API
connections included (HTTP 429 on the handshake beyond that; see
:mod:`~botd.venues.sim.binance.wsconn`, whose keepalive both servers run).
:meth:`StreamHub.announce_shutdown` sends ``serverShutdown`` and
closes every connection after a grace period; stopping the server sends it too. A
:class:`~botd.venues.sim.binance.faults.WireFaultPlan` can drop or stall a connection, skip or
repeat a depth event, or announce a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import WSCloseCode, WSMsgType, web

from botd.clock import Clock
from botd.model import BookLevel, Liquidity, Side, Trade
from botd.venues.sim.binance.faults import FaultKind, WireFaultPlan
from botd.venues.sim.binance.klines import KlineBook
from botd.venues.sim.binance.wsconn import (
    ConnectAttempts,
    keep_alive,
    note_pong,
    refuse_connection,
)
from botd.venues.sim.engine import AccountReport

__all__ = ["StreamConfig", "StreamHub", "taker_orders"]

_STREAM_RE = re.compile(
    r"^([a-z0-9]+)@(bookTicker|trade|aggTrade|depth(5|10|20)?(@100ms)?"
    r"|kline_(1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M))$"
)
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_INT64_MAX = 2**63 - 1

Levels = tuple[list[BookLevel], list[BookLevel]]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """The stream server's rules, the venue's numbers by default (WIRE_FACTS §1.5); tests
    shrink them. Durations are seconds on the injected clock.

    ``ping_interval``: between ping frames; ``pong_timeout``: a connection with no pong
    answering a ping for this long is closed; ``max_lifetime``: a connection is closed this
    long after it opened; ``max_messages_per_s``: incoming frames allowed in any one second,
    one more closes the connection; ``max_streams`` per connection; ``max_connects`` attempts
    per IP within ``connect_window``, beyond which the handshake gets HTTP 429;
    ``shutdown_grace``: from ``serverShutdown`` to the close; ``kline_push``: between updates
    of an open kline (``1s`` klines: every second); ``queue_size``: events buffered per
    connection before it counts as a slow consumer; ``depth_levels``: how many levels per
    side the diff stream covers (a level leaving that window is sent with quantity 0).
    ``heartbeat`` is the WS API's ping interval, on the injected clock like ``ping_interval``
    (the streams'); the WS API shares ``pong_timeout``, ``max_lifetime``, ``shutdown_grace``,
    ``queue_size`` and the connection-attempt window with the streams."""

    heartbeat: float = 20.0
    queue_size: int = 1000
    depth_levels: int = 1000
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    max_lifetime: float = 86_400.0
    max_messages_per_s: int = 5
    max_streams: int = 1024
    max_connects: int = 300
    connect_window: float = 300.0
    shutdown_grace: float = 1.0
    kline_push: float = 2.0


def _fmt(value: Decimal) -> str:
    return f"{value:.8f}"


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _Conn:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        combined: bool,
        queue_size: int,
        *,
        transport: asyncio.Transport | None = None,
        opened_ms: int = 0,
    ) -> None:
        self.ws = ws
        self.combined = combined
        self.streams: dict[str, None] = {}  # insertion-ordered set
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[bool] | None = None
        self.keeper: asyncio.Task[None] | None = None
        self.transport = transport
        self.opened_ms = opened_ms  # connection rules run on the clock's monotonic ms
        self.last_pong_ms = opened_ms
        self.pings: dict[bytes, None] = {}  # payloads of pings not answered yet
        self.inbox: deque[int] = deque()  # arrival times of the last second's frames
        self.stalled_until: float | None = None  # a ``stall`` fault: send nothing until then
        self.closing = False


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
        clock: Clock | None = None,
        klines: KlineBook | None = None,
        faults: WireFaultPlan | None = None,
        attempts: ConnectAttempts | None = None,
    ) -> None:
        """``clock`` runs the timers (pings, lifetime, kline pushes; without it there are
        none); ``klines`` is the book the kline streams read (without it they stay silent);
        ``faults`` the plan consulted before each market-data message and depth event;
        ``attempts`` the per-IP connection-attempt window (shared with the WS API; by default
        one of the config's size)."""
        self._symbols = {s.lower(): s for s in symbols}
        self._depth = depth
        self._update_id = update_id
        self._now_ms = now_ms
        self._cfg = config or StreamConfig()
        self._clock = clock
        self._klines = klines
        self._faults = faults
        self._subs: dict[str, set[_Conn]] = {}
        self._conns: set[_Conn] = set()
        self._shadows: dict[str, _DepthShadow] = {}
        self._tops: dict[str, tuple[BookLevel | None, BookLevel | None]] = {}
        self._agg_ids: dict[str, int] = {}
        self._kline_sent: dict[str, tuple[int, int]] = {}  # stream -> (bar open, last push)
        self._attempts = attempts or ConnectAttempts(
            self._cfg.max_connects, self._cfg.connect_window
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._kline_wake = asyncio.Event()  # set while some kline stream has subscribers

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._raw)
        app.router.add_get("/ws/{stream}", self._raw)
        app.router.add_get("/stream", self._combined)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- connections --------------------------------------------------------------------------

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        stream = request.match_info.get("stream", "")
        # A path word that is not shaped like a stream name (no '@') opens a connection with
        # no streams, as Binance does: ccxt.pro connects to /ws/<n>, n its connection index,
        # and then SUBSCRIBEs (seen by pointing ccxt 4.5 at this simulator).
        named = bool(stream) and "@" in stream
        return await self._serve(request, [stream] if named else [], combined=False)

    async def _combined(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("streams", "")
        return await self._serve(request, [s for s in raw.split("/") if s], combined=True)

    def _mono_ms(self) -> int:
        """The time the connection rules run on: the clock's monotonic reading, so that a
        skewed server clock does not move pings, lifetimes or rate windows."""
        if self._clock is None:
            return self._now_ms()
        return self._clock.monotonic_ns() // 1_000_000

    def _admit(self, ip: str) -> int | None:
        """Count a connection attempt from ``ip``; ``None`` if allowed, else the seconds until
        one would be (attempts refused do not count)."""
        return self._attempts.admit(ip, self._mono_ms())

    async def _serve(
        self, request: web.Request, streams: Sequence[str], *, combined: bool
    ) -> web.StreamResponse:
        retry = self._admit(request.remote or "unknown")
        if retry is not None:
            return refuse_connection(self._attempts.limit, retry)
        for name in streams:
            if self._parse(name) is None:
                return web.json_response(
                    {"code": -1121, "msg": f"Invalid stream name: {name}"}, status=400
                )
        if len(streams) > self._cfg.max_streams:
            return web.json_response({"code": -1, "msg": "Too many streams."}, status=400)
        ws = web.WebSocketResponse(autoping=False)  # pings and pongs are ours to count
        await ws.prepare(request)
        conn = _Conn(
            ws,
            combined,
            self._cfg.queue_size,
            transport=request.transport,
            opened_ms=self._mono_ms(),
        )
        self._conns.add(conn)
        conn.writer = asyncio.create_task(self._write(conn))
        if self._clock is not None:
            conn.keeper = asyncio.create_task(self._keep(conn, self._clock))
        try:
            for name in streams:
                self._subscribe(conn, name)
            async for msg in ws:
                if conn.closing:
                    continue
                if not self._count_incoming(conn):
                    self._close(conn, WSCloseCode.POLICY_VIOLATION, b"too many messages")
                    continue
                if msg.type is WSMsgType.TEXT:
                    reply = self._handle(conn, msg.data)
                    if reply is not None:
                        self._enqueue(conn, reply)
                elif msg.type is WSMsgType.BINARY:
                    self._enqueue(
                        conn, _dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
                    )
                elif msg.type is WSMsgType.PING:
                    if not self._stalled(conn):
                        with contextlib.suppress(ConnectionError):
                            await ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    note_pong(conn, bytes(msg.data), self._mono_ms())
        finally:
            self._drop(conn)
            for task in (conn.writer, conn.keeper):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if conn.closer is not None:
                with contextlib.suppress(Exception):
                    await conn.closer
        return ws

    def _count_incoming(self, conn: _Conn) -> bool:
        """Note one incoming frame; False once more than the limit came within a second."""
        now = self._mono_ms()
        inbox = conn.inbox
        inbox.append(now)
        while inbox and inbox[0] <= now - 1000:
            inbox.popleft()
        return len(inbox) <= self._cfg.max_messages_per_s

    async def _keep(self, conn: _Conn, clock: Clock) -> None:
        """Pings, the pong deadline and the lifetime of one connection."""
        cfg = self._cfg
        await keep_alive(
            conn,
            clock,
            mono_ms=self._mono_ms,
            ping_interval=cfg.ping_interval,
            pong_timeout=cfg.pong_timeout,
            max_lifetime=cfg.max_lifetime,
            closing=lambda: conn.closing,
            stalled=lambda: self._stalled(conn),
            ping=conn.ws.ping,
            close=lambda code, reason: self._close(conn, code, reason),
        )

    def _stalled(self, conn: _Conn) -> bool:
        until = conn.stalled_until
        if until is None:
            return False
        if self._mono_ms() < until:
            return True
        conn.stalled_until = None
        return False

    async def _write(self, conn: _Conn) -> None:
        while True:
            text = await conn.queue.get()
            if self._stalled(conn):
                continue  # lost, as on a socket that stopped moving
            try:
                await conn.ws.send_str(text)
            except ConnectionError:
                return

    def _enqueue(self, conn: _Conn, text: str) -> None:
        if conn.overflowed or conn.closing or self._stalled(conn):
            return
        try:
            conn.queue.put_nowait(text)
        except asyncio.QueueFull:
            conn.overflowed = True
            self._close(conn, WSCloseCode.POLICY_VIOLATION, b"slow consumer")

    def _close(self, conn: _Conn, code: int, message: bytes) -> None:
        """Stop serving ``conn`` and close it (the reader finishes the handshake)."""
        if conn.closing:
            return
        conn.closing = True
        self._drop(conn)
        conn.closer = asyncio.get_running_loop().create_task(
            conn.ws.close(code=code, message=message)
        )

    def _abort(self, conn: _Conn) -> None:
        """Cut ``conn``'s TCP connection with no close frame (a ``drop`` fault)."""
        conn.closing = True
        self._drop(conn)
        if conn.transport is not None:
            conn.transport.abort()

    def _drop(self, conn: _Conn) -> None:
        for name in list(conn.streams):
            self._unsubscribe(conn, name)
        self._conns.discard(conn)

    @staticmethod
    def _shutdown_text(conn: _Conn, now_ms: int) -> str:
        raw = _dumps({"e": "serverShutdown", "E": now_ms})
        return f'{{"stream":"!serverShutdown","data":{raw}}}' if conn.combined else raw

    def announce_shutdown(self, grace: float | None = None) -> None:
        """Send ``serverShutdown`` on every open connection and close them all ``grace``
        seconds later (the config's ``shutdown_grace`` by default) on the clock; the server
        keeps accepting new connections, as a restarting node's neighbours would."""
        now = self._now_ms()
        doomed = list(self._conns)
        for conn in doomed:
            self._enqueue(conn, self._shutdown_text(conn, now))
        delay = self._cfg.shutdown_grace if grace is None else grace
        task = asyncio.get_running_loop().create_task(self._close_later(doomed, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_later(self, conns: list[_Conn], delay: float) -> None:
        if self._clock is not None and delay > 0:
            await self._clock.sleep(delay)
        for conn in conns:
            self._close(conn, WSCloseCode.GOING_AWAY, b"server shutdown")

    async def _on_startup(self, _app: web.Application) -> None:
        if self._clock is not None and self._klines is not None:
            task = asyncio.get_running_loop().create_task(self._push_klines(self._clock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_shutdown(self, _app: web.Application) -> None:
        now = self._now_ms()
        for conn in list(self._conns):
            if not conn.closing:
                with contextlib.suppress(ConnectionError):
                    await conn.ws.send_str(self._shutdown_text(conn, now))
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    async def _on_cleanup(self, _app: web.Application) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
        if "@kline_" in name:
            self._kline_wake.set()

    def _unsubscribe(self, conn: _Conn, name: str) -> None:
        conn.streams.pop(name, None)
        subs = self._subs.get(name)
        if subs is None:
            return
        subs.discard(conn)
        if subs:
            return
        del self._subs[name]
        self._kline_sent.pop(name, None)
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
                if len(dict.fromkeys([*conn.streams, *names])) > self._cfg.max_streams:
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

    def publish(
        self,
        symbol: str,
        trades: Sequence[Trade],
        *,
        quote: bool,
        takers: Mapping[str, str] | None = None,
    ) -> None:
        """Send what changed in ``symbol`` since the last call: its public ``trades`` (and
        their aggregates), the new top of book (always when ``quote``, else only if it moved),
        partial-depth snapshots and the depth diff. Call it after the REST update id has
        moved. ``takers`` maps trade id to the taker's order id (see :func:`taker_orders`);
        without it, consecutive trades at one price, side and time form one aggregate."""
        aggs = self._aggregate(symbol, trades, takers)
        if not self._subs:
            return
        low = symbol.lower()
        now_ms = self._now_ms()
        uid = self._update_id(symbol)
        name = f"{low}@aggTrade"
        if name in self._subs:
            for agg_id, group in aggs:
                first = group[0]
                self._send(
                    name,
                    {
                        "e": "aggTrade",
                        "E": now_ms,
                        "s": symbol,
                        "a": agg_id,
                        "p": _fmt(first.price),
                        "q": _fmt(sum((t.size for t in group), Decimal(0))),
                        "f": int(first.trade_id),
                        "l": int(group[-1].trade_id),
                        "T": first.ts_event // 1_000_000,
                        "m": first.side is Side.SELL,
                        "M": True,
                    },
                )
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
        fault = self._faults.on_depth(now_ms) if self._faults is not None else None
        if fault is not None and fault.kind is FaultKind.DEPTH_GAP:
            return  # lost: the next event's U runs past this one's
        low = symbol.lower()
        for _ in range(2 if fault is not None and fault.kind is FaultKind.DEPTH_DUP else 1):
            for n in (f"{low}@depth", f"{low}@depth@100ms"):
                self._send(n, data)

    def _send(self, name: str, data: object) -> None:
        subs = self._subs.get(name)
        if not subs:
            return
        raw = _dumps(data)
        wrapped = f'{{"stream":{_dumps(name)},"data":{raw}}}'
        for conn in list(subs):
            if self._faults is not None and not self._stream_fault(conn):
                continue
            self._enqueue(conn, wrapped if conn.combined else raw)

    def _stream_fault(self, conn: _Conn) -> bool:
        """Consult the fault plan for one message to ``conn``; False if it is not to go."""
        assert self._faults is not None
        fault = self._faults.on_stream(self._now_ms())
        if fault is None:
            return True
        if fault.kind is FaultKind.DROP:
            self._abort(conn)
            return False
        if fault.kind is FaultKind.STALL:
            conn.stalled_until = (
                self._mono_ms() + fault.seconds * 1000 if fault.seconds > 0 else math.inf
            )
            return False
        if fault.kind is FaultKind.SHUTDOWN:
            self.announce_shutdown()
        return True

    def _aggregate(
        self, symbol: str, trades: Sequence[Trade], takers: Mapping[str, str] | None
    ) -> list[tuple[int, list[Trade]]]:
        """``trades`` grouped by taker order and price, each with its aggregate id."""
        groups: list[tuple[object, list[Trade]]] = []
        for t in trades:
            taker = takers.get(t.trade_id) if takers is not None else None
            key = (taker, t.side, t.price, t.ts_event)
            if groups and groups[-1][0] == key:
                groups[-1][1].append(t)
            else:
                groups.append((key, [t]))
        out: list[tuple[int, list[Trade]]] = []
        for _, group in groups:
            agg_id = self._agg_ids.get(symbol, 0)
            self._agg_ids[symbol] = agg_id + 1
            out.append((agg_id, group))
        return out

    # -- klines -------------------------------------------------------------------------------

    async def _push_klines(self, clock: Clock) -> None:
        """Every second of server time, push what the kline streams are due."""
        while True:
            if not any("@kline_" in n for n in self._subs):
                self._kline_wake.clear()
                await self._kline_wake.wait()  # no timer while nobody listens
            now = self._now_ms()
            await clock.sleep((1000 - now % 1000) / 1000)
            self.push_klines()

    def push_klines(self) -> None:
        """Send each subscribed kline stream its final bar if one closed since the last push,
        and the open bar when its push period has passed (the timer calls this)."""
        book = self._klines
        if book is None:
            return
        now = self._now_ms()
        for name in [n for n in self._subs if "@kline_" in n]:
            parsed = self._parse(name)
            if parsed is None:
                continue
            symbol, kind = parsed
            interval = kind.removeprefix("kline_")
            bar = book.bar_at(symbol, interval, now)
            if bar is None:
                continue  # no trade yet: nothing to show
            sent = self._kline_sent.get(name)
            if sent is not None and sent[0] < bar.open_ms:
                final = book.bar_at(symbol, interval, sent[0])
                if final is not None:
                    self._send(name, final.event(now, True))
                sent = None
            period = 1000 if interval == "1s" else int(self._cfg.kline_push * 1000)
            if sent is None or now - sent[1] >= period:
                self._send(name, bar.event(now, False))
                self._kline_sent[name] = (bar.open_ms, now)


def taker_orders(reports: Iterable[AccountReport]) -> dict[str, str]:
    """Trade id -> the taker's venue order id, from an engine result's ``reports``, for
    :meth:`StreamHub.publish`."""
    return {
        item.report.trade_id: item.report.venue_order_id
        for item in reports
        if item.report.trade_id and item.report.liquidity is Liquidity.TAKER
    }


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
