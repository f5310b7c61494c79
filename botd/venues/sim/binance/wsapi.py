"""Binance's WebSocket API (``/ws-api/v3``) for the simulator, with the user data stream.

Requests are ``{"id","method","params"}`` text frames; each gets one ``{"id","status",
"result"|"error","rateLimits"}`` reply (WIRE_FACTS §1.3). The trading and query methods run the
very REST handlers of the server on the request's parameters, so validation, filters, results
and error codes are the REST ones; weights go to the same per-IP limiter.

Signed requests carry ``apiKey``, ``timestamp`` and ``signature`` in ``params``, signed over the
parameters sorted by name (WIRE_FACTS §1.2); after ``session.logon`` (Ed25519 keys only) they may
leave out ``apiKey`` and ``signature``. User data events go to subscriptions made with
``userDataStream.subscribe`` (logged-on sessions) or ``userDataStream.subscribe.signature`` (any
key type), each event wrapped as ``{"subscriptionId":N,"event":{...}}``.

Replies and events of a connection share one bounded queue drained by a writer task, so they
leave in the order they were produced; a connection that falls too far behind is closed (1008),
never fed a partial stream. Events produced while a request runs are sent after its reply.
Ending a subscription (``userDataStream.unsubscribe``, ``session.logout``, or a
``session.logon`` with another key dropping the logged-on one) sends it
``{"subscriptionId":N,"event":{"e":"eventStreamTerminated","E":ms}}`` after the reply.

Connection rules (WIRE_FACTS §1.6), on the injected clock with the streams' mechanism
(:mod:`~botd.venues.sim.binance.wsconn`): a ping frame every ``StreamConfig.heartbeat`` (20 s)
and a close when no pong answering one came within ``pong_timeout`` (60 s); a close at
``max_lifetime`` (24 h); connection attempts count in the per-IP window the streams use (300
per 5 min; HTTP 429 beyond) and cost 2 request weight. :meth:`WsApi.announce_shutdown` sends
``{"event":{"e":"serverShutdown","E":ms}}`` and closes every connection (1001) after
``shutdown_grace``; stopping the server sends it too. Binance documents no inbound message rate
for the WS API (only request weight), so none is enforced. A
:class:`~botd.venues.sim.binance.faults.WireFaultPlan` is consulted for each request
(``wsapi`` site): 5xx replies, lost replies, dropped or stalled connections, shutdowns.

Choices where the documentation is silent (also in docs/venues.md): malformed JSON gets
``-1135 "Invalid JSON Request"``; an unknown method ``-1020 "This operation is not supported."``;
a malformed envelope ``-1102`` naming ``id``/``method``/``params``; ``session.logon`` with a key
that is not Ed25519 gets ``-2015``; ``userDataStream.subscribe`` without a logged-on session gets
``-1002``; a second subscription for an account already subscribed on the connection gets
``-1020``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from botd.clock import Clock
from botd.venues.sim.binance.auth import ApiKey, check_timestamp, ws_payload
from botd.venues.sim.binance.errors import BinanceError, mandatory
from botd.venues.sim.binance.faults import HTTP_BODIES, Fault, FaultKind, WireFaultPlan
from botd.venues.sim.binance.limits import RateLimiter
from botd.venues.sim.binance.streams import StreamConfig
from botd.venues.sim.binance.wsconn import (
    ConnectAttempts,
    keep_alive,
    note_pong,
    refuse_connection,
)

__all__ = ["WsApi"]

_PATH = "/ws-api/v3"
_CONNECT_WEIGHT = 2
_MAX_ID_LEN = 36
# Security types: NONE (public), SIGNED (TRADE / USER_DATA), SESSION (the WS API's own).
_NONE, _SIGNED, _SESSION = "NONE", "SIGNED", "SESSION"

# WS API method -> the REST route it mirrors (weights and handlers come from the route table).
_REST: dict[str, tuple[str, str, str]] = {
    "ping": ("GET", "/api/v3/ping", _NONE),
    "time": ("GET", "/api/v3/time", _NONE),
    "exchangeInfo": ("GET", "/api/v3/exchangeInfo", _NONE),
    "depth": ("GET", "/api/v3/depth", _NONE),
    "ticker.book": ("GET", "/api/v3/ticker/bookTicker", _NONE),
    "ticker.price": ("GET", "/api/v3/ticker/price", _NONE),
    "ticker.24hr": ("GET", "/api/v3/ticker/24hr", _NONE),
    "avgPrice": ("GET", "/api/v3/avgPrice", _NONE),
    "klines": ("GET", "/api/v3/klines", _NONE),
    "uiKlines": ("GET", "/api/v3/uiKlines", _NONE),
    "order.place": ("POST", "/api/v3/order", _SIGNED),
    "order.test": ("POST", "/api/v3/order/test", _SIGNED),
    "order.status": ("GET", "/api/v3/order", _SIGNED),
    "order.cancel": ("DELETE", "/api/v3/order", _SIGNED),
    "openOrders.status": ("GET", "/api/v3/openOrders", _SIGNED),
    "openOrders.cancelAll": ("DELETE", "/api/v3/openOrders", _SIGNED),
    "account.status": ("GET", "/api/v3/account", _SIGNED),
    "account.rateLimits.orders": ("GET", "/api/v3/rateLimit/order", _SIGNED),
    "myTrades": ("GET", "/api/v3/myTrades", _SIGNED),
    "allOrders": ("GET", "/api/v3/allOrders", _SIGNED),
}
_SESSION_METHODS = (
    "session.logon",
    "session.status",
    "session.logout",
    "session.subscriptions",
    "userDataStream.subscribe",
    "userDataStream.subscribe.signature",
    "userDataStream.unsubscribe",
)
_SESSION_WEIGHT = 2
_NOT_SUPPORTED = "This operation is not supported."
_BAD_KEY = "Invalid API-key, IP, or permissions for action."

CallRest = Callable[[str, str, dict[str, str], str, int], object]
RestWeight = Callable[[str, str, dict[str, str]], int]


class _Num(str):
    """A JSON number kept as the text it was sent as, so the signed payload sees that text."""


@dataclass(frozen=True, slots=True)
class _Close:
    """Queued after the last message a connection gets: the writer then closes it."""

    code: WSCloseCode
    reason: bytes


_BANNED = _Close(WSCloseCode.POLICY_VIOLATION, b"IP banned")
_SLOW = _Close(WSCloseCode.POLICY_VIOLATION, b"slow consumer")
_SHUTDOWN = _Close(WSCloseCode.GOING_AWAY, b"server shutdown")


@dataclass(eq=False, slots=True)
class _Session:
    ws: web.WebSocketResponse
    ip: str
    connected_ms: int
    rate_limits: bool
    queue: asyncio.Queue[str | _Close]
    key: str | None = None
    authorized_ms: int | None = None
    subs: dict[int, str] = field(default_factory=dict)  # subscription id -> account
    logon_sub: int | None = None  # the subscription userDataStream.subscribe made
    next_sub: int = 0
    closing: bool = False  # no more replies or events: a close is queued
    writer: asyncio.Task[None] | None = None
    # Connection rules, on the clock's monotonic ms (see wsconn.keep_alive).
    transport: asyncio.Transport | None = None
    opened_ms: int = 0
    last_pong_ms: int = 0
    pings: dict[bytes, None] = field(default_factory=dict)
    keeper: asyncio.Task[None] | None = None
    stalled_until: float | None = None  # a ``stall`` fault: nothing moves until then
    after_reply: list[str] = field(default_factory=list)  # sent right after the reply


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _param_text(value: object) -> str:
    """A parameter as a REST handler and the signed payload see it."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) if not isinstance(v, _Num) else v for v in value) + "]"
    return _dumps(value)


