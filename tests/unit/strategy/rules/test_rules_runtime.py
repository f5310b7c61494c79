from decimal import Decimal as D
from pathlib import Path

import pytest

from botd.model import OrderType, Side, Trade
from botd.strategy.api import Strategy
from botd.strategy.loader import LoadedStrategy
from botd.strategy.rules import load_rules_file
from botd.strategy.rules.actions import parse_action
from botd.strategy.rules.parser import Binary
from tests.unit.strategy.rules.rules_fakes import FakeHost, start

EXAMPLE = Path(__file__).resolve().parents[4] / "strategies" / "dip_buyer.rules.toml"


def rules(tmp_path: Path, *rule_lines: str, extra: str = "") -> type[Strategy]:
    text = f'api_version = 1\nsymbol = "BTCUSDT"\ntimeframe = "5s"\n{extra}\n'
    for when, then in zip(rule_lines[::2], rule_lines[1::2], strict=True):
        text += f'[[rule]]\nwhen = "{when}"\nthen = "{then}"\n'
    path = tmp_path / "t.rules.toml"
    path.write_text(text)
    return load_rules_file(path)


def test_parse_actions() -> None:
    buy = parse_action("buy 0.001")
    assert (buy.verb, buy.amount, buy.asset, buy.price) == ("buy", D("0.001"), None, None)
    quote = parse_action("buy 100 USDT")
    assert (quote.amount, quote.asset, quote.asset_column) == (D(100), "USDT", 9)
    limit = parse_action("sell 0.5 at close * 1.001")
    assert limit.verb == "sell"
    assert isinstance(limit.price, Binary)
    assert (limit.price.line, limit.price.column) == (1, 19)
    assert parse_action("buy size").amount == "size"
    assert parse_action("close").verb == "close"
    assert parse_action("  cancel   all ").verb == "cancel"


def test_rules_fire_on_rising_edges_only(tmp_path: Path) -> None:
    cls = rules(tmp_path, "close > 100", "buy 0.001")
    host = FakeHost()
    strategy = start(cls, host)
    fired = [host.bar(strategy, c) for c in (99, 101, 102, 99, 103)]
    assert fired == [[], ["rule 1"], [], [], ["rule 1"]]
    assert [(i.side, i.qty, i.type, i.price, i.symbol) for i in host.intents] == [
        (Side.BUY, D("0.001"), OrderType.MARKET, None, "BTCUSDT")
    ] * 2
    # Between bars the condition does not change, whatever else the host checks after.
    assert host.check() == []


def test_values_come_from_bar_quote_trade_and_position(tmp_path: Path) -> None:
    cls = rules(
        tmp_path,
        "bid == 99 and ask == 101 and mid == 100 and price == 100.5",  "buy 1",
        "position == 2 and entry_price == 90 and unrealized_pnl == 20",  "sell 1",
        "realized_pnl == 7 and open == 95 and high == 110 and low == 90 and volume == 1", "close",
    )  # fmt: skip
    host = FakeHost()
    strategy = start(cls, host)
    assert host.bar(strategy, 95, high=110, low=90) == []  # no quote, no trade, flat
    host.set_quote("BTCUSDT", "99", "101")
    strategy.on_trade(Trade("paper", "BTCUSDT", D("100.5"), D(1), Side.BUY, "t", 0, 0))
    host.set_position("BTCUSDT", "2", "90", realized="7")
    assert host.bar(strategy, 95, high=110, low=90) == ["rule 1", "rule 2", "rule 3"]


def test_flat_position_reads_as_zero(tmp_path: Path) -> None:
    cls = rules(tmp_path, "position == 0 and entry_price == 0 and unrealized_pnl == 0", "buy 1")
    host = FakeHost()
    strategy = start(cls, host)
    assert host.bar(strategy, 10) == ["rule 1"]


def test_quote_amount_and_limit_price_actions(tmp_path: Path) -> None:
    cls = rules(
        tmp_path,
        "close > 100", "buy 100 USDT",
        "close > 200", "buy 0.002 BTC at close * 0.999",
        "close > 300", "sell 0.001 at close * 1.0001",
        "close > 400", "sell 50 USDT",
    )  # fmt: skip
    host = FakeHost()
    host.set_quote("BTCUSDT", "399.99", "400")
    strategy = start(cls, host)
    host.bar(strategy, 401.23)
    got = [(i.side, i.qty, i.type, i.price) for i in host.intents]
    assert got == [
        (Side.BUY, D("0.25"), OrderType.MARKET, None),  # 100 USDT at the ask of 400
        (Side.BUY, D("0.002"), OrderType.LIMIT, D("400.82")),  # 400.82877 rounded down
        (Side.SELL, D("0.001"), OrderType.LIMIT, D("401.28")),  # 401.270123 rounded up
        (Side.SELL, D("0.12500"), OrderType.MARKET, None),  # 50 USDT at the bid
    ]


