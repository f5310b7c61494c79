"""Request parameters and HMAC-SHA256 request signing as Binance Spot REST checks them.

The signed payload is the raw query string followed by the raw body with no separator, each
as sent (percent-encoding included), minus the ``signature`` parameter itself.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from botd.venues.sim.binance.errors import BinanceError, mandatory

__all__ = [
    "check_timestamp",
    "merge_params",
    "payload_without_signature",
    "verify_hmac",
]

DEFAULT_RECV_WINDOW_MS = Decimal(5000)
MAX_RECV_WINDOW_MS = Decimal(60000)
AHEAD_TOLERANCE_MS = 1000


def merge_params(query: str, body: str) -> dict[str, str]:
    """Query and form body together; a parameter sent in both takes the query's value."""
    params = dict(parse_qsl(body, keep_blank_values=True))
    params.update(parse_qsl(query, keep_blank_values=True))
    return params


def _strip_signature(part: str) -> tuple[str, str | None]:
    kept: list[str] = []
    signature: str | None = None
    for item in part.split("&") if part else []:
        if item.startswith("signature="):
            signature = item[len("signature=") :]
        else:
            kept.append(item)
    return "&".join(kept), signature


def payload_without_signature(query: str, body: str) -> tuple[bytes, str | None]:
    """The exact bytes that were signed, and the signature found (query first, then body)."""
    q, sig_q = _strip_signature(query)
    b, sig_b = _strip_signature(body)
    return (q + b).encode(), sig_q if sig_q is not None else sig_b


def verify_hmac(secret: str, payload: bytes, signature: str) -> bool:
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    # HMAC signatures are case-insensitive on Binance.
    return hmac.compare_digest(expected, signature.lower())


def check_timestamp(params: dict[str, str], server_ms: int) -> None:
    """Binance's rule: ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <=
    recvWindow``. A timestamp of 16 digits or more is taken as microseconds."""
    raw = params.get("timestamp", "")
    if not raw.isdigit():
        raise mandatory("timestamp")
    ts = Decimal(int(raw))
    if ts >= Decimal(10) ** 15:
        ts = ts / 1000
    window = DEFAULT_RECV_WINDOW_MS
    if "recvWindow" in params:
        try:
            window = Decimal(params["recvWindow"])
        except InvalidOperation:
            raise mandatory("recvWindow") from None
        if not window.is_finite() or window <= 0:
            raise mandatory("recvWindow")
        if window > MAX_RECV_WINDOW_MS:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
    if ts >= server_ms + AHEAD_TOLERANCE_MS:
        raise BinanceError(
            -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if server_ms - ts > window:
        raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")
