"""The built-in exchange: a matching engine and a seeded synthetic market that drives it."""

from botd.venues.sim.engine import AccountReport, EngineResult, MatchingEngine
from botd.venues.sim.market import MarketGenerator, SymbolSpec, default_instruments

__all__ = [
    "AccountReport",
    "EngineResult",
    "MarketGenerator",
    "MatchingEngine",
    "SymbolSpec",
    "default_instruments",
]
