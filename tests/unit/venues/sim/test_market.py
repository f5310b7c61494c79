"""The seeded synthetic market: determinism, book sanity, regimes, and user fills."""

from __future__ import annotations

from decimal import Decimal

import pytest

from botd.model import Liquidity, OrderStatus, OrderType, Quote, Side, TimeInForce, Trade
from botd.venues.sim import EngineResult, MarketGenerator, MatchingEngine, default_instruments
from botd.venues.sim.market import REGIMES

VENUE = "simx"
STEP_NS = 50_000_000  # 20 steps per second

D = Decimal


def build(
    seed: int, symbols: tuple[str, ...] = ("BTCUSDT",)
) -> tuple[MatchingEngine, MarketGenerator]:
    specs = default_instruments(VENUE)
    chosen = [specs[s] for s in symbols]
    eng = MatchingEngine(
        VENUE, [s.instrument(VENUE) for s in chosen], maker_fee=D("0.001"), taker_fee=D("0.001")
    )
    return eng, MarketGenerator(eng, chosen, seed=seed)


def run(
    seed: int, steps: int, symbol: str = "BTCUSDT"
) -> tuple[list[Quote | None], list[Trade], list[EngineResult]]:
    _, gen = build(seed, (symbol,))
    quotes: list[Quote | None] = []
    trades: list[Trade] = []
    results: list[EngineResult] = []
    for i in range(steps):
        res, quote = gen.step(symbol, i * STEP_NS)
        quotes.append(quote)
        trades.extend(res.trades)
        results.append(res)
    return quotes, trades, results


def test_default_instruments_have_realistic_filters() -> None:
    specs = default_instruments(VENUE)
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"} <= set(specs)
    btc, eth = specs["BTCUSDT"], specs["ETHUSDT"]
    assert (btc.base, btc.quote) == ("BTC", "USDT")
    assert (btc.start_price, btc.tick_size, btc.step_size) == (
        D("65000.00"),
        D("0.01"),
        D("0.00001"),
    )
    assert btc.min_notional == D("5")
    assert (eth.start_price, eth.tick_size, eth.step_size) == (D("3500.00"), D("0.01"), D("0.0001"))
    assert eth.min_notional == D("5")
    for spec in specs.values():
        assert spec.start_price % spec.tick_size == 0
        assert spec.typical_trade_qty % spec.step_size == 0
        assert spec.typical_trade_qty * spec.start_price > spec.min_notional
        inst = spec.instrument(VENUE)
        assert (inst.venue, inst.symbol, inst.min_qty) == (VENUE, spec.symbol, spec.min_qty)


def test_same_seed_gives_identical_market() -> None:
    q1, t1, r1 = run(seed=42, steps=400)
    q2, t2, r2 = run(seed=42, steps=400)
    assert q1 == q2
    assert t1 == t2
    assert [x.reports for x in r1] == [x.reports for x in r2]
    assert len(t1) > 50


def test_different_seed_gives_different_market() -> None:
    q1, t1, _ = run(seed=1, steps=200)
    q2, t2, _ = run(seed=2, steps=200)
    assert q1 != q2
    assert t1 != t2


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"])
def test_book_is_sane_every_step(symbol: str) -> None:
    eng, gen = build(7, (symbol,))
    tick = eng.instrument(symbol).tick_size
    for i in range(2000):
        res, quote = gen.step(symbol, i * STEP_NS)
        assert quote is not None
        assert quote.bid < quote.ask
        assert quote.spread >= tick
        assert quote.bid % tick == 0
        assert quote.ask % tick == 0
        assert quote.bid_size > 0
        assert quote.ask_size > 0
        assert (quote.venue, quote.symbol, quote.ts_event, quote.ts_recv) == (
            VENUE, symbol, i * STEP_NS, i * STEP_NS,
        )  # fmt: skip
        assert not any(r.report.status is OrderStatus.REJECTED for r in res.reports)
        for trade in res.trades:
            assert trade.ts_event == i * STEP_NS
            assert trade.price % tick == 0
    eng._check_invariants()


