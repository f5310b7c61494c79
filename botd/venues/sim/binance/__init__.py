"""A loopback server speaking Binance Spot's REST API (``/api/v3``), market-data streams and
WebSocket API with the user data stream (``/ws-api/v3``) over the built-in engine.

Written from the wire facts, independently of the Binance client adapter on purpose: a shared
misreading of the protocol would otherwise pass every test.
"""

from botd.venues.sim.binance.faults import Fault, FaultKind, Trigger, WireFaultPlan
from botd.venues.sim.binance.server import (
    ApiKey,
    BinanceSimulator,
    RateLimitConfig,
    StreamConfig,
)

__all__ = [
    "ApiKey",
    "BinanceSimulator",
    "Fault",
    "FaultKind",
    "RateLimitConfig",
    "StreamConfig",
    "Trigger",
    "WireFaultPlan",
]
