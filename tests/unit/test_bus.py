from dataclasses import dataclass

import structlog

from botd.bus import Bus


@dataclass(frozen=True)
class Tick:
    venue: str
    symbol: str
    n: int


@dataclass(frozen=True)
class SpecialTick(Tick):
    pass


@dataclass(frozen=True)
class Other:
    n: int


def test_fan_out_by_type_in_subscription_order() -> None:
    bus = Bus()
    seen: list[str] = []
    bus.subscribe(Tick, lambda e: seen.append(f"a{e.n}"))
    bus.subscribe(Tick, lambda e: seen.append(f"b{e.n}"))
    bus.subscribe(Other, lambda e: seen.append(f"o{e.n}"))
    bus.publish(Tick("v", "X", 1))
    bus.publish(Other(2))
    assert seen == ["a1", "b1", "o2"]
    assert bus.published == 2


def test_instrument_filters() -> None:
    bus = Bus()
    seen: list[tuple[str, str]] = []
    bus.subscribe(Tick, lambda e: seen.append(("any", e.symbol)))
    bus.subscribe(Tick, lambda e: seen.append(("x", e.symbol)), symbol="X")
    bus.subscribe(Tick, lambda e: seen.append(("v2x", e.symbol)), venue="v2", symbol="X")
    bus.publish(Tick("v1", "X", 0))
    bus.publish(Tick("v1", "Y", 0))
    bus.publish(Tick("v2", "X", 0))
    assert seen == [("any", "X"), ("x", "X"), ("any", "Y"), ("any", "X"), ("x", "X"), ("v2x", "X")]


def test_subclass_events_reach_base_subscribers() -> None:
    bus = Bus()
    seen: list[type] = []
    bus.subscribe(Tick, lambda e: seen.append(type(e)))
    bus.subscribe(SpecialTick, lambda e: seen.append(object))
    bus.publish(SpecialTick("v", "X", 0))
    bus.publish(Tick("v", "X", 0))
    assert seen == [SpecialTick, object, Tick]


def test_unsubscribe_and_resubscribe_after_publishing() -> None:
    bus = Bus()
    seen: list[int] = []
    sub = bus.subscribe(Tick, lambda e: seen.append(e.n))
    bus.publish(Tick("v", "X", 1))  # fills the dispatch cache
    bus.unsubscribe(sub)
    bus.publish(Tick("v", "X", 2))
    bus.subscribe(Tick, lambda e: seen.append(e.n * 10))
    bus.publish(Tick("v", "X", 3))
    bus.unsubscribe(sub)  # twice is harmless
    assert seen == [1, 30]


def test_raising_handler_is_logged_counted_and_isolated() -> None:
    bus = Bus()
    seen: list[int] = []

    def broken(e: Tick) -> None:
        raise RuntimeError("boom")

    bus.subscribe(Tick, broken, name="broken")
    bus.subscribe(Tick, lambda e: seen.append(e.n))
    with structlog.testing.capture_logs() as logs:
        bus.publish(Tick("v", "X", 1))
        bus.publish(Tick("v", "X", 2))
    assert seen == [1, 2]
    assert bus.handler_errors["broken"] == 2
    errors = [entry for entry in logs if entry["event"] == "bus handler failed"]
    assert len(errors) == 2
    assert errors[1]["failures"] == 2
    assert errors[0]["handler"] == "broken"


def test_events_without_instrument_fields() -> None:
    bus = Bus()
    seen: list[int] = []
    bus.subscribe(Other, lambda e: seen.append(e.n), symbol="X")
    bus.subscribe(Other, lambda e: seen.append(-e.n))
    bus.publish(Other(4))
    assert seen == [-4]
