"""Signing against every official vector of WIRE_FACTS §1.2, and secret hygiene."""

from __future__ import annotations

import copy
import pickle

import pytest
from pydantic import SecretStr

from botd.errors import ConfigError
from botd.venues.binance.auth import (
    Ed25519Signer,
    HmacSigner,
    signed_query,
    signed_ws_params,
    ws_api_signature_payload,
)

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
ED_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u\n"
    "-----END PRIVATE KEY-----\n"
)
# The non-ASCII symbol of the official examples (fullwidth digits 1-6).
FULLWIDTH = "\uff11\uff12\uff13\uff14\uff15\uff16"
ED_API_KEY = "4yNzx3yWC5bS6YTwEkSRaC0nRmSQIIStAUOh1b6kqaBrTLIhjCpI5lJH8q8R8WNO"


@pytest.fixture
def hmac_signer() -> HmacSigner:
    return HmacSigner(SecretStr(API_KEY), SecretStr(SECRET))


@pytest.fixture
def ed_signer() -> Ed25519Signer:
    return Ed25519Signer(SecretStr(ED_API_KEY), SecretStr(ED_PEM))


# (payload, expected hex): rows 1-3 of the table (REST).
REST_VECTORS = [
    (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559",
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
    ),
    (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
        "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
    ),
    (
        # Query string + body, concatenated with no separator.
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
        "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
    ),
]


@pytest.mark.parametrize(("payload", "expected"), REST_VECTORS)
def test_hmac_rest_vectors(hmac_signer: HmacSigner, payload: str, expected: str) -> None:
    assert hmac_signer.sign(payload) == expected


ORDER = {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}


def test_signed_query_reproduces_vector_1(hmac_signer: HmacSigner) -> None:
    params = {**ORDER, "quantity": "1", "price": "0.1"}
    query = signed_query(params, hmac_signer, 1499827319559, 5000)
    assert query == REST_VECTORS[0][0] + "&signature=" + REST_VECTORS[0][1]


def test_signed_query_percent_encodes_non_ascii_before_signing(hmac_signer: HmacSigner) -> None:
    params = {**ORDER, "symbol": FULLWIDTH, "quantity": "1", "price": "0.1"}
    query = signed_query(params, hmac_signer, 1499827319559, 5000)
    assert query == REST_VECTORS[1][0] + "&signature=" + REST_VECTORS[1][1]


def test_signed_query_without_recv_window(hmac_signer: HmacSigner) -> None:
    query = signed_query({"symbol": "BTCUSDT"}, hmac_signer, 1)
    payload = "symbol=BTCUSDT&timestamp=1"
    assert query == f"{payload}&signature={hmac_signer.sign(payload)}"


@pytest.mark.parametrize("reserved", ["timestamp", "recvWindow", "signature"])
def test_signed_query_refuses_reserved_params(hmac_signer: HmacSigner, reserved: str) -> None:
    with pytest.raises(ValueError, match=reserved):
        signed_query({reserved: "1"}, hmac_signer, 1)


@pytest.mark.parametrize("window", [0, -1, 60_001])
def test_signed_query_refuses_bad_recv_window(hmac_signer: HmacSigner, window: int) -> None:
    with pytest.raises(ConfigError):
        signed_query({}, hmac_signer, 1, window)


# WS API vectors 4-11: (params, expected payload, expected hex).
WS_VECTORS: list[tuple[dict[str, str | int], str, str]] = [
    (
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.01000000",
            "price": "52000.00",
            "recvWindow": 100,
            "timestamp": 1645423376532,
            "apiKey": API_KEY,
        },
        f"apiKey={API_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL"
        "&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
        "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24",
    ),
    (
        {
            "symbol": FULLWIDTH,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "1.00000000",
            "price": "0.10000000",
            "recvWindow": 5000,
            "timestamp": 1645423376532,
            "apiKey": API_KEY,
        },
        f"apiKey={API_KEY}&price=0.10000000&quantity=1.00000000&recvWindow=5000&side=BUY"
        f"&symbol={FULLWIDTH}&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
        "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd",
    ),
    (
        {"timestamp": 1649729878532, "apiKey": API_KEY},
        f"apiKey={API_KEY}&timestamp=1649729878532",
        "1cf54395b336b0a9727ef27d5d98987962bc47aca6e13fe978612d0adee066ed",
    ),
    (
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "price": "23416.10000000",
            "quantity": "0.00847000",
            "timestamp": 1660801715431,
            "apiKey": API_KEY,
        },
        f"apiKey={API_KEY}&price=23416.10000000&quantity=0.00847000&side=SELL&symbol=BTCUSDT"
        "&timeInForce=GTC&timestamp=1660801715431&type=LIMIT",
        "15af09e41c36f3cc61378c2fbe2c33719a03dd5eba8d0f9206fbda44de717c88",
    ),
    (
        {
            "symbol": "BTCUSDT",
            "origClientOrderId": "4d96324ff9d44481926157",
            "timestamp": 1660801715830,
            "apiKey": API_KEY,
        },
        f"apiKey={API_KEY}&origClientOrderId=4d96324ff9d44481926157&symbol=BTCUSDT"
        "&timestamp=1660801715830",
        "33d5b721f278ae17a52f004a82a6f68a70c68e7dd6776ed0be77a455ab855282",
    ),
    (
        {
            "symbol": "BTCUSDT",
            "orderId": 12569099453,
            "timestamp": 1660801720951,
            "apiKey": API_KEY,
        },
        f"apiKey={API_KEY}&orderId=12569099453&symbol=BTCUSDT&timestamp=1660801720951",
        "2c3aab5a078ee4ea465ecd95523b77289f61476c2f238ec10c55ea6cb11a6f35",
    ),
    (
        {"symbol": "BTCUSDT", "timestamp": 1660813156812, "apiKey": API_KEY},
        f"apiKey={API_KEY}&symbol=BTCUSDT&timestamp=1660813156812",
        "d632b3fdb8a81dd44f82c7c901833309dd714fe508772a89b0a35b0ee0c48b89",
    ),
    (
        {"timestamp": 1660801839480, "apiKey": API_KEY},
        f"apiKey={API_KEY}&timestamp=1660801839480",
        "83303b4a136ac1371795f465808367242685a9e3a42b22edb4d977d0696eb45c",
    ),
]


