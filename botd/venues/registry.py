"""Builds the network venues named in settings (``[venues.<name>] kind = ...``)."""

from __future__ import annotations

from collections.abc import Callable

from botd.clock import Clock
from botd.errors import ConfigError
from botd.settings import VenueSettings
from botd.venues.base import VenueAdapter

__all__ = ["KINDS", "UsageSink", "build_venue"]

KINDS = ("binance",)


# Server-reported usage per pool, and when the request was sent (ns): the gateway's limiter
# adopts these counts, so several processes on one IP share one budget.
UsageSink = Callable[[dict[str, int], int], None]


def build_venue(
    name: str, cfg: VenueSettings, clock: Clock, on_usage: UsageSink | None = None
) -> VenueAdapter:
    if cfg.kind == "binance":
        return _binance(name, cfg, clock, on_usage)
    raise ConfigError(
        f"venues.{name}.kind: unknown venue kind {cfg.kind!r} (botd knows: {', '.join(KINDS)})"
    )


def _binance(
    name: str, cfg: VenueSettings, clock: Clock, on_usage: UsageSink | None
) -> VenueAdapter:
    # Imported here: the paper-only daemon never loads the network stack.
    from botd.venues.binance.adapter import BinanceAdapter
    from botd.venues.binance.auth import HmacSigner
    from botd.venues.binance.constants import LIVE, TESTNET

    if cfg.api_key is None or cfg.api_secret is None:
        raise ConfigError(
            f"venues.{name}: api_key and api_secret are required (as secret files "
            f"venues__{name}__api_key and venues__{name}__api_secret, or BOTD_VENUES__"
            f"{name.upper()}__API_KEY / __API_SECRET)"
        )
    if not cfg.symbols:
        raise ConfigError(f'venues.{name}.symbols: list the symbols to trade, e.g. ["BTCUSDT"]')
    urls = TESTNET if cfg.testnet else LIVE
    return BinanceAdapter(
        name=name,
        base_url=cfg.base_url or urls.rest,
        ws_url=cfg.stream_url or (None if cfg.base_url else urls.streams),
        signer=HmacSigner(cfg.api_key, cfg.api_secret),
        clock=clock,
        symbols=cfg.symbols,
        on_usage=on_usage,
    )
