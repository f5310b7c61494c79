"""The heartbeat file the daemon rewrites every few seconds and ``botd health`` reads.

It works where the control API or sd_notify cannot reach: a Docker ``HEALTHCHECK`` runs a fresh
process in the container that only shares the data volume with the daemon.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["HEARTBEAT_FILE", "check_heartbeat", "read_heartbeat", "write_heartbeat"]

HEARTBEAT_FILE = "heartbeat.json"
_NS_PER_SECOND = 1_000_000_000


def write_heartbeat(data_dir: Path, now_ns: int, status: dict[str, Any]) -> None:
    """Atomically replace ``data_dir/heartbeat.json``; raises OSError if it cannot.

    No fsync: a heartbeat lost to a power cut is exactly the signal it should give. The
    rename alone guarantees readers see either the old or the new file, never half of one.
    """
    body = json.dumps({"ts_ns": now_ns, "pid": os.getpid(), "status": status}, default=str)
    fd, tmp = tempfile.mkstemp(prefix=".heartbeat.", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        os.replace(tmp, data_dir / HEARTBEAT_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_heartbeat(data_dir: Path) -> dict[str, Any]:
    """The parsed heartbeat; raises OSError or ValueError."""
    data = json.loads((data_dir / HEARTBEAT_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("ts_ns"), int):
        raise ValueError("heartbeat file has no integer 'ts_ns'")
    return data


def check_heartbeat(data_dir: Path, now_ns: int, max_age_s: float) -> tuple[bool, str]:
    """(healthy, one-line reason). Healthy means a fresh heartbeat not marked unhealthy."""
    path = data_dir / HEARTBEAT_FILE
    try:
        data = read_heartbeat(data_dir)
    except FileNotFoundError:
        return False, f"no heartbeat at {path} (daemon not running, or another data dir?)"
    except (OSError, ValueError) as exc:
        return False, f"unreadable heartbeat at {path}: {exc}"
    age_s = (now_ns - data["ts_ns"]) / _NS_PER_SECOND
    if age_s > max_age_s:
        return False, f"stale heartbeat: last written {age_s:.1f}s ago (limit {max_age_s:g}s)"
    status = data.get("status")
    if isinstance(status, dict) and status.get("state") == "stopped":
        return False, "daemon has stopped (its last heartbeat says so)"
    if isinstance(status, dict) and status.get("healthy") is False:
        reason = status.get("reason") or status.get("state") or "daemon reports unhealthy"
        return False, f"unhealthy: {reason}"
    if age_s < -max_age_s:
        # Clock stepped backwards (or the file came from another host): report, don't fail.
        return True, f"ok (heartbeat is {-age_s:.1f}s in the future; check the clock)"
    return True, f"ok (heartbeat {max(age_s, 0.0):.1f}s old)"
