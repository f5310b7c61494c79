"""The execution gateway: the only path from an order intent to a venue."""

from botd.gateway.gateway import Gateway

__all__ = ["Gateway"]
