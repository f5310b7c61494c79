import contextlib
import re
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botd.strategy.rules import RulesError, compile_expression, parse_expression
from botd.strategy.rules.parser import Binary, Bool, Call, Name, Number, Unary


def shape(expr: object) -> object:
    """A compact, position-free view of an AST for comparisons."""
    if isinstance(expr, Number):
        return expr.value
    if isinstance(expr, Bool):
        return expr.value
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Call):
        return (expr.func, *[shape(a) for a in expr.args])
    if isinstance(expr, Unary):
        return (expr.op, shape(expr.operand))
    assert isinstance(expr, Binary)
    return (expr.op, shape(expr.left), shape(expr.right))


D = Decimal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", ("+", D(1), ("*", D(2), D(3)))),
        ("(1 + 2) * 3", ("*", ("+", D(1), D(2)), D(3))),
        ("a - b - c", ("-", ("-", "a", "b"), "c")),
        ("a / b / c", ("/", ("/", "a", "b"), "c")),
        ("-a * b", ("*", ("-", "a"), "b")),
        ("- -a", ("-", ("-", "a"))),
        ("a * -b", ("*", "a", ("-", "b"))),
        ("a < b + 1", ("<", "a", ("+", "b", D(1)))),
        ("not a < b", ("not", ("<", "a", "b"))),
        ("not not true", ("not", ("not", True))),
        ("a or b and c", ("or", "a", ("and", "b", "c"))),
        ("a and b or c", ("or", ("and", "a", "b"), "c")),
        ("a or b or c", ("or", ("or", "a", "b"), "c")),
        ("not a and b", ("and", ("not", "a"), "b")),
        ("x >= 1 and y != 2", ("and", (">=", "x", D(1)), ("!=", "y", D(2)))),
        ("(a < b) == false", None),  # comparing conditions parses; the compiler rejects it
        ("sma(20) * 0.999", ("*", ("sma", D(20)), D("0.999"))),
        ("macd(12, 26, 9)", ("macd", D(12), D(26), D(9))),
        ("vwap()", ("vwap",)),
        ("crosses_above(ema(5), sma(20))", ("crosses_above", ("ema", D(5)), ("sma", D(20)))),
        ("true", True),
        ("false or true", ("or", False, True)),
        ("\n  close\t>\n 1 ", (">", "close", D(1))),
    ],
)
def test_precedence_and_associativity(text: str, expected: object) -> None:
    parsed = shape(parse_expression(text))
    if expected is not None:
        assert parsed == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("60000", D("60000")),
        ("0.5", D("0.5")),
        ("0.1", D("0.1")),
        ("1e3", D("1000")),
        ("1E-3", D("0.001")),
        ("2.5e+2", D("250")),
        ("007", D("7")),
        ("1" * 40, D("1" * 40)),
        ("1e30", D("1e30")),
        ("1e-30", D("1e-30")),
        ("0." + "0" * 37 + "12", D("0." + "0" * 37 + "12")),  # 40 digits, exactly
    ],
)
def test_numbers_are_exact_decimals(text: str, value: Decimal) -> None:
    node = parse_expression(text)
    assert isinstance(node, Number)
    assert node.value == value
    assert str(node.value) == str(Decimal(text))


