"""The paper venue: the full adapter contract in process, and an account that outlives it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from botd.clock import FakeClock
from botd.errors import ConfigError, OrderRejected, TransientVenueError
from botd.model import ExecutionReport, Order, OrderStatus, OrderType, Side, TimeInForce
from botd.venues.sim import snapshot
from botd.venues.sim.paper import PaperStateError, PaperVenue, market_seed

D = Decimal
SYM = "BTCUSDT"
REPO = Path(__file__).resolve().parents[4]


def paper(clock: FakeClock, state_path: Path | None = None, **kw: object) -> PaperVenue:
    args: dict[str, object] = {
        "clock": clock,
        "symbols": ("BTCUSDT", "ETHUSDT"),
        "seed": 3,
        "event_rate": 20.0,
        "maker_fee": D("0.001"),
        "taker_fee": D("0.002"),
        "balances": {"USDT": D("100000"), "BTC": D("1")},
        "state_path": state_path,
    }
    args.update(kw)
    return PaperVenue(**args)  # type: ignore[arg-type]


def order(
    cid: str,
    side: Side,
    qty: str,
    price: D | None = None,
    *,
    tif: TimeInForce | None = None,
    symbol: str = SYM,
) -> Order:
    return Order(
        client_order_id=cid,
        strategy_id="t",
        venue="paper",
        symbol=symbol,
        side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        qty=D(qty),
        price=price,
        tif=tif or (TimeInForce.IOC if price is None else TimeInForce.GTC),
    )


def best(v: PaperVenue, symbol: str = SYM) -> tuple[D, D]:
    bid, ask = v.engine.top_of_book(symbol)
    assert bid is not None and ask is not None
    return bid.price, ask.price


def drain(v: PaperVenue) -> list[ExecutionReport]:
    out = []
    q = v._reports
    while not q.empty():
        out.append(q.get_nowait())
    return out


def hit_user_bid(v: PaperVenue, qty: str, ts: int) -> None:
    """Someone else on the venue sells into the user's best bid (the generator's bids are
    pulled first so that the user's far-away bid is the best)."""
    eng = v.engine
    if "other" not in eng._accounts:
        eng.open_account("other", {"BTC": D("10")})
    eng.cancel_all("__lp__", SYM, ts)
    res = eng.submit(
        "other", client_order_id=f"o{ts}", symbol=SYM, side=Side.SELL, type=OrderType.MARKET,
        qty=D(qty), price=None, tif=TimeInForce.IOC, post_only=False, ts=ts,
    )  # fmt: skip
    assert any(r.account == "user" and r.report.last_qty > 0 for r in res.reports)


# -- the adapter contract beyond submit ---------------------------------------------------------


async def test_queries_cancel_all_and_fills() -> None:
    clock = FakeClock()
    v = paper(clock)
    await v.connect()
    bid, _ = best(v)
    await v.submit(order("a", Side.BUY, "0.01", (bid * D("0.9")).quantize(D("0.01"))))
    await v.submit(order("b", Side.BUY, "0.01", (bid * D("0.8")).quantize(D("0.01"))))
    await v.submit(order("e", Side.BUY, "0.1", (D(3000)), symbol="ETHUSDT"))
    ack = await v.submit(order("m", Side.BUY, "0.01"))
    assert [o.client_order_id for o in await v.open_orders()] == ["a", "b", "e"]
    drain(v)
    await v.cancel_all(SYM)
    assert [(r.client_order_id, r.status) for r in drain(v)] == [
        ("a", OrderStatus.CANCELED),
        ("b", OrderStatus.CANCELED),
    ]
    assert [o.client_order_id for o in await v.open_orders()] == ["e"]
    a = await v.query_order(SYM, "a")
    assert a is not None and a.status is OrderStatus.CANCELED
    assert await v.query_order("ETHUSDT", "a") is None  # queried on the wrong symbol
    m = await v.query_order(SYM, "m")
    assert m is not None and m.status is OrderStatus.FILLED and m.filled_qty == D("0.01")
    fills = await v.fills(SYM, ack.ts_event)
    assert sum(f.last_qty for f in fills) == D("0.01")
    assert {f.client_order_id for f in fills} == {"m"}
    with pytest.raises(OrderRejected) as err:
        await v.cancel(SYM, "a")
    assert err.value.code == "UNKNOWN_ORDER"
    with pytest.raises(OrderRejected) as err:
        await v.cancel_all("DOGEUSDT")
    assert err.value.code == "UNKNOWN_SYMBOL"
    v.engine._check_invariants()


# -- persistence -----------------------------------------------------------------------------


