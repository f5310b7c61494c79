"""A write that returned survives ``kill -9`` of the process that made it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from botd.clock import FakeClock
from botd.model import OrderStatus
from botd.store import Journal
from tests.unit.store.factories import make_order

ROOT = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    from botd.clock import LiveClock
    from botd.store import Journal
    from tests.unit.store.factories import make_order

    async def main() -> None:
        journal = await Journal.open(Path(sys.argv[1]), clock=LiveClock())
        # Queued but never awaited: may or may not survive; the awaited ones must.
        for i in range(100):
            journal.update_order(make_order(f"bg-{i}"))
        for i in range(3):
            await journal.write_order(make_order(f"durable-{i}"))
        n = await journal.next_sequence("ids", 10)
        print("written", n, flush=True)
        # Keep the writer busy so the kill lands with work in flight.
        while True:
            journal.update_order(make_order("churn"))
            await asyncio.sleep(0.001)

    asyncio.run(main())
    """
)


async def test_durable_write_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "botd.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    errors = tmp_path / "child.err"
    with errors.open("w") as err:
        child = subprocess.Popen(  # noqa: ASYNC220 - a blocking wait of a few ms in a test
            [sys.executable, "-c", CHILD, str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert child.stdout is not None
        # The child's journal logs go to stdout too (logging is not configured there).
        line = ""
        for line in child.stdout:
            if line.startswith("written"):
                break
        assert line.startswith("written"), errors.read_text()
        first = int(line.split()[1])
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    journal = await Journal.open(path, clock=FakeClock())
    try:
        for i in range(3):
            order = await journal.order(f"durable-{i}")
            assert order == make_order(f"durable-{i}")
            assert order.status is OrderStatus.ACCEPTED
        # The reserved range is never handed out again.
        assert await journal.next_sequence("ids") == first + 10
        assert journal.healthy
    finally:
        await journal.close()