@pytest.mark.parametrize(("params", "payload", "expected"), WS_VECTORS)
def test_hmac_ws_api_vectors(
    hmac_signer: HmacSigner,
    params: dict[str, str | int],
    payload: str,
    expected: str,
) -> None:
    assert ws_api_signature_payload(params) == payload
    assert hmac_signer.sign(payload) == expected
    # A signature already present is never part of its own payload.
    assert ws_api_signature_payload({**params, "signature": "x"}) == payload


def test_signed_ws_params_reproduces_vector_4(hmac_signer: HmacSigner) -> None:
    params = {k: v for k, v in WS_VECTORS[0][0].items() if k not in {"timestamp", "recvWindow"}}
    params.pop("apiKey")
    out = signed_ws_params(params, hmac_signer, 1645423376532, 100)
    assert out["apiKey"] == API_KEY
    assert out["signature"] == WS_VECTORS[0][2]


def test_ws_payload_value_rendering() -> None:
    assert ws_api_signature_payload({"b": True, "a": False, "c": 7}) == "a=false&b=true&c=7"
    with pytest.raises(TypeError):
        ws_api_signature_payload({"a": 1.5})  # type: ignore[dict-item]


def test_ed25519_official_fix_vector(ed_signer: Ed25519Signer) -> None:
    payload = "\x01".join(["A", "EXAMPLE", "SPOT", "1", "20240627-11:17:25.223"])
    assert ed_signer.sign(payload) == (
        "4MHXelVVcpkdwuLbl6n73HQUXUf1dse2PCgT1DYqW9w8AVZ1RACFGM+5UdlGPrQHrgtS3CvsRURC1oj73j8gCA=="
    )


def test_ed25519_derived_rest_vector(ed_signer: Ed25519Signer) -> None:
    payload = (
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2"
        "&timestamp=1668481559918&recvWindow=5000"
    )
    assert ed_signer.sign(payload) == (
        "inDT086KVIP8vgUfw5sV3VTkescWztiAGlf4x8FLKHM4NInsn0c1kYVLoGMO8cyjfR6vmTku2YQE0gtfVVlfCw=="
    )


def test_ed25519_derived_ws_vector(ed_signer: Ed25519Signer) -> None:
    params = {**WS_VECTORS[0][0], "apiKey": ED_API_KEY}
    assert ed_signer.sign(ws_api_signature_payload(params)) == (
        "82wlF5RobwT7JZehRQgOaupNEm5GrAqJj5tqZeCCE6ZxkhlUbWBThOx00q3FVnCKn882P+9p85phztjk4bOMAQ=="
    )


def test_ed25519_signature_is_percent_encoded_in_query(ed_signer: Ed25519Signer) -> None:
    query = signed_query({"symbol": "BTCUSDT"}, ed_signer, 1668481559918)
    signature = ed_signer.sign("symbol=BTCUSDT&timestamp=1668481559918")
    encoded = query.rsplit("&signature=", 1)[1]
    assert not {"+", "/", "="} & set(encoded)
    assert encoded.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=") == signature


def test_ed25519_accepts_pem_bytes() -> None:
    signer = Ed25519Signer(SecretStr(ED_API_KEY), ED_PEM.encode())
    assert signer.api_key_header() == {"X-MBX-APIKEY": ED_API_KEY}


def test_api_key_header(hmac_signer: HmacSigner) -> None:
    assert hmac_signer.api_key_header() == {"X-MBX-APIKEY": API_KEY}


@pytest.mark.parametrize(
    "pem",
    [
        SecretStr("not a key"),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_bad_ed25519_key_is_config_error_without_key_text(pem: SecretStr | bytes) -> None:
    with pytest.raises(ConfigError) as info:
        Ed25519Signer(SecretStr(ED_API_KEY), pem)
    assert "AAAA" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_non_ed25519_key_is_config_error() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match="not an Ed25519"):
        Ed25519Signer(SecretStr(ED_API_KEY), pem)


def test_empty_secrets_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        HmacSigner(SecretStr(""), SecretStr(SECRET))
    with pytest.raises(ConfigError):
        HmacSigner(SecretStr(API_KEY), SecretStr(""))


def test_secrets_never_in_repr_or_str(hmac_signer: HmacSigner, ed_signer: Ed25519Signer) -> None:
    pem_body = ED_PEM.splitlines()[1]
    for signer in (hmac_signer, ed_signer):
        for text in (repr(signer), str(signer), f"{signer!r}", repr([signer]), repr({"s": signer})):
            assert API_KEY not in text
            assert ED_API_KEY not in text
            assert SECRET not in text
            assert pem_body not in text
        # slots: no __dict__ for a debugger or logger to dump.
        assert not hasattr(signer, "__dict__")


def test_signers_refuse_pickling_and_copying(
    hmac_signer: HmacSigner, ed_signer: Ed25519Signer
) -> None:
    for signer in (hmac_signer, ed_signer):
        with pytest.raises(TypeError):
            pickle.dumps(signer)
        with pytest.raises(TypeError):
            copy.copy(signer)
