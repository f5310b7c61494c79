"""kill -9 a real daemon at the three dangerous points of an order's life, restart it on the
same data directory, and check the invariants: no order lost, none duplicated, fills exact,
positions equal to the venue's."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from botd.clock import LiveClock
from botd.model import OrderStatus, Side
from botd.store import Journal
from botd.venues.sim.paper import PaperVenue
from tests.integration.daemon_proc import FAST_CONFIG, REPO, Daemon, make_workspace, run_args

CONFIG = FAST_CONFIG.replace("[daemon]\n", "[daemon]\ncancel_orders_on_shutdown = false\n")

ONE_ORDER = '''
from decimal import Decimal
from botd import Strategy


class OneOrder(Strategy):
    """Sends exactly one order in its life: a market buy, or a limit buy just under the bid."""

    symbol = "BTCUSDT"
    resting = {resting}

    def on_quote(self, quote):
        if self.state.get("sent"):
            return
        self.state["sent"] = True
        if self.resting:
            price = (quote.bid * Decimal("0.995")).quantize(Decimal("0.01"))
            self.buy(Decimal("0.002"), price=price)
        else:
            self.buy(Decimal("0.002"))
'''

KEEN = """
from decimal import Decimal
from botd import Strategy


class Keen(Strategy):
    symbol = "BTCUSDT"

    def on_quote(self, quote):
        if self.position.is_flat and not self.open_orders:
            self.buy(Decimal("0.002"))
"""

BALANCES = {"USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("10")}


def crash_run(ws: dict[str, Path], when: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/integration/crash_driver.py"),
            "--config",
            str(ws["config"]),
            "--strategies",
            str(ws["strategies"]),
            "--data-dir",
            str(ws["data"]),
            "--crash",
            when,
        ],
        cwd=ws["root"],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def venue_and_journal(data: Path) -> tuple[dict[str, object], dict[str, object]]:
    """What the venue's account and our journal say, read back from their files."""
    venue = PaperVenue(
        clock=LiveClock(),
        symbols=["BTCUSDT", "ETHUSDT"],
        seed=7,
        event_rate=50,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        balances=BALANCES,
        state_path=data / "paper-account.json",
    )
    await venue.connect()
    journal = await Journal.open(data / "botd.db", clock=LiveClock())
    try:
        orders = {o.client_order_id: o for o in await journal.orders()}
        venue_view = {cid: await venue.query_order(o.symbol, cid) for cid, o in orders.items()}
        venue_fills = await venue.fills("BTCUSDT", 0)
        return (
            {
                "open": await venue.open_orders(),
                "orders": venue_view,
                "fills": venue_fills,
                "balances": await venue.balances(),
            },
            {"orders": orders, "fills": await journal.fills()},
        )
    finally:
        await journal.close()
        await venue.close()


@pytest.mark.parametrize(
    ("when", "resting", "expected"),
    [
        ("before_forward", False, OrderStatus.REJECTED),  # journaled, never sent
        ("after_forward", False, OrderStatus.FILLED),  # the venue filled it; no ack came back
        ("after_return", True, OrderStatus.ACCEPTED),  # acknowledged, resting, no fill yet
    ],
)
def test_kill_9_then_restart_loses_and_duplicates_nothing(
    tmp_path: Path, when: str, resting: bool, expected: OrderStatus
) -> None:
    ws = make_workspace(tmp_path, CONFIG, examples=False)
    (ws["strategies"] / "one_order.py").write_text(ONE_ORDER.format(resting=resting))

    crashed = crash_run(ws, when)
    assert crashed.returncode == 137, crashed.stdout[-3000:] + crashed.stderr[-3000:]

    # Restart with no strategies: only recovery and reconciliation run.
    (ws["strategies"] / "one_order.py").unlink()
    daemon = Daemon(run_args(ws), cwd=tmp_path)
    try:
        reconciled = daemon.wait_for(lambda r: r["event"] == "reconciled", timeout=30)
        assert reconciled["checked"] == 1  # the crashed run left one open order behind
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()

    venue, journal = asyncio.run(venue_and_journal(ws["data"]))
    orders = journal["orders"]
    assert isinstance(orders, dict)
    (cid,) = orders  # exactly one order was ever created: no duplicate after the restart
    ours = orders[cid]
    assert ours.status is expected, ours

    seen = venue["orders"][cid]  # type: ignore[index]
    if expected is OrderStatus.REJECTED:
        assert seen is None, "an order journaled but never sent must not exist on the venue"
        assert "never sent" in ours.reason
    else:
        assert seen is not None
        assert seen.status is ours.status
        assert seen.filled_qty == ours.filled_qty

    # I1: every order the venue has is known to the journal.
    for open_order in venue["open"]:  # type: ignore[attr-defined]
        assert open_order.client_order_id in orders
    # I3: fills exact, by trade id.
    venue_trades = {r.trade_id: r for r in venue["fills"]}  # type: ignore[attr-defined]
    journal_trades = {f.trade_id: f for f in journal["fills"]}  # type: ignore[attr-defined]
    assert set(venue_trades) == set(journal_trades)
    # I4: the position booked from our fills equals what the venue's balance says.
    bought = sum(
        (f.qty - (f.fee if f.fee_asset == "BTC" else 0))
        for f in journal_trades.values()
        if f.side is Side.BUY
    )
    sold = sum(f.qty for f in journal_trades.values() if f.side is Side.SELL)
    assert venue["balances"]["BTC"].total == BALANCES["BTC"] + bought - sold  # type: ignore[index]


def test_a_venue_that_cannot_be_reconciled_is_not_traded_until_it_can(tmp_path: Path) -> None:
    config = CONFIG.replace("[paper]\n", "[gateway]\nreconcile_interval = 1.0\n\n[paper]\n")
    ws = make_workspace(tmp_path, config, examples=False)
    (ws["strategies"] / "keen.py").write_text(KEEN)
    daemon = Daemon(
        [
            str(REPO / "tests/integration/crash_driver.py"),
            "--config",
            str(ws["config"]),
            "--strategies",
            str(ws["strategies"]),
            "--data-dir",
            str(ws["data"]),
            # The venue cannot list open orders at start-up, nor at the first retry.
            "--fault",
            "server_error:open_orders:2",
        ],
        cwd=tmp_path,
        module=False,
    )
    try:
        failed = daemon.wait_for(
            lambda r: r["event"] == "venue could not be reconciled; not trading it"
        )
        assert failed["venue"] == "paper"
        denied = daemon.wait_for(lambda r: r["event"] == "order denied before sending")
        assert "not reconciled" in denied["reason"]
        daemon.wait_for(lambda r: r["event"] == "reconciled", timeout=20)
        daemon.wait_for(lambda r: r["event"] == "fill" and r["strategy"] == "keen", timeout=20)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
