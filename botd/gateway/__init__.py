"""The execution gateway: the only path from an order intent to a venue."""

from botd.gateway.gateway import Alert, Gateway, GatewayConfig

__all__ = ["Alert", "Gateway", "GatewayConfig"]
