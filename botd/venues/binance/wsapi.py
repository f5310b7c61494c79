"""Binance's WebSocket API (WIRE_FACTS §1.3, §1.6): requests and the user-data stream.

:class:`BinanceWsApi` keeps one connection to ``/ws-api/v3`` alive for as long as the adapter
runs and serves two purposes on it:

* **requests** (:meth:`BinanceWsApi.request`): ``{"id","method","params"}`` frames matched to
  their replies by id, each with its own timeout. No answer in time, or a connection lost
  before the answer, is a :class:`TransientVenueError` saying the outcome is unknown (an order
  may have been placed): the caller resolves it by query, never by resending. ``rateLimits``
  in replies go to ``on_usage`` like REST's usage headers; -1021 re-synchronises the server
  time offset (shared with REST, :class:`BinanceHttp`) and the request is signed and sent once
  more, as REST does.
* **user data**: right after connecting, Ed25519 keys log the session on (``session.logon``)
  and subscribe (``userDataStream.subscribe``); other keys subscribe with a signed
  ``userDataStream.subscribe.signature``. Events go to ``on_event``.

Connection lifetime: the venue cuts a connection at 24 h and announces planned restarts with
``serverShutdown``. Either way the next connection is opened, logged on and subscribed *first*;
requests move to it and the old one is closed once its requests are answered. Events arrive on
both while they overlap, so ``on_event`` must tolerate duplicates (the adapter's
:class:`~botd.venues.binance.userdata.ReportSequencer` does). A connection lost without warning
is replaced with backoff; since events may have been missed meanwhile, ``on_gap`` is called
once the new connection is subscribed. Every attempt goes through a :class:`ConnectLimiter`
(300 per 5 minutes per IP, shared with the market streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import msgspec

from botd.clock import NS_PER_SECOND, Clock
from botd.errors import AuthError, BotdError, ConfigError, TransientVenueError
from botd.venues.binance.auth import Ed25519Signer, Signer, WsParamValue, signed_ws_params
from botd.venues.binance.constants import (
    CONNECT_ATTEMPTS,
    CONNECT_WINDOW_S,
    DEFAULT_MAX_CONNECTION_AGE_S,
    ClockSkew,
    map_error,
    retry_after_from_ws,
    usage_from_ws,
)
from botd.venues.binance.schemas import (
    ServerShutdown,
    UnhandledEvent,
    UserDataEvent,
    WireError,
    WsApiMessage,
    decode_user_event,
    decode_ws_api_message,
)

__all__ = ["BinanceWsApi", "ConnectLimiter"]

log = logging.getLogger(__name__)

_NS_PER_MS: Final = 1_000_000
_MAX_LOGGED: Final = 200
_BACKOFF_S: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# Events after which the venue stops sending user data on a subscription.
_TERMINATED: Final = frozenset({"eventStreamTerminated", "listenKeyExpired"})

UsageCallback = Callable[[dict[str, int], int], None]
EventCallback = Callable[[UserDataEvent], None]
GapCallback = Callable[[str], None]
ResyncTime = Callable[[], Awaitable[int]]


class ConnectLimiter:
    """Connection attempts within ``limit`` per ``window_s`` (a sliding window on the
    injected clock): :meth:`acquire` waits for a free slot. One per IP, shared by every
    websocket the adapter opens."""

    def __init__(
        self, clock: Clock, limit: int = CONNECT_ATTEMPTS, window_s: float = CONNECT_WINDOW_S
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window_ns = int(window_s * NS_PER_SECOND)
        self._attempts: deque[int] = deque()
        self.waited = 0

    async def acquire(self) -> None:
        while True:
            now = self._clock.monotonic_ns()
            while self._attempts and now - self._attempts[0] >= self._window_ns:
                self._attempts.popleft()
            if len(self._attempts) < self._limit:
                self._attempts.append(now)
                return
            self.waited += 1
            wait_ns = self._attempts[0] + self._window_ns - now
            log.warning("Binance connection attempts at the limit; waiting %.1f s", wait_ns / 1e9)
            await self._clock.sleep(wait_ns / NS_PER_SECOND)


@dataclass(eq=False)
class _Conn:
    ws: aiohttp.ClientWebSocketResponse
    number: int
    opened_ns: int  # monotonic
    pending: dict[int, asyncio.Future[WsApiMessage]] = field(default_factory=dict)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown: bool = False  # the venue announced it will close this connection
    reader: asyncio.Task[None] | None = None
    last_rx_ns: int = 0  # monotonic time of the last frame received


class BinanceWsApi:
    """``url``: the WS API endpoint (``wss://ws-api.binance.com:443/ws-api/v3``);
    ``resync_time``: measures the server-time offset again and returns it (ms);
    ``offset_ms``: the current offset (server minus local)."""

    def __init__(
        self,
        *,
        url: str,
        signer: Signer,
        clock: Clock,
        offset_ms: Callable[[], int],
        resync_time: ResyncTime,
        on_event: EventCallback,
        on_gap: GapCallback,
        on_usage: UsageCallback | None = None,
        session: aiohttp.ClientSession | None = None,
        limiter: ConnectLimiter | None = None,
        user_data: bool = True,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S,
        idle_probe_s: float = 30.0,
    ) -> None:
        self._url = url
        self._signer = signer
        self._clock = clock
        self._offset_ms = offset_ms
        self._resync_time = resync_time
        self._on_event = on_event
        self._on_gap = on_gap
        self._on_usage = on_usage
        self._session = session
        self._owns_session = False
        self._limiter = limiter or ConnectLimiter(clock)
        self._user_data = user_data
        self._recv_window_ms = recv_window_ms
        self._timeout_s = timeout_s
        self._max_age_ns = int(max_connection_age_s * NS_PER_SECOND)
        # A connection silent this long is asked for a ``ping``; no answer means it is dead
        # (a stalled connection loses user data silently otherwise).
        self._idle_probe_ns = int(idle_probe_s * NS_PER_SECOND)
        self._ids = itertools.count(1)
        self._numbers = itertools.count(1)
        self._conn: _Conn | None = None
        self._up = asyncio.Event()  # a current connection is live
        self._wake = asyncio.Event()  # something the supervisor should look at happened
        self._supervisor: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._closing = False
        # Counters, for tests, metrics and logs.
        self.connects = 0
        self.probes_failed = 0
        self.handovers = 0
        self.reconnects = 0
        self.malformed = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.is_set()

    @property
    def connection_number(self) -> int:
        """Which connection is current (1 for the first); 0 when there is none."""
        return self._conn.number if self._conn is not None else 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the first connection (subscribed to user data); errors propagate, e.g.
        :class:`AuthError` for a key the venue refuses."""
        self._closing = False
        self._install(await self._open())
        self._supervisor = asyncio.create_task(self._supervise(), name="binance-ws-api")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        conn, self._conn = self._conn, None
        self._up.clear()
        if conn is not None:
            await self._close_conn(conn)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def request_handover(self) -> None:
        """Replace the connection now, the way the 24 h limit would (for operators/tests)."""
        if self._conn is not None:
            self._conn.shutdown = True
            self._wake.set()

    # -- requests -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: Mapping[str, WsParamValue],
        *,
        signed: bool,
        endpoint: str,
        timeout_s: float | None = None,
    ) -> bytes:
        """The raw ``result`` of ``method``; a typed :class:`BotdError` otherwise.

        ``endpoint`` names the request in the gateway's cost table (``order.submit``...)."""
        timeout = self._timeout_s if timeout_s is None else timeout_s
        conn = await self._current(timeout, method)
        return await self._call(conn, method, params, signed, endpoint, timeout)

    async def _current(self, wait_s: float, method: str) -> _Conn:
        """The live connection, waiting up to ``wait_s`` for one while it is being replaced;
        TransientVenueError (the request was not sent) if none comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            conn = self._conn
            if conn is not None and not conn.closed.is_set():
                return conn
            if self._supervisor is None or self._supervisor.done() or self._closing:
                raise TransientVenueError(f"Binance WS API not running; {method} not sent")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TransientVenueError(f"Binance WS API not connected; {method} not sent")
            try:
                await asyncio.wait_for(self._up.wait(), remaining)
            except TimeoutError:
                raise TransientVenueError(
                    f"Binance WS API not connected; {method} not sent"
                ) from None
            if self._conn is None or self._conn.closed.is_set():
                await asyncio.sleep(0.01)  # installed and lost again at once: look again

    async def _call(
        self,
        conn: _Conn,
        method: str,
        params: Mapping[str, WsParamValue],
        signed: bool,
        endpoint: str,
        limit_s: float,
    ) -> bytes:
        for attempt in (1, 2):
            body: Mapping[str, WsParamValue] = params
            if signed:
                now_ms = self._clock.time_ns() // _NS_PER_MS + self._offset_ms()
                body = signed_ws_params(params, self._signer, now_ms, self._recv_window_ms)
            msg = await self._exchange(conn, method, body, endpoint, limit_s)
            if msg.status == 200:
                return bytes(msg.result)
            err = self._error(msg)
            if isinstance(err, ClockSkew) and signed and attempt == 1:
                # Refused before the matching engine: resync the offset and send once more.
                log.warning("Binance clock skew on %s; re-syncing server time", endpoint)
                await self._resync_time()
                continue
            raise err
        raise AssertionError("unreachable")

    async def _exchange(
        self,
        conn: _Conn,
        method: str,
        params: Mapping[str, WsParamValue],
        endpoint: str,
        limit_s: float,
    ) -> WsApiMessage:
        req_id = next(self._ids)
        future: asyncio.Future[WsApiMessage] = asyncio.get_running_loop().create_future()
        conn.pending[req_id] = future
        what = f"Binance WS API {method} ({endpoint})"
        frame = msgspec.json.encode({"id": req_id, "method": method, "params": params})
        sent_ns = self._clock.time_ns()
        try:
            try:
                await conn.ws.send_str(frame.decode())
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                # Only the type: the text could quote the frame, signature included.
                raise TransientVenueError(
                    f"{what} failed to send: {type(exc).__name__} (outcome unknown)"
                ) from None
            try:
                msg = await asyncio.wait_for(asyncio.shield(future), limit_s)
            except TimeoutError:
                # Replies come in order: one that never came means the connection is not
                # delivering. Replace it (its events may be lost too: the gateway reconciles).
                if conn is self._conn and not conn.closed.is_set():
                    log.warning("Binance WS API: no reply to %s; replacing the connection", method)
                    self._spawn_close(conn)
                raise TransientVenueError(
                    f"{what}: no answer within {limit_s:g} s (outcome unknown)"
                ) from None
        finally:
            conn.pending.pop(req_id, None)
        self._report_usage(msg, sent_ns)
        return msg

    def _error(self, msg: WsApiMessage) -> BotdError:
        status = msg.status or 0
        if msg.error is None:
            return TransientVenueError(f"Binance WS API status {status} without an error")
        retry_after: float | None = None
        if msg.error.data is not None and msg.error.data.retry_after is not None:
            now_ms = self._clock.time_ns() // _NS_PER_MS + self._offset_ms()
            retry_after = retry_after_from_ws(msg.error.data.retry_after, now_ms)
        return map_error(status, msg.error.code, msg.error.msg[:_MAX_LOGGED], retry_after)

    def _report_usage(self, msg: WsApiMessage, sent_ns: int) -> None:
        if self._on_usage is None or not msg.rate_limits:
            return
        usage = usage_from_ws(msg.usage_rows())
        if usage:
            try:
                self._on_usage(usage, sent_ns)
            except Exception:  # a faulty observer must not fail the request
                log.exception("Binance usage callback failed")

    # -- connections --------------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def _open(self) -> _Conn:
        """A new connection, subscribed to user data (if wanted); raises on failure."""
        await self._limiter.acquire()
        session = self._ensure_session()
        try:
            ws = await session.ws_connect(self._url, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise AuthError(f"Binance WS API refused the connection ({exc.status})") from None
            raise TransientVenueError(f"Binance WS API handshake failed ({exc.status})") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientVenueError(
                f"Binance WS API connect failed: {type(exc).__name__}"
            ) from None
        now = self._clock.monotonic_ns()
        conn = _Conn(ws=ws, number=next(self._numbers), opened_ns=now, last_rx_ns=now)
        conn.reader = asyncio.create_task(self._read(conn), name=f"binance-ws-api-{conn.number}")
        self.connects += 1
        try:
            if self._user_data:
                await self._subscribe(conn)
        except BaseException:
            await self._close_conn(conn)
            raise
        return conn

    async def _subscribe(self, conn: _Conn) -> None:
        timeout = self._timeout_s
        if isinstance(self._signer, Ed25519Signer):
            await self._call(conn, "session.logon", {}, True, "session.logon", timeout)
            await self._call(
                conn, "userDataStream.subscribe", {}, False, "user_data.subscribe", timeout
            )
        else:
            await self._call(
                conn,
                "userDataStream.subscribe.signature",
                {},
                True,
                "user_data.subscribe",
                timeout,
            )

    def _install(self, conn: _Conn) -> None:
        self._conn = conn
        self._up.set()
        log.info("Binance WS API connection %d live", conn.number)

    async def _close_conn(self, conn: _Conn) -> None:
        with contextlib.suppress(Exception):
            await conn.ws.close()
        if conn.reader is not None:
            conn.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader
        self._fail_pending(conn)
        conn.closed.set()

    @staticmethod
    def _fail_pending(conn: _Conn) -> None:
        for future in conn.pending.values():
            if not future.done():
                future.set_exception(
                    TransientVenueError("Binance WS API connection lost (outcome unknown)")
                )
                # Retrieved here so an unawaited one does not warn; the waiter still raises.
                future.exception()
        conn.pending.clear()

    async def _read(self, conn: _Conn) -> None:
        try:
            while True:
                msg = await conn.ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                    self._on_frame(conn, msg.data)
                    continue
                if msg.type is aiohttp.WSMsgType.ERROR:
                    log.warning("Binance WS API connection %d failed", conn.number)
                break
        finally:
            self._fail_pending(conn)
            conn.closed.set()
            if self._conn is conn:
                self._up.clear()
            self._wake.set()

    def _on_frame(self, conn: _Conn, data: str | bytes) -> None:
        conn.last_rx_ns = self._clock.monotonic_ns()
        try:
            msg = decode_ws_api_message(data)
            if msg.is_reply:
                future = conn.pending.get(msg.id) if isinstance(msg.id, int) else None
                if future is not None and not future.done():
                    future.set_result(msg)
                return
            if not len(msg.event):
                raise WireError("neither a reply nor an event")
            event = decode_user_event(bytes(msg.event))
        except WireError as exc:
            self.malformed += 1
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            log.warning("Binance WS API: malformed message (%s): %r", exc, text[:_MAX_LOGGED])
            return
        if isinstance(event, ServerShutdown):
            log.info("Binance WS API connection %d: server shutting down", conn.number)
            conn.shutdown = True
            self._wake.set()
            return
        if isinstance(event, UnhandledEvent) and event.event_type in _TERMINATED:
            log.warning("Binance user-data subscription ended (%s)", event.event_type)
            self._spawn_close(conn)  # treated as a lost connection: resubscribe, reconcile
            return
        try:
            self._on_event(event)
        except Exception:  # one bad event must not stop the stream
            log.exception("Binance user-data event handler failed")

    def _spawn_close(self, conn: _Conn) -> None:
        task = asyncio.create_task(self._close_conn(conn))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    # -- supervision --------------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._closing:
            conn = self._conn
            if conn is None or conn.closed.is_set():
                self._up.clear()
                self._conn = None
                try:
                    new = await self._open()
                except (BotdError, OSError) as exc:
                    failures += 1
                    delay = _BACKOFF_S[min(failures - 1, len(_BACKOFF_S) - 1)]
                    level = (
                        logging.ERROR
                        if isinstance(exc, AuthError | ConfigError)
                        else logging.WARNING
                    )
                    log.log(
                        level, "Binance WS API reconnect failed (%s); retry in %g s", exc, delay
                    )
                    await self._clock.sleep(delay)
                    continue
                failures = 0
                self.reconnects += 1
                self._install(new)
                self._on_gap("Binance WS API reconnected; user-data events may have been missed")
                continue
            left_ns = self._max_age_ns - (self._clock.monotonic_ns() - conn.opened_ns)
            if conn.shutdown or left_ns <= 0:
                if await self._handover(conn):
                    failures = 0
                else:
                    failures += 1
                    await self._clock.sleep(_BACKOFF_S[min(failures - 1, len(_BACKOFF_S) - 1)])
                continue
            idle_ns = self._idle_probe_ns - (self._clock.monotonic_ns() - conn.last_rx_ns)
            if idle_ns <= 0:
                await self._probe(conn)
                continue
            self._wake.clear()
            if conn.closed.is_set() or conn.shutdown:
                continue
            wait_s = min(left_ns, idle_ns) / NS_PER_SECOND
            await self._wait(conn.closed.wait(), self._wake.wait(), wait_s)

    async def _probe(self, conn: _Conn) -> None:
        try:
            await self._exchange(conn, "ping", {}, "ws_api.ping", self._timeout_s)
        except BotdError as exc:
            self.probes_failed += 1
            log.warning("Binance WS API connection %d silent (%s); replacing it", conn.number, exc)
            await self._close_conn(conn)

    async def _wait(self, a: Awaitable[object], b: Awaitable[object], seconds: float) -> None:
        tasks = [
            asyncio.ensure_future(a),
            asyncio.ensure_future(b),
            asyncio.ensure_future(self._clock.sleep(seconds)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handover(self, old: _Conn) -> bool:
        """Open the next connection while ``old`` still runs; True once it took over."""
        reason = "server shutdown" if old.shutdown else "connection age"
        try:
            new = await self._open()
        except (BotdError, OSError) as exc:
            log.warning("Binance WS API handover (%s) failed: %s; retrying", reason, exc)
            return False
        if old.closed.is_set():
            # Too late: the old one went first, events in between may be lost.
            self._install(new)
            self.reconnects += 1
            self._on_gap("Binance WS API reconnected; user-data events may have been missed")
            return True
        self._install(new)
        self.handovers += 1
        log.info(
            "Binance WS API handover (%s): connection %d replaces %d",
            reason,
            new.number,
            old.number,
        )
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return True

    async def _retire(self, conn: _Conn) -> None:
        """Close ``conn`` once its requests are answered (or have timed out)."""
        waiters = list(conn.pending.values())
        if waiters:
            await asyncio.wait(waiters, timeout=self._timeout_s)
        await self._close_conn(conn)
