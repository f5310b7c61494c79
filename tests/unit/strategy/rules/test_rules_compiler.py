import math
import random
from collections.abc import Callable
from decimal import Decimal

import pytest

from botd import indicators as ind
from botd.strategy.rules import Program, RulesError, compile_expression, parse_expression
from botd.strategy.rules.functions import BarValues


def bars(n: int, seed: int = 3) -> list[BarValues]:
    """A random walk with real highs, lows and volumes."""
    rng = random.Random(seed)
    price, out = 100.0, []
    for _ in range(n):
        o = price
        price = max(1.0, price + rng.gauss(0, 1.5))
        hi = max(o, price) + rng.random()
        lo = min(o, price) - rng.random()
        out.append(BarValues(o, hi, lo, price, rng.uniform(0.1, 5.0)))
    return out


def value(text: str) -> object:
    return compile_expression(text)()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),
        ("8 / 4 / 2", 1.0),
        ("-2 * 3", -6.0),
        ("- -2", 2.0),
        ("2 - -2", 4.0),
        ("0.1 + 0.2", 0.1 + 0.2),
        ("1e3 / 1e-3", 1e6),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("2 > 2", False),
        ("2 >= 3", False),
        ("2 == 2.0", True),
        ("2 != 2", False),
        ("not 1 > 2", True),
        ("true and false", False),
        ("true or false", True),
        ("false or false and true", False),
        ("true or true and false", True),
        ("not true or true", True),
        ("not (true or true)", False),
        ("1 / 0", None),
        ("1e30 * 1e30 * 1e30 * 1e30 * 1e30 * 1e30 * 1e30 * 1e30 * 1e30 * 1e30 * 1e30", None),
    ],
)
def test_arithmetic_and_logic(text: str, expected: object) -> None:
    assert value(text) == expected


def test_unknown_values_make_a_condition_false_even_under_not_and_or() -> None:
    program = Program()
    for text in ["close > 0", "not (close > 0)", "close > 0 or true", "1 / 0 > 0",
                 "not (1 / 0 > 0)", "sma(3) > 0 or not (sma(3) > 0)"]:  # fmt: skip
        assert program.condition(parse_expression(text))() is False, text


def feed(program: Program, series: list[BarValues]) -> None:
    for bar in series:
        program.update_bar(bar)


# (expression, a direct computation over the bars seen so far)
def direct(
    make: Callable[[], object], apply: Callable[[object, BarValues], object]
) -> Callable[[list[BarValues]], list[object]]:
    def run(series: list[BarValues]) -> list[object]:
        indicator = make()
        return [apply(indicator, b) for b in series]

    return run


def _prev(
    make: Callable[[], ind.RollingMax | ind.RollingMin], high: bool
) -> Callable[[list[BarValues]], list[object]]:
    def run(series: list[BarValues]) -> list[object]:
        indicator, out, before = make(), [], None
        for b in series:
            out.append(before)
            before = indicator.update(b.high if high else b.low)
        return out

    return run


def _part(value: object, name: str) -> object:
    return None if value is None else getattr(value, name)


def of_close(
    make: Callable[[], object], name: str | None = None
) -> Callable[[list[BarValues]], list[object]]:
    if name is None:
        return direct(make, lambda i, b: i.update(b.close))
    return direct(make, lambda i, b: _part(i.update(b.close), name))


def of_channel(name: str) -> Callable[[list[BarValues]], list[object]]:
    return direct(
        lambda: ind.DonchianChannel(4),
        lambda i, b: _part(i.update(b.high, b.low), name),
    )