async def exercise(v: PaperVenue, clock: FakeClock) -> dict[str, str]:
    """Place, partially fill, fill and cancel orders through every persisted path."""
    bid, ask = best(v)
    far = (bid * D("0.9")).quantize(D("0.01"))
    await v.submit(order("rest", Side.BUY, "0.02", far))
    await v.submit(order("rest2", Side.BUY, "0.01", far))  # behind "rest" in time priority
    await v.submit(order("ask", Side.SELL, "0.05", (ask * D("1.2")).quantize(D("0.01"))))
    await v.submit(order("gone", Side.BUY, "0.01", far - 1))
    await clock.advance(1)
    await v.submit(order("taken", Side.BUY, "0.01"))  # market: fills now
    await v.cancel(SYM, "gone")
    hit_user_bid(v, "0.005", clock.time_ns())  # "rest" partially filled by another account
    await clock.advance(1)
    await v.submit(order("noise", Side.BUY, "0.5", D(100), symbol="ETHUSDT"))  # persists it
    rest = await v.query_order(SYM, "rest")
    assert rest is not None and rest.status is OrderStatus.PARTIALLY_FILLED
    return {"far": str(far)}


async def view(v: PaperVenue) -> dict[str, object]:
    return {
        "balances": await v.balances(),
        "open": await v.open_orders(),
        "closed": [await v.query_order(SYM, c) for c in ("taken", "gone")],
        "fills": await v.fills(SYM, 0),
    }


async def test_account_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    clock = FakeClock()
    v1 = paper(clock, path)
    await v1.connect()
    await exercise(v1, clock)
    before = await view(v1)
    counters = v1.engine.counters
    fair = v1.market.fair_state(SYM)[0]
    await v1.close()

    v2 = paper(clock, path, balances={"USDT": D("1")})  # a new account's funds: ignored
    await v2.connect()
    assert v2.restarts == 1
    assert await view(v2) == before
    assert [o.client_order_id for o in await v2.open_orders()] == ["rest", "rest2", "ask", "noise"]
    # The market continues from where it was, not from the start price.
    assert abs(v2.market.fair_state(SYM)[0] / fair - 1) < 0.01
    # Ids continue; the restored orders are still matchable, older first.
    ack = await v2.submit(order("after", Side.BUY, "0.01"))
    assert int(ack.venue_order_id) > counters[0]
    hit_user_bid(v2, "0.02", clock.time_ns())
    rest, rest2 = await v2.query_order(SYM, "rest"), await v2.query_order(SYM, "rest2")
    assert rest is not None and rest.status is OrderStatus.FILLED
    assert rest2 is not None and rest2.filled_qty == D("0.005")
    trade_ids = [int(f.trade_id) for f in await v2.fills(SYM, 0)]
    assert len(trade_ids) == len(set(trade_ids))
    assert max(trade_ids) > counters[1]
    v2.engine._check_invariants()
    await v2.close()


