"""Errors typed by what the caller must do about them."""

from __future__ import annotations

__all__ = [
    "AuthError",
    "Banned",
    "BotdError",
    "ConfigError",
    "OrderRejected",
    "RateLimited",
    "StrategyError",
    "TransientVenueError",
]


class BotdError(Exception):
    """Base of every error botd raises on purpose."""


class ConfigError(BotdError, ValueError):
    """The configuration is wrong: stop, exit 78, do not restart-loop."""


class AuthError(BotdError, PermissionError):
    """The venue refused our credentials: stop trading that venue."""


class TransientVenueError(BotdError, ConnectionError):
    """A network or server fault; the outcome of a write may be unknown. Retry with backoff."""


class RateLimited(TransientVenueError):
    """The venue asked us to slow down; wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Banned(RateLimited):
    """The venue banned us (Binance HTTP 418) for ``retry_after`` seconds: stop sending."""


class OrderRejected(BotdError):
    """The venue (or our own pre-trade checks) definitively refused an order. Never retry."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class StrategyError(BotdError):
    """A strategy misbehaved; halt that strategy only."""
