"""The gateway's log lines about an order carry the order's context (client order id, strategy,
venue) through structlog's context variables, and the gateway leaves the caller's context as it
found it. Real components: the paper venue, the journal, FakeClock."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars, get_contextvars, merge_contextvars

from botd.model import ExecutionReport, OrderStatus, OrderType, Side
from tests.rig import Rig
from tests.rig import make_intent as intent


@contextmanager
def _logged() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every log line, with the context variables merged in as a configured daemon does."""
    lines: list[MutableMapping[str, Any]] = []

    def keep(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["level"] = method
        lines.append(event)
        raise structlog.DropEvent

    saved = structlog.get_config()
    structlog.configure(processors=[merge_contextvars, keep], cache_logger_on_first_use=False)
    try:
        yield lines
    finally:
        structlog.configure(**saved)


async def test_order_log_lines_carry_the_order_context_and_leave_none_behind() -> None:
    with _logged() as lines:
        rig = Rig()
        async with rig.running():
            await rig.advance(0.5)
            first = rig.gateway.submit(intent(strategy_id="alpha"))
            second = rig.gateway.submit(intent(strategy_id="beta", side=Side.SELL))
            await rig.settle()
            context_after = get_contextvars()
    owner = {first: "alpha", second: "beta"}
    about_orders = [e for e in lines if e["event"] in ("fill", "order submitted", "order accepted")]
    assert {(e["event"], e["client_order_id"]) for e in about_orders} >= {
        ("order submitted", first),
        ("order submitted", second),
        ("fill", first),
        ("fill", second),
    }
    for line in about_orders:
        assert line["strategy"] == owner[line["client_order_id"]]
        assert line["venue"] == "paper"
    # Lines about no order carry no order's context.
    assert all("client_order_id" not in e for e in lines if e["event"] == "journal closed")
    assert not {"client_order_id", "strategy"} & context_after.keys()


async def test_a_report_restores_the_callers_context() -> None:
    with _logged() as lines:
        rig = Rig()
        async with rig.running():
            await rig.advance(0.5)
            cid = rig.gateway.submit(intent(type=OrderType.LIMIT, price=rig.resting_buy_price()))
            await rig.settle()
            assert rig.gateway.order(cid).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
            report = ExecutionReport(
                venue="paper",
                symbol="BTCUSDT",
                client_order_id=cid,
                venue_order_id="",
                status=OrderStatus.CANCELED,
                ts_event=rig.clock.time_ns(),
            )
            with bound_contextvars(client_order_id="outer", request="r1"):
                await rig.gateway.apply(report)
                inside = get_contextvars()
    canceled = [e for e in lines if e["event"] == "order canceled"]
    assert [(e["client_order_id"], e["strategy"], e["request"]) for e in canceled] == [
        (cid, "s1", "r1")
    ]
    assert inside["client_order_id"] == "outer"
    assert "strategy" not in inside and "venue" not in inside
