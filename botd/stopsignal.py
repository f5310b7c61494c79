"""Wait for Ctrl-C or SIGTERM in a foreground command (the simulators, ``botd record``)."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["until_stop_signal"]


async def until_stop_signal() -> None:
    """Return when the process gets SIGINT or SIGTERM; the handlers are removed again."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
