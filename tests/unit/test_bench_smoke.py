"""The feed-ingest benchmark runs end to end with a tiny N and prints one JSON line per case.

Only the shape and the correctness counters are checked (every case present, no depth gap, no
malformed message, the bus saw the events); never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_feed_ingest.py"
CASES = ["in_process_decode", "ws_bookTicker", "ws_depth", "ws_mixed"]


def test_feed_ingest_bench_prints_one_json_line_per_case() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "200", "--ws-n", "150"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["bench"] for line in lines] == ["feed_ingest"] * len(CASES)
    assert [line["case"] for line in lines] == CASES
    by_case = {line["case"]: line for line in lines}
    assert by_case["in_process_decode"]["messages"] == 200
    for case in CASES[1:]:
        line = by_case[case]
        assert line["messages"] >= 150
        assert line["depth_gaps"] == 0
        assert line["malformed"] == 0
        assert line["client_msgs_per_s"] > 0
        assert line["client_cpu_s_per_10k_msgs"] > 0
    # About one quote per bookTicker message (a step that leaves the top alone gives none; a
    # message of the slow warm-up steps may still be on its way when the burst starts).
    ticker = by_case["ws_bookTicker"]
    assert 0 < ticker["bus_events"]["quotes"] <= ticker["messages"] + 5
    assert ticker["bus_events"]["deltas"] == 0
    assert ticker["bus_events"]["snapshots"] == 0
    # Every depth diff carries level changes; the mixed case splits the messages in two.
    depth = by_case["ws_depth"]
    assert depth["bus_events"]["quotes"] == 0
    assert depth["bus_events"]["deltas"] >= depth["messages"]
    assert depth["bus_events"]["snapshots"] == 0  # no resync during the burst
    mixed = by_case["ws_mixed"]["bus_events"]
    assert mixed["quotes"] > 0
    assert mixed["deltas"] > 0
