"""Every module imports on its own, in a fresh interpreter: no hidden import-order cycles.

One clean interpreter imports the third-party libraries botd uses (never a botd module), then
forks once per botd module; each child imports that one module and nothing else of ours.
The children start with no botd module loaded, exactly as a fresh interpreter would, without
paying each library's import time again (this test used to take a minute and a half)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in (ROOT / "botd").rglob("*.py")
    if p.name != "__main__.py"
)

# Imported by the parent before forking; a library missing here only costs time.
_WARM = [
    "aiohttp",
    "pydantic",
    "pydantic_settings",
    "structlog",
    "msgspec",
    "cryptography",
    "websockets",
    "aiosqlite",
    "watchfiles",
    "prometheus_client",
    "rich",
]

_DRIVER = r"""
import importlib, json, os, sys, traceback
for lib in WARM:
    try:
        importlib.import_module(lib)
    except Exception:
        pass
assert not [m for m in sys.modules if m == "botd" or m.startswith("botd.")], "parent loaded botd"
results = {}
for module in MODULES:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(module)
            msg = b""
        except BaseException:
            msg = traceback.format_exc().encode()
        os.write(w, msg)
        os._exit(1 if msg else 0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    results[module] = [os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def outcomes() -> dict[str, list[object]]:
    code = f"WARM = {_WARM!r}\nMODULES = {MODULES!r}\n" + _DRIVER
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[object]] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str, outcomes: dict[str, list[object]]) -> None:
    status, error = outcomes[module]
    assert status == 0, error


def test_a_broken_module_would_be_caught(tmp_path: Path) -> None:
    """The driver reports a failing import rather than passing everything."""
    (tmp_path / "broken_mod.py").write_text("import botd\nraise RuntimeError('boom')\n")
    code = "WARM = []\nMODULES = ['broken_mod', 'json']\n" + _DRIVER
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["broken_mod"][0] == 1 and "boom" in result["broken_mod"][1]
    assert result["json"][0] == 0
