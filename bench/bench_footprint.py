"""The daemon's footprint: start-up time to READY and resident memory after a while, running
ten strategies on two symbols on the built-in simulated exchange.

``botd run`` is a real subprocess. Start-up is measured from spawning it to the ``READY=1``
datagram on a ``NOTIFY_SOCKET`` this benchmark binds (what systemd waits for); memory is the
process's VmRSS (and its peak, VmHWM) from /proc after ``--duration`` seconds of trading.
Prints one JSON line.

    python bench/bench_footprint.py [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("price_threshold", "sma_cross", "rsi_reversion", "donchian_breakout", "grid")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
CONFIG = """
[log]
format = "json"
level = "info"

[paper]
symbols = ["BTCUSDT", "ETHUSDT"]
"""


def write_strategies(folder: Path) -> int:
    """Five shipped examples, each on both symbols: ten strategies."""
    count = 0
    for name in EXAMPLES:
        source = (REPO / "strategies" / f"{name}.py").read_text(encoding="utf-8")
        for symbol in SYMBOLS:
            text, n = re.subn(r'symbol = "[A-Z]+"', f'symbol = "{symbol}"', source, count=1)
            assert n == 1, name
            (folder / f"{name}_{symbol.lower()}.py").write_text(text, encoding="utf-8")
            count += 1
    return count


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="botd-footprint-") as tmp:
        root = Path(tmp)
        strategies = root / "strategies"
        strategies.mkdir()
        n_strategies = write_strategies(strategies)
        (root / "botd.toml").write_text(CONFIG, encoding="utf-8")
        notify_path = root / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTD_")}
        env.update({"NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"})
        env.pop("WATCHDOG_USEC", None)

        argv = [sys.executable, "-m", "botd", "run", "--config", str(root / "botd.toml")]
        argv += ["--strategies", str(strategies), "--data-dir", str(root / "data")]
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        counts = {"fill": 0, "lines": 0, "running": -1}

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                counts["lines"] += 1
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == "fill":
                    counts["fill"] += 1
                elif record.get("event") == "botd ready":
                    counts["running"] = int(record.get("strategies", -1))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            sock.settimeout(60)
            ready_s = None
            while ready_s is None:
                data = sock.recv(4096).decode()
                if "READY=1" in data.splitlines():
                    ready_s = time.perf_counter() - started
            rss_at_ready = proc_status(proc.pid)["VmRSS"]
            cpu_at_ready = cpu_seconds(proc.pid)
            time.sleep(args.duration)
            if proc.poll() is not None:
                raise SystemExit(f"botd exited early with {proc.returncode}")
            status = proc_status(proc.pid)
            cpu = cpu_seconds(proc.pid) - cpu_at_ready
            stop_started = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            stop_s = time.perf_counter() - stop_started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            sock.close()
        reader.join(5)

    print(
        json.dumps(
            {
                "bench": "footprint",
                "strategies": n_strategies,
                "strategies_running": counts["running"],
                "symbols": len(SYMBOLS),
                "startup_to_ready_s": round(ready_s, 3),
                "rss_at_ready_mib": round(rss_at_ready / 1024, 1),
                "duration_s": args.duration,
                "rss_after_duration_mib": round(status["VmRSS"] / 1024, 1),
                "rss_peak_mib": round(status["VmHWM"] / 1024, 1),
                "cpu_s_over_duration": round(cpu, 2),
                "cpu_percent_of_one_core": round(100 * cpu / args.duration, 1),
                "fills": counts["fill"],
                "log_lines": counts["lines"],
                "shutdown_s": round(stop_s, 3),
                "exit_code": code,
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
