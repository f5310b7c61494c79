from botd.clock import NS_PER_SECOND
from botd.strategy.when import WhenRule, crosses_above, crosses_below

S = NS_PER_SECOND


def run(rule: WhenRule, values: list[bool], step_s: float = 1.0) -> list[int]:
    state = {"v": False}
    rule.condition = lambda: state["v"]
    fired = []
    for i, v in enumerate(values):
        state["v"] = v
        if rule.check(int(i * step_s * S)):
            fired.append(i)
    return fired


def test_fires_on_rising_edges_only() -> None:
    rule = WhenRule(lambda: False, lambda: None)
    assert run(rule, [False, True, True, False, True, True, True]) == [1, 4]


def test_true_from_the_start_fires_once() -> None:
    assert run(WhenRule(lambda: False, lambda: None), [True, True, True]) == [0]


def test_once() -> None:
    assert run(WhenRule(lambda: False, lambda: None, once=True), [True, False, True]) == [0]


def test_cooldown_skips_edges_and_does_not_fire_late() -> None:
    rule = WhenRule(lambda: False, lambda: None, cooldown_s=3.0)
    #            0     1      2     3      4     5     6      7
    values = [True, False, True, True, False, True, False, True]
    # edge at 2 is inside the cooldown (skipped, and not fired at 3 while still true);
    # edge at 5 is 5 s after 0: fires; edge at 7 is 2 s after 5: skipped.
    assert run(rule, values) == [0, 5]


def test_crosses() -> None:
    series = [(1.0, 2.0), (1.5, 2.0), (2.5, 2.0), (3.0, 2.0), (1.0, 2.0), (None, 2.0), (3.0, 2.0)]
    it = iter(series)
    cur: dict[str, float | None] = {}
    up = crosses_above(lambda: cur["a"], lambda: cur["b"])
    down = crosses_below(lambda: cur["a"], lambda: cur["b"])
    ups, downs = [], []
    for i, (a, b) in enumerate(it):
        cur["a"], cur["b"] = a, b
        if up():
            ups.append(i)
        if down():
            downs.append(i)
    # After a gap (None) there is no previous value, so index 6 is not a cross.
    assert ups == [2]
    assert downs == [4]
