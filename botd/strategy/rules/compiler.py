"""Compile parsed rule expressions into plain closures.

A :class:`Program` holds what one symbol's rules read: the latest bar, quote, trade and position
values, and one indicator per call site. Compiling an expression type-checks it (numbers versus
conditions) and returns a closure over the program; evaluating it is a few function calls, with
no lookups by name at run time.

Evaluation semantics:

* Values are floats. Any value that is not known yet (an indicator warming up, no quote yet,
  a division by zero, an overflow) is *unknown* (``None``); anything computed from an unknown
  value is unknown, and an unknown condition is false. So a rule that uses a warming-up
  indicator is false, even inside ``or``/``not``.
* Every sub-expression is evaluated every time (no short-circuit), so that ``crosses_above`` /
  ``crosses_below`` always remember the values of the previous evaluation.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from enum import Enum

from botd.strategy.rules.errors import RulesError
from botd.strategy.rules.functions import FUNCTIONS, MAX_PERIOD, BarValues, Feed, FunctionSpec
from botd.strategy.rules.parser import (
    COMPARISONS,
    Binary,
    Bool,
    Call,
    Expr,
    Name,
    Number,
    Unary,
    parse_expression,
)

__all__ = [
    "BAR_NAMES",
    "CROSSES",
    "VALUE_NAMES",
    "Kind",
    "Program",
    "compile_expression",
    "kind_of",
]

BAR_NAMES = ("open", "high", "low", "close", "volume")
VALUE_NAMES = (
    *BAR_NAMES,
    "bid",
    "ask",
    "mid",
    "price",
    "position",
    "entry_price",
    "unrealized_pnl",
    "realized_pnl",
)
CROSSES = ("crosses_above", "crosses_below")
# Nested operations in one expression. Compiling and evaluating recurse once per level, so this
# keeps both far from Python's recursion limit even for a long chain like `a + a + a + ...`.
MAX_HEIGHT = 128

NumFn = Callable[[], float | None]
CondFn = Callable[[], bool | None]


class Kind(Enum):
    NUMBER = "a number"
    CONDITION = "a condition"


def kind_of(expr: Expr) -> Kind:
    """Whether ``expr`` is a number or a condition; decided by its outermost construct."""
    if isinstance(expr, Bool):
        return Kind.CONDITION
    if isinstance(expr, Call):
        return Kind.CONDITION if expr.func in CROSSES else Kind.NUMBER
    if isinstance(expr, Unary):
        return Kind.CONDITION if expr.op == "not" else Kind.NUMBER
    if isinstance(expr, Binary):
        return Kind.NUMBER if expr.op in "+-*/" else Kind.CONDITION
    return Kind.NUMBER


def _error(message: str, expr: Expr) -> RulesError:
    return RulesError(message, line=expr.line, column=expr.column)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class Program:
    """One symbol's evaluation context, and the compiler that binds expressions to it."""

    def __init__(self, params: Mapping[str, Decimal] | None = None) -> None:
        self.params: dict[str, Decimal] = dict(params or {})
        # Set by the runtime before each evaluation; None while not known.
        self.values: dict[str, float | None] = dict.fromkeys(VALUE_NAMES)
        self._feeds: list[Feed] = []
        self._indicator_values: list[float | None] = []

    # -- run time ---------------------------------------------------------------------------
    def update_bar(self, bar: BarValues) -> None:
        """Take a closed bar: set the bar names and update every indicator, in call order."""
        values = self.values
        values["open"], values["high"], values["low"] = bar.open, bar.high, bar.low
        values["close"], values["volume"] = bar.close, bar.volume
        out = self._indicator_values
        for i, feed in enumerate(self._feeds):
            out[i] = feed(bar)

    @property
    def indicator_count(self) -> int:
        return len(self._feeds)

    # -- compile time -----------------------------------------------------------------------
    def closure(self, expr: Expr) -> Callable[[], float | bool | None]:
        """A closure computing ``expr``: a float, a bool, or None when unknown."""
        if kind_of(expr) is Kind.CONDITION:
            return self._cond(expr, 0)
        return self._num(expr, 0)

    def condition(self, expr: Expr, what: str = "this") -> Callable[[], bool]:
        """A closure that is True only when ``expr`` is known and true."""
        if kind_of(expr) is not Kind.CONDITION:
            raise _error(
                f"{what} must be a condition (true or false), e.g. 'close > 100'; found a number",
                expr,
            )
        fn = self._cond(expr, 0)
        return lambda: fn() is True

    def number(self, expr: Expr, what: str = "this") -> NumFn:
        if kind_of(expr) is not Kind.NUMBER:
            raise _error(f"{what} must be a number, found a condition", expr)
        return self._num(expr, 0)

    def _num(self, expr: Expr, height: int) -> NumFn:
        if height > MAX_HEIGHT:
            raise _error(f"expression too complex (more than {MAX_HEIGHT} nested operations)", expr)
        if kind_of(expr) is not Kind.NUMBER:
            raise _error("expected a number here, found a condition", expr)
        if isinstance(expr, Number):
            const = float(expr.value)
            return lambda: const
        if isinstance(expr, Name):
            return self._name(expr)
        if isinstance(expr, Call):
            return self._indicator(expr)
        if isinstance(expr, Unary):
            operand = self._num(expr.operand, height + 1)

            def negate() -> float | None:
                x = operand()
                return None if x is None else -x

            return negate
        assert isinstance(expr, Binary)
        return _arithmetic(
            expr.op, self._num(expr.left, height + 1), self._num(expr.right, height + 1)
        )

    def _cond(self, expr: Expr, height: int) -> CondFn:
        if height > MAX_HEIGHT:
            raise _error(f"expression too complex (more than {MAX_HEIGHT} nested operations)", expr)
        if kind_of(expr) is not Kind.CONDITION:
            raise _error(
                "expected a condition here (something true or false), found a number", expr
            )
        if isinstance(expr, Bool):
            const = expr.value
            return lambda: const
        if isinstance(expr, Call):
            return self._crosses(expr, height)
        if isinstance(expr, Unary):
            operand = self._cond(expr.operand, height + 1)

            def negation() -> bool | None:
                x = operand()
                return None if x is None else not x

            return negation
        assert isinstance(expr, Binary)
        if expr.op in COMPARISONS:
            for side in (expr.left, expr.right):
                if kind_of(side) is Kind.CONDITION:
                    raise _error(
                        f"{expr.op!r} compares numbers; combine conditions with and/or/not",
                        side,
                    )
            return _comparison(
                expr.op, self._num(expr.left, height + 1), self._num(expr.right, height + 1)
            )
        return _logical(
            expr.op, self._cond(expr.left, height + 1), self._cond(expr.right, height + 1)
        )

    def _name(self, expr: Name) -> NumFn:
        name = expr.id
        if name in self.values:
            values = self.values
            return lambda: values[name]
        if name in self.params:
            const = float(self.params[name])
            return lambda: const
        if name in FUNCTIONS or name in CROSSES:
            raise _error(f"{name!r} is a function: call it, e.g. {name}(...)", expr)
        raise _error(f"unknown name {name!r}{_suggest(name, self._known_names())}", expr)

    def _known_names(self) -> list[str]:
        return [*VALUE_NAMES, *self.params, *FUNCTIONS, *CROSSES]

    def _crosses(self, expr: Call, height: int) -> CondFn:
        if len(expr.args) != 2:
            raise _error(f"{expr.func}() takes 2 arguments, got {len(expr.args)}", expr)
        a = self._num(expr.args[0], height + 1)
        b = self._num(expr.args[1], height + 1)
        above = expr.func == "crosses_above"
        # This call site's memory of the previous evaluation: (a, b).
        previous: list[float | None] = [None, None]

        def crosses() -> bool | None:
            x, y = a(), b()
            px, py = previous
            previous[0], previous[1] = x, y
            if x is None or y is None:
                return None
            if px is None or py is None:
                return False
            return (px <= py and x > y) if above else (px >= py and x < y)

        return crosses

    def _indicator(self, expr: Call) -> NumFn:
        name = expr.func
        spec = FUNCTIONS.get(name)
        if spec is None:
            if name in self.values or name in self.params:
                raise _error(f"{name!r} is a value, not a function: remove the '(...)'", expr)
            known = [*FUNCTIONS, *CROSSES]
            raise _error(f"unknown function {name!r}{_suggest(name, known)}", expr)
        args = self._indicator_args(expr, spec)
        try:
            feed = spec.make(args)
        except ValueError as exc:
            raise _error(f"{name}(): {exc}", expr) from None
        index = len(self._feeds)
        self._feeds.append(feed)
        self._indicator_values.append(None)
        out = self._indicator_values
        return lambda: out[index]

    def _indicator_args(self, expr: Call, spec: FunctionSpec) -> list[Decimal]:
        name, given = expr.func, expr.args
        required = sum(a.default is None for a in spec.args)
        if not required <= len(given) <= len(spec.args):
            expected = (
                str(len(spec.args))
                if required == len(spec.args)
                else f"{required} to {len(spec.args)}"
            )
            signature = ", ".join(a.name for a in spec.args)
            raise _error(
                f"{name}({signature}) takes {expected} argument(s), got {len(given)}", expr
            )
        values: list[Decimal] = []
        for i, arg_spec in enumerate(spec.args):
            if i >= len(given):
                assert arg_spec.default is not None
                values.append(arg_spec.default)
                continue
            arg = given[i]
            if isinstance(arg, Number):
                value = arg.value
            elif isinstance(arg, Name) and arg.id in self.params:
                value = self.params[arg.id]
            else:
                raise _error("indicator arguments must be numbers (or names from [params])", arg)
            if arg_spec.kind == "period" and (
                value != value.to_integral_value() or not 1 <= value <= MAX_PERIOD
            ):
                raise _error(
                    f"{name}(): {arg_spec.name} must be a whole number of bars from 1 to "
                    f"{MAX_PERIOD}, got {value}",
                    arg,
                )
            if arg_spec.kind == "factor" and not 0 < value <= 100:
                raise _error(
                    f"{name}(): {arg_spec.name} must be above 0 and at most 100, got {value}", arg
                )
            values.append(value)
        return values


