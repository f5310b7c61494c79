"""``/ws/<word>`` without an '@' opens a stream connection with no streams (ccxt.pro's way)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from botd.clock import FakeClock
from botd.venues.sim.binance import BinanceSimulator


async def test_a_connection_label_in_the_path_opens_an_empty_connection() -> None:
    sim = BinanceSimulator(clock=FakeClock(), seed=1, symbols=["BTCUSDT"], api_keys={})
    port = await sim.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"ws://127.0.0.1:{port}/ws/0") as ws,
        ):
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 1})
            assert json.loads((await ws.receive(timeout=5)).data) == {"result": [], "id": 1}
            await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2})
            assert json.loads((await ws.receive(timeout=5)).data) == {"result": None, "id": 2}
            # A stream-shaped name the simulator does not serve is still refused.
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"ws://127.0.0.1:{port}/ws/btcusdt@nosuch")
    finally:
        await sim.stop()
