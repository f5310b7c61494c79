"""The Alpaca protocol simulator (trading API v2, data streams, trade updates)."""

from botd.venues.sim.alpaca.assets import AssetSpec, default_assets
from botd.venues.sim.alpaca.server import AlpacaSimulator
from botd.venues.sim.alpaca.streams import DataStreamConfig

__all__ = ["AlpacaSimulator", "AssetSpec", "DataStreamConfig", "default_assets"]
