"""The deployment files: the systemd unit (verified offline), Dockerfile and compose file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "botd.service"
# Measured with systemd 252 `systemd-analyze security --offline=true`: 1.2. The margin covers
# scoring differences between systemd versions, not a weaker unit.
MAX_EXPOSURE = 1.5

REQUIRED_DIRECTIVES = [
    "Type=notify",
    "NotifyAccess=main",
    "ExecStart=/opt/botd/venv/bin/botd run --config /etc/botd/botd.toml "
    "--data-dir ${STATE_DIRECTORY} --strategies /etc/botd/strategies",
    "WatchdogSec=30",
    "Restart=on-failure",
    "RestartSec=5",
    "RestartPreventExitStatus=78",
    "TimeoutStopSec=30",
    "KillMode=mixed",
    "DynamicUser=no",
    "User=botd",
    "StateDirectory=botd",
    "UMask=0077",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "RemoveIPC=yes",
]


def unit_lines() -> list[str]:
    return [line.strip() for line in UNIT.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("directive", REQUIRED_DIRECTIVES)
def test_unit_has_directive(directive: str) -> None:
    assert directive in unit_lines()


def test_unit_shows_credentials_with_our_naming() -> None:
    text = UNIT.read_text(encoding="utf-8")
    assert "LoadCredential=venues__binance__api_key:/etc/botd/credentials/binance_api_key" in text


def _runnable_copy(tmp_path: Path) -> Path:
    target = shutil.which("true") or sys.executable
    text = UNIT.read_text(encoding="utf-8").replace("/opt/botd/venv/bin/botd", target)
    copy = tmp_path / "botd.service"
    copy.write_text(text, encoding="utf-8")
    return copy


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    return exe


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = _systemd_analyze()
    copy = _runnable_copy(tmp_path)
    proc = subprocess.run(
        [exe, "verify", str(copy)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    # Only complaints about our unit count: containers often lack units the host has.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "botd.service" in line]
    assert proc.returncode == 0, proc.stderr
    assert ours == []


def test_unit_exposure_score(tmp_path: Path) -> None:
    exe = _systemd_analyze()
    copy = _runnable_copy(tmp_path)
    proc = subprocess.run(
        [exe, "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    if proc.returncode != 0 and "offline" in proc.stderr.lower():
        pytest.skip(f"this systemd-analyze has no offline security mode: {proc.stderr.strip()}")
    match = re.search(r"Overall exposure level for botd\.service: (\d+(?:\.\d+)?)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_dockerfile_essentials() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for fragment in [
        "AS builder",
        "pip install .",
        "python:3.11-slim",
        "COPY --from=builder /opt/botd/venv /opt/botd/venv",
        "USER 10001:10001",
        "WORKDIR /app",
        "COPY strategies/ /app/strategies/",
        "BOTD_DAEMON__DATA_DIR=/data",
        "VOLUME /data",
        'CMD ["botd", "health"]',
        'ENTRYPOINT ["botd"]',
        'CMD ["run"]',
        "STOPSIGNAL SIGTERM",
    ]:
        assert fragment in text, fragment
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".venv" in ignored
    assert "botd.toml" in ignored


def test_compose_essentials() -> None:
    text = (REPO / "deploy" / "docker-compose.yml").read_text(encoding="utf-8")
    for fragment in [
        "read_only: true",
        "- /tmp",
        "- ALL",
        "no-new-privileges:true",
        "restart: unless-stopped",
        'test: ["CMD", "botd", "health"]',
        "init: true",
        "stop_grace_period: 30s",
        "botd-data:/data",
        "target: venues__binance__api_key",
    ]:
        assert fragment in text, fragment
    assert "ports:" not in text
