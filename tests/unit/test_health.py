from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from botd.health import HEARTBEAT_FILE, check_heartbeat, read_heartbeat, write_heartbeat

S = 1_000_000_000
T0 = 1_700_000_000 * S


def test_write_then_check_fresh(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, T0, {"state": "running", "fills": 3})
    data = read_heartbeat(tmp_path)
    assert data["ts_ns"] == T0
    assert data["status"] == {"state": "running", "fills": 3}
    assert data["pid"] == os.getpid()
    ok, msg = check_heartbeat(tmp_path, T0 + 5 * S, max_age_s=30)
    assert ok, msg
    assert msg.startswith("ok")


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    for i in range(20):
        write_heartbeat(tmp_path, T0 + i, {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == [HEARTBEAT_FILE]
    assert read_heartbeat(tmp_path)["status"] == {"i": 19}


def test_write_failure_cleans_up_and_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_heartbeat(tmp_path / "missing", T0, {})
    (tmp_path / HEARTBEAT_FILE).mkdir()  # os.replace onto a directory fails
    with pytest.raises(IsADirectoryError):
        write_heartbeat(tmp_path, T0, {})
    assert [p.name for p in tmp_path.iterdir()] == [HEARTBEAT_FILE]


def test_stale_heartbeat(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, T0, {"state": "running"})
    ok, msg = check_heartbeat(tmp_path, T0 + 31 * S, max_age_s=30)
    assert not ok
    assert "stale" in msg
    assert "31.0s" in msg


def test_missing_heartbeat(tmp_path: Path) -> None:
    ok, msg = check_heartbeat(tmp_path, T0, max_age_s=30)
    assert not ok
    assert "no heartbeat" in msg


@pytest.mark.parametrize("body", ["", "{", "[]", '{"ts_ns": "x"}', '{"status": {}}'])
def test_corrupt_heartbeat(tmp_path: Path, body: str) -> None:
    (tmp_path / HEARTBEAT_FILE).write_text(body)
    ok, msg = check_heartbeat(tmp_path, T0, max_age_s=30)
    assert not ok
    assert "unreadable" in msg


def test_daemon_reported_unhealthy_or_stopped(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, T0, {"healthy": False, "reason": "feed stale"})
    assert check_heartbeat(tmp_path, T0, 30) == (False, "unhealthy: feed stale")
    write_heartbeat(tmp_path, T0, {"state": "stopped"})
    ok, msg = check_heartbeat(tmp_path, T0, 30)
    assert not ok
    assert "stopped" in msg


def test_heartbeat_from_the_future_is_ok_but_noted(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, T0 + 100 * S, {})
    ok, msg = check_heartbeat(tmp_path, T0, max_age_s=30)
    assert ok
    assert "future" in msg


def test_non_json_status_values_are_stringified(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, T0, {"path": Path("/data")})
    assert json.loads((tmp_path / HEARTBEAT_FILE).read_text())["status"]["path"] == "/data"