def test_regimes_change_and_volatile_spreads_are_wider() -> None:
    eng, gen = build(3)
    tick = eng.instrument("BTCUSDT").tick_size
    spreads: dict[str, list[D]] = {r: [] for r in REGIMES}
    for i in range(12_000):
        _, quote = gen.step("BTCUSDT", i * STEP_NS)
        assert quote is not None
        spreads[gen.regime("BTCUSDT")].append(quote.spread / tick)
    assert all(spreads.values()), {r: len(v) for r, v in spreads.items()}

    def mean(xs: list[D]) -> D:
        return sum(xs, D(0)) / len(xs)

    assert mean(spreads["calm"]) <= mean(spreads["normal"]) < mean(spreads["volatile"])
    assert min(spreads["volatile"]) >= 2


def test_price_moves_visibly_within_tens_of_seconds() -> None:
    for seed in range(5):
        quotes, _, _ = run(seed, steps=1200)  # 60 s
        start = quotes[0]
        assert start is not None
        moves = [abs(q.mid / start.mid - 1) for q in quotes if q is not None]
        assert max(moves) > D("0.0005"), seed


def test_flow_prints_public_trades_with_aggressor_side() -> None:
    _, trades, results = run(5, steps=400)
    assert {t.side for t in trades} == {Side.BUY, Side.SELL}
    assert len({t.trade_id for t in trades}) == len(trades)
    flow = [r for res in results for r in res.reports if r.account == "__flow__"]
    assert any(r.report.liquidity is Liquidity.TAKER and r.report.last_qty > 0 for r in flow)


def test_generator_accounts_are_unlimited() -> None:
    eng, gen = build(11)
    for i in range(300):
        gen.step("BTCUSDT", i * STEP_NS)
    for account in ("__lp__", "__flow__"):
        assert all(b.locked == 0 for b in eng.balances(account).values())


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_user_limit_away_from_market_fills_as_maker_when_price_reaches_it(side: Side) -> None:
    eng, gen = build(21)
    _, quote = gen.step("BTCUSDT", 0)
    assert quote is not None
    eng.open_account("user", {"USDT": D("100000"), "BTC": D("1")})
    offset = D("1.0005") if side is Side.SELL else D("0.9995")
    price = eng.instrument("BTCUSDT").round_price(quote.mid * offset, side)
    placed = eng.submit(
        "user", client_order_id="u1", symbol="BTCUSDT", side=side, type=OrderType.LIMIT,
        qty=D("0.01"), price=price, tif=TimeInForce.GTC, post_only=True, ts=1,
    )  # fmt: skip
    assert placed.reports[0].report.status is OrderStatus.ACCEPTED
    fills = []
    counterparties: set[str] = set()
    for i in range(1, 40_000):
        res, _ = gen.step("BTCUSDT", i * STEP_NS)
        mine = [r.report for r in res.reports if r.account == "user"]
        ids = {f.trade_id for f in mine}
        counterparties |= {
            r.account for r in res.reports if r.account != "user" and r.report.trade_id in ids
        }
        fills += mine
        if fills and fills[-1].status is OrderStatus.FILLED:
            break
    assert fills, "the market never reached the user's order"
    assert fills[-1].status is OrderStatus.FILLED
    assert all(f.liquidity is Liquidity.MAKER for f in fills)
    # The provider's re-quote crossed the user's order (the flow trader might too, not here).
    assert "__lp__" in counterparties
    assert all(f.last_price == price for f in fills)
    assert sum((f.last_qty for f in fills), D(0)) == D("0.01")
    assert eng.open_orders("user") == []
    eng._check_invariants()


def test_symbols_step_independently() -> None:
    _, gen = build(9, ("BTCUSDT", "ETHUSDT"))
    _, btc = gen.step("BTCUSDT", 0)
    _, eth = gen.step("ETHUSDT", 0)
    assert btc is not None
    assert eth is not None
    assert btc.symbol == "BTCUSDT"
    assert eth.symbol == "ETHUSDT"
    assert D("60000") < btc.mid < D("70000")
    assert D("3000") < eth.mid < D("4000")
    with pytest.raises(KeyError):
        gen.step("SOLUSDT", 0)
