"""A Binance simulator served from its own thread and event loop, for real client libraries.

Third-party clients either block (``requests``, ``websocket-client``) or bring their own
sessions and loops (ccxt), so the simulator runs beside them in a daemon thread rather than in
the test's loop. :meth:`SimThread.call` runs a function on the simulator's loop and returns
its result, which is how a test reads the simulator's state without racing its market task.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from decimal import Decimal
from typing import Any, TypeVar

from botd.clock import LiveClock
from botd.venues.sim.binance import BinanceSimulator, RateLimitConfig

__all__ = ["SimThread"]

T = TypeVar("T")


class SimThread:
    """Start with :meth:`start`, stop with :meth:`stop`; ``port``/``http``/``ws`` once started."""

    def __init__(
        self,
        *,
        api_keys: Mapping[str, str],
        balances: Mapping[str, Mapping[str, Decimal]],
        symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
        seed: int = 5,
        step_rate: float = 5.0,
        limits: RateLimitConfig | None = None,
        **extra: Any,
    ) -> None:
        self._kwargs: dict[str, Any] = {
            "clock": LiveClock(),  # real clients sign with the real time
            "seed": seed,
            "symbols": list(symbols),
            "api_keys": dict(api_keys),
            "balances": {k: dict(v) for k, v in balances.items()},
            "step_rate": step_rate,
            "limits": limits,
            **extra,
        }
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.sim: BinanceSimulator | None = None
        self.port = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> SimThread:
        self._thread.start()

        async def boot() -> int:
            self.sim = BinanceSimulator(**self._kwargs)
            return await self.sim.start(port=0)

        self.port = self._run(boot())
        return self

    def stop(self) -> None:
        if self.sim is not None:
            self._run(self.sim.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def call(self, fn: Callable[[BinanceSimulator], T]) -> T:
        """``fn(sim)`` on the simulator's loop, between two of its steps."""
        sim = self.sim
        assert sim is not None

        async def run() -> T:
            return fn(sim)

        return self._run(run())

    def _run(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=30)
