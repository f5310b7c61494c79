"""Which signer a [venues.binance] section builds, and how a bad key file is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.errors import ConfigError
from botd.settings import VenueSettings
from botd.venues.binance.auth import Ed25519Signer, HmacSigner
from botd.venues.registry import _signer, build_venue

CANARY = "canary-secret-3f9d"


def _cfg(**kw: object) -> VenueSettings:
    return VenueSettings(kind="binance", api_key=SecretStr("k"), symbols=["BTCUSDT"], **kw)  # type: ignore[arg-type]


def test_hmac_secret_builds_an_hmac_signer() -> None:
    assert isinstance(_signer("binance", _cfg(api_secret=SecretStr(CANARY))), HmacSigner)


def test_pem_file_builds_an_ed25519_signer_that_signs(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "k.pem"
    pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    signer = _signer("binance", _cfg(private_key_file=pem))
    assert isinstance(signer, Ed25519Signer)
    import base64

    sig = base64.b64decode(signer.sign("symbol=BTCUSDT&timestamp=1"))
    key.public_key().verify(sig, b"symbol=BTCUSDT&timestamp=1")  # raises if wrong


def test_missing_unreadable_or_wrong_key_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"venues\.binance\.private_key_file: cannot read"):
        _signer("binance", _cfg(private_key_file=tmp_path / "absent.pem"))
    bad = tmp_path / "bad.pem"
    bad.write_text(f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=r"venues\.binance\.private_key_file: ") as info:
        _signer("binance", _cfg(private_key_file=bad))
    assert CANARY not in str(info.value)


def test_both_or_neither_secret_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    with pytest.raises(ConfigError, match="not both"):
        build_venue(
            "binance",
            _cfg(api_secret=SecretStr(CANARY), private_key_file=tmp_path / "k.pem"),
            clock,
        )
    with pytest.raises(ConfigError, match="private_key_file"):
        build_venue("binance", _cfg(), clock)


def test_book_depth_reaches_the_adapter_and_alpaca_refuses_it() -> None:
    clock = FakeClock()
    on = build_venue("binance", _cfg(api_secret=SecretStr("s"), book_depth=True), clock)
    off = build_venue("binance", _cfg(api_secret=SecretStr("s")), clock)
    assert on._book_depth is True and off._book_depth is False  # type: ignore[attr-defined]
    alpaca = VenueSettings(
        kind="alpaca", api_key=SecretStr("k"), api_secret=SecretStr("s"), symbols=["AAPL"],
        book_depth=True,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"venues\.a\.book_depth"):
        build_venue("a", alpaca, clock)