async def test_restore_without_close_replays_the_log(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    clock = FakeClock()
    v1 = paper(clock, path)
    await v1.connect()
    await exercise(v1, clock)
    before = await view(v1)
    assert v1._store is not None and v1._store.log_records > 0  # nothing compacted yet
    v2 = paper(clock, path)  # v1 never closed: as after a kill
    await v2.connect()
    assert await view(v2) == before
    await v1.close()
    await v2.close()


async def test_log_compaction_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    clock = FakeClock()
    v1 = paper(clock, path, compact_every=3)
    await v1.connect()
    await exercise(v1, clock)
    before = await view(v1)
    assert v1._store is not None
    assert v1._store._seq > v1._store.log_records  # compacted on the way
    v2 = paper(clock, path)
    await v2.connect()
    assert await view(v2) == before
    await v1.close()
    await v2.close()


async def test_two_restarts_reseed_the_market_differently(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    assert market_seed(3, 0) == 3
    assert len({market_seed(3, n) for n in range(5)}) == 5
    for expected in (0, 1, 2):
        v = paper(FakeClock(), path)
        await v.connect()
        assert v.restarts == expected
        await v.close()


async def test_market_checkpoints_while_nothing_trades(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    clock = FakeClock()
    v1 = paper(clock, path, checkpoint_s=1.0)
    await v1.connect()

    async def consume() -> None:
        async for _ in v1.market_data([SYM]):
            pass

    task = asyncio.create_task(consume())
    for _ in range(100):  # 5 s of market
        await clock.advance(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    fair = v1.market.fair_state(SYM)
    v2 = paper(FakeClock(), path)
    await v2.connect()  # v1 never closed: only the checkpoints saved its drift
    assert abs(v2.market.fair_state(SYM)[0] / fair[0] - 1) < 0.002
    await v1.close()
    await v2.close()


async def test_no_state_path_writes_nothing(tmp_path: Path) -> None:
    v = paper(FakeClock())
    await v.connect()
    await v.submit(order("x", Side.BUY, "0.01"))
    await v.close()
    assert v._store is None
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's tmp dir


@pytest.mark.parametrize(
    ("damage", "names"),
    [
        (lambda p: p.write_text("{not json"), "paper-account.json"),
        (lambda p: p.write_text('{"format": "something else"}'), "paper-account.json"),
        (lambda p: p.write_text(""), "paper-account.json"),
        (lambda p: p.unlink(), "paper-account.json.log"),  # a log without its snapshot
        (
            lambda p: p.with_name(p.name + ".log").write_text('{"seq": 1}\n{"seq": 2}\n'),
            "paper-account.json.log",
        ),
    ],
)
async def test_a_damaged_state_file_is_an_error_naming_it(
    tmp_path: Path, damage: object, names: str
) -> None:
    path = tmp_path / "paper-account.json"
    v = paper(FakeClock(), path)
    await v.connect()
    await v.submit(order("x", Side.BUY, "0.01"))  # leaves a log line
    await v.close()
    damage(path)  # type: ignore[operator]
    fresh = paper(FakeClock(), path)
    with pytest.raises(PaperStateError) as err:
        await fresh.connect()
    assert isinstance(err.value, ConfigError)  # the daemon exits 78: no restart loop
    assert str(tmp_path / names) in str(err.value)
    assert path.exists() or names.endswith(".log")  # nothing was overwritten


async def test_an_unreadable_state_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    path.mkdir()  # exists, cannot be read as a file
    with pytest.raises(PaperStateError, match=str(path)):
        await paper(FakeClock(), path).connect()


async def test_a_torn_last_log_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    clock = FakeClock()
    v1 = paper(clock, path)
    await v1.connect()
    await v1.submit(order("x", Side.BUY, "0.01", D(1000)))
    before = await view(v1)
    log = path.with_name(path.name + ".log")
    with log.open("a") as f:
        f.write('{"seq": 9, "order_')  # a crash cut the next write short
    v2 = paper(clock, path)
    await v2.connect()
    assert await view(v2) == before
    await v2.submit(order("y", Side.BUY, "0.01", D(1000)))  # the log is usable again
    v3 = paper(clock, path)
    await v3.connect()
    assert [o.client_order_id for o in await v3.open_orders()] == ["x", "y"]
    for v in (v1, v2, v3):
        await v.close()


async def test_open_orders_in_an_unlisted_symbol_are_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    v = paper(FakeClock(), path)
    await v.connect()
    await v.submit(order("e", Side.BUY, "0.1", D(1000), symbol="ETHUSDT"))
    await v.close()
    with pytest.raises(PaperStateError, match="ETHUSDT"):
        await paper(FakeClock(), path, symbols=("BTCUSDT",)).connect()


async def test_a_failed_write_is_an_unknown_outcome_and_reports_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "paper-account.json"
    v = paper(FakeClock(), path)
    await v.connect()
    drain(v)

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot, "_fdatasync", full)
    with pytest.raises(TransientVenueError, match="could not save"):
        await v.submit(order("x", Side.BUY, "0.01", D(1000)))
    assert drain(v) == []  # nothing told that could be forgotten
    assert await v.query_order(SYM, "x") is not None  # but the venue holds it
    monkeypatch.undo()
    await v.submit(order("y", Side.BUY, "0.01", D(1000)))
    assert [r.client_order_id for r in drain(v)] == ["x", "y"]
    w = paper(FakeClock(), path)
    await w.connect()
    assert [o.client_order_id for o in await w.open_orders()] == ["x", "y"]
    await v.close()
    await w.close()


CHILD = """
import asyncio, json, sys
from decimal import Decimal as D
from pathlib import Path
from botd.clock import LiveClock
from botd.model import ExecutionReport, Order, OrderType, Side, TimeInForce
from botd.venues.sim.paper import PaperVenue

async def main() -> None:
    v = PaperVenue(clock=LiveClock(), symbols=("BTCUSDT",), seed=5, event_rate=20.0,
                   maker_fee=D("0.001"), taker_fee=D("0.002"), balances={"USDT": D("10000")},
                   state_path=Path(sys.argv[1]))
    await v.connect()
    ack = await v.submit(Order("kill-me", "t", "paper", "BTCUSDT", Side.BUY, OrderType.LIMIT,
                               D("0.001"), D("30000.00"), TimeInForce.GTC))
    print(json.dumps({"cid": ack.client_order_id, "vid": ack.venue_order_id}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_an_acknowledged_order_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "paper-account.json"
    # A plain Popen (in a sync test) rather than asyncio's subprocess: the exit status must
    # come from the kernel, not from an event-loop child watcher.
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert child.stdout is not None
        ack = json.loads(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    asyncio.run(_reopened_holds_the_order(path, ack["vid"]))


async def _reopened_holds_the_order(path: Path, venue_order_id: str) -> None:
    v = paper(FakeClock(), path, symbols=("BTCUSDT",))
    await v.connect()
    found = await v.query_order(SYM, "kill-me")
    assert found is not None
    assert (found.status, found.venue_order_id) == (OrderStatus.ACCEPTED, venue_order_id)
    assert [o.client_order_id for o in await v.open_orders()] == ["kill-me"]
    assert (await v.balances())["USDT"].locked == D("30")
    await v.close()
