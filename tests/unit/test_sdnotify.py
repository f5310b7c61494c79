from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import structlog.testing

from botd.clock import FakeClock
from botd.sdnotify import SdNotifier, run_watchdog

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are limited to ~108 bytes; pytest's tmp_path can be long.
    path = tmp_path / "notify.sock"
    if len(str(path)) > 100:
        pytest.skip("tmp_path too long for an AF_UNIX socket path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def recv(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def test_sends_exact_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = SdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready()
    assert recv(sock) == b"READY=1"
    assert n.status("trading 2 strategies")
    assert recv(sock) == b"STATUS=trading 2 strategies"
    assert n.stopping()
    assert recv(sock) == b"STOPPING=1"
    assert n.watchdog()
    assert recv(sock) == b"WATCHDOG=1"
    assert n.send(READY=1, STATUS="up")
    assert recv(sock) == b"READY=1\nSTATUS=up"
    assert n.status("two\nlines")
    assert recv(sock) == b"STATUS=two lines"
    assert n.extend_timeout(1.5)
    assert recv(sock) == b"EXTEND_TIMEOUT_USEC=1500000"
    n.close()
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"botd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
    except OSError:
        sock.close()
        pytest.skip("abstract AF_UNIX namespace not supported here")
    sock.settimeout(2)
    try:
        n = SdNotifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert recv(sock) == b"READY=1"
        n.close()
    finally:
        sock.close()


def test_disabled_without_notify_socket() -> None:
    n = SdNotifier.from_environ({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_interval() is None
    assert SdNotifier.from_environ({"NOTIFY_SOCKET": ""}).enabled is False


def test_missing_socket_does_not_raise(tmp_path: Path) -> None:
    n = SdNotifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "absent.sock")})
    assert n.enabled
    with structlog.testing.capture_logs() as logs:
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.stopping() is False
    failures = [e for e in logs if "sd_notify failed" in e["event"]]
    assert len(failures) == 1  # logged once, then quiet
    assert failures[0]["log_level"] == "warning"
    n.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "garbage"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    n = SdNotifier.from_environ({"NOTIFY_SOCKET": "/nonexistent", **env})
    assert n.watchdog_interval() == expected


def test_watchdog_pid_compared_with_given_pid() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}
    assert SdNotifier.from_environ(env, pid=4242).watchdog_interval() == 1.0
    assert SdNotifier.from_environ(env, pid=4243).watchdog_interval() is None


async def test_run_watchdog_pings_only_while_healthy(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    sock.setblocking(False)
    n = SdNotifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    clock = FakeClock()
    healthy = True
    task = asyncio.create_task(run_watchdog(n, clock, lambda: healthy))
    await asyncio.sleep(0)
    for _ in range(5):
        await clock.advance(2.0)
    assert not task.done()

    def drain() -> list[bytes]:
        got: list[bytes] = []
        while True:
            try:
                got.append(sock.recv(64))
            except BlockingIOError:
                return got

    assert drain() == [b"WATCHDOG=1"] * 6  # at t=0 and after each of the 5 intervals
    await clock.advance(1.0)  # half an interval: no ping yet
    assert drain() == []
    healthy = False
    await clock.advance(1.0)
    for _ in range(3):
        await clock.advance(2.0)
    assert drain() == []  # withheld: systemd's watchdog will fire
    assert not task.done()
    healthy = True
    await clock.advance(2.0)
    assert drain() == [b"WATCHDOG=1"]  # healthy again before the timeout: pings resume
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    n.close()


async def test_run_watchdog_returns_when_not_requested() -> None:
    clock = FakeClock()
    await asyncio.wait_for(run_watchdog(SdNotifier.from_environ({}), clock, lambda: True), 1)
    n = SdNotifier.from_environ({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"})
    await asyncio.wait_for(run_watchdog(n, clock, lambda: True), 1)
    assert clock.pending_sleepers == 0
