import json
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from botd.clock import NS_PER_SECOND, FakeClock
from botd.model import (
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
    TimeInForce,
)
from botd.risk import (
    Approved,
    Denied,
    RiskDecision,
    RiskEngine,
    RiskLimits,
    TradingState,
)

BTC = Instrument(
    venue="paper",
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.001"),
    min_qty=D("0.002"),
    min_notional=D("5"),
    max_qty=D("100"),
)
ETH = Instrument("other", "ETHUSDT", "ETH", "USDT", D("0.01"), D("0.01"))
DEFAULT = RiskLimits()
NO_BAND = RiskLimits(price_band=None, max_quote_age_s=None)


class FakeView:
    """A dict-backed RiskView: what the gateway and host answer, set directly by each test."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.instruments = {(i.venue, i.symbol): i for i in (BTC, ETH)}
        self.quotes: dict[tuple[str, str], Quote] = {}
        self.positions: dict[tuple[str, str, str], D] = {}
        self.orders: list[Order] = []

    def last_quote(self, venue: str, symbol: str) -> Quote | None:
        return self.quotes.get((venue, symbol))

    def instrument(self, venue: str, symbol: str) -> Instrument:
        try:
            return self.instruments[(venue, symbol)]
        except KeyError:
            raise ValueError(f"venue {venue!r} has no symbol {symbol!r}") from None

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position:
        return Position(venue, symbol, qty=self.positions.get((strategy_id, venue, symbol), D(0)))

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        return [
            o
            for o in self.orders
            if o.is_open and (strategy_id is None or o.strategy_id == strategy_id)
        ]

    # -- test helpers --
    def quote(self, bid: str, ask: str, *, age_ns: int = 0, inst: Instrument = BTC) -> None:
        recv = self.clock.time_ns() - age_ns
        self.quotes[(inst.venue, inst.symbol)] = Quote(
            inst.venue, inst.symbol, D(bid), D(ask), D(1), D(1), recv, recv
        )

    def hold(self, qty: str, strategy_id: str = "dip", inst: Instrument = BTC) -> None:
        self.positions[(strategy_id, inst.venue, inst.symbol)] = D(qty)

    def rest(
        self,
        side: Side,
        qty: str,
        strategy_id: str = "dip",
        *,
        filled: str = "0",
        status: OrderStatus = OrderStatus.ACCEPTED,
    ) -> None:
        self.orders.append(
            Order(
                client_order_id=f"c{len(self.orders)}",
                strategy_id=strategy_id,
                venue=BTC.venue,
                symbol=BTC.symbol,
                side=side,
                type=OrderType.LIMIT,
                qty=D(qty),
                price=D("100"),
                tif=TimeInForce.GTC,
                status=status,
                filled_qty=D(filled),
            )
        )


class SteppableClock(FakeClock):
    """A wall clock that can also step backwards, as NTP may do to a real one."""

    def step(self, seconds: float) -> None:
        self._now += int(seconds * NS_PER_SECOND)


def make(
    limits: RiskLimits = DEFAULT,
    strategy_limits: dict[str, RiskLimits] | None = None,
    *,
    clock: FakeClock | None = None,
    quote: bool = True,
) -> tuple[RiskEngine, FakeView, FakeClock]:
    clock = clock or FakeClock()
    view = FakeView(clock)
    if quote:
        view.quote("99.99", "100.01")  # mid 100.00
    engine = RiskEngine(clock=clock, view=view, limits=limits, strategy_limits=strategy_limits)
    return engine, view, clock


def buy(qty: str, price: str | None = None, **kw: Any) -> OrderIntent:
    return order(Side.BUY, qty, price, **kw)


def sell(qty: str, price: str | None = None, **kw: Any) -> OrderIntent:
    return order(Side.SELL, qty, price, **kw)


def order(
    side: Side,
    qty: str,
    price: str | None,
    *,
    strategy_id: str = "dip",
    inst: Instrument = BTC,
    post_only: bool = False,
) -> OrderIntent:
    return OrderIntent(
        strategy_id=strategy_id,
        venue=inst.venue,
        symbol=inst.symbol,
        side=side,
        qty=D(qty),
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        price=None if price is None else D(price),
        post_only=post_only,
    )


def state(engine: RiskEngine) -> TradingState:
    # Through a function: mypy would narrow the property from one assert to the next.
    return engine.state


def killed(engine: RiskEngine) -> bool:
    return engine.killed


def denied(decision: RiskDecision, code: str, *fragments: str) -> Denied:
    assert isinstance(decision, Denied), decision
    assert decision.code == code, decision
    for fragment in fragments:
        assert fragment in decision.reason, decision.reason
    return decision


def fill(strategy_id: str = "dip") -> Fill:
    return Fill(
        client_order_id="c1",
        strategy_id=strategy_id,
        venue="paper",
        symbol="BTCUSDT",
        side=Side.SELL,
        qty=D("1"),
        price=D("100"),
        fee=D(0),
        fee_asset="USDT",
        liquidity=Liquidity.TAKER,
        trade_id="t1",
        venue_order_id="v1",
        ts_event=0,
        ts_recv=0,
    )


# -- quantization and instrument rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "qty", "price"),
    [
        (buy("0.1129", "100.019"), D("0.112"), D("100.01")),  # buys never pay more than asked
        (sell("0.1129", "100.011"), D("0.112"), D("100.02")),  # sells never get less than asked
        (buy("0.112", "100.01"), D("0.112"), D("100.01")),  # already on the grid: unchanged
        (buy("0.0519"), D("0.051"), None),  # market orders carry no price
        (sell("0.0519"), D("0.051"), None),
    ],
)
def test_quantization_directions(intent: OrderIntent, qty: D, price: D | None) -> None:
    engine, _, _ = make()
    assert engine.check(intent) == Approved(qty, price)


def test_unknown_instrument() -> None:
    engine, _, _ = make()
    intent = OrderIntent("dip", "paper", "DOGEUSDT", Side.BUY, D("1"))
    denied(engine.check(intent), "UNKNOWN_INSTRUMENT", "DOGEUSDT")


@pytest.mark.parametrize(
    ("intent", "fragment"),
    [
        (
            OrderIntent("dip", "paper", "BTCUSDT", Side.BUY, D("1"), OrderType.LIMIT),
            "needs a price",
        ),
        (buy("0", "100"), "must be a positive number"),
        (buy("-1", "100"), "must be a positive number"),
        (buy("NaN", "100"), "must be a positive number"),
        (buy("Infinity"), "must be a positive number"),
        (buy("1", "-100"), "price -100 must be a positive number"),
        (buy("1", "NaN"), "must be a positive number"),
        (buy("1", "0.001"), "rounds to 0 on paper:BTCUSDT's tick 0.01"),
        (buy("1", post_only=True), "cannot be post-only"),
        (buy("100.001", "100"), "quantity 100.001 is above paper:BTCUSDT's maximum quantity 100"),
    ],
)
def test_filter_violations(intent: OrderIntent, fragment: str) -> None:
    engine, _, _ = make(NO_BAND)
    denied(engine.check(intent), "FILTER", fragment)


def test_max_qty_boundary() -> None:
    engine, _, _ = make(NO_BAND)
    assert engine.check(buy("100", "100")) == Approved(D("100.000"), D("100.00"))


@pytest.mark.parametrize(
    ("intent", "fragments"),
    [
        (buy("0.0009", "100"), ("0.0009 rounds down to 0", "step 0.001")),
        (buy("0.0019", "100"), ("quantity 0.001 (asked 0.0019)", "minimum quantity 0.002")),
        (buy("0.049", "100"), ("notional 4.900", "minimum notional 5 USDT")),
        # Market orders are priced at the far side of the book: buys at the ask, sells at the bid.
        (sell("0.05"), ("notional 4.99950", "0.050 at 99.99")),
    ],
)
def test_below_minimum(intent: OrderIntent, fragments: tuple[str, ...]) -> None:
    engine, _, _ = make()
    denied(engine.check(intent), "BELOW_MINIMUM", *fragments)


def test_minimums_are_inclusive() -> None:
    engine, view, _ = make(NO_BAND)
    assert isinstance(engine.check(buy("0.002", "2500")), Approved)  # min qty, notional 5
    assert isinstance(engine.check(buy("0.05", "100")), Approved)  # notional exactly 5
    assert isinstance(engine.check(buy("0.05")), Approved)  # 0.05 at ask 100.01
    view.quote("100", "100.02")
    assert isinstance(engine.check(sell("0.05")), Approved)  # 0.05 at bid 100


def test_market_order_without_quote_cannot_prove_min_notional() -> None:
    engine, _, _ = make(NO_BAND, quote=False)
    denied(engine.check(buy("1")), "NO_QUOTE", "minimum notional 5 USDT")
    # An instrument with no minimum notional needs no price at all when no limit asks for one.
    assert engine.check(buy("1", inst=ETH)) == Approved(D("1.00"), None)


# -- price band and quote freshness ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "ok"),
    [
        (buy("1", "105.01"), True),  # within +5 % of the ask 100.01 (limit 105.0105)
        (buy("1", "105.02"), False),
        (sell("1", "95.00"), True),  # within -5 % of the bid 99.99 (limit 94.9905)
        (sell("1", "94.99"), False),
        # Passive orders far from the market only rest: not a fat finger.
        (buy("1", "50.00"), True),
        (sell("1", "500.00"), True),
    ],
)
def test_price_band_boundaries(intent: OrderIntent, ok: bool) -> None:
    engine, _, _ = make()
    decision = engine.check(intent)
    if ok:
        assert isinstance(decision, Approved)
    else:
        denied(decision, "PRICE_BAND", "through the", "price_band 5%", "globally")


def test_price_band_uses_the_quantized_price() -> None:
    engine, _, _ = make()
    # 105.019 rounds down to 105.01 for a buy (inside); 94.991 rounds up to 95.00 for a sell.
    assert engine.check(buy("1", "105.019")) == Approved(D("1.000"), D("105.01"))
    assert engine.check(sell("1", "94.991")) == Approved(D("1.000"), D("95.00"))


def test_price_band_reason_names_the_numbers() -> None:
    engine, _, _ = make(strategy_limits={"dip": RiskLimits(price_band=D("0.01"))})
    d = denied(engine.check(buy("1", "102")), "PRICE_BAND")
    assert d.reason == (
        "limit price 102.00 is 1.99% through the ask 100.01 of paper:BTCUSDT, "
        "beyond price_band 1% for strategy 'dip'"
    )


@pytest.mark.parametrize("intent", [buy("1", "100"), buy("1")])
def test_no_quote(intent: OrderIntent) -> None:
    engine, _, _ = make(quote=False)
    denied(engine.check(intent), "NO_QUOTE", "paper:BTCUSDT")


def test_one_sided_quote_counts_as_none() -> None:
    engine, view, _ = make()
    view.quote("0", "100.01")
    denied(engine.check(buy("1", "100")), "NO_QUOTE")


@pytest.mark.parametrize("intent", [buy("1", "100"), buy("1")])
def test_stale_quote_boundary(intent: OrderIntent) -> None:
    engine, view, _ = make()
    view.quote("99.99", "100.01", age_ns=30 * NS_PER_SECOND)
    assert isinstance(engine.check(intent), Approved)  # exactly max_quote_age_s old
    view.quote("99.99", "100.01", age_ns=30 * NS_PER_SECOND + 1)
    denied(engine.check(intent), "STALE_QUOTE", "30.000 s old", "max_quote_age_s 30.0")


def test_quote_age_unchecked_without_band_or_age_limit() -> None:
    engine, view, _ = make(RiskLimits(max_quote_age_s=None))
    view.quote("99.99", "100.01", age_ns=3600 * NS_PER_SECOND)
    assert isinstance(engine.check(buy("1", "100")), Approved)
    engine, view, _ = make(RiskLimits(price_band=None))
    view.quote("99.99", "100.01", age_ns=3600 * NS_PER_SECOND)
    assert isinstance(engine.check(buy("1", "100")), Approved)


# -- notional --------------------------------------------------------------------------------------


def test_max_notional_boundary_limit_order() -> None:
    engine, _, _ = make(RiskLimits(max_order_notional=D("1000")))
    assert isinstance(engine.check(buy("10", "100.00")), Approved)  # exactly 1000
    denied(
        engine.check(buy("10", "100.01")),
        "MAX_NOTIONAL",
        "notional 1000.10000 USDT exceeds max_order_notional 1000 globally",
    )


def test_max_notional_prices_market_orders_at_the_far_side() -> None:
    engine, view, _ = make(RiskLimits(max_order_notional=D("1000")))
    view.quote("100.00", "100.02")
    assert isinstance(engine.check(sell("10")), Approved)  # 10 x bid 100.00
    denied(engine.check(buy("10")), "MAX_NOTIONAL", "notional 1000.20000 USDT")  # 10 x ask
    engine, view, _ = make(RiskLimits(max_order_notional=D("1000"), price_band=None), quote=False)
    denied(engine.check(buy("1", inst=ETH)), "NO_QUOTE", "max_order_notional 1000")


def test_max_notional_per_strategy_reason() -> None:
    engine, _, _ = make(strategy_limits={"dip": RiskLimits(max_order_notional=D("1000"))})
    d = denied(engine.check(buy("13.005", "100")), "MAX_NOTIONAL")
    assert d.reason == "notional 1300.50000 USDT exceeds max_order_notional 1000 for strategy 'dip'"
    # Another strategy has no own limits and the global ones allow it.
    assert isinstance(engine.check(buy("13.005", "100", strategy_id="other")), Approved)


def test_the_tighter_of_strategy_and_global_limits_wins() -> None:
    engine, _, _ = make(
        RiskLimits(max_order_notional=D("500")),
        {"dip": RiskLimits(max_order_notional=D("1000"))},
    )
    denied(engine.check(buy("6", "100")), "MAX_NOTIONAL", "max_order_notional 500 globally")


# -- position --------------------------------------------------------------------------------------


def test_max_position_counts_position_and_same_side_open_orders() -> None:
    engine, view, _ = make(strategy_limits={"dip": RiskLimits(max_position=D("1"))})
    view.hold("0.5")
    view.rest(Side.BUY, "0.3", filled="0.1")  # 0.2 still to fill
    view.rest(Side.SELL, "5")  # the other side does not add exposure
    view.rest(Side.BUY, "9", status=OrderStatus.FILLED)  # done: already in the position
    assert isinstance(engine.check(buy("0.3", "100")), Approved)  # 0.5 + 0.2 + 0.3 = 1
    denied(
        engine.check(buy("0.301", "100")),
        "MAX_POSITION",
        "would reach 1.001 BTC",
        "now 0.5, open buy orders 0.2, this order 0.301",
        "max_position 1 for strategy 'dip'",
    )


def test_max_position_short_side_and_reducing_orders() -> None:
    engine, view, _ = make(RiskLimits(max_position=D("1")))
    view.hold("-0.8")
    assert isinstance(engine.check(sell("0.2", "100")), Approved)
    denied(engine.check(sell("0.201", "100")), "MAX_POSITION", "would reach -1.001")
    # Flipping through zero counts the far side's size.
    assert isinstance(engine.check(buy("1.8", "100")), Approved)
    denied(engine.check(buy("1.801", "100")), "MAX_POSITION", "would reach 1.001")
    # Above a (lowered) limit, an order that shrinks the position is still allowed.
    view.hold("-3")
    assert isinstance(engine.check(buy("1", "100")), Approved)
    denied(engine.check(sell("0.1", "100")), "MAX_POSITION", "would reach -3.100")


def test_global_position_sums_every_strategy() -> None:
    engine, view, _ = make(
        RiskLimits(max_position=D("1"), price_band=None), {"a": RiskLimits(price_band=None)}
    )
    view.hold("0.4", "a")  # a configured strategy
    view.hold("0.3", "b")  # known from a fill
    view.hold("0.2", "c")  # known from an open order
    engine.on_fill(fill("b"), D(0))
    view.rest(Side.SELL, "0.01", "c")
    assert isinstance(engine.check(buy("0.1", "100", strategy_id="d")), Approved)
    denied(engine.check(buy("0.101", "100", strategy_id="d")), "MAX_POSITION", "globally")


def test_global_position_knows_strategies_from_limits_and_restore() -> None:
    engine, view, _ = make(RiskLimits(max_position=D("1")), {"a": RiskLimits(price_band=None)})
    view.hold("0.9", "a")
    denied(engine.check(buy("0.2", "100", strategy_id="z")), "MAX_POSITION", "now 0.9")
    snap = engine.snapshot()
    restored, view2, _ = make(RiskLimits(max_position=D("1")))
    restored.restore(snap)
    view2.hold("0.9", "a")
    denied(restored.check(buy("0.2", "100", strategy_id="z")), "MAX_POSITION", "now 0.9")


# -- open orders and rate --------------------------------------------------------------------------


def test_max_open_orders_strategy_and_global() -> None:
    engine, view, _ = make(RiskLimits(max_open_orders=3), {"dip": RiskLimits(max_open_orders=2)})
    view.rest(Side.BUY, "1")
    assert isinstance(engine.check(buy("1", "100")), Approved)  # will be the 2nd
    view.rest(Side.BUY, "1")
    denied(engine.check(buy("1", "100")), "MAX_OPEN_ORDERS", "2 orders already open", "'dip'")
    view.rest(Side.BUY, "1", "other")
    denied(
        engine.check(buy("1", "100", strategy_id="x")),
        "MAX_OPEN_ORDERS",
        "3 orders already open, max_open_orders is 3 globally",
    )
    view.orders[0] = view.orders[0].transition(OrderStatus.CANCELED, 0)
    assert isinstance(engine.check(buy("1", "100", strategy_id="x")), Approved)


async def test_orders_per_minute_rolling_window() -> None:
    engine, _, clock = make(RiskLimits(max_orders_per_minute=2, price_band=None))
    assert isinstance(engine.check(buy("1", "100")), Approved)  # t = 0
    await clock.advance(10)
    assert isinstance(engine.check(buy("1", "100", strategy_id="x")), Approved)  # t = 10
    denied(engine.check(buy("1", "100")), "RATE", "2 orders approved in the last 60 s", "is 2")
    # A denial is not counted: once the first approval leaves the window there is room for one.
    await clock.advance(49.5)
    denied(engine.check(buy("1", "100")), "RATE")
    await clock.advance(0.5)  # t = 60: the approval at t = 0 is out
    assert isinstance(engine.check(buy("1", "100")), Approved)
    denied(engine.check(buy("1", "100")), "RATE")
    await clock.advance(10)  # t = 70: the one at t = 10 is out
    assert isinstance(engine.check(buy("1", "100")), Approved)


def test_rate_limit_per_strategy_is_separate() -> None:
    engine, _, _ = make(NO_BAND, {"a": RiskLimits(max_orders_per_minute=1, price_band=None)})
    assert isinstance(engine.check(buy("1", "100", strategy_id="a")), Approved)
    denied(engine.check(buy("1", "100", strategy_id="a")), "RATE", "for strategy 'a'")
    assert isinstance(engine.check(buy("1", "100", strategy_id="b")), Approved)


def test_orders_denied_by_a_later_check_do_not_count_towards_rate() -> None:
    engine, _, _ = make(RiskLimits(max_orders_per_minute=1, max_order_notional=D("100")))
    denied(engine.check(buy("2", "100")), "MAX_NOTIONAL")
    assert isinstance(engine.check(buy("1", "100")), Approved)


# -- trading states --------------------------------------------------------------------------------


def test_halted_denies_everything_even_reducing_orders() -> None:
    engine, view, _ = make()
    view.hold("1")
    engine.set_state(TradingState.HALTED, "maintenance")
    d = denied(engine.check(sell("0.5", "100")), "HALTED", "maintenance")
    assert d.reason == "trading is halted: maintenance"
    # State is checked before anything else, the instrument included.
    denied(engine.check(OrderIntent("dip", "paper", "NOPE", Side.BUY, D("1"))), "HALTED")


@pytest.mark.parametrize(
    ("position", "intent", "ok"),
    [
        ("1", sell("1", "100"), True),  # closes exactly
        ("1", sell("0.5"), True),
        ("1", sell("1.001", "100"), False),  # would flip short
        ("1", buy("0.5", "100"), False),  # adds
        ("-1", buy("1", "100"), True),
        ("-1", buy("1.001", "100"), False),
        ("-1", sell("0.5", "100"), False),
        ("0", sell("0.5", "100"), False),  # flat: nothing to reduce
        ("0", buy("0.5", "100"), False),
    ],
)
def test_reducing_allows_only_position_reducing_orders(
    position: str, intent: OrderIntent, ok: bool
) -> None:
    engine, view, _ = make()
    view.hold(position)
    engine.set_state(TradingState.REDUCING, "winding down", strategy_id="dip")
    decision = engine.check(intent)
    if ok:
        assert isinstance(decision, Approved)
    else:
        denied(decision, "REDUCING", "winding down", f"position {position}")


def test_reducing_denies_a_malformed_quantity() -> None:
    engine, view, _ = make()
    view.hold("1")
    engine.set_state(TradingState.REDUCING, "winding down")
    denied(engine.check(sell("NaN", "100")), "REDUCING")


def test_reducing_counts_open_reducing_orders() -> None:
    engine, view, _ = make()
    view.hold("1")
    view.rest(Side.SELL, "0.6", filled="0.2")  # 0.4 of the position is already being sold
    view.rest(Side.BUY, "5")  # the other side does not help
    engine.set_state(TradingState.REDUCING, "winding down")
    assert isinstance(engine.check(sell("0.6", "100")), Approved)
    denied(engine.check(sell("0.601", "100")), "REDUCING")


def test_reducing_uses_the_strategys_own_position() -> None:
    engine, view, _ = make()
    view.hold("1", "other")
    engine.set_state(TradingState.REDUCING, "venue wobbly", venue="paper")
    denied(engine.check(sell("0.5", "100")), "REDUCING")
    assert isinstance(engine.check(sell("0.5", "100", strategy_id="other")), Approved)


def test_most_restrictive_state_wins() -> None:
    engine, view, _ = make()
    view.hold("1")
    engine.set_state(TradingState.REDUCING, "strategy", strategy_id="dip")
    assert engine.state_of(venue="paper", strategy_id="dip") is TradingState.REDUCING
    engine.set_state(TradingState.HALTED, "venue down", venue="paper")
    assert state(engine) is TradingState.ACTIVE
    assert engine.state_of(venue="paper") is TradingState.HALTED
    assert engine.state_of(strategy_id="dip") is TradingState.REDUCING
    assert engine.state_of(venue="other", strategy_id="dip") is TradingState.REDUCING
    assert engine.state_of(venue="paper", strategy_id="dip") is TradingState.HALTED
    denied(engine.check(sell("0.5", "100")), "HALTED", "venue down")
    # Another venue is only subject to the strategy's REDUCING.
    denied(engine.check(buy("1", "100", inst=ETH)), "REDUCING")
    # Global REDUCING restricts a strategy that is ACTIVE on its own.
    engine.set_state(TradingState.ACTIVE, "back", venue="paper")
    engine.set_state(TradingState.ACTIVE, "back", strategy_id="dip")
    assert isinstance(engine.check(buy("1", "100")), Approved)
    engine.set_state(TradingState.REDUCING, "global", venue=None)
    denied(engine.check(buy("1", "100")), "REDUCING", "global")
    assert isinstance(engine.check(sell("1", "100")), Approved)
    assert engine.state_of(strategy_id="nobody") is TradingState.REDUCING


def test_set_state_needs_one_scope() -> None:
    engine, _, _ = make()
    with pytest.raises(ValueError, match="not both"):
        engine.set_state(TradingState.HALTED, "x", venue="paper", strategy_id="dip")


# -- kill switch and persistence -------------------------------------------------------------------


def test_kill_switch_halts_persists_and_survives_restart() -> None:
    engine, _, clock = make()
    seen: list[dict[str, Any]] = []
    engine.on_change = seen.append
    engine.kill("operator pressed the button")
    assert engine.killed
    assert state(engine) is TradingState.HALTED
    denied(engine.check(buy("1", "100")), "HALTED", "operator pressed the button")
    assert seen
    assert seen[-1]["killed"] is True
    assert seen[-1] == engine.snapshot()
    # Only release() lifts it.
    with pytest.raises(ValueError, match="kill switch is engaged"):
        engine.set_state(TradingState.ACTIVE, "oops")
    engine.set_state(TradingState.HALTED, "still halted")  # allowed: no weaker

    saved = json.loads(json.dumps(seen[-1]))  # what the journal stores
    restarted, _, _ = make(clock=clock)
    restarted.restore(saved)
    assert restarted.killed
    assert state(restarted) is TradingState.HALTED
    denied(restarted.check(buy("1", "100")), "HALTED")

    calls = len(seen)
    engine.release("all clear")
    assert not killed(engine)
    assert state(engine) is TradingState.ACTIVE
    assert len(seen) == calls + 1
    released = seen[calls]
    assert released["killed"] is False
    assert isinstance(engine.check(buy("1", "100")), Approved)


def test_restore_never_releases_an_engaged_kill_switch() -> None:
    engine, _, _ = make()
    clean = engine.snapshot()
    engine.kill("incident")
    engine.restore(clean)
    assert engine.killed
    assert state(engine) is TradingState.HALTED


def test_damaged_snapshot_still_keeps_the_kill_switch() -> None:
    engine, _, _ = make()
    with pytest.raises(ValueError, match="invalid risk snapshot"):
        engine.restore({"killed": True, "version": 1})
    assert engine.killed
    denied(engine.check(buy("1", "100")), "HALTED")


def test_on_change_called_for_every_state_change() -> None:
    engine, _, _ = make()
    seen: list[dict[str, Any]] = []
    engine.on_change = seen.append
    engine.set_state(TradingState.REDUCING, "r1", venue="paper")
    engine.set_state(TradingState.HALTED, "h1", strategy_id="dip")
    assert [s["venues"]["paper"]["reason"] for s in seen] == ["r1", "r1"]
    assert seen[-1]["strategies"]["dip"] == {
        "state": "halted",
        "reason": "h1",
        "cause": "operator",
        "ts": engine.snapshot()["strategies"]["dip"]["ts"],
    }


def test_state_changes_are_logged_with_their_reason() -> None:
    engine, _, _ = make()
    with capture_logs() as logs:
        engine.set_state(TradingState.REDUCING, "spread too wide", venue="paper")
        engine.kill("manual")
    assert {
        "event": "trading state set",
        "scope": "venue 'paper'",
        "state": "reducing",
        "previous": "active",
        "reason": "spread too wide",
        "log_level": "warning",
    } in logs
    assert any(e["event"] == "kill switch engaged" and e["reason"] == "manual" for e in logs)


def test_daily_loss_never_softens_a_kill() -> None:
    engine, _, _ = make(RiskLimits(max_daily_loss=D("10")))
    engine.kill("incident")
    engine.on_fill(fill(), D("-50"))
    assert state(engine) is TradingState.HALTED
    assert engine.snapshot()["global"]["cause"] == "kill"


def test_fills_without_pnl_from_known_strategies_do_not_notify() -> None:
    engine, _, _ = make()
    seen: list[dict[str, Any]] = []
    engine.on_change = seen.append
    engine.on_fill(fill(), D(0))  # a new strategy: remembered for the global position
    engine.on_fill(fill(), D(0))
    assert len(seen) == 1
    assert seen[0]["known_strategies"] == ["dip"]
    engine.on_fill(fill(), D("1.5"))  # PnL is persisted too, so a crash cannot reset it
    assert seen[-1]["daily"]["strategies"] == {"dip": "1.5"}


def test_invalid_snapshot_changes_nothing() -> None:
    engine, _, _ = make()
    engine.set_state(TradingState.REDUCING, "keep me", venue="paper")
    before = engine.snapshot()
    with pytest.raises(ValueError, match="unsupported risk snapshot version"):
        engine.restore({**before, "version": 99})
    with pytest.raises(ValueError, match="invalid risk snapshot"):
        engine.restore({**before, "daily": {**before["daily"], "pnl": "lots"}})
    assert engine.snapshot() == before


def test_a_failing_listener_does_not_stop_the_kill_switch() -> None:
    engine, _, _ = make()

    def broken(_: dict[str, Any]) -> None:
        raise OSError("disk full")

    engine.on_change = broken
    engine.kill("incident")
    assert engine.killed
    denied(engine.check(buy("1", "100")), "HALTED")


def test_snapshot_round_trip() -> None:
    engine, _, clock = make(strategy_limits={"dip": RiskLimits(max_daily_loss=D("100"))})
    engine.set_state(TradingState.HALTED, "journal failed", venue="paper")
    engine.on_fill(fill("dip"), D("-150.25"))
    engine.on_fill(fill("other"), D("20"))
    snap = engine.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["daily"] == {
        "day": "2023-11-14",
        "pnl": "-130.25",
        "strategies": {"dip": "-150.25", "other": "20"},
    }
    assert snap["strategies"]["dip"]["state"] == "reducing"
    assert snap["strategies"]["dip"]["cause"] == "daily_loss"
    restored, _, _ = make(clock=clock)
    restored.restore(snap)
    assert restored.snapshot() == snap
    assert restored.state_of(venue="paper") is TradingState.HALTED


# -- daily loss ------------------------------------------------------------------------------------


def _at(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> SteppableClock:
    seconds = int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp())
    return SteppableClock(seconds * NS_PER_SECOND)


async def test_daily_loss_moves_strategy_to_reducing_until_the_next_utc_day() -> None:
    clock = _at(2024, 1, 1, 23, 59)
    engine, view, _ = make(
        NO_BAND, {"dip": RiskLimits(max_daily_loss=D("100"), price_band=None)}, clock=clock
    )
    seen: list[dict[str, Any]] = []
    engine.on_change = seen.append
    view.hold("1")
    engine.on_fill(fill(), D("-60"))
    engine.on_fill(fill(), D("-40"))  # exactly -100: still allowed
    assert engine.state_of(strategy_id="dip") is TradingState.ACTIVE
    assert isinstance(engine.check(buy("1", "100")), Approved)
    engine.on_fill(fill(), D("-0.01"))
    assert engine.state_of(strategy_id="dip") is TradingState.REDUCING
    assert state(engine) is TradingState.ACTIVE  # only that strategy
    assert seen[-1]["strategies"]["dip"]["reason"] == (
        "daily loss: realized PnL today -100.01 is below -100 for strategy 'dip'"
    )
    denied(engine.check(buy("1", "100")), "REDUCING", "daily loss")
    assert isinstance(engine.check(sell("1", "100")), Approved)
    assert isinstance(engine.check(buy("1", "100", strategy_id="other")), Approved)

    await clock.advance(59.5)
    assert engine.state_of(strategy_id="dip") is TradingState.REDUCING
    await clock.advance(0.5)  # 00:00:00 UTC
    assert engine.state_of(strategy_id="dip") is TradingState.ACTIVE
    assert isinstance(engine.check(buy("1", "100")), Approved)
    assert seen[-1]["daily"] == {"day": "2024-01-02", "pnl": "0", "strategies": {}}


async def test_day_rollover_keeps_states_an_operator_set() -> None:
    clock = _at(2024, 1, 1, 23, 0)
    engine, _, _ = make(RiskLimits(max_daily_loss=D("10")), clock=clock)
    engine.set_state(TradingState.REDUCING, "operator says so", strategy_id="dip")
    engine.on_fill(fill(), D("-11"))
    assert state(engine) is TradingState.REDUCING
    engine.kill("incident")
    await clock.advance(3600)
    assert state(engine) is TradingState.HALTED  # the kill switch is no daily loss
    assert engine.state_of(strategy_id="dip") is TradingState.HALTED
    engine.release("ok")
    assert engine.state_of(strategy_id="dip") is TradingState.REDUCING


async def test_global_daily_loss() -> None:
    clock = _at(2024, 1, 1, 12, 0)
    engine, _, _ = make(RiskLimits(max_daily_loss=D("50"), price_band=None), clock=clock)
    engine.on_fill(fill("a"), D("-30"))
    engine.on_fill(fill("b"), D("-30"))
    assert state(engine) is TradingState.REDUCING
    denied(engine.check(buy("1", "100", strategy_id="c")), "REDUCING", "all strategies")
    await clock.advance(12 * 3600)
    assert state(engine) is TradingState.ACTIVE


def test_daily_loss_backstop_after_an_operator_lifts_reducing() -> None:
    engine, view, _ = make(strategy_limits={"dip": RiskLimits(max_daily_loss=D("10"))})
    view.hold("-1")
    engine.on_fill(fill(), D("-11"))
    engine.set_state(TradingState.ACTIVE, "I know better", strategy_id="dip")
    denied(
        engine.check(sell("1", "100")),
        "DAILY_LOSS",
        "realized PnL today -11 is below -10 (max_daily_loss) for strategy 'dip'",
    )
    assert isinstance(engine.check(buy("1", "100")), Approved)  # reduces the short


async def test_restoring_yesterdays_snapshot_resets_the_daily_loss() -> None:
    clock = _at(2024, 1, 1, 23, 0)
    limits = {"dip": RiskLimits(max_daily_loss=D("10"))}
    engine, _, _ = make(strategy_limits=limits, clock=clock)
    engine.on_fill(fill(), D("-11"))
    snap = engine.snapshot()
    await clock.advance(7200)
    restarted, _, _ = make(strategy_limits=limits, clock=clock)
    restarted.restore(snap)
    assert restarted.state_of(strategy_id="dip") is TradingState.ACTIVE
    assert restarted.snapshot()["daily"]["strategies"] == {}


def test_wall_clock_stepping_back_does_not_reset_the_day() -> None:
    clock = _at(2024, 1, 2, 0, 0, 1)
    engine, _, _ = make(strategy_limits={"dip": RiskLimits(max_daily_loss=D("10"))}, clock=clock)
    engine.on_fill(fill(), D("-11"))
    clock.step(-2)  # back over midnight
    assert engine.state_of(strategy_id="dip") is TradingState.REDUCING


# -- order of checks -------------------------------------------------------------------------------


def _everything_violated(**relaxed: Any) -> tuple[RiskEngine, FakeView]:
    tight: dict[str, Any] = {
        "max_order_notional": D("1"),
        "max_position": D("0.001"),
        "max_open_orders": 0,
        "max_orders_per_minute": 0,
        "max_daily_loss": D("0"),
    }
    engine, view, _ = make(RiskLimits(**{**tight, **relaxed}))
    engine.on_fill(fill(), D("-1"))
    engine.set_state(TradingState.ACTIVE, "lifted")  # leaves the daily-loss check itself
    return engine, view


def test_checks_run_in_the_documented_order() -> None:
    engine, view = _everything_violated()
    engine.set_state(TradingState.HALTED, "stop")
    denied(engine.check(OrderIntent("dip", "paper", "NOPE", Side.BUY, D("1"))), "HALTED")
    engine.set_state(TradingState.ACTIVE, "go")
    denied(
        engine.check(OrderIntent("dip", "paper", "NOPE", Side.BUY, D("1"))), "UNKNOWN_INSTRUMENT"
    )
    denied(engine.check(buy("0.001", "200")), "BELOW_MINIMUM")
    view.quote("99.99", "100.01", age_ns=31 * NS_PER_SECOND)
    denied(engine.check(buy("1", "200")), "STALE_QUOTE")
    view.quote("99.99", "100.01")
    denied(engine.check(buy("1", "200")), "PRICE_BAND")
    relaxed: dict[str, Any] = {}
    for code, limit in [
        ("MAX_NOTIONAL", "max_order_notional"),
        ("MAX_POSITION", "max_position"),
        ("MAX_OPEN_ORDERS", "max_open_orders"),
        ("RATE", "max_orders_per_minute"),
        ("DAILY_LOSS", "max_daily_loss"),
    ]:
        engine, _ = _everything_violated(**relaxed)
        denied(engine.check(buy("1", "100")), code)
        relaxed[limit] = None
    engine, _ = _everything_violated(**relaxed)
    assert isinstance(engine.check(buy("1", "100")), Approved)


# -- property: approved orders are always valid and never worse than asked -------------------------

_units = st.sampled_from([D(1), D(2), D(5), D(25)])


@st.composite
def _grid(draw: st.DrawFn) -> D:
    return draw(_units).scaleb(-draw(st.integers(0, 8)))


@st.composite
def _amount(draw: st.DrawFn) -> D:
    return D(draw(st.integers(1, 10**9))).scaleb(-draw(st.integers(0, 10)))


@st.composite
def _instrument(draw: st.DrawFn) -> Instrument:
    step = draw(_grid())
    return Instrument(
        venue="paper",
        symbol="X",
        base="B",
        quote="Q",
        tick_size=draw(_grid()),
        step_size=step,
        min_qty=draw(st.one_of(st.just(D(0)), st.just(step), _amount())),
        min_notional=D(draw(st.integers(0, 10_000))).scaleb(-2),
        max_qty=draw(st.one_of(st.none(), _amount())),
    )


@settings(max_examples=400, deadline=None)
@given(
    inst=_instrument(),
    side=st.sampled_from(Side),
    qty=_amount(),
    price=st.one_of(st.none(), _amount()),
    ref_ticks=st.integers(1, 10**6),
)
def test_approved_orders_are_on_grid_and_never_worse_than_asked(
    inst: Instrument, side: Side, qty: D, price: D | None, ref_ticks: int
) -> None:
    ref = inst.tick_size * ref_ticks  # venues quote on their own tick grid
    engine, view, _ = make(NO_BAND, quote=False)
    view.instruments = {(inst.venue, inst.symbol): inst}
    view.quote(str(ref), str(ref), inst=inst)
    intent = order(side, str(qty), None if price is None else str(price), inst=inst)
    decision = engine.check(intent)
    if isinstance(decision, Denied):
        assert decision.code in {"BELOW_MINIMUM", "FILTER"}, decision
        return
    assert decision.qty > 0
    assert decision.qty % inst.step_size == 0
    assert decision.qty <= qty
    assert decision.qty >= inst.min_qty
    assert inst.max_qty is None or decision.qty <= inst.max_qty
    if price is None:
        assert decision.price is None
        reference = ref
    else:
        assert decision.price is not None
        assert decision.price % inst.tick_size == 0
        assert decision.price <= price if side is Side.BUY else decision.price >= price
        reference = decision.price
    assert decision.qty * reference >= inst.min_notional
    assert inst.violations(decision.qty, reference) == []
