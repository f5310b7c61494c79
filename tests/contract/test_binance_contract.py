"""The Binance adapter fulfils the venue contract against the protocol simulator, trading over
the WebSocket API (the default) and over REST; user data streams over the WS API in both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from pydantic import SecretStr

from botd.clock import FakeClock
from botd.venues.base import VenueAdapter
from botd.venues.binance.adapter import BinanceAdapter
from botd.venues.binance.auth import HmacSigner
from botd.venues.sim.binance import BinanceSimulator
from tests.contract.venue_contract import VenueContract

KEY = "contract-key"
SECRET = "contract-secret"


class TestBinanceContract(VenueContract):
    symbol = "BTCUSDT"
    other_symbol = "ETHUSDT"
    insufficient_balance_code = "-2010"
    bad_tick_code = "-1013"

    clock: FakeClock
    sim: BinanceSimulator

    @pytest.fixture(autouse=True)
    async def _simulator(self) -> AsyncIterator[None]:
        self.clock = FakeClock()
        self.sim = BinanceSimulator(
            clock=self.clock,
            seed=11,
            symbols=["BTCUSDT", "ETHUSDT"],
            api_keys={KEY: SECRET},
            balances={KEY: {"USDT": Decimal("100000"), "BTC": Decimal("1")}},
        )
        self.port = await self.sim.start(port=0)
        try:
            yield
        finally:
            await self.sim.stop()

    trade_over: Literal["ws", "rest"] = "ws"

    async def make_venue(self, tmp_path: Path) -> VenueAdapter:
        return BinanceAdapter(
            base_url=f"http://127.0.0.1:{self.port}",
            signer=HmacSigner(SecretStr(KEY), SecretStr(SECRET)),
            clock=self.clock,
            symbols=("BTCUSDT", "ETHUSDT"),
            trade_over=self.trade_over,
        )

    async def let_time_pass(self, venue: VenueAdapter, seconds: float) -> None:
        await self.clock.advance(seconds)


class TestBinanceContractOverRest(TestBinanceContract):
    trade_over: Literal["ws", "rest"] = "rest"
