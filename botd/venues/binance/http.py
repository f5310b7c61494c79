"""Binance Spot REST transport: signing, server-time offset, typed errors, usage headers.

One :class:`BinanceHttp` per venue connection. It returns the raw JSON body of a successful
reply (the caller decodes it with the matching :mod:`botd.venues.binance.schemas` decoder, so
wire types stay in this package) and turns everything else into a typed error:

* an error reply -> :func:`~botd.venues.binance.constants.map_error` (``OrderRejected``,
  ``AuthError``, ``RateLimited``/``Banned``, ``TransientVenueError``);
* a timeout or a connection failure -> ``TransientVenueError`` whose text says the outcome is
  unknown (a POST may have reached the matching engine);
* -1021 (``ClockSkew``): the request was refused before the matching engine saw it, so the
  offset is re-synchronised from ``/api/v3/time`` and the request re-signed and sent once more.

Every reply's ``X-MBX-USED-WEIGHT-*``/``X-MBX-ORDER-COUNT-*`` headers go to ``on_usage`` with
the local time the request was sent, so the gateway's limiter can adopt the server's counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from botd.clock import Clock
from botd.errors import BotdError, TransientVenueError
from botd.venues.binance.auth import Signer, signed_query
from botd.venues.binance.constants import (
    ClockSkew,
    map_error,
    retry_after_from_headers,
    usage_from_headers,
)
from botd.venues.binance.schemas import WireError, decode_error, decode_server_time

__all__ = ["BinanceHttp", "UsageCallback"]

log = logging.getLogger(__name__)

UsageCallback = Callable[[dict[str, int], int], None]
_NS_PER_MS: Final = 1_000_000
_TIME_PATH: Final = "/api/v3/time"
_MAX_ERROR_TEXT: Final = 200


def _query(params: Mapping[str, str]) -> str:
    # Unsigned requests use the same encoding as signed_query.
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())


class BinanceHttp:
    """REST calls against ``base_url`` (e.g. ``https://api.binance.com``); paths start with
    ``/api/v3``. Parameters of every method, signed or not, travel in the query string, which
    is what is signed: no body, so no query/body precedence questions."""

    def __init__(
        self,
        base_url: str,
        signer: Signer,
        clock: Clock,
        session: aiohttp.ClientSession | None = None,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        on_usage: UsageCallback | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._clock = clock
        self._session = session
        self._owns_session = session is None
        self._recv_window_ms = recv_window_ms
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._on_usage = on_usage
        self._offset_ms = 0  # server time minus our clock's time

    @property
    def offset_ms(self) -> int:
        """Server time minus local time, as last measured by :meth:`sync_time`."""
        return self._offset_ms

    def _now_ms(self) -> int:
        return self._clock.time_ns() // _NS_PER_MS

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def sync_time(self) -> int:
        """Measure the server-time offset (assuming the server stamped the midpoint of the
        round trip) and return it in ms."""
        before = self._now_ms()
        body = await self._send("GET", _TIME_PATH, {}, False, "market.server_time")
        after = self._now_ms()
        try:
            server_ms = decode_server_time(body).server_time
        except WireError as exc:
            raise TransientVenueError(f"Binance {_TIME_PATH}: {exc}") from None
        self._offset_ms = server_ms - (before + after) // 2
        return self._offset_ms

    async def get(
        self, path: str, params: Mapping[str, str], signed: bool, weight_endpoint: str
    ) -> bytes:
        return await self.request("GET", path, params, signed, weight_endpoint)

    async def post(
        self, path: str, params: Mapping[str, str], signed: bool, weight_endpoint: str
    ) -> bytes:
        return await self.request("POST", path, params, signed, weight_endpoint)

    async def delete(
        self, path: str, params: Mapping[str, str], signed: bool, weight_endpoint: str
    ) -> bytes:
        return await self.request("DELETE", path, params, signed, weight_endpoint)

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        signed: bool,
        weight_endpoint: str,
    ) -> bytes:
        """The body of a 2xx reply; a typed :class:`BotdError` otherwise.

        ``weight_endpoint`` names the request in the gateway's cost table (e.g.
        ``order.submit``); it appears in error text and logs.
        """
        try:
            return await self._send(method, path, params, signed, weight_endpoint)
        except ClockSkew:
            if not signed:
                raise
            # Refused before the matching engine: safe to resync and resend, once.
            log.warning("Binance clock skew on %s; re-syncing server time", weight_endpoint)
            await self.sync_time()
            return await self._send(method, path, params, signed, weight_endpoint)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        signed: bool,
        weight_endpoint: str,
    ) -> bytes:
        if signed:
            query = signed_query(
                params,
                self._signer,
                self._now_ms() + self._offset_ms,
                self._recv_window_ms,
            )
            headers = self._signer.api_key_header()
        else:
            query = _query(params)
            headers = {}
        url = URL(f"{self._base}{path}" + (f"?{query}" if query else ""), encoded=True)
        session = self._ensure_session()
        sent_ns = self._clock.time_ns()
        what = f"Binance {method} {path} ({weight_endpoint})"
        try:
            async with session.request(method, url, headers=headers, timeout=self._timeout) as resp:
                body = await resp.read()
                status = resp.status
                resp_headers: Mapping[str, str] = resp.headers
                self._report_usage(resp_headers, sent_ns)
        except TimeoutError:
            raise TransientVenueError(f"{what} timed out (outcome unknown)") from None
        except aiohttp.ClientError as exc:
            # Only the exception's type: its text may quote the URL, signature included.
            raise TransientVenueError(
                f"{what} failed: {type(exc).__name__} (outcome unknown)"
            ) from None
        if 200 <= status < 300:
            return body
        raise self._error(status, body, resp_headers)

    def _report_usage(self, headers: Mapping[str, str], sent_ns: int) -> None:
        if self._on_usage is None:
            return
        usage = usage_from_headers(headers)
        if usage:
            try:
                self._on_usage(usage, sent_ns)
            except Exception:  # a faulty observer must not fail the request
                log.exception("Binance usage callback failed")

    @staticmethod
    def _error(status: int, body: bytes, headers: Mapping[str, str]) -> BotdError:
        code: int | None
        try:
            err = decode_error(body)
            code, msg = err.code, err.msg
        except WireError:
            code = None
            msg = body[:_MAX_ERROR_TEXT].decode("utf-8", "replace")
        return map_error(status, code, msg, retry_after_from_headers(headers))
