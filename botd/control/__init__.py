"""The control API: a running daemon operated over HTTP (status, orders, halt, kill, …)."""

from botd.control.server import CONTROL_FILE, ControlServer, ControlUnavailable

__all__ = ["CONTROL_FILE", "ControlServer", "ControlUnavailable"]
