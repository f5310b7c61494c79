"""The control server in-process on the rig's real parts: TLS, a Unix socket, metrics."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY

from botd.clock import Clock, FakeClock
from botd.control import CONTROL_FILE, ControlServer
from botd.errors import ConfigError
from botd.feeds.runner import FeedRunner
from botd.gateway import Gateway
from botd.loopmon import LoopLagMonitor
from botd.metrics import DaemonMetrics
from botd.risk import RiskEngine
from botd.settings import Settings, load_settings
from botd.store import Journal
from botd.strategy.host import StrategyHost
from botd.strategy.manager import StrategyManager
from tests.rig import Rig, make_intent


@dataclass
class Target:
    settings: Settings
    clock: Clock
    bus: Any
    feeds: list[FeedRunner]
    gateway: Gateway
    host: StrategyHost
    risk: RiskEngine
    journal: Journal | None
    lag: LoopLagMonitor
    strategies: StrategyManager
    reconciled: dict[str, int] = field(default_factory=dict)
    reconcile_errors: dict[str, str] = field(default_factory=dict)


def _target(rig: Rig, tmp_path: Path, env: dict[str, str]) -> Target:
    folder = tmp_path / "strategies"
    folder.mkdir(exist_ok=True)
    settings = load_settings(
        None,
        {"daemon": {"data_dir": str(tmp_path / "data"), "strategies_dir": str(folder)}},
        {"BOTD_CONTROL__PORT": "0", **env},
        secrets_dirs=[],
        cwd=tmp_path,
    )
    (tmp_path / "data").mkdir(exist_ok=True)
    return Target(
        settings=settings,
        clock=rig.clock,
        bus=rig.bus,
        feeds=[rig.feed],
        gateway=rig.gateway,
        host=rig.host,
        risk=rig.risk,
        journal=rig.journal,
        lag=LoopLagMonitor(rig.clock, warn_ms=100),
        strategies=StrategyManager(host=rig.host, folder=folder, settings={}),
    )


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "botd test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(data_dir=tmp_path)
    async with r.running():
        await r.advance(0.5)
        yield r


async def test_tls(rig: Rig, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    target = _target(
        rig, tmp_path, {"BOTD_CONTROL__TLS_CERT": str(cert), "BOTD_CONTROL__TLS_KEY": str(key)}
    )
    server = ControlServer(target)
    await server.start()
    try:
        info = json.loads((tmp_path / "data" / CONTROL_FILE).read_text())
        assert info["tls"] is True
        assert server.url.startswith("https://127.0.0.1:")
        token = (tmp_path / "data" / "control.token").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session:
            async with session.get(
                server.url + "/v1/status", ssl=ctx, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 200
                body = await resp.json()
            assert body["venues"][0]["name"] == "paper"
            with pytest.raises(aiohttp.ClientError):
                # Plain HTTP to a TLS port gets nothing useful.
                async with session.get(server.url.replace("https", "http") + "/health") as r:
                    assert r.status != 200
    finally:
        await server.stop()
    assert not (tmp_path / "data" / CONTROL_FILE).exists()


async def test_unreadable_tls_files_are_a_config_error(rig: Rig, tmp_path: Path) -> None:
    target = _target(
        rig,
        tmp_path,
        {"BOTD_CONTROL__TLS_CERT": "/nonexistent.pem", "BOTD_CONTROL__TLS_KEY": "/nope.pem"},
    )
    with pytest.raises(ConfigError, match=r"control\.tls_cert"):
        await ControlServer(target).start()


async def test_unix_socket(rig: Rig, tmp_path: Path) -> None:
    sock = tmp_path / "botd.sock"
    target = _target(rig, tmp_path, {"BOTD_CONTROL__SOCKET": str(sock)})
    server = ControlServer(target)
    await server.start()
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        info = json.loads((tmp_path / "data" / CONTROL_FILE).read_text())
        assert info["socket"] == str(sock)
        token = (tmp_path / "data" / "control.token").read_text().strip()
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s:
            async with s.get("http://localhost/v1/status") as resp:
                assert resp.status == 401
            headers = {"Authorization": f"Bearer {token}"}
            async with s.post("http://localhost/v1/halt", headers=headers) as resp:
                assert resp.status == 200
                assert (await resp.json())["trading"]["state"] == "halted"
    finally:
        await server.stop()
    assert not sock.exists()


async def test_metrics_public_and_own_registry(rig: Rig, tmp_path: Path) -> None:
    target = _target(rig, tmp_path, {"BOTD_CONTROL__METRICS_PUBLIC": "true"})
    server = ControlServer(target)
    await server.start()
    try:
        await rig.advance(0.5)  # events published after start are counted by type
        async with aiohttp.ClientSession() as s, s.get(server.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        assert 'botd_stream_events_total{venue="paper"}' in text
        assert 'botd_bus_events_total{type="Quote"}' in text
    finally:
        await server.stop()
    # Nothing went into prometheus_client's global default registry.
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("botd_")]


def test_two_metrics_objects_do_not_collide() -> None:
    a, b = DaemonMetrics(FakeClock(), "1"), DaemonMetrics(FakeClock(), "1")
    a.journal_commit.observe(0.01)
    assert b"botd_journal_commit_seconds_count 1.0" in a.render()
    assert b"botd_journal_commit_seconds_count 0.0" in b.render()


async def test_order_outcomes_and_latencies_are_recorded(rig: Rig, tmp_path: Path) -> None:
    target = _target(rig, tmp_path, {})
    metrics = DaemonMetrics(rig.clock, "t")
    metrics.attach(target)
    rig.gateway.submit(make_intent())  # a market buy: submitted, then filled
    rig.gateway.submit(make_intent(qty=Decimal("1000")))  # deeper than the book: expires
    rig.gateway.submit(make_intent(qty=Decimal("0.0000001")))  # under the minimum: denied
    await rig.advance(0.5)
    text = metrics.render().decode()
    assert 'botd_orders_total{outcome="submitted",venue="paper"} 2.0' in text
    assert 'botd_orders_total{outcome="filled",venue="paper"} 1.0' in text
    assert 'botd_orders_total{outcome="expired",venue="paper"} 1.0' in text
    assert 'botd_orders_total{outcome="rejected",venue="paper"} 1.0' in text
    assert 'botd_tick_to_intent_seconds_count{strategy="s1"} 3.0' in text
    assert 'botd_intent_to_send_seconds_count{venue="paper"} 2.0' in text
    assert 'botd_intent_to_venue_seconds_count{venue="paper"} 2.0' in text
    assert "botd_journal_commit_seconds_count 0.0" not in text
    fills = len(rig.fills)
    assert fills >= 2
    assert f'botd_bus_events_total{{type="Fill"}} {fills}.0' in text
    open_section = text.split("# TYPE botd_open_orders gauge")[1].split("#")[0]
    assert "botd_open_orders{" not in open_section, "nothing left open"
