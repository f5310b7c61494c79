"""Fidelity tests point real client libraries at our simulators; none of it may leave the host.

``no_internet`` (autouse, per module) refuses every DNS lookup of a name other than
``localhost`` and every connect to an address outside the loopback range, and fails the module
if a client tried one, even when the client swallowed the error and carried on.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkGuard:
    def __init__(self) -> None:
        self.refused: list[str] = []

    def check(self, what: str, host: object) -> None:
        if not _is_loopback(host):
            self.refused.append(f"{what} {host!r}")
            raise OSError(f"fidelity tests stay on loopback; refused {what} {host!r}")


@pytest.fixture(scope="module", autouse=True)
def no_internet() -> Iterator[NetworkGuard]:
    guard = NetworkGuard()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            guard.check("lookup of", host)
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check("connect to", address[0])
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check("connect to", address[0])
        return real_connect_ex(self, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        yield guard
    assert not guard.refused, f"a client tried to leave the host: {guard.refused}"
