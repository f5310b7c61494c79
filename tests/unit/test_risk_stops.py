"""Pre-trade risk for stop and stop-limit orders: tick rounding of the stop, notional at the
stop (or limit), the side of the market, and the price band of a stop-limit's limit."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from botd.clock import FakeClock
from botd.model import OrderIntent, OrderType, Side
from botd.risk import Approved, Denied, RiskEngine, RiskLimits
from tests.unit.test_risk import BTC, FakeView


def intent(
    side: Side,
    qty: str,
    *,
    stop: str | None,
    price: str | None = None,
    type: OrderType | None = None,
) -> OrderIntent:
    kind = type or (OrderType.STOP if price is None else OrderType.STOP_LIMIT)
    return OrderIntent(
        strategy_id="dip",
        venue=BTC.venue,
        symbol=BTC.symbol,
        side=side,
        qty=D(qty),
        type=kind,
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
    )


def engine(limits: RiskLimits | None = None) -> tuple[RiskEngine, FakeView]:
    clock = FakeClock()
    view = FakeView(clock)
    view.quote("100.00", "100.10")
    return RiskEngine(clock=clock, view=view, limits=limits or RiskLimits()), view


def test_the_stop_is_rounded_away_from_the_market() -> None:
    risk, _ = engine()
    sell = risk.check(intent(Side.SELL, "1", stop="95.555"))
    assert sell == Approved(D("1.000"), None, D("95.55"))  # a sell stop rounds down
    buy = risk.check(intent(Side.BUY, "1", stop="105.001"))
    assert buy == Approved(D("1.000"), None, D("105.01"))  # a buy stop rounds up
    limit = risk.check(intent(Side.SELL, "1", stop="95", price="94.999"))
    assert limit == Approved(D("1.000"), D("95.00"), D("95.00"))  # the limit as ever


@pytest.mark.parametrize(
    ("side", "stop", "words"),
    [
        (Side.SELL, "100.00", "sell stop 100.00 is at or above the bid 100.00"),
        (Side.SELL, "101", "a sell stop must be below the market"),
        (Side.BUY, "100.10", "buy stop 100.10 is at or below the ask 100.10"),
        (Side.BUY, "99", "a buy stop must be above the market"),
    ],
)
def test_a_stop_on_the_wrong_side_of_the_market_is_denied(
    side: Side, stop: str, words: str
) -> None:
    risk, _ = engine()
    decision = risk.check(intent(side, "1", stop=stop))
    assert isinstance(decision, Denied)
    assert decision.code == "WOULD_TRIGGER"
    assert words in decision.reason


def test_notional_is_taken_at_the_stop_or_the_limit() -> None:
    risk, _ = engine(RiskLimits(max_order_notional=D("1000")))
    # 10 x 99 = 990 at the stop: fine, though 10 x the bid (1000) would be at the limit too.
    assert isinstance(risk.check(intent(Side.SELL, "10", stop="99")), Approved)
    big = risk.check(intent(Side.BUY, "10", stop="101"))  # 10 x 101 = 1010
    assert isinstance(big, Denied) and big.code == "MAX_NOTIONAL"
    assert "1010" in big.reason
    # A stop-limit at its limit: 10 x 99.9 = 999 passes even with the stop at 101.
    ok = risk.check(intent(Side.BUY, "10", stop="101", price="99.9"))
    assert isinstance(ok, Approved)


def test_minimum_notional_uses_the_stop() -> None:
    risk, _ = engine()
    small = risk.check(intent(Side.SELL, "0.05", stop="90"))  # 4.5 < 5
    assert isinstance(small, Denied) and small.code == "BELOW_MINIMUM"


def test_a_stop_limit_whose_limit_is_far_through_its_stop_is_a_fat_finger() -> None:
    risk, _ = engine(RiskLimits(price_band=D("0.05")))
    far = risk.check(intent(Side.SELL, "1", stop="95", price="80"))
    assert isinstance(far, Denied) and far.code == "PRICE_BAND"
    assert "through the stop price 95.00" in far.reason
    near = risk.check(intent(Side.SELL, "1", stop="95", price="94"))
    assert isinstance(near, Approved)


def test_stops_need_a_stop_price_and_cannot_be_post_only() -> None:
    with pytest.raises(ValueError, match="needs a stop price"):
        intent(Side.SELL, "1", stop=None, type=OrderType.STOP)
    risk, _ = engine()
    bad = risk.check(intent(Side.SELL, "1", stop="-5"))
    assert isinstance(bad, Denied) and bad.code == "FILTER"
    post = risk.check(
        OrderIntent(
            "dip",
            BTC.venue,
            BTC.symbol,
            Side.SELL,
            D("1"),
            OrderType.STOP_LIMIT,
            D("94"),
            post_only=True,
            stop_price=D("95"),
        )
    )
    assert isinstance(post, Denied) and "cannot be post-only" in post.reason


def test_with_no_quote_and_no_band_the_venue_judges_the_side() -> None:
    clock = FakeClock()
    view = FakeView(clock)
    risk = RiskEngine(clock=clock, view=view, limits=RiskLimits(price_band=None))
    assert isinstance(risk.check(intent(Side.SELL, "1", stop="95")), Approved)
    banded = RiskEngine(clock=clock, view=view, limits=RiskLimits())
    denied = banded.check(intent(Side.SELL, "1", stop="95"))
    assert isinstance(denied, Denied) and denied.code == "NO_QUOTE"
