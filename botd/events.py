"""Daemon-level events on the bus: what an operator hears about, besides orders and fills.

Published rarely (state changes, not market data), so plain frozen dataclasses. Subscribers:
the notifier, and whatever else wants to react (metrics, the control API).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KillSwitchChanged", "StrategyHalted", "VenueDown", "VenueUp"]


@dataclass(frozen=True, slots=True)
class VenueDown:
    """A venue's market data has been disconnected for longer than its reconnect grace."""

    venue: str
    reason: str
    down_for_s: float
    ts_event: int


@dataclass(frozen=True, slots=True)
class VenueUp:
    """A venue reported down is connected again."""

    venue: str
    down_for_s: float
    ts_event: int


@dataclass(frozen=True, slots=True)
class StrategyHalted:
    """The host halted a strategy (repeated errors, overruns); its orders are being cancelled."""

    strategy_id: str
    reason: str
    ts_event: int


@dataclass(frozen=True, slots=True)
class KillSwitchChanged:
    """The kill switch was engaged (``engaged``) or released, by any path."""

    engaged: bool
    reason: str
    ts_event: int
