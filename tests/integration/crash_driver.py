"""Run the real daemon with a crash injected around its venue (for the crash tests).

``python tests/integration/crash_driver.py --config F --strategies D --data-dir D --crash WHEN``
builds the same :class:`botd.app.Daemon` as ``botd run`` but wraps the paper venue in a
:class:`FaultyVenue` whose plan kills the process (``os._exit(137)``, as ``kill -9`` would) at
the first order submission: ``before_forward`` (journal written, request not sent),
``after_forward`` (the venue has the order, the ack never arrives) or ``after_return`` (the ack
arrived, no fill yet).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from botd.app import Daemon
from botd.clock import LiveClock
from botd.logs import configure_logging
from botd.settings import load_settings
from botd.venues.base import VenueAdapter
from botd.venues.sim.faulty import Fault, FaultKind, FaultPlan, FaultyVenue


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--strategies", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--crash", choices=["before_forward", "after_forward", "after_return"])
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        help="KIND:OPERATION:TIMES, e.g. server_error:open_orders:2",
    )
    args = parser.parse_args()
    settings = load_settings(
        args.config,
        {"daemon": {"strategies_dir": args.strategies, "data_dir": args.data_dir}},
        os.environ,
    )
    configure_logging(settings.log.level, "json", settings.secret_values(), sys.stdout)
    faults = [Fault(FaultKind.CRASH, on="submit", nth=1, when=args.crash)] if args.crash else []
    for spec in args.fault:
        kind, on, times = spec.split(":")
        faults.append(Fault(FaultKind(kind), on=on, times=int(times)))
    plan = FaultPlan(faults)

    def wrap(venue: VenueAdapter) -> VenueAdapter:
        return FaultyVenue(venue, plan)

    daemon = Daemon(
        settings,
        clock=LiveClock(),
        environ=os.environ,
        venue_wrapper=wrap if faults else None,
    )
    return asyncio.run(daemon.run())


if __name__ == "__main__":
    sys.exit(main())
