"""Indicators for strategies: ``from botd.indicators import SMA``."""

from botd.strategy.indicators import EMA, SMA

__all__ = ["EMA", "SMA"]
