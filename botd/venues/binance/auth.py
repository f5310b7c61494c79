"""Request signing for Binance Spot (WIRE_FACTS §1.2).

Two payload rules exist and they differ on purpose:

* REST signs the exact query string that is sent (non-ASCII percent-encoded first), in the
  order the parameters appear; the server verifies the bytes it received, so order only has
  to be consistent between what we sign and what we send.
* The WS API signs the params sorted by key, joined raw (UTF-8, no percent-encoding),
  excluding ``signature``; ``apiKey`` travels inside the params and is signed too.

Secrets stay inside :class:`pydantic.SecretStr` and are unwrapped only at the moment of use, so
no repr, log line or exception text can carry them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import NoReturn, Protocol
from urllib.parse import quote

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from botd.errors import ConfigError

__all__ = [
    "API_KEY_HEADER",
    "MAX_RECV_WINDOW_MS",
    "Ed25519Signer",
    "HmacSigner",
    "Signer",
    "WsParamValue",
    "signed_query",
    "signed_ws_params",
    "ws_api_signature_payload",
]

API_KEY_HEADER = "X-MBX-APIKEY"
# The server rejects a larger recvWindow; failing here gives a config error instead of a -1xxx.
MAX_RECV_WINDOW_MS = 60_000
# Parameters the helpers add themselves: a caller passing them would sign a second copy.
_RESERVED = frozenset({"timestamp", "recvWindow", "signature"})

WsParamValue = str | int | bool


class Signer(Protocol):
    def sign(self, payload: str) -> str:
        """The signature of ``payload`` (its UTF-8 bytes) in the form Binance expects."""
        ...

    def api_key_header(self) -> dict[str, str]: ...


def _require(secret: SecretStr, what: str) -> None:
    if not secret.get_secret_value():
        raise ConfigError(f"Binance {what} is empty")


class HmacSigner:
    """HMAC-SHA256 keys (deprecated by Binance, still accepted). Signatures are lowercase hex."""

    __slots__ = ("_api_key", "_secret")

    def __init__(self, api_key: SecretStr, secret: SecretStr) -> None:
        _require(api_key, "API key")
        _require(secret, "API secret")
        self._api_key = api_key
        self._secret = secret

    def sign(self, payload: str) -> str:
        key = self._secret.get_secret_value().encode("utf-8")
        return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def api_key_header(self) -> dict[str, str]:
        return {API_KEY_HEADER: self._api_key.get_secret_value()}

    def __repr__(self) -> str:
        return "HmacSigner(api_key=**********, secret=**********)"

    def __reduce__(self) -> NoReturn:
        # Pickling would write the secret to wherever the pickle goes.
        raise TypeError("signers cannot be pickled")


class Ed25519Signer:
    """Ed25519 keys (Binance's recommended type; the only one ``session.logon`` accepts).

    Signatures are standard base64; :func:`signed_query` percent-encodes them for the URL.
    """

    __slots__ = ("_api_key", "_key")

    def __init__(self, api_key: SecretStr, private_key_pem: SecretStr | bytes) -> None:
        _require(api_key, "API key")
        pem = (
            private_key_pem.get_secret_value().encode("utf-8")
            if isinstance(private_key_pem, SecretStr)
            else private_key_pem
        )
        try:
            key = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # `from None`: the underlying message may quote part of the key material.
            raise ConfigError("Binance Ed25519 private key is not a valid PEM key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("Binance private key is not an Ed25519 key")
        self._api_key = api_key
        self._key = key

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode("utf-8"))).decode("ascii")

    def api_key_header(self) -> dict[str, str]:
        return {API_KEY_HEADER: self._api_key.get_secret_value()}

    def __repr__(self) -> str:
        return "Ed25519Signer(api_key=**********, private_key=**********)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("signers cannot be pickled")


def _check_params(params: Mapping[str, object]) -> None:
    clash = _RESERVED.intersection(params)
    if clash:
        raise ValueError(f"parameters {sorted(clash)} are added by the signing helper")


def _check_recv_window(recv_window_ms: int | None) -> None:
    if recv_window_ms is not None and not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
        raise ConfigError(f"recvWindow must be in (0, {MAX_RECV_WINDOW_MS}] ms")


def _q(text: str) -> str:
    # Everything outside the unreserved set is escaped, so the bytes we sign are exactly the
    # bytes on the wire (Binance verifies the raw query string before decoding it).
    return quote(text, safe="")


def signed_query(
    params: Mapping[str, str],
    signer: Signer,
    timestamp_ms: int,
    recv_window_ms: int | None = None,
) -> str:
    """The full signed REST query string: ``params`` in insertion order, then ``recvWindow``
    (if given), then ``timestamp``, then ``&signature=``.

    recvWindow precedes timestamp because that is the order of the official example
    (WIRE_FACTS §1.2 vectors 1-2), so the helper reproduces those bytes exactly.
    """
    _check_params(params)
    _check_recv_window(recv_window_ms)
    parts = [f"{_q(k)}={_q(v)}" for k, v in params.items()]
    if recv_window_ms is not None:
        parts.append(f"recvWindow={recv_window_ms}")
    parts.append(f"timestamp={timestamp_ms}")
    payload = "&".join(parts)
    return f"{payload}&signature={_q(signer.sign(payload))}"


def _ws_value(value: WsParamValue) -> str:
    # bool before int: bool is an int subclass; JSON spells booleans in lower case.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    # Floats would sign their repr, which need not be what the JSON encoder sends.
    raise TypeError(f"WS API parameter values must be str, int or bool, not {type(value)}")


def ws_api_signature_payload(params: Mapping[str, WsParamValue]) -> str:
    """The WS API payload: every param except ``signature``, sorted by key, raw UTF-8."""
    return "&".join(f"{k}={_ws_value(params[k])}" for k in sorted(params) if k != "signature")


def signed_ws_params(
    params: Mapping[str, WsParamValue],
    signer: Signer,
    timestamp_ms: int,
    recv_window_ms: int | None = None,
) -> dict[str, WsParamValue]:
    """``params`` plus ``apiKey``, ``timestamp``, optional ``recvWindow`` and ``signature``,
    ready to send as a WS API request's params."""
    _check_params(params)
    _check_recv_window(recv_window_ms)
    out: dict[str, WsParamValue] = dict(params)
    out["apiKey"] = signer.api_key_header()[API_KEY_HEADER]
    out["timestamp"] = timestamp_ms
    if recv_window_ms is not None:
        out["recvWindow"] = recv_window_ms
    out["signature"] = signer.sign(ws_api_signature_payload(out))
    return out
