"""Request parameters and request signing as Binance Spot checks them (HMAC-SHA256, Ed25519).

REST: the signed payload is the raw query string followed by the raw body with no separator,
each as sent (percent-encoding included), minus the ``signature`` parameter itself.
WS API: every parameter but ``signature``, sorted by name, joined as ``k=v`` with ``&``, raw
UTF-8 (:func:`ws_payload`). HMAC signatures are hex; Ed25519 signatures are base64 (and, in a
URL, percent-encoded on top).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal
from urllib.parse import parse_qsl, unquote

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from botd.venues.sim.binance.errors import BinanceError, mandatory

__all__ = [
    "ApiKey",
    "check_timestamp",
    "merge_params",
    "payload_without_signature",
    "verify_hmac",
    "ws_payload",
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


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the simulator knows of one API key: an HMAC secret, or an Ed25519 public key.

    Build one with :meth:`hmac` or :meth:`ed25519`; the secret never shows in a repr."""

    kind: Literal["hmac", "ed25519"]
    secret: str = field(default="", repr=False)
    public_key: Ed25519PublicKey | None = field(default=None, repr=False)

    @classmethod
    def hmac(cls, secret: str) -> ApiKey:
        if not secret:
            raise ValueError("an HMAC key needs a non-empty secret")
        return cls("hmac", secret=secret)

    @classmethod
    def ed25519(cls, pem: bytes | str) -> ApiKey:
        """From a PEM public key (what Binance is given), or a PEM private key whose public
        half is then used."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            loaded: object = load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            try:
                loaded = load_pem_private_key(data, password=None).public_key()
            except (ValueError, TypeError, UnsupportedAlgorithm):
                raise ValueError("not a PEM Ed25519 public or private key") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return cls("ed25519", public_key=loaded)

    def verify(self, payload: bytes, signature: str) -> bool:
        """``signature`` as it arrived: hex for HMAC; base64 for Ed25519, percent-encoded or
        not (a REST query carries it percent-encoded, a WS API request raw)."""
        if self.kind == "hmac":
            return verify_hmac(self.secret, payload, signature)
        assert self.public_key is not None
        try:
            raw = base64.b64decode(unquote(signature), validate=True)
            self.public_key.verify(raw, payload)
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True


def ws_payload(params: Mapping[str, str]) -> bytes:
    """The bytes a WS API request signs: every parameter but ``signature``, sorted by name."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature").encode()


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
