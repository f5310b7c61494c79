"""A loopback server speaking Binance Spot's REST API (``/api/v3``) over the built-in engine.

Written from the wire facts, independently of the Binance client adapter on purpose: a shared
misreading of the protocol would otherwise pass every test.
"""

from botd.venues.sim.binance.server import BinanceSimulator, RateLimitConfig, StreamConfig

__all__ = ["BinanceSimulator", "RateLimitConfig", "StreamConfig"]
