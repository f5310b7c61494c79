"""What a [venues.binance] section says about the WS API reaches the adapter."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from botd.clock import FakeClock
from botd.settings import VenueSettings
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.constants import (
    DEFAULT_MAX_CONNECTION_AGE_S,
    LIVE,
    TESTNET,
    ws_api_url_from_rest,
)
from botd.venues.registry import build_venue


def _cfg(**kw: object) -> VenueSettings:
    return VenueSettings(
        kind="binance",
        api_key=SecretStr("k"),
        api_secret=SecretStr("s"),
        symbols=["BTCUSDT"],
        **kw,  # type: ignore[arg-type]
    )


def _built(cfg: VenueSettings) -> BinanceAdapter:
    adapter = build_venue("binance", cfg, FakeClock())
    assert isinstance(adapter, BinanceAdapter)
    return adapter


def test_defaults_trade_over_the_ws_api_with_the_environment_url() -> None:
    cfg = _cfg()
    assert cfg.trade_over == "ws"
    assert cfg.max_connection_age == DEFAULT_MAX_CONNECTION_AGE_S < 86_400
    testnet = _built(cfg)
    assert testnet._trade_over == "ws"
    assert testnet.ws_api is not None and testnet.ws_api._url == TESTNET.ws_api
    live = _built(_cfg(testnet=False))
    assert live.ws_api is not None and live.ws_api._url == LIVE.ws_api


def test_base_url_derives_the_ws_api_url_and_settings_pass_through() -> None:
    adapter = _built(
        _cfg(
            base_url="http://127.0.0.1:8765",
            trade_over="rest",
            max_connection_age=600.0,
            instruments_refresh=120.0,
        )
    )
    assert adapter.ws_api is not None
    assert adapter.ws_api._url == "ws://127.0.0.1:8765/ws-api/v3"
    assert adapter._trade_over == "rest"
    assert adapter._max_age_s == 600.0 and adapter._refresh_s == 120.0
    explicit = _built(_cfg(base_url="http://127.0.0.1:8765", ws_api_url="ws://h:1/ws-api/v3"))
    assert explicit.ws_api is not None and explicit.ws_api._url == "ws://h:1/ws-api/v3"


def test_ws_api_url_from_rest() -> None:
    assert ws_api_url_from_rest("https://h/") == "wss://h/ws-api/v3"
    assert ws_api_url_from_rest("http://h:1") == "ws://h:1/ws-api/v3"


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="trade_over"):
        _cfg(trade_over="fix")
    with pytest.raises(ValidationError, match="max_connection_age"):
        _cfg(max_connection_age=90_000.0)  # past the venue's own 24 h cut