class WsApi:
    """Serves ``/ws-api/v3`` and delivers user data events (it is the events' sink).

    ``call_rest(verb, path, params, account, now_ms)`` runs a REST route's handler and
    ``rest_weight(verb, path, params)`` prices it; a method whose route is not among
    ``rest_routes`` is not served. ``keys`` are the simulator's API keys. ``config`` gives
    the connection rules (``heartbeat`` is the ping interval), ``clock`` runs them (without
    it there are no pings, lifetimes or grace periods), ``attempts`` is the per-IP
    connection-attempt window (shared with the streams) and ``faults`` the plan consulted
    for each request."""

    def __init__(
        self,
        *,
        keys: Mapping[str, ApiKey],
        limiter: RateLimiter,
        now_ms: Callable[[], int],
        call_rest: CallRest,
        rest_weight: RestWeight,
        rest_routes: Collection[tuple[str, str]],
        config: StreamConfig | None = None,
        clock: Clock | None = None,
        attempts: ConnectAttempts | None = None,
        faults: WireFaultPlan | None = None,
    ) -> None:
        self._keys = keys
        self._limiter = limiter
        self._now_ms = now_ms
        self._call_rest = call_rest
        self._rest_weight = rest_weight
        self._rest = {m: r for m, r in _REST.items() if (r[0], r[1]) in rest_routes}
        self._cfg = cfg = config or StreamConfig()
        self._clock = clock
        self._attempts = attempts or ConnectAttempts(cfg.max_connects, cfg.connect_window)
        self._faults = faults
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: set[_Session] = set()
        self._subs: dict[str, dict[_Session, int]] = {}  # account -> session -> sub id
        self._pending: list[tuple[str, str]] = []  # (account, event JSON) not yet queued
        self._flush_scheduled = False

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(_PATH, self._serve)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)

    @property
    def connections(self) -> int:
        return len(self._sessions)

    # -- the event sink -----------------------------------------------------------------------

    def subscribed(self, account: str) -> bool:
        return bool(self._subs.get(account))

    def publish(self, account: str, event: dict[str, object]) -> None:
        """Queue ``event`` for every subscription of ``account``, after the reply of the
        request being handled (if any)."""
        self._pending.append((account, _dumps(event)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for account, raw in pending:
            for sess, sub_id in list(self._subs.get(account, {}).items()):
                self._enqueue(sess, f'{{"subscriptionId":{sub_id},"event":{raw}}}')

    # -- connections --------------------------------------------------------------------------

    def _mono_ms(self) -> int:
        """The time the connection rules run on: the clock's monotonic reading (a skewed
        server clock does not move pings or lifetimes)."""
        if self._clock is None:
            return self._now_ms()
        return self._clock.monotonic_ns() // 1_000_000

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        now_ms = self._now_ms()
        ip = request.remote or "unknown"
        retry = self._attempts.admit(ip, self._mono_ms())
        if retry is not None:
            return refuse_connection(self._attempts.limit, retry)
        try:
            self._limiter.charge_weight(ip, _CONNECT_WEIGHT, now_ms)
        except BinanceError as e:
            return web.json_response(
                {"code": e.code, "msg": e.msg}, status=e.status, headers=e.headers
            )
        ws = web.WebSocketResponse(autoping=False)  # pings and pongs are ours to count
        await ws.prepare(request)
        opened = self._mono_ms()
        sess = _Session(
            ws=ws,
            ip=ip,
            connected_ms=now_ms,
            rate_limits=request.query.get("returnRateLimits", "true") != "false",
            queue=asyncio.Queue(maxsize=self._cfg.queue_size),
            transport=request.transport,
            opened_ms=opened,
            last_pong_ms=opened,
        )
        self._sessions.add(sess)
        sess.writer = asyncio.create_task(self._write(sess))
        if self._clock is not None:
            sess.keeper = asyncio.create_task(self._keep(sess, self._clock))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.PONG:
                    note_pong(sess, bytes(msg.data), self._mono_ms())
                    continue
                if sess.closing or self._stalled(sess):
                    continue  # nothing moves on a stalled connection
                if msg.type is WSMsgType.TEXT:
                    self._flush()  # events of earlier requests leave before this reply
                    status, reply = self._handle(sess, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    status, reply = self._reply(sess, None, None, _invalid_json())
                elif msg.type is WSMsgType.PING:
                    with contextlib.suppress(ConnectionError):
                        await ws.pong(msg.data)
                    continue
                else:
                    continue
                if reply is not None:
                    self._enqueue(sess, reply)
                after, sess.after_reply = sess.after_reply, []
                for text in after:
                    self._enqueue(sess, text)
                if status == 418:  # banned: the venue says so, then disconnects
                    self._enqueue(sess, _BANNED)
        finally:
            self._drop(sess)
            for task in (sess.writer, sess.keeper):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        return ws

    async def _keep(self, sess: _Session, clock: Clock) -> None:
        cfg = self._cfg
        await keep_alive(
            sess,
            clock,
            mono_ms=self._mono_ms,
            ping_interval=cfg.heartbeat,
            pong_timeout=cfg.pong_timeout,
            max_lifetime=cfg.max_lifetime,
            closing=lambda: sess.closing,
            stalled=lambda: self._stalled(sess),
            ping=sess.ws.ping,
            close=lambda code, reason: self._enqueue(sess, _Close(code, reason)),
        )

    def _stalled(self, sess: _Session) -> bool:
        until = sess.stalled_until
        if until is None:
            return False
        if self._mono_ms() < until:
            return True
        sess.stalled_until = None
        return False

    async def _write(self, sess: _Session) -> None:
        while True:
            item = await sess.queue.get()
            if isinstance(item, _Close):
                await sess.ws.close(code=item.code, message=item.reason)
                return
            if self._stalled(sess):
                continue  # lost, as on a socket that stopped moving
            try:
                await sess.ws.send_str(item)
            except ConnectionError:
                return

    def _enqueue(self, sess: _Session, item: str | _Close) -> None:
        if sess.closing or (isinstance(item, str) and self._stalled(sess)):
            return
        try:
            sess.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A partial event stream is worse than none: the client must resync, so cut it.
            self._drop(sess)
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    sess.queue.get_nowait()
            sess.queue.put_nowait(_SLOW)
            sess.closing = True
        else:
            sess.closing = isinstance(item, _Close)

    def _abort(self, sess: _Session) -> None:
        """Cut ``sess``'s TCP connection with no close frame (``drop``, ``timeout``)."""
        sess.closing = True
        self._drop(sess)
        if sess.transport is not None:
            sess.transport.abort()

    def _drop(self, sess: _Session) -> None:
        for sub_id in list(sess.subs):
            self._unsubscribe(sess, sub_id)
        self._sessions.discard(sess)

    @staticmethod
    def _shutdown_text(now_ms: int) -> str:
        return _dumps({"event": {"e": "serverShutdown", "E": now_ms}})

    def announce_shutdown(self, grace: float | None = None) -> None:
        """Send ``serverShutdown`` on every open connection and close them all ``grace``
        seconds later (the config's ``shutdown_grace`` by default) on the clock; new
        connections are still accepted."""
        text = self._shutdown_text(self._now_ms())
        doomed = list(self._sessions)
        for sess in doomed:
            self._enqueue(sess, text)
        delay = self._cfg.shutdown_grace if grace is None else grace
        task = asyncio.get_running_loop().create_task(self._close_later(doomed, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_later(self, doomed: list[_Session], delay: float) -> None:
        if self._clock is not None and delay > 0:
            await self._clock.sleep(delay)
        for sess in doomed:
            self._enqueue(sess, _SHUTDOWN)

    async def _on_shutdown(self, _app: web.Application) -> None:
        text = self._shutdown_text(self._now_ms())
        for sess in list(self._sessions):
            if not sess.closing and not self._stalled(sess):
                with contextlib.suppress(ConnectionError):
                    await sess.ws.send_str(text)
            await sess.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    async def _on_cleanup(self, _app: web.Application) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- requests -----------------------------------------------------------------------------

    def _handle(self, sess: _Session, text: str) -> tuple[int, str | None]:
        """The status and reply frame of one request (``None``: a fault swallowed it)."""
        try:
            req = json.loads(text, parse_int=_Num, parse_float=_Num)
        except ValueError:
            return self._reply(sess, None, None, _invalid_json())
        if not isinstance(req, dict):
            return self._reply(sess, None, None, _invalid_json())
        req_id = req.get("id")
        if isinstance(req_id, _Num):
            req_id = int(req_id) if req_id.lstrip("-").isdigit() else None
            if req_id is None:
                return self._reply(sess, None, None, mandatory("id"))
        elif "id" not in req or not (
            req_id is None or (isinstance(req_id, str) and len(req_id) <= _MAX_ID_LEN)
        ):
            return self._reply(sess, None, None, mandatory("id"))
        method = req.get("method")
        if not isinstance(method, str) or not method:
            return self._reply(sess, req_id, None, mandatory("method"))
        method = method.removeprefix("v3/")
        raw_params = req.get("params", {})
        if not isinstance(raw_params, dict):
            return self._reply(sess, req_id, None, mandatory("params"))
        params = {str(k): _param_text(v) for k, v in raw_params.items()}
        show = params.get("returnRateLimits", "true" if sess.rate_limits else "false") != "false"
        if method not in self._rest and method not in _SESSION_METHODS:
            return self._reply(sess, req_id, None, BinanceError(-1020, _NOT_SUPPORTED), show)
        now_ms = self._now_ms()
        fault = self._faults.on_ws_api(method, now_ms) if self._faults is not None else None
        if fault is not None and fault.kind is not FaultKind.TIMEOUT and not fault.after:
            if fault.is_http:  # refused before anything happened
                return self._reply(sess, req_id, None, _fault_error(fault), show)
            if fault.kind is FaultKind.SHUTDOWN:
                self.announce_shutdown()  # and the request is served as usual
            else:
                self._connection_fault(sess, fault)
                return 0, None
        account = ""
        result: object = None
        error: BinanceError | None = None
        try:
            if method in self._rest:
                verb, path, security = self._rest[method]
                self._limiter.charge_weight(sess.ip, self._rest_weight(verb, path, params), now_ms)
                if security == _SIGNED:
                    account = self._authenticate(sess, params, now_ms)
                result = self._call_rest(verb, path, params, account, now_ms)
            else:
                self._limiter.charge_weight(sess.ip, _SESSION_WEIGHT, now_ms)
                result = self._session_method(sess, method, params, now_ms)
        except BinanceError as e:
            error = e
        orders_of = self._orders_of(method, params, sess)
        if fault is not None and (error is None or error.status not in (429, 418)):
            # A request the rate limiter refused was not processed: its 429/418 goes out as it
            # is (a ban counts the 429s answered, and a 5xx in its place would hide one).
            if fault.is_http:  # processed, then a 5xx: the outcome is unknown to the client
                return self._reply(sess, req_id, None, _fault_error(fault), show, orders_of)
            if fault.kind is FaultKind.TIMEOUT and error is None:  # accepted, never answered
                if not fault.hang:
                    self._abort(sess)
                return 200, None
        return self._reply(sess, req_id, result, error, show, orders_of)

    def _connection_fault(self, sess: _Session, fault: Fault) -> None:
        """``drop``: cut the connection; ``stall``: let nothing move on it for a while."""
        if fault.kind is FaultKind.DROP:
            self._abort(sess)
        elif fault.kind is FaultKind.STALL:
            seconds = fault.seconds
            sess.stalled_until = self._mono_ms() + seconds * 1000 if seconds > 0 else math.inf

    def _orders_of(self, method: str, params: dict[str, str], sess: _Session) -> str | None:
        """The account whose ORDERS counts an order.place reply shows (if it is known)."""
        if method != "order.place":
            return None
        key = params.get("apiKey")
        return key if key in self._keys else sess.key

    def _reply(
        self,
        sess: _Session,
        req_id: object,
        result: object,
        error: BinanceError | None,
        show: bool | None = None,
        orders_of: str | None = None,
    ) -> tuple[int, str]:
        """The reply frame and its status; ``show``: whether to add ``rateLimits`` (by default
        as the connection's URL asked)."""
        now_ms = self._now_ms()
        status = 200 if error is None else error.status
        out: dict[str, object] = {"id": req_id, "status": status}
        if error is None:
            out["result"] = result
        else:
            body: dict[str, object] = {"code": error.code, "msg": error.msg}
            if error.retry_after_ms is not None:
                body["data"] = {"serverTime": now_ms, "retryAfter": error.retry_after_ms}
            out["error"] = body
        if sess.rate_limits if show is None else show:
            out["rateLimits"] = self._rate_limits(sess.ip, orders_of, now_ms)
        return status, _dumps(out)

    def _rate_limits(self, ip: str, account: str | None, now_ms: int) -> list[dict[str, object]]:
        cfg = self._limiter.config
        out: list[dict[str, object]] = []
        if account is not None:
            ten_s, day = self._limiter.order_counts(account, now_ms)
            out.append(_limit("ORDERS", "SECOND", 10, cfg.orders_per_10s, ten_s))
            out.append(_limit("ORDERS", "DAY", 1, cfg.orders_per_day, day))
        used = self._limiter.used_weight(ip, now_ms)
        out.append(_limit("REQUEST_WEIGHT", "MINUTE", 1, cfg.request_weight_per_minute, used))
        return out

    # -- authentication -----------------------------------------------------------------------

    def _verify(self, params: dict[str, str], now_ms: int, *, ed25519_only: bool) -> str:
        """Check an explicitly signed request; its API key."""
        key = params.get("apiKey", "")
        if not key:
            raise mandatory("apiKey")
        spec = self._keys.get(key)
        if spec is None or (ed25519_only and spec.kind != "ed25519"):
            raise BinanceError(-2015, _BAD_KEY, 401)
        check_timestamp(params, now_ms)
        signature = params.get("signature", "")
        if not signature:
            raise mandatory("signature")
        if not spec.verify(ws_payload(params), signature):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        return key

    def _authenticate(self, sess: _Session, params: dict[str, str], now_ms: int) -> str:
        if "apiKey" in params or "signature" in params or sess.key is None:
            return self._verify(params, now_ms, ed25519_only=False)
        check_timestamp(params, now_ms)  # a logged-on session still sends a timestamp
        return sess.key

    # -- session and user data stream methods -------------------------------------------------

    def _session_method(
        self, sess: _Session, method: str, params: dict[str, str], now_ms: int
    ) -> object:
        if method == "session.logon":
            key = self._verify(params, now_ms, ed25519_only=True)
            if sess.key != key and sess.logon_sub is not None:
                self._unsubscribe(sess, sess.logon_sub, now_ms)
            sess.key, sess.authorized_ms = key, now_ms
        elif method == "session.logout":
            if sess.logon_sub is not None:
                self._unsubscribe(sess, sess.logon_sub, now_ms)
            sess.key = sess.authorized_ms = None
        elif method == "session.subscriptions":
            return [{"subscriptionId": sub_id} for sub_id in sess.subs]
        elif method == "userDataStream.subscribe":
            if sess.key is None:
                raise BinanceError(-1002, "You are not authorized to execute this request.", 401)
            sub_id = self._subscribe(sess, sess.key)
            sess.logon_sub = sub_id
            return {"subscriptionId": sub_id}
        elif method == "userDataStream.subscribe.signature":
            key = self._verify(params, now_ms, ed25519_only=False)
            return {"subscriptionId": self._subscribe(sess, key)}
        elif method == "userDataStream.unsubscribe":
            raw = params.get("subscriptionId")
            if raw is None or raw == "":
                for sub_id in list(sess.subs):
                    self._unsubscribe(sess, sub_id, now_ms)
            elif raw.isdigit():
                self._unsubscribe(sess, int(raw), now_ms)
            else:
                raise mandatory("subscriptionId")
            return {}
        return self._status(sess, now_ms)  # session.status, and what logon/logout answer

    def _status(self, sess: _Session, now_ms: int) -> dict[str, object]:
        return {
            "apiKey": sess.key,
            "authorizedSince": sess.authorized_ms,
            "connectedSince": sess.connected_ms,
            "returnRateLimits": sess.rate_limits,
            "serverTime": now_ms,
            "userDataStream": bool(sess.subs),
        }

    def _subscribe(self, sess: _Session, account: str) -> int:
        subs = self._subs.setdefault(account, {})
        if sess in subs:
            raise BinanceError(-1020, _NOT_SUPPORTED)
        sub_id = sess.next_sub
        sess.next_sub += 1
        sess.subs[sub_id] = account
        subs[sess] = sub_id
        return sub_id

    def _unsubscribe(self, sess: _Session, sub_id: int, ended_ms: int | None = None) -> None:
        """End a subscription; with ``ended_ms`` (a request ended it) it is told so with
        ``eventStreamTerminated`` after the reply."""
        account = sess.subs.pop(sub_id, None)
        if sub_id == sess.logon_sub:
            sess.logon_sub = None
        if account is None:
            return
        if ended_ms is not None:
            event = _dumps({"e": "eventStreamTerminated", "E": ended_ms})
            sess.after_reply.append(f'{{"subscriptionId":{sub_id},"event":{event}}}')
        subs = self._subs.get(account)
        if subs is not None:
            subs.pop(sess, None)
            if not subs:
                del self._subs[account]


def _invalid_json() -> BinanceError:
    return BinanceError(-1135, "Invalid JSON Request")


def _fault_error(fault: Fault) -> BinanceError:
    """The error of an ``http500``/``http503`` fault: Binance's -1001/-1016 body."""
    code, msg = HTTP_BODIES[fault.status]
    return BinanceError(code, msg, fault.status)


def _limit(kind: str, interval: str, num: int, limit: int, count: int) -> dict[str, object]:
    return {
        "rateLimitType": kind,
        "interval": interval,
        "intervalNum": num,
        "limit": limit,
        "count": count,
    }