def _arithmetic(op: str, a: NumFn, b: NumFn) -> NumFn:
    if op == "+":

        def add() -> float | None:
            x, y = a(), b()
            return None if x is None or y is None else _finite(x + y)

        return add
    if op == "-":

        def sub() -> float | None:
            x, y = a(), b()
            return None if x is None or y is None else _finite(x - y)

        return sub
    if op == "*":

        def mul() -> float | None:
            x, y = a(), b()
            return None if x is None or y is None else _finite(x * y)

        return mul

    def div() -> float | None:
        x, y = a(), b()
        # Dividing by zero (e.g. by a flat position) has no answer: unknown, not a crash.
        return None if x is None or y is None or y == 0.0 else _finite(x / y)

    return div


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
    "==": lambda x, y: x == y,
    "!=": lambda x, y: x != y,
}


def _comparison(op: str, a: NumFn, b: NumFn) -> CondFn:
    test = _COMPARE[op]

    def compare() -> bool | None:
        x, y = a(), b()
        return None if x is None or y is None else test(x, y)

    return compare


def _logical(op: str, a: CondFn, b: CondFn) -> CondFn:
    is_and = op == "and"

    def combine() -> bool | None:
        x, y = a(), b()  # both, always: see the module docstring
        if x is None or y is None:
            return None
        return (x and y) if is_and else (x or y)

    return combine


def compile_expression(
    source: str | Expr, program: Program | None = None
) -> Callable[[], float | bool | None]:
    """Parse (if needed) and compile one expression; for tests and tools.

    Pass a :class:`Program` to share the evaluation context, then feed it with
    :meth:`Program.update_bar` and set ``program.values[...]``.
    """
    expr = parse_expression(source) if isinstance(source, str) else source
    return (program or Program()).closure(expr)
