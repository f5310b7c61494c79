"""Indicators for strategies: ``from botd.indicators import SMA``."""

from botd.strategy.indicators import (
    ATR,
    EMA,
    MACD,
    ROC,
    RSI,
    SMA,
    VWAP,
    WMA,
    Bands,
    BollingerBands,
    Channel,
    DonchianChannel,
    MACDValue,
    RollingMax,
    RollingMin,
    StdDev,
)

__all__ = [
    "ATR",
    "EMA",
    "MACD",
    "ROC",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "Bands",
    "BollingerBands",
    "Channel",
    "DonchianChannel",
    "MACDValue",
    "RollingMax",
    "RollingMin",
    "StdDev",
]
