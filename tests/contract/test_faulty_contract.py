"""A FaultyVenue with an empty plan is indistinguishable from the venue it wraps."""

from __future__ import annotations

from pathlib import Path

from botd.clock import FakeClock
from botd.venues.base import VenueAdapter
from botd.venues.sim.faulty import FaultPlan, FaultyVenue
from tests.contract.test_paper_contract import PaperTime, paper
from tests.contract.venue_contract import VenueContract


class TestFaultyContract(PaperTime, VenueContract):
    symbol = "BTCUSDT"
    other_symbol = "ETHUSDT"
    insufficient_balance_code = "INSUFFICIENT_BALANCE"
    bad_tick_code = "TICK_SIZE"

    async def make_venue(self, tmp_path: Path) -> VenueAdapter:
        self.clock = FakeClock()
        self.plan = FaultPlan()
        return FaultyVenue(paper(self.clock), self.plan)

    async def test_nothing_was_injected(self, venue: VenueAdapter) -> None:
        await venue.balances()
        assert self.plan.log == []
