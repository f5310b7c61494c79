"""Builds the network venues named in settings (``[venues.<name>] kind = ...``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from botd.clock import Clock
from botd.errors import ConfigError
from botd.settings import VenueSettings
from botd.venues.base import VenueAdapter

if TYPE_CHECKING:
    from botd.venues.binance.auth import Signer

__all__ = ["KINDS", "UsageSink", "build_venue"]

KINDS = ("binance", "alpaca")


# Server-reported usage per pool, and when the request was sent (ns): the gateway's limiter
# adopts these counts, so several processes on one IP share one budget.
UsageSink = Callable[[dict[str, int], int], None]


def build_venue(
    name: str, cfg: VenueSettings, clock: Clock, on_usage: UsageSink | None = None
) -> VenueAdapter:
    if cfg.kind == "binance":
        return _binance(name, cfg, clock, on_usage)
    if cfg.kind == "alpaca":
        return _alpaca(name, cfg, clock, on_usage)
    raise ConfigError(
        f"venues.{name}.kind: unknown venue kind {cfg.kind!r} (botd knows: {', '.join(KINDS)})"
    )


def _binance(
    name: str, cfg: VenueSettings, clock: Clock, on_usage: UsageSink | None
) -> VenueAdapter:
    # Imported here: the paper-only daemon never loads the network stack.
    from botd.venues.binance.adapter import BinanceAdapter
    from botd.venues.binance.constants import LIVE, TESTNET

    if cfg.api_key is None or (cfg.api_secret is None and cfg.private_key_file is None):
        raise ConfigError(
            f"venues.{name}: api_key and api_secret are required (as secret files "
            f"venues__{name}__api_key and venues__{name}__api_secret, or BOTD_VENUES__"
            f"{name.upper()}__API_KEY / __API_SECRET); for an Ed25519 key, api_key and "
            f"private_key_file"
        )
    if cfg.api_secret is not None and cfg.private_key_file is not None:
        raise ConfigError(
            f"venues.{name}: give api_secret (HMAC key) or private_key_file (Ed25519), not both"
        )
    if not cfg.symbols:
        raise ConfigError(f'venues.{name}.symbols: list the symbols to trade, e.g. ["BTCUSDT"]')
    urls = TESTNET if cfg.testnet else LIVE
    return BinanceAdapter(
        name=name,
        base_url=cfg.base_url or urls.rest,
        ws_url=cfg.stream_url or (None if cfg.base_url else urls.streams),
        signer=_signer(name, cfg),
        clock=clock,
        symbols=cfg.symbols,
        on_usage=on_usage,
        trade_over=cfg.trade_over,
        ws_api_url=cfg.ws_api_url or (None if cfg.base_url else urls.ws_api),
        max_connection_age_s=cfg.max_connection_age,
        instruments_refresh_s=cfg.instruments_refresh,
        bar_intervals=cfg.bar_intervals,
        book_depth=cfg.book_depth,
    )


# Alpaca's hosts: paper and live trading use different keys; market data is one host for both.
ALPACA_PAPER = "https://paper-api.alpaca.markets"
ALPACA_LIVE = "https://api.alpaca.markets"
ALPACA_DATA = "wss://stream.data.alpaca.markets"


def _alpaca(
    name: str, cfg: VenueSettings, clock: Clock, on_usage: UsageSink | None
) -> VenueAdapter:
    # Imported here, like Binance: the paper-only daemon never loads the network stack.
    from botd.venues.alpaca.adapter import AlpacaAdapter

    for field, value in (("api_key", cfg.api_key), ("api_secret", cfg.api_secret)):
        if value is None or not value.get_secret_value().strip():
            raise ConfigError(
                f"venues.{name}.{field} is required for Alpaca (the API key id and secret "
                f"key, as secret files venues__{name}__api_key and venues__{name}__api_secret, "
                f"or BOTD_VENUES__{name.upper()}__API_KEY / __API_SECRET)"
            )
    assert cfg.api_key is not None
    assert cfg.api_secret is not None
    extra = {"private_key_file": cfg.private_key_file, "passphrase": cfg.passphrase}
    for field, given in extra.items():
        if given is not None:
            raise ConfigError(f"venues.{name}.{field}: Alpaca keys have no {field}")
    if not cfg.symbols:
        raise ConfigError(f'venues.{name}.symbols: list the symbols to trade, e.g. ["AAPL"]')
    if cfg.bar_intervals:
        raise ConfigError(
            f"venues.{name}.bar_intervals: venue bars are not supported for Alpaca yet; "
            "bars are built from trades"
        )
    if cfg.book_depth:
        raise ConfigError(f"venues.{name}.book_depth: order books are not supported for Alpaca yet")
    return AlpacaAdapter(
        name=name,
        base_url=cfg.base_url or (ALPACA_PAPER if cfg.testnet else ALPACA_LIVE),
        key_id=cfg.api_key,
        secret_key=cfg.api_secret,
        clock=clock,
        symbols=cfg.symbols,
        # The simulator serves market data on its trading port: derived from base_url there.
        data_url=cfg.stream_url or (None if cfg.base_url else ALPACA_DATA),
        stock_feed=cfg.stock_feed,
        on_usage=on_usage,
    )


def _signer(name: str, cfg: VenueSettings) -> Signer:
    from botd.venues.binance.auth import Ed25519Signer, HmacSigner

    assert cfg.api_key is not None
    if cfg.api_secret is not None:
        return HmacSigner(cfg.api_key, cfg.api_secret)
    assert cfg.private_key_file is not None
    try:
        pem = cfg.private_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"venues.{name}.private_key_file: cannot read {cfg.private_key_file}: {exc.strerror}"
        ) from None
    try:
        return Ed25519Signer(cfg.api_key, pem)
    except ConfigError as exc:
        raise ConfigError(f"venues.{name}.private_key_file: {exc}") from None
