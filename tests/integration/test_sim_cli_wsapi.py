"""`botd sim binance --key KEY:ed25519:PEMFILE`: a real process whose WS API logs on an
Ed25519 key and subscribes to the user data stream."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)


async def _logon_and_subscribe(port: str, private: Ed25519PrivateKey) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}/ws-api/v3") as ws,
    ):
        await ws.send_str('{"id":1,"method":"time"}')
        now = json.loads(await ws.receive_str(timeout=10))["result"]["serverTime"]
        params = {"apiKey": "edkey", "timestamp": now}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params)).encode()
        params["signature"] = base64.b64encode(private.sign(payload)).decode()
        await ws.send_str(json.dumps({"id": 2, "method": "session.logon", "params": params}))
        logon = json.loads(await ws.receive_str(timeout=10))
        assert (logon["status"], logon["result"]["apiKey"]) == (200, "edkey")
        await ws.send_str('{"id":3,"method":"userDataStream.subscribe"}')
        sub = json.loads(await ws.receive_str(timeout=10))
        assert sub["result"] == {"subscriptionId": 0}


def test_ed25519_key_from_a_private_pem_file_logs_on(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = tmp_path / "ed.pem"
    pem.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    bad = subprocess.run(
        [sys.executable, "-m", "botd", "sim", "binance", "--port", "0",
         "--key", f"k:ed25519:{tmp_path / 'missing.pem'}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "missing.pem" in bad.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "botd", "sim", "binance", "--port", "0", "--key",
         f"edkey:ed25519:{pem}"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("BOTD_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = None
        for _ in range(5):
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
            if match:
                port = match.group(1)
                break
        assert port, "the simulator did not print its address"
        asyncio.run(_logon_and_subscribe(port, private))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