CASES: list[tuple[str, Callable[[list[BarValues]], list[object]]]] = [
    ("sma(5)", of_close(lambda: ind.SMA(5))),
    ("ema(5)", of_close(lambda: ind.EMA(5))),
    ("wma(4)", of_close(lambda: ind.WMA(4))),
    ("rsi()", of_close(lambda: ind.RSI(14))),
    ("rsi(6)", of_close(lambda: ind.RSI(6))),
    ("stddev(6)", of_close(lambda: ind.StdDev(6))),
    ("atr(5)", direct(lambda: ind.ATR(5), lambda i, b: i.update(b.high, b.low, b.close))),
    ("highest(4)", _prev(lambda: ind.RollingMax(4), high=True)),
    ("lowest(4)", _prev(lambda: ind.RollingMin(4), high=False)),
    ("bb_upper(5, 1.5)", of_close(lambda: ind.BollingerBands(5, 1.5), "upper")),
    ("bb_middle(5)", of_close(lambda: ind.BollingerBands(5, 2), "middle")),
    ("bb_lower(5)", of_close(lambda: ind.BollingerBands(5, 2), "lower")),
    ("macd(3, 6, 4)", of_close(lambda: ind.MACD(3, 6, 4), "macd")),
    ("macd_signal(3, 6, 4)", of_close(lambda: ind.MACD(3, 6, 4), "signal")),
    ("macd_hist()", of_close(lambda: ind.MACD(), "histogram")),
    (
        "vwap()",
        direct(lambda: ind.VWAP(), lambda i, b: i.update((b.high + b.low + b.close) / 3, b.volume)),
    ),
    ("donchian_upper(4)", of_channel("upper")),
    ("donchian_lower(4)", of_channel("lower")),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_indicators_match_direct_use(
    text: str, expected: Callable[[list[BarValues]], list[object]]
) -> None:
    series = bars(60)
    program = Program()
    fn = compile_expression(text, program)
    got = []
    for bar in series:
        program.update_bar(bar)
        got.append(fn())
    want = expected(series)
    assert got == want
    assert (got[0] is None) == (text != "vwap()")  # all but VWAP warm up
    assert got[-1] is not None


def test_highest_excludes_the_current_bar_so_breakouts_are_possible() -> None:
    program = Program()
    breakout = program.condition(parse_expression("close > highest(3)"))
    inside = program.condition(parse_expression("close > donchian_upper(3)"))
    results = []
    for close in [10, 11, 12, 11, 13, 14]:
        program.update_bar(BarValues(close, close, close, close, 1))
        results.append((breakout(), inside()))
    # highest(3) needs 3 bars before this one; donchian includes this bar, so never exceeded.
    assert results == [(False, False)] * 3 + [(False, False), (True, False), (True, False)]


def test_each_call_site_has_its_own_indicator() -> None:
    program = Program()
    fn = compile_expression("sma(2) - sma(2) + ema(2)", program)
    compile_expression("sma(2)", program)
    assert program.indicator_count == 4
    feed(program, [BarValues(1, 1, 1, c, 1) for c in (2.0, 4.0)])
    assert fn() == 3.0


def test_names_read_the_program_values_and_params() -> None:
    program = Program({"size": Decimal("0.5"), "n": Decimal(2)})
    fn = compile_expression("position * size + bid - ask + sma(n)", program)
    assert fn() is None
    program.values.update(position=4.0, bid=100.0, ask=101.0)
    feed(program, [BarValues(1, 1, 1, c, 1) for c in (1.0, 3.0)])
    assert fn() == 2.0 + 100.0 - 101.0 + 2.0


def test_warming_up_is_false_then_true() -> None:
    program = Program()
    cond = program.condition(parse_expression("sma(3) > 0"))
    seen = []
    for c in (1.0, 2.0, 3.0, 4.0):
        program.update_bar(BarValues(c, c, c, c, 1))
        seen.append(cond())
    assert seen == [False, False, True, True]


F, T = False, True


@pytest.mark.parametrize(
    ("func", "series", "expected"),
    [
        # a - b per evaluation: the edge is from <= 0 to > 0 (resp. >= 0 to < 0)
        ("crosses_above", [-1, 1, 2, 0, 1, -1, 0, 1], [F, T, F, F, T, F, F, T]),
        ("crosses_below", [1, -1, -2, 0, -1, 1, 0, -1], [F, T, F, F, T, F, F, T]),
        ("crosses_above", [0, 0, 1, 1], [F, F, T, F]),
        ("crosses_below", [0, 0, -1, -1], [F, F, T, F]),
    ],
)  # fmt: skip
def test_crosses_fire_on_the_edge_only(func: str, series: list[int], expected: list[bool]) -> None:
    program = Program()
    cond = program.condition(parse_expression(f"{func}(close, 0)"))
    seen = []
    for c in series:
        program.update_bar(BarValues(c, c, c, c, 1))
        seen.append(cond())
    assert seen == expected


def test_crosses_need_known_values_on_both_evaluations() -> None:
    program = Program()
    cond = program.condition(parse_expression("crosses_above(close, sma(2))"))
    seen = []
    for c in (5.0, 1.0, 1.0, 3.0, 1.0, 4.0):
        program.update_bar(BarValues(c, c, c, c, 1))
        seen.append(cond())
    # sma(2) is known from the 2nd bar; the first comparable pair is bars 2 → 3.
    assert seen == [False, False, False, True, False, True]


def test_crosses_state_is_per_call_site() -> None:
    program = Program()
    a = program.condition(parse_expression("crosses_above(close, 0)"))
    b = program.condition(parse_expression("crosses_above(close, 0)"))
    program.update_bar(BarValues(-1, -1, -1, -1, 1))
    assert a() is False
    program.update_bar(BarValues(1, 1, 1, 1, 1))
    assert a() is True
    assert b() is False  # b has never seen the previous bar


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("clsoe > 1", 1, "unknown name 'clsoe' (did you mean 'close'?)"),
        ("close > smaa(20)", 9, "unknown function 'smaa' (did you mean 'sma'?)"),
        ("close > foo(1)", 9, "unknown function 'foo'"),
        ("close > sma", 9, "'sma' is a function"),
        ("close() > 1", 1, "'close' is a value, not a function"),
        ("sma() > 1", 1, "takes 1 argument(s), got 0"),
        ("sma(1, 2) > 1", 1, "takes 1 argument(s), got 2"),
        ("macd(1, 2, 3, 4) > 1", 1, "takes 0 to 3 argument(s)"),
        ("vwap(3) > 1", 1, "takes 0 argument(s)"),
        ("crosses_above(close) ", 1, "takes 2 arguments"),
        ("sma(close) > 1", 5, "indicator arguments must be numbers"),
        ("sma(10 + 10) > 1", 8, "indicator arguments must be numbers"),
        ("sma(-5) > 1", 5, "indicator arguments must be numbers"),
        ("sma(0) > 1", 5, "whole number of bars from 1 to 10000"),
        ("sma(2.5) > 1", 5, "whole number of bars"),
        ("sma(100001) > 1", 5, "whole number of bars"),
        ("bb_upper(20, 0) > 1", 14, "k must be above 0"),
        ("macd(26, 12, 9) > 1", 1, "fast (26) must be shorter than slow (12)"),
        ("close + true", 9, "expected a number here, found a condition"),
        ("(close > 1) * 2", 8, "expected a number here"),
        ("close and true", 1, "expected a condition here"),
        ("not close", 5, "expected a condition here"),
        ("(close > 1) == true", 8, "compares numbers"),
        ("crosses_above(close > 1, 2)", 21, "expected a number here"),
        ("-(close > 1)", 9, "expected a number here"),
    ],
)
def test_compile_errors(text: str, column: int, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        compile_expression(text)
    assert fragment in info.value.message
    assert (info.value.line, info.value.column) == (1, column), str(info.value)


def test_a_condition_and_a_number_are_checked_where_required() -> None:
    program = Program()
    with pytest.raises(RulesError, match="'when' must be a condition"):
        program.condition(parse_expression("close * 2"), "'when'")
    with pytest.raises(RulesError, match="price must be a number"):
        program.number(parse_expression("close > 2"), "the price")


def test_params_may_be_indicator_arguments_but_values_may_not() -> None:
    program = Program({"n": Decimal(3), "k": Decimal("1.5"), "half": Decimal("2.5")})
    compile_expression("bb_upper(n, k)", program)
    with pytest.raises(RulesError, match="whole number"):
        compile_expression("sma(half)", program)


def test_results_are_floats_or_bools() -> None:
    assert isinstance(value("1"), float)
    assert value("0.1") == 0.1
    assert math.isclose(value("1e-30"), 1e-30)
