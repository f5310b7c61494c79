"""The Alpaca adapter fulfils the venue contract against the Alpaca simulator (crypto, which
trades around the clock, so the contract's market orders fill whatever the calendar says)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.venues.alpaca.adapter import AlpacaAdapter
from botd.venues.base import VenueAdapter
from botd.venues.sim.alpaca import AlpacaSimulator
from tests.contract.venue_contract import VenueContract

KEY = "contract-key"
SECRET = "contract-secret"


class TestAlpacaContract(VenueContract):
    symbol = "BTC/USD"
    other_symbol = "ETH/USD"
    insufficient_balance_code = "40310000"
    bad_tick_code = "40010001"

    clock: FakeClock
    sim: AlpacaSimulator

    @pytest.fixture(autouse=True)
    async def _simulator(self) -> AsyncIterator[None]:
        self.clock = FakeClock()
        self.sim = AlpacaSimulator(clock=self.clock, seed=11, api_keys={KEY: SECRET})
        self.port = await self.sim.start(port=0)
        try:
            yield
        finally:
            await self.sim.stop()

    async def make_venue(self, tmp_path: Path) -> VenueAdapter:
        return AlpacaAdapter(
            base_url=f"http://127.0.0.1:{self.port}",
            key_id=SecretStr(KEY),
            secret_key=SecretStr(SECRET),
            clock=self.clock,
            symbols=("BTC/USD", "ETH/USD", "AAPL"),
        )

    async def let_time_pass(self, venue: VenueAdapter, seconds: float) -> None:
        await self.clock.advance(seconds)
