"""Stop and stop-limit orders in rules files: ``sell 1 stop <price> [at <limit>]``."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from botd.model import OrderType, Side
from botd.strategy.rules.actions import parse_action
from botd.strategy.rules.errors import RulesError
from tests.unit.strategy.rules.rules_fakes import FakeHost, start
from tests.unit.strategy.rules.test_rules_runtime import rules


def test_parse_stop_and_stop_limit() -> None:
    stop = parse_action("sell 0.5 stop close * 0.98")
    assert stop.stop is not None and stop.price is None
    both = parse_action("buy 100 USDT stop high + 1 at high + 2")
    assert both.asset == "USDT"
    assert both.stop is not None and both.price is not None
    assert parse_action("buy size at bid").stop is None  # unchanged without 'stop'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sell 1 stop", "expected"),
        ("sell 1 stop 95 95", "after the stop price: expected 'at <price>' or nothing"),
        ("sell 1 at 95 stop 94", "found 'stop'"),  # the stop comes before the limit
    ],
)
def test_bad_stop_clauses_are_refused(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_action(text)


def test_stop_actions_send_stop_orders_rounded_away_from_the_market(tmp_path: Path) -> None:
    cls = rules(
        tmp_path,
        "close > 100", "sell 0.001 stop close * 0.98",
        "close > 200", "buy 0.002 stop close * 1.02 at close * 1.03",
        "close > 300", "buy 100 USDT stop 500",
    )  # fmt: skip
    host = FakeHost()
    host.set_quote("BTCUSDT", "399.99", "400")
    strategy = start(cls, host)
    host.bar(strategy, 401.23)
    got = [(i.side, i.qty, i.type, i.stop_price, i.price) for i in host.intents]
    assert got == [
        # 393.2054 rounded down for a sell stop
        (Side.SELL, D("0.001"), OrderType.STOP, D("393.20"), None),
        # 409.2546 rounded up for a buy stop; the limit 413.2669 rounded down as ever
        (Side.BUY, D("0.002"), OrderType.STOP_LIMIT, D("409.26"), D("413.26")),
        # 100 USDT sized at the stop price
        (Side.BUY, D("0.2"), OrderType.STOP, D("500.00"), None),
    ]


def test_an_unknown_stop_price_skips_the_action(tmp_path: Path) -> None:
    cls = rules(tmp_path, "close > 1", "sell 1 stop bid - 1")
    host = FakeHost()
    strategy = start(cls, host)
    assert host.bar(strategy, 10) == ["rule 1"]  # fired; no quote, so no stop price
    assert host.intents == []
