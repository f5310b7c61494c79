"""The strategy runtime: the public API, the plugin loader and the host that runs them."""

from botd.strategy.api import API_VERSION, Strategy
from botd.strategy.params import param

__all__ = ["API_VERSION", "Strategy", "param"]
