"""``kind = "alpaca"`` in settings: the adapter built with the right endpoints, and every bad
or missing key a configuration error naming its field (never showing the secret)."""

from __future__ import annotations

from typing import Any

import pytest

from botd.clock import FakeClock
from botd.errors import ConfigError
from botd.settings import VenueSettings
from botd.venues.alpaca.adapter import ALPACA_CAPABILITIES, AlpacaAdapter
from botd.venues.registry import KINDS, build_venue
from botd.venues.sim.alpaca import AlpacaSimulator

SECRET = "s3cr3t-alpaca-value"


def cfg(**kw: Any) -> VenueSettings:
    base: dict[str, Any] = {
        "kind": "alpaca",
        "api_key": "PKTEST",
        "api_secret": SECRET,
        "symbols": ["AAPL", "BTC/USD"],
    }
    base.update(kw)
    return VenueSettings.model_validate(base)


def endpoints(venue: object) -> tuple[str, str, str]:
    assert isinstance(venue, AlpacaAdapter)
    return venue._http._base, venue._data_url, venue._stock_feed


def test_alpaca_is_a_known_kind() -> None:
    assert "alpaca" in KINDS


def test_testnet_means_paper_trading_and_false_means_live() -> None:
    clock = FakeClock()
    paper = build_venue("alpaca", cfg(), clock)
    live = build_venue("alpaca", cfg(testnet=False, stock_feed="sip"), clock)
    assert endpoints(paper) == (
        "https://paper-api.alpaca.markets",
        "wss://stream.data.alpaca.markets",
        "iex",
    )
    assert endpoints(live) == (
        "https://api.alpaca.markets",
        "wss://stream.data.alpaca.markets",
        "sip",
    )
    assert paper.name == "alpaca"
    assert paper.capabilities is ALPACA_CAPABILITIES
    (limit,) = paper.capabilities.rate_limits
    assert (limit.limit, limit.interval_s, limit.scope) == (200, 60.0, "account")


def test_a_simulator_base_url_serves_market_data_too_unless_overridden() -> None:
    clock = FakeClock()
    sim = build_venue("alpaca", cfg(base_url="http://127.0.0.1:8767"), clock)
    assert endpoints(sim)[:2] == ("http://127.0.0.1:8767", "ws://127.0.0.1:8767")
    split = build_venue(
        "alpaca",
        cfg(base_url="http://127.0.0.1:8767", stream_url="ws://127.0.0.1:9000"),
        clock,
    )
    assert endpoints(split)[1] == "ws://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"api_key": None}, "venues.broker.api_key"),
        ({"api_secret": None}, "venues.broker.api_secret"),
        ({"api_secret": "  "}, "venues.broker.api_secret"),
        ({"private_key_file": "/tmp/key.pem"}, "venues.broker.private_key_file"),
        ({"passphrase": "x"}, "venues.broker.passphrase"),
        ({"symbols": []}, "venues.broker.symbols"),
    ],
)
def test_bad_configuration_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_venue("broker", cfg(**change), FakeClock())
    assert field in str(err.value)
    assert SECRET not in str(err.value)


def test_equities_follow_the_nyse_calendar_and_crypto_the_clock() -> None:
    venue = build_venue("alpaca", cfg(), FakeClock())
    assert isinstance(venue, AlpacaAdapter)
    assert venue.session_calendar("AAPL") == "XNYS"
    assert venue.session_calendar("BTC/USD") is None


def test_an_unknown_stock_feed_is_refused_by_settings() -> None:
    with pytest.raises(ValueError, match="stock_feed"):
        cfg(stock_feed="delayed")


async def test_the_accounts_request_count_reaches_the_limiter() -> None:
    clock = FakeClock()
    sim = AlpacaSimulator(clock=clock, seed=1, api_keys={"PKTEST": SECRET}, step_rate=None)
    port = await sim.start(port=0)
    seen: list[tuple[dict[str, int], int]] = []
    venue = build_venue(
        "alpaca",
        cfg(base_url=f"http://127.0.0.1:{port}"),
        clock,
        lambda usage, sent_ns: seen.append((usage, sent_ns)),
    )
    try:
        await venue.balances()  # GET /v2/account, GET /v2/positions
        await venue.balances()
    finally:
        await venue.close()
        await sim.stop()
    assert [u for u, _ in seen] == [{"requests": n} for n in (1, 2, 3, 4)]
    assert all(ts == clock.time_ns() for _, ts in seen)