def test_limit_price_unknown_skips_the_action(tmp_path: Path) -> None:
    cls = rules(tmp_path, "close > 1", "buy 1 at bid - 1")
    host = FakeHost()
    strategy = start(cls, host)
    assert host.bar(strategy, 10) == ["rule 1"]  # fired, but no quote: no price, no order
    assert host.intents == []


def test_close_and_cancel_all_act_on_the_rules_symbol(tmp_path: Path) -> None:
    path = tmp_path / "two.rules.toml"
    path.write_text(
        'api_version = 1\nsymbols = ["BTCUSDT", "ETHUSDT"]\n'
        '[[rule]]\nwhen = "close > 10"\nthen = "cancel all"\n'
        '[[rule]]\nwhen = "close > 20"\nthen = "close"\n'
    )
    cls = load_rules_file(path)
    host = FakeHost()
    strategy = start(cls, host)
    host.add_order("BTCUSDT", "b1")
    host.add_order("ETHUSDT", "e1")
    host.set_position("ETHUSDT", "-0.5", "30")
    host.set_position("BTCUSDT", "0.25", "30")
    assert host.bar(strategy, 25, symbol="ETHUSDT") == [
        "rule 1 [ETHUSDT]",
        "rule 2 [ETHUSDT]",
    ]
    assert host.cancelled == ["e1"]
    assert [(i.symbol, i.side, i.qty, i.reduce_only) for i in host.intents] == [
        ("ETHUSDT", Side.BUY, D("0.5"), True)
    ]


def test_each_symbol_has_its_own_indicators(tmp_path: Path) -> None:
    path = tmp_path / "two.rules.toml"
    path.write_text(
        'api_version = 1\nsymbols = ["BTCUSDT", "ETHUSDT"]\n'
        '[[rule]]\nwhen = "crosses_above(close, sma(2))"\nthen = "buy 1"\n'
    )
    strategy = start(load_rules_file(path), host := FakeHost())
    fired = []
    for btc, eth in [(10, 50), (10, 50), (12, 40), (9, 60)]:
        fired += host.bar(strategy, btc, "BTCUSDT") + host.bar(strategy, eth, "ETHUSDT")
    assert fired == ["rule 1 [BTCUSDT]", "rule 1 [ETHUSDT]"]


def test_params_feed_expressions_and_quantities_and_can_be_overridden(tmp_path: Path) -> None:
    cls = rules(
        tmp_path, "close > level and sma(n) > 0", "buy size",
        extra="[params]\nlevel = 100\nsize = 0.001\nn = 2",
    )  # fmt: skip
    assert {k: p.default for k, p in cls.params().items()} == {
        "level": 100,
        "size": D("0.001"),
        "n": 2,
    }
    host = FakeHost()
    strategy = start(cls, host, params={"level": 200, "size": "0.003", "n": 3})
    fired = [host.bar(strategy, c) for c in (250, 250, 250)]
    assert fired == [[], [], ["rule 1"]]  # sma(3) needs three bars
    assert host.intents[0].qty == D("0.003")


def test_warming_up_indicator_keeps_the_rule_false(tmp_path: Path) -> None:
    cls = rules(tmp_path, "not (rsi(3) > 50) or position == 0", "buy 1")
    host = FakeHost()
    strategy = start(cls, host)
    assert [host.bar(strategy, c) for c in (1, 2, 3)] == [[], [], []]
    assert host.bar(strategy, 2) == ["rule 1"]


def test_hooks_are_harmless_when_on_start_failed(tmp_path: Path) -> None:
    cls = rules(tmp_path, "true", "buy 1 EUR")
    strategy = cls()
    strategy.on_trade(Trade("paper", "BTCUSDT", D(1), D(1), Side.BUY, "t", 0, 0))


@pytest.mark.asyncio
async def test_example_trades_on_the_simulated_market_through_the_real_host() -> None:
    from tests.rig import Rig

    cls = load_rules_file(EXAMPLE)
    rig = Rig(symbols=("BTCUSDT",))
    async with rig.running():
        hosted = rig.host.start(LoadedStrategy("dip_buyer", cls, EXAMPLE))
        assert hosted is not None
        await rig.advance(240, step=0.5)
        assert hosted.status.value == "running"
    sides = [f.side for f in rig.fills if f.strategy_id == "dip_buyer"]
    assert sides[:1] == [Side.BUY], "the example should buy a dip within four minutes"
