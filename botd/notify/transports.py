"""Where notices go: a signed JSON webhook and the Telegram Bot API, both over aiohttp.

A transport sends one notice or raises :class:`DeliveryError` saying whether to retry and how
long the receiver asked us to wait. Retrying is the notifier's job, not the transport's.

Secrets (the Telegram bot token sits in the URL path, webhook URLs often carry a token, and
the signing key) never leave a transport in an error message: every message is scrubbed, and
the aiohttp exception it came from is not chained (its text often contains the URL).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import aiohttp
from pydantic import SecretStr

from botd.clock import NS_PER_SECOND, Clock
from botd.logs import Redactor
from botd.notify.messages import Notice

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryError",
    "TelegramTransport",
    "Transport",
    "WebhookTransport",
    "sign_webhook",
    "verify_webhook",
]

SIGNATURE_HEADER = "X-Botd-Signature"
TIMESTAMP_HEADER = "X-Botd-Timestamp"
DELIVERY_HEADER = "X-Botd-Delivery"
EVENT_HEADER = "X-Botd-Event"
TELEGRAM_MAX_TEXT = 4096
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class DeliveryError(Exception):
    """A notice was not delivered. ``str()`` never contains a secret."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class Transport(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, notice: Notice) -> None: ...

    async def close(self) -> None: ...


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Botd-Signature`` value: HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now_s: float,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now_s - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign_webhook(secret, timestamp, body), signature)


def _retry_after(value: object) -> float | None:
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class _HttpTransport:
    """One aiohttp session per transport, opened on first use inside the running loop."""

    def __init__(self, *, clock: Clock, timeout_s: float, secrets: Iterable[str]) -> None:
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._redactor = Redactor([s for s in secrets if s])
        self._session: aiohttp.ClientSession | None = None

    def scrub(self, text: str) -> str:
        return self._redactor.scrub(text)

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        failure = ""
        permanent = False
        try:
            async with self._session.post(url, data=body, headers=dict(headers)) as resp:
                return resp.status, await resp.read(), dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # Text only: the exception object (and its chain) keeps the URL, and aiohttp's
            # InvalidURL prints it whole, token included.
            failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            permanent = isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError)
        raise DeliveryError(self.scrub(failure), permanent=permanent)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class WebhookTransport(_HttpTransport):
    """POSTs each notice as JSON, signed with HMAC-SHA256 when a secret is configured."""

    def __init__(
        self,
        *,
        url: SecretStr,
        secret: SecretStr | None,
        clock: Clock,
        timeout_s: float = 10.0,
        user_agent: str = "botd",
    ) -> None:
        key = secret.get_secret_value() if secret is not None else ""
        super().__init__(clock=clock, timeout_s=timeout_s, secrets=[url.get_secret_value(), key])
        self._url = url
        self._key = key.encode("utf-8")
        self._user_agent = user_agent

    @property
    def name(self) -> str:
        return "webhook"

    def __repr__(self) -> str:
        return f"WebhookTransport(url=SecretStr('**********'), signed={bool(self._key)})"

    def body(self, notice: Notice) -> bytes:
        payload: dict[str, Any] = {
            "id": notice.id,
            "kind": notice.kind,
            "title": notice.title,
            "text": notice.text,
            "ts": notice.iso_time,
            "ts_ns": notice.ts_ns,
            "data": notice.data,
        }
        if notice.batch is not None:
            payload["batch"] = notice.batch
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    async def send(self, notice: Notice) -> None:
        body = self.body(notice)
        # Signed per attempt, so a retry carries a fresh timestamp inside the receiver's window.
        timestamp = str(self._clock.time_ns() // NS_PER_SECOND)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: notice.id,
            EVENT_HEADER: notice.kind,
        }
        if self._key:
            headers[SIGNATURE_HEADER] = sign_webhook(self._key, timestamp, body)
        status, _, resp_headers = await self._post(self._url.get_secret_value(), body, headers)
        if 200 <= status < 300:
            return
        retryable = status in _RETRYABLE_STATUS or status >= 500
        raise DeliveryError(
            f"webhook answered HTTP {status}",
            retry_after=_retry_after(resp_headers.get("Retry-After")) if retryable else None,
            permanent=not retryable,
        )


class TelegramTransport(_HttpTransport):
    """The Bot API's ``sendMessage`` (POST {api_base}/bot<token>/sendMessage)."""

    def __init__(
        self,
        *,
        bot_token: SecretStr,
        chat_id: str,
        clock: Clock,
        api_base: str = "https://api.telegram.org",
        parse_mode: str = "HTML",
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(clock=clock, timeout_s=timeout_s, secrets=[bot_token.get_secret_value()])
        self._token = bot_token
        self._chat_id = chat_id
        self._api_base = api_base.rstrip("/")
        self._parse_mode = parse_mode

    @property
    def name(self) -> str:
        return "telegram"

    def __repr__(self) -> str:
        return (
            f"TelegramTransport(api_base={self._api_base!r}, chat_id={self._chat_id!r}, "
            "bot_token=SecretStr('**********'))"
        )

    def payload(self, notice: Notice) -> dict[str, object]:
        if self._parse_mode == "HTML":
            text = f"<b>{html.escape(notice.title)}</b>"
            if notice.body:
                text += "\n" + html.escape(notice.body)
        else:
            text = notice.text
        if len(text) > TELEGRAM_MAX_TEXT:
            text = notice.text[: TELEGRAM_MAX_TEXT - 1] + "…"
            plain = True
        else:
            plain = self._parse_mode != "HTML"
        payload: dict[str, object] = {
            "chat_id": self._chat_id,
            "text": text,
            "disable_web_page_preview": True,
        }
        if not plain:
            payload["parse_mode"] = "HTML"
        return payload

    async def send(self, notice: Notice) -> None:
        url = f"{self._api_base}/bot{self._token.get_secret_value()}/sendMessage"
        body = json.dumps(self.payload(notice), ensure_ascii=False).encode("utf-8")
        status, raw, _ = await self._post(url, body, {"Content-Type": "application/json"})
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if status == 200 and answer.get("ok") is True:
            return
        description = self.scrub(str(answer.get("description") or "")[:200])
        message = f"Telegram answered HTTP {status}" + (f": {description}" if description else "")
        params = answer.get("parameters")
        retry_after = _retry_after(params.get("retry_after")) if isinstance(params, dict) else None
        if status == 429:
            raise DeliveryError(message, retry_after=retry_after)
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise DeliveryError(message, retry_after=retry_after)
        # 400 (bad chat id or markup), 401 (bad token), 403 (bot blocked): retrying cannot help.
        raise DeliveryError(message, permanent=True)
