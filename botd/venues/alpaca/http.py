"""Alpaca trading API v2 over HTTP: key headers, JSON bodies, errors typed by what to do.

* 401 (and a 403 whose code is not a balance refusal) -> ``AuthError``;
* 429 -> ``RateLimited`` until ``X-Ratelimit-Reset``;
* 403 ``40310000`` and every 4xx with an Alpaca code on an order -> ``OrderRejected`` with
  that code; 404 -> ``NotFound`` (the caller decides what a missing thing means);
* 5xx, timeouts, connection failures -> ``TransientVenueError`` (a POST's outcome is then
  unknown).

The key and secret stay in ``SecretStr`` until the headers of a request are built.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import aiohttp
from pydantic import SecretStr

from botd.clock import Clock
from botd.errors import AuthError, OrderRejected, RateLimited, TransientVenueError

__all__ = ["AlpacaHttp", "NotFound", "UsageSink"]

_NS: Final = 1_000_000_000
_MAX_ERROR_TEXT: Final = 200
_BALANCE_CODE: Final = 40310000


# What the account has used of its request budget (pool -> count), and when the request that
# learned it was sent (ns): the gateway's limiter adopts it, so processes sharing a key share
# one budget.
UsageSink = Callable[[dict[str, int], int], None]


class NotFound(Exception):
    """404: no such order, position or asset."""


class AlpacaHttp:
    def __init__(
        self,
        base_url: str,
        key_id: SecretStr,
        secret_key: SecretStr,
        clock: Clock,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        on_usage: UsageSink | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._on_usage = on_usage
        self._key_id = key_id
        self._secret_key = secret_key
        self._clock = clock
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def auth_headers(self) -> dict[str, str]:
        return {
            "APCA-API-KEY-ID": self._key_id.get_secret_value(),
            "APCA-API-SECRET-KEY": self._secret_key.get_secret_value(),
        }

    def auth_message(self) -> dict[str, str]:
        return {
            "action": "auth",
            "key": self._key_id.get_secret_value(),
            "secret": self._secret_key.get_secret_value(),
        }

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON reply (None for an empty one), numbers as ``Decimal``."""
        sent_ns = self._clock.time_ns()
        try:
            async with self.session.request(
                method,
                self._base + path,
                params=params,
                json=body,
                headers=self.auth_headers(),
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                text = await resp.text()
                status = resp.status
                reset = resp.headers.get("X-Ratelimit-Reset", "")
                limit = resp.headers.get("X-Ratelimit-Limit", "")
                remaining = resp.headers.get("X-Ratelimit-Remaining", "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            outcome = " (outcome unknown)" if method != "GET" else ""
            raise TransientVenueError(
                f"Alpaca {method} {path} failed{outcome}: {type(exc).__name__}"
            ) from None
        if self._on_usage is not None and limit.isdigit() and remaining.isdigit():
            self._on_usage({"requests": max(0, int(limit) - int(remaining))}, sent_ns)
        if status < 300:
            return json.loads(text, parse_float=Decimal) if text else None
        raise self._error(method, path, status, text, reset)

    def _error(self, method: str, path: str, status: int, text: str, reset: str) -> Exception:
        code, message = _decode_error(text)
        what = f"Alpaca {method} {path}: HTTP {status} {code or ''} {message}".rstrip()
        if status == 401:
            return AuthError(what)
        if status == 429:
            retry = None
            if reset.isdigit():
                retry = max(0.0, int(reset) - self._clock.time_ns() / _NS)
            return RateLimited(what, retry_after=retry)
        if status == 404:
            return NotFound(what)
        if status >= 500:
            return TransientVenueError(what)
        if status == 403 and code != _BALANCE_CODE:
            return AuthError(what)
        return OrderRejected(message or what, code=str(code) if code is not None else str(status))


def _decode_error(text: str) -> tuple[int | None, str]:
    try:
        body = json.loads(text)
    except ValueError:
        return None, text[:_MAX_ERROR_TEXT]
    if not isinstance(body, dict):
        return None, text[:_MAX_ERROR_TEXT]
    code = body.get("code")
    message = body.get("message")
    return (
        code if isinstance(code, int) else None,
        message if isinstance(message, str) else text[:_MAX_ERROR_TEXT],
    )
