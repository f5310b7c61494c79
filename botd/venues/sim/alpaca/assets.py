"""What the Alpaca simulator lists: a few US equities and two crypto pairs.

Prices start near where they traded recently; grids are the simulator's choice (equities tick
0.01 and trade fractions down to 1e-9 shares when fractionable; crypto in 1e-9 units with a
minimum order size). FAKEPACA is the symbol of Alpaca's always-on ``/v2/test`` feed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from botd.venues.sim.market import SymbolSpec

__all__ = ["AssetSpec", "default_assets"]

D = Decimal


@dataclass(frozen=True, slots=True)
class AssetSpec:
    spec: SymbolSpec  # engine symbol = the order symbol (``AAPL``, ``BTC/USD``)
    asset_class: str  # us_equity | crypto
    exchange: str
    name: str
    fractionable: bool
    feed: str  # the stream feed that carries it: iex/sip, test or crypto

    @property
    def symbol(self) -> str:
        return self.spec.symbol

    @property
    def is_crypto(self) -> bool:
        return self.asset_class == "crypto"

    @property
    def position_symbol(self) -> str:
        """Positions name crypto without the slash (``BTCUSD``)."""
        return self.symbol.replace("/", "")

    @property
    def asset_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"botd-sim-alpaca/{self.symbol}"))


def _equity(
    symbol: str, name: str, exchange: str, price: str, typical: str, *, fractionable: bool = True
) -> AssetSpec:
    step = D("0.000000001") if fractionable else D("1")
    spec = SymbolSpec(symbol, symbol, "USD", D(price), D("0.01"), step, step, D("0"), D(typical))
    feed = "test" if symbol == "FAKEPACA" else "stocks"
    return AssetSpec(spec, "us_equity", exchange, name, fractionable, feed)


def _crypto(base: str, name: str, price: str, min_qty: str, typical: str) -> AssetSpec:
    spec = SymbolSpec(
        f"{base}/USD", base, "USD", D(price), D("0.01"), D("0.000000001"), D(min_qty), D("0"),
        D(typical),
    )  # fmt: skip
    return AssetSpec(spec, "crypto", "CRYPTO", name, True, "crypto")


def default_assets() -> dict[str, AssetSpec]:
    assets = [
        _equity("AAPL", "Apple Inc. Common Stock", "NASDAQ", "190.00", "20"),
        _equity("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", "420.00", "10"),
        _equity("SPY", "SPDR S&P 500 ETF Trust", "ARCA", "560.00", "10"),
        _equity("FAKEPACA", "Alpaca test symbol", "NASDAQ", "100.00", "5", fractionable=False),
        _crypto("BTC", "Bitcoin / US Dollar", "65000.00", "0.0001", "0.01"),
        _crypto("ETH", "Ethereum / US Dollar", "3500.00", "0.001", "0.2"),
    ]
    return {a.symbol: a for a in assets}
