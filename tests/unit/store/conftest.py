from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botd.clock import FakeClock
from botd.store import Journal


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "botd.db"


@pytest.fixture
async def journal(db_path: Path, clock: FakeClock) -> AsyncIterator[Journal]:
    j = await Journal.open(db_path, clock=clock)
    try:
        yield j
    finally:
        await j.close()
