"""Run ``botd`` as a real subprocess and read what it says: JSON log lines and sd_notify."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "strategies"

FAST_CONFIG = """
[log]
format = "json"

[daemon]
heartbeat_interval = 0.5

[paper]
event_rate = 50

[control]
# Any free port: tests (and other people's test runs) must not fight over a fixed one.
port = 0
"""


# Two shipped examples: one that reacts to every quote, one that rests orders in the book.
DEFAULT_EXAMPLES = ("price_threshold.py", "grid.py")


def make_workspace(tmp: Path, config: str = FAST_CONFIG, examples: bool = True) -> dict[str, Path]:
    strategies = tmp / "strategies"
    strategies.mkdir()
    if examples:
        for name in DEFAULT_EXAMPLES:
            shutil.copy(EXAMPLES / name, strategies / name)
    cfg = tmp / "botd.toml"
    cfg.write_text(config)
    return {"config": cfg, "strategies": strategies, "data": tmp / "data", "root": tmp}


def run_args(ws: dict[str, Path], **paths: Path) -> list[str]:
    """``run`` with the workspace's config, strategies and data dir (each overridable)."""
    chosen = {**{k: ws[k] for k in ("config", "strategies", "data")}, **paths}
    return [
        "run",
        "--config",
        str(chosen["config"]),
        "--strategies",
        str(chosen["strategies"]),
        "--data-dir",
        str(chosen["data"]),
    ]


class NotifyListener:
    """The systemd side of sd_notify: a datagram socket the daemon writes to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend(data.decode().splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    def __init__(
        self,
        args: list[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        module: bool = True,
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BOTD_")}
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, *(["-m", "botd"] if module else []), *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.stderr = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line)
                self.records.append(json.loads(line))

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self._lock:
                records = self.records[seen:]
                seen = len(self.records)
            for record in records:
                if predicate(record):
                    return record
            if self.proc.poll() is not None and seen == len(self.records):
                break
            time.sleep(0.05)
        raise AssertionError(
            f"no matching log line within {timeout}s; exit={self.proc.poll()}\n"
            + "".join(self.lines[-30:])
            + self.read_stderr()
        )

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def read_stderr(self) -> str:
        if self.proc.poll() is not None and self.proc.stderr is not None and not self.stderr:
            self.stderr = self.proc.stderr.read()
        return self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def run_cli(
    args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BOTD_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "botd", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def send(proc: Daemon, sig: int) -> None:
    os.kill(proc.proc.pid, sig)


def start_binance_sim(
    cwd: Path, key: str, secret: str, *extra: str
) -> tuple[subprocess.Popen[str], str]:
    """`botd sim binance` on a free loopback port: the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "botd", "sim", "binance", "--port", "0", "--key",
         f"{key}:{secret}", *extra],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("BOTD_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match, line
    return proc, match.group(0)


def stop_process(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C, then kill if it does not stop within 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
