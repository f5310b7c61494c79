"""ReportSequencer: each fact about an order passed on once, in an order the gateway accepts."""

from __future__ import annotations

from decimal import Decimal

from botd.clock import FakeClock
from botd.model import ExecutionReport, OrderStatus
from botd.venues.binance.userdata import ReportSequencer

D = Decimal


def report(
    status: OrderStatus, trade: str = "", qty: str = "0", cid: str = "c1"
) -> ExecutionReport:
    return ExecutionReport(
        venue="binance",
        symbol="BTCUSDT",
        client_order_id=cid,
        venue_order_id="9",
        status=status,
        ts_event=1,
        last_qty=D(qty),
        last_price=D("100") if trade else D(0),
        trade_id=trade,
    )


def make() -> tuple[ReportSequencer, list[ExecutionReport], FakeClock]:
    clock = FakeClock()
    out: list[ExecutionReport] = []
    return ReportSequencer(out.append, clock, hold_s=2.0), out, clock


def test_reply_and_stream_copies_are_passed_once() -> None:
    seq, out, _ = make()
    accepted = report(OrderStatus.ACCEPTED)
    fill = report(OrderStatus.FILLED, "t1", "1")
    seq.push(accepted)
    seq.push(fill)
    seq.push(accepted, D(0))  # the stream's copies
    seq.push(fill, D(1))
    assert out == [accepted, fill]
    assert seq.duplicates == 2


def test_accepted_after_a_fill_is_dropped() -> None:
    seq, out, _ = make()
    fill = report(OrderStatus.PARTIALLY_FILLED, "t1", "1")
    seq.push(fill, D(1))
    seq.push(report(OrderStatus.ACCEPTED), D(0))
    assert out == [fill]


def test_a_later_fill_waits_for_the_earlier_one() -> None:
    seq, out, _ = make()
    second = report(OrderStatus.FILLED, "t2", "1")
    first = report(OrderStatus.PARTIALLY_FILLED, "t1", "1")
    seq.push(second, D(2))
    assert out == [] and seq.holding == 1
    seq.push(first, D(1))
    assert out == [first, second] and seq.holding == 0


def test_a_cancel_waits_for_the_fills_before_it() -> None:
    seq, out, _ = make()
    canceled = report(OrderStatus.CANCELED)
    seq.push(canceled, D("0.5"))  # the cancel reply says 0.5 executed
    assert out == []
    fill = report(OrderStatus.PARTIALLY_FILLED, "t1", "0.5")
    seq.push(fill, D("0.5"))
    assert out == [fill, canceled]


async def test_held_reports_are_released_after_the_hold_time() -> None:
    seq, out, clock = make()
    canceled = report(OrderStatus.CANCELED)
    seq.push(canceled, D("0.5"))  # its fill went elsewhere (or was lost)
    assert seq.next_expiry_s() == 2.0
    await clock.advance(1.5)
    assert seq.expire() == 0 and out == []
    await clock.advance(0.5)
    assert seq.next_expiry_s() == 0.0
    assert seq.expire() == 1
    assert out == [canceled] and seq.holding == 0
    assert seq.next_expiry_s() is None


def test_orders_are_independent() -> None:
    seq, out, _ = make()
    a = report(OrderStatus.FILLED, "t1", "1", cid="a")
    b = report(OrderStatus.FILLED, "t1", "1", cid="b")  # one self-trade: both sides ours
    seq.push(a, D(1))
    seq.push(b, D(1))
    assert out == [a, b]


def test_a_query_makes_queued_accepted_stale() -> None:
    seq, out, _ = make()
    accepted = report(OrderStatus.ACCEPTED)
    seq.push(accepted, D(0))
    assert not seq.stale(accepted)
    seq.observe("c1", OrderStatus.FILLED, D(1))
    assert seq.stale(accepted)
    # ... and the fills the query's answer covers no longer hold a final status back.
    seq.push(report(OrderStatus.CANCELED, cid="c1"), D(1))
    assert out[-1].status is OrderStatus.CANCELED
