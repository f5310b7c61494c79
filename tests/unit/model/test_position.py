from decimal import Decimal as D

from botd.model import Position, Side


def test_open_add_reduce_close_long() -> None:
    p = Position("v", "BTCUSDT")
    p = p.apply_fill(Side.BUY, D("1"), D("100"))
    p = p.apply_fill(Side.BUY, D("1"), D("110"))
    assert (p.qty, p.avg_price) == (D("2"), D("105"))
    p = p.apply_fill(Side.SELL, D("0.5"), D("120"))
    assert p.qty == D("1.5")
    assert p.avg_price == D("105")
    assert p.realized_pnl == D("7.5")
    p = p.apply_fill(Side.SELL, D("1.5"), D("100"))
    assert p.is_flat
    assert p.realized_pnl == D("0")
    assert p.avg_price == 0


def test_short_and_flip() -> None:
    p = Position("v", "X").apply_fill(Side.SELL, D("2"), D("50"))
    assert p.is_short
    assert p.unrealized_pnl(D("40")) == D("20")
    p = p.apply_fill(Side.BUY, D("3"), D("45"))
    assert p.is_long
    assert p.qty == D("1")
    assert p.avg_price == D("45")
    assert p.realized_pnl == D("10")


def test_fee_in_base_shrinks_holding_and_keeps_cost() -> None:
    p = Position("v", "BTCUSDT").apply_fill(Side.BUY, D("1"), D("100"))
    p = p.apply_fee(D("0.001"), "BTC", base="BTC", quote="USDT")
    assert p.qty == D("0.999")
    assert p.avg_price * p.qty == D("100")


def test_fee_in_quote_is_tracked_separately() -> None:
    p = Position("v", "BTCUSDT").apply_fill(Side.BUY, D("1"), D("100"))
    p = p.apply_fee(D("0.1"), "USDT", base="BTC", quote="USDT")
    assert p.fees_quote == D("0.1")
    assert p.qty == D("1")


def test_untradable_remainder_counts_as_flat() -> None:
    p = Position("v", "X", min_tradable=D("0.001")).apply_fill(Side.BUY, D("0.0005"), D("1"))
    assert p.is_flat
    assert not p.is_long
    assert p.qty == D("0.0005")