def test_positions_are_one_based_lines_and_columns() -> None:
    node = parse_expression("close >\n  sma(20)")
    assert isinstance(node, Binary)
    assert (node.line, node.column) == (1, 7)
    assert (node.left.line, node.left.column) == (1, 1)
    assert (node.right.line, node.right.column) == (2, 3)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("a < b < c", 7, "cannot be chained"),
        ("a == b != c", 8, "cannot be chained"),
        ("1 +", 4, "incomplete"),
        ("", 1, "incomplete"),
        ("(close > 1", 11, "expected ')'"),
        ("close > 1)", 10, "expected an operator or the end"),
        ("close 1", 7, "expected an operator"),
        ("sma(20", 7, "to close the call"),
        ("sma(20,)", 8, "expected a value"),
        ("close = 1", 7, "use '=='"),
        ("close.__class__", 6, "attribute access"),
        ("().__class__", 3, "attribute access"),
        ("open[0]", 5, "indexing"),
        ("'abc' == close", 1, "strings are not supported"),
        ('"abc"', 1, "strings are not supported"),
        ("__import__('os')", 1, "cannot start with '_'"),
        ("_x", 1, "cannot start with '_'"),
        ("lambda: 1", 7, "':'"),
        ("lambda x", 1, "'lambda' is not supported"),
        ("import os", 1, "'import' is not supported"),
        ("True", 1, "write 'true'"),
        ("None", 1, "'None' is not supported"),
        ("a && b", 3, "use 'and'"),
        ("a || b", 3, "use 'or'"),
        ("!a", 1, "use 'not'"),
        ("2 ** 3", 3, "'**' is not supported"),
        ("4 // 2", 3, "'//' is not supported"),
        ("5 % 2", 3, "'%' is not supported"),
        ("+1", 1, "unary '+'"),
        (".5", 1, "leading digit"),
        ("1.", 1, "invalid number"),
        ("1.e5", 1, "invalid number"),
        ("1e", 1, "invalid number"),
        ("0x1F", 1, "invalid number"),
        ("1abc", 1, "invalid number"),
        ("1" * 41, 1, "number too large"),
        ("1e31", 1, "number too large"),
        ("1e-31", 1, "number too large"),
        ("1e999999", 1, "number too large"),
        ("close > 1e99999999999999999999999999999", 9, "number too large"),
        ("sma(20)(3)", 8, "cannot be called"),
        ("close > 1 and", 14, "incomplete"),
        ("and", 1, "expected a value"),
        ("x" * 65, 1, "name too long"),
        ("{1}", 1, "'{'"),
        ("a if b else c", 3, "expected an operator"),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, column: int, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_expression(text)
    err = info.value
    assert fragment in err.message
    assert (err.line, err.column) == (1, column), str(err)
    assert str(err) == f"<expression>:1:{column}: {err.message}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("close > \x00", "U+0000"),
        ("close\x07 > 1", "U+0007"),
        ("close >\u200b1", "U+200B"),  # zero-width space
        ("close > \u0661\u0662", "ARABIC-INDIC DIGIT ONE"),
        ("close > \uff11", "FULLWIDTH DIGIT ONE"),
        ("\u0441lose > 1", "CYRILLIC SMALL LETTER ES"),  # looks like 'c'
        ("close \u2264 1", "LESS-THAN OR EQUAL TO"),
        ("close > 1\u00a0", "U+00A0"),
        ("\ufeffclose", "U+FEFF"),
        ("close > \U0001d7d9", "MATHEMATICAL DOUBLE-STRUCK DIGIT ONE"),
    ],
)
def test_non_ascii_and_control_characters_are_named(text: str, fragment: str) -> None:
    with pytest.raises(RulesError, match=re.escape(fragment)):
        parse_expression(text)


def fails_fast(text: str, fragment: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RulesError, match=fragment):
        compile_expression(text)
    assert time.perf_counter() - started < 0.5


def test_hostile_input_fails_cleanly_and_fast() -> None:
    fails_fast("(" * 10_000 + "1" + ")" * 10_000, "too long")
    fails_fast("(" * 999 + "1" + ")" * 999, "nested too deeply")
    fails_fast("(" * 65 + "1" + ")" * 65, "nested too deeply")
    fails_fast("not " * 400 + "true", "nested too deeply")
    fails_fast("-" * 1500 + "1", "nested too deeply")
    fails_fast("sma(" * 300 + "1" + ")" * 300, "nested too deeply")
    fails_fast("close > " + "1" * 100_000, "too long")
    fails_fast("x" * 100_000, "too long")
    fails_fast("1" + "+1" * 999, "too complex")
    fails_fast("true" + " and true" * 220, "too complex")
    fails_fast("1e999999", "number too large")
    fails_fast("\x00" * 100, "U\\+0000")


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert compile_expression("(" * 63 + "1" + ")" * 63)() == 1.0
    assert compile_expression("not " * 60 + "true")() is True
    assert compile_expression("1" + " + 1" * 100)() == 101.0


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "Infinity", "close > inf", "-inf < 1"])
def test_nan_and_inf_are_not_literals(text: str) -> None:
    with pytest.raises(RulesError, match="unknown name"):
        compile_expression(text)


_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",))
_TOKENS = st.sampled_from(
    [
        "close", "sma", "rsi", "crosses_above", "position", "x", "(", ")", ",", "+", "-", "*",
        "/", "<", "<=", "==", "!=", ">", "and", "or", "not", "true", "false", "1", "0", "2.5",
        "1e3", "20", ".", "[", "]", "'", "_", "=", "\x00", "\u0661", " ",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=300))
def test_fuzz_any_text_raises_only_rules_error(text: str) -> None:
    with contextlib.suppress(RulesError):
        compile_expression(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=200).map(" ".join))
def test_fuzz_token_soup_raises_only_rules_error(text: str) -> None:
    try:
        fn = compile_expression(text)
    except RulesError:
        return
    result = fn()
    assert result is None or isinstance(result, bool | float)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="()-not 1+", min_size=1, max_size=2000))
def test_fuzz_deep_structures_never_hit_the_recursion_limit(text: str) -> None:
    with contextlib.suppress(RulesError):
        compile_expression(text)()
