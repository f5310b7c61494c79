"""A seeded synthetic market that drives the matching engine.

Per step and symbol: the fair price takes a log-normal step whose size depends on a volatility
regime (a three-state Markov chain), an unlimited liquidity-provider account replaces its quotes
around the new fair price, and an unlimited flow account sometimes sends market orders that
print public trades. Users' resting limit orders fill naturally: when the fair price moves
through one, the provider's new quote crosses it and the user's order trades as maker.

The random walk is a float signal (as market-data signals are in botd); every price and
quantity that reaches the engine is a Decimal snapped to the instrument's grid.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from botd.model import Instrument, OrderType, Quote, Side, TimeInForce
from botd.venues.sim.engine import EngineResult, MatchingEngine

__all__ = ["MarketGenerator", "SymbolSpec", "default_instruments"]


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    start_price: Decimal
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    typical_trade_qty: Decimal

    def instrument(self, venue: str) -> Instrument:
        return Instrument(
            venue=venue,
            symbol=self.symbol,
            base=self.base,
            quote=self.quote,
            tick_size=self.tick_size,
            step_size=self.step_size,
            min_qty=self.min_qty,
            min_notional=self.min_notional,
        )


def default_instruments(venue: str) -> dict[str, SymbolSpec]:
    """Four spot pairs with Binance-like filters. Every venue gets the same set today; the
    parameter lets a protocol server give its venue different rules later."""
    del venue
    d = Decimal
    specs = [
        SymbolSpec("BTCUSDT", "BTC", "USDT", d("65000.00"), d("0.01"), d("0.00001"),
                   d("0.00001"), d("5"), d("0.005")),
        SymbolSpec("ETHUSDT", "ETH", "USDT", d("3500.00"), d("0.01"), d("0.0001"),
                   d("0.0001"), d("5"), d("0.08")),
        SymbolSpec("SOLUSDT", "SOL", "USDT", d("150.00"), d("0.01"), d("0.001"),
                   d("0.001"), d("5"), d("2")),
        SymbolSpec("BNBUSDT", "BNB", "USDT", d("580.00"), d("0.01"), d("0.001"),
                   d("0.001"), d("5"), d("0.5")),
    ]  # fmt: skip
    return {s.symbol: s for s in specs}


# Regimes: calm, normal, volatile. Per-step log-return sigma; 1e-4 at ~20 steps/s moves the
# price by ~0.05 % within a few seconds to tens of seconds.
REGIMES = ("calm", "normal", "volatile")
_SIGMA = (0.4e-4, 1.0e-4, 3.0e-4)
_SPREAD_TICKS = ((1, 1), (1, 2), (3, 8))  # inclusive range of the provider's spread
_GAP_FACTOR = (1, 1, 2)  # level spacing widens when volatile
# Row = current regime, columns = probability of each next regime. Mean stays: 500 steps calm
# or normal, 250 volatile (25 s and 12 s at 20 steps/s).
_TRANSITIONS = (
    (0.998, 0.002, 0.0),
    (0.001, 0.998, 0.001),
    (0.0, 0.004, 0.996),
)
_LEVELS = 5
_LEVEL_GAP = 5e-6  # spacing between provider levels, relative to price, at least one tick
_FLOW_PROB = 0.35  # chance that a step carries market orders
_FLOW_MAX = 3.0  # flow size cap in typical trade sizes; the provider shows far more per side


@dataclass(slots=True)
class _SymbolState:
    spec: SymbolSpec
    inst: Instrument
    fair: float
    regime: int
    floor: float  # the fair price never falls below this many ticks' worth


def _min_qty(inst: Instrument, price: Decimal) -> Decimal:
    """The smallest quantity that passes the min-qty and min-notional filters at ``price``."""
    step = inst.step_size
    by_notional = (inst.min_notional / price / step).to_integral_value(ROUND_CEILING) * step
    return max(inst.min_qty, step, by_notional)


class MarketGenerator:
    """Drives ``engine`` for ``specs``, whose instruments the engine must already list."""

    def __init__(
        self,
        engine: MatchingEngine,
        specs: Sequence[SymbolSpec],
        *,
        seed: int,
        lp_account: str = "__lp__",
        flow_account: str = "__flow__",
    ) -> None:
        self._engine = engine
        self._rng = random.Random(seed)
        self._lp = lp_account
        self._flow = flow_account
        self._seq = 0
        self._states = {
            s.symbol: _SymbolState(
                spec=s,
                inst=engine.instrument(s.symbol),
                fair=float(s.start_price),
                regime=1,
                floor=float(s.tick_size) * 100,
            )
            for s in specs
        }
        engine.open_account(lp_account, unlimited=True)
        engine.open_account(flow_account, unlimited=True)

    def regime(self, symbol: str) -> str:
        return REGIMES[self._states[symbol].regime]

    def fair_state(self, symbol: str) -> tuple[float, str]:
        """The exact fair price (a float signal) and regime name, for persisting the market."""
        st = self._states[symbol]
        return st.fair, REGIMES[st.regime]

    def resume(self, symbol: str, fair: float, regime: str) -> None:
        """Continue from a persisted :meth:`fair_state` instead of the start price."""
        if not math.isfinite(fair) or fair <= 0 or regime not in REGIMES:
            raise ValueError(f"{symbol}: bad market state fair={fair!r} regime={regime!r}")
        st = self._states[symbol]
        st.fair = max(st.floor, fair)
        st.regime = REGIMES.index(regime)

    def fair_price(self, symbol: str) -> Decimal:
        st = self._states[symbol]
        return st.inst.round_price(Decimal(repr(st.fair)), Side.BUY)

    def step(self, symbol: str, ts: int) -> tuple[EngineResult, Quote | None]:
        st = self._states[symbol]
        rng = self._rng
        st.regime = self._next_regime(st.regime)
        st.fair = max(st.floor, st.fair * math.exp(rng.gauss(0.0, _SIGMA[st.regime])))

        out = EngineResult([], [])
        self._absorb(out, self._engine.cancel_all(self._lp, symbol, ts))
        self._quote(st, out, ts)
        if rng.random() < _FLOW_PROB:
            for _ in range(2 if rng.random() < 0.3 else 1):
                self._flow_order(st, out, ts)

        bid, ask = self._engine.top_of_book(symbol)
        if bid is None or ask is None:
            return out, None
        venue = self._engine.venue
        return out, Quote(venue, symbol, bid.price, ask.price, bid.size, ask.size, ts, ts)

    # -- internals ----------------------------------------------------------------------------

    def _next_regime(self, regime: int) -> int:
        u = self._rng.random()
        row = _TRANSITIONS[regime]
        for nxt, p in enumerate(row):
            if u < p:
                return nxt
            u -= p
        return regime

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq}"

    @staticmethod
    def _absorb(out: EngineResult, result: EngineResult) -> None:
        out.reports.extend(result.reports)
        out.trades.extend(result.trades)

    def _quote(self, st: _SymbolState, out: EngineResult, ts: int) -> None:
        rng, inst = self._rng, st.inst
        tick = inst.tick_size
        lo, hi = _SPREAD_TICKS[st.regime]
        spread = rng.randint(lo, hi) * tick
        gap = max(1, int(st.fair * _LEVEL_GAP / float(tick))) * _GAP_FACTOR[st.regime] * tick
        fair = Decimal(repr(st.fair))
        best_bid = inst.round_price(fair - spread / 2, Side.BUY)
        best_ask = best_bid + spread
        typical = float(st.spec.typical_trade_qty)
        # Inside out, alternating sides, so a crossed user order meets the nearest quote first.
        for i in range(_LEVELS):
            for side, price in ((Side.BUY, best_bid - i * gap), (Side.SELL, best_ask + i * gap)):
                size = typical * rng.uniform(2.0, 6.0) * (1 + 0.5 * i)
                if price <= 0:
                    continue
                qty = max(inst.round_qty(Decimal(repr(size))), _min_qty(inst, price))
                result = self._engine.submit(
                    self._lp,
                    client_order_id=self._next_id("lp"),
                    symbol=inst.symbol,
                    side=side,
                    type=OrderType.LIMIT,
                    qty=qty,
                    price=price,
                    tif=TimeInForce.GTC,
                    post_only=False,
                    ts=ts,
                )
                self._absorb(out, result)

    def _flow_order(self, st: _SymbolState, out: EngineResult, ts: int) -> None:
        rng, inst = self._rng, st.inst
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        mult = min(max(rng.lognormvariate(0.0, 0.7), 0.1), _FLOW_MAX)
        size = float(st.spec.typical_trade_qty) * mult
        # Sized against a price below fair so the notional filter passes on either side.
        floor_qty = _min_qty(inst, Decimal(repr(st.fair * 0.9)))
        qty = max(inst.round_qty(Decimal(repr(size))), floor_qty)
        result = self._engine.submit(
            self._flow,
            client_order_id=self._next_id("fl"),
            symbol=inst.symbol,
            side=side,
            type=OrderType.MARKET,
            qty=qty,
            price=None,
            tif=TimeInForce.IOC,
            post_only=False,
            ts=ts,
        )
        self._absorb(out, result)
