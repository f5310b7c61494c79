"""The paper venue fulfils the venue contract, with and without a persisted account."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from botd.clock import FakeClock
from botd.venues.base import VenueAdapter
from botd.venues.sim.paper import PaperVenue
from tests.contract.venue_contract import VenueContract

BALANCES = {"USDT": Decimal("100000"), "BTC": Decimal("1")}


def paper(clock: FakeClock, state_path: Path | None = None) -> PaperVenue:
    return PaperVenue(
        clock=clock,
        symbols=("BTCUSDT", "ETHUSDT"),
        seed=11,
        event_rate=20.0,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.002"),
        balances=BALANCES,
        state_path=state_path,
    )


class PaperTime:
    """Time on the paper venue is a FakeClock the test moves."""

    clock: FakeClock

    async def let_time_pass(self, venue: VenueAdapter, seconds: float) -> None:
        await self.clock.advance(seconds)


class TestPaperContract(PaperTime, VenueContract):
    symbol = "BTCUSDT"
    other_symbol = "ETHUSDT"
    insufficient_balance_code = "INSUFFICIENT_BALANCE"
    bad_tick_code = "TICK_SIZE"

    async def make_venue(self, tmp_path: Path) -> VenueAdapter:
        self.clock = FakeClock()
        return paper(self.clock)


class TestPersistentPaperContract(PaperTime, VenueContract):
    symbol = "ETHUSDT"
    other_symbol = "BTCUSDT"
    insufficient_balance_code = "INSUFFICIENT_BALANCE"
    bad_tick_code = "TICK_SIZE"

    async def make_venue(self, tmp_path: Path) -> VenueAdapter:
        self.clock = FakeClock()
        return paper(self.clock, tmp_path / "paper-account.json")
