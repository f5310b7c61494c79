"""Hot reload against a real daemon and real file operations."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.integration.daemon_proc import Daemon, make_workspace, run_args

TEMPLATE = """
from decimal import Decimal
from botd import Strategy


class Hot(Strategy):
    symbol = "BTCUSDT"

    def on_start(self):
        self.version = {version}
        self.state.setdefault("quotes", 0)
        self.log.info("version started", version=self.version, quotes=self.state["quotes"])

    def on_quote(self, quote):
        self.state["quotes"] += 1
        if not self.state.get("bought"):
            self.state["bought"] = True
            self.buy(Decimal("0.001"))
        if not self.state.get("resting"):
            self.state["resting"] = True
            self.buy(Decimal("0.001"), price=(quote.bid / 2).quantize(Decimal("0.01")))
"""


def write_atomically(path: Path, text: str) -> None:
    """Save the way most editors do: a temporary file renamed over the target."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.rename(path)


def test_add_modify_break_fix_rename_delete(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, examples=False)
    folder = ws["strategies"]
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        daemon.wait_for(lambda r: r["event"] == "watching strategies folder")

        # Add: trading within 5 seconds of the file appearing.
        added_at = time.monotonic()
        write_atomically(folder / "hot.py", TEMPLATE.format(version=1))
        daemon.wait_for(lambda r: r["event"] == "fill" and r["strategy"] == "hot", timeout=10)
        assert time.monotonic() - added_at < 5
        daemon.wait_for(lambda r: r["event"] == "order accepted" and r["strategy"] == "hot")
        time.sleep(0.5)

        # Modify: the new version starts with the old one's state.
        (folder / "hot.py").write_text(TEMPLATE.format(version=2))
        daemon.wait_for(lambda r: r["event"] == "strategy reloaded" and r["strategy"] == "hot")
        v2 = daemon.wait_for(lambda r: r["event"] == "version started" and r["version"] == 2)
        assert v2["quotes"] > 0

        # Break: the error names file and line; version 2 keeps trading.
        (folder / "hot.py").write_text(TEMPLATE.format(version=3) + "\ndef broken(:\n")
        error = daemon.wait_for(lambda r: r["event"] == "strategy file not loaded")
        assert error["file"] == str(folder / "hot.py")
        assert error["line"] == TEMPLATE.count("\n") + 2
        daemon.wait_for(lambda r: r["event"] == "keeping the previous version running")
        seen = len(daemon.records)
        time.sleep(1.0)
        assert not any(r["event"] == "version started" for r in daemon.records[seen:]), (
            "a broken file must not replace the running version"
        )

        # Fix.
        write_atomically(folder / "hot.py", TEMPLATE.format(version=4))
        v4 = daemon.wait_for(lambda r: r["event"] == "version started" and r["version"] == 4)
        assert v4["quotes"] > v2["quotes"]

        # Rename: a new id; the old one stops and its resting order is cancelled.
        (folder / "hot.py").rename(folder / "cold.py")
        daemon.wait_for(lambda r: r["event"] == "strategy stopped" and r["strategy"] == "hot")
        daemon.wait_for(lambda r: r["event"] == "strategy started" and r["strategy"] == "cold")
        daemon.wait_for(lambda r: r["event"] == "order canceled" and r["strategy"] == "hot")
        daemon.wait_for(lambda r: r["event"] == "order accepted" and r["strategy"] == "cold")

        # Delete: stopped, and its orders cancelled.
        (folder / "cold.py").unlink()
        daemon.wait_for(lambda r: r["event"] == "strategy stopped" and r["strategy"] == "cold")
        daemon.wait_for(lambda r: r["event"] == "order canceled" and r["strategy"] == "cold")

        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    versions = [r["version"] for r in daemon.records if r["event"] == "version started"]
    assert versions == [1, 2, 4, 4]  # cold.py is version 4 under a new name
