"""The strategy class behind every rules file.

``load_rules_file`` subclasses :class:`RulesStrategy` once per file and attaches the checked
:class:`RuleSet`. At ``on_start`` each symbol gets its own :class:`Program` (evaluation context
and indicators) and its own copy of every rule, registered with :meth:`Strategy.when`.

Rules are evaluated once per closed bar, in ``on_bar``, after the indicators have taken that
bar; the conditions registered with ``when`` return the result of that evaluation. The host may
check conditions after any market-data hook (``on_trade`` too): between two bars they do not
change, so edges, and therefore actions, only ever happen on a bar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from botd.model import Bar, Trade
from botd.strategy.api import Strategy
from botd.strategy.rules.actions import ActionSpec, bind_action, check_action
from botd.strategy.rules.compiler import Program
from botd.strategy.rules.errors import RulesError
from botd.strategy.rules.functions import BarValues
from botd.strategy.rules.parser import Expr
from botd.strategy.rules.source import Span

__all__ = ["RuleSet", "RuleSpec", "RulesStrategy"]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    when: Expr
    then: ActionSpec
    once: bool
    cooldown: float | None  # seconds
    when_span: Span
    then_span: Span


@dataclass(frozen=True, slots=True)
class RuleSet:
    path: str
    params: Mapping[str, Decimal | int]  # defaults; the effective values come from settings
    rules: tuple[RuleSpec, ...]

    def check(self) -> None:
        """Compile everything once with the default parameters: errors surface at load."""
        program = Program({k: Decimal(v) for k, v in self.params.items()})
        for rule in self.rules:
            self.condition(rule, program)
            try:
                check_action(rule.then, program)
            except RulesError as exc:
                raise rule.then_span.locate(exc, self.path) from None

    def condition(self, rule: RuleSpec, program: Program) -> Callable[[], bool]:
        try:
            return program.condition(rule.when, "'when'")
        except RulesError as exc:
            raise rule.when_span.locate(exc, self.path) from None

    def action(
        self, rule: RuleSpec, program: Program, strategy: Strategy, symbol: str
    ) -> Callable[[], object]:
        try:
            return bind_action(rule.then, program, strategy, symbol, strategy.instrument(symbol))
        except RulesError as exc:
            raise rule.then_span.locate(exc, self.path) from None


class _SymbolRules:
    """One symbol's program, its bound rules, and the results of the latest evaluation."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.conditions: list[Callable[[], bool]] = []
        self.actions: list[Callable[[], object]] = []
        self.results: list[bool] = []

    def evaluate(self) -> None:
        self.results = [condition() for condition in self.conditions]

    def result(self, index: int) -> Callable[[], bool]:
        return lambda: index < len(self.results) and self.results[index]


class RulesStrategy(Strategy):
    """Base of the classes built from ``*.rules.toml`` files; not used directly."""

    rule_set: ClassVar[RuleSet]

    _rule_symbols: dict[str, _SymbolRules]

    def on_start(self) -> None:
        rule_set = type(self).rule_set
        params = {name: _decimal(getattr(self, name)) for name in rule_set.params}
        # Bind every symbol before registering anything: a rule that does not fit one symbol
        # (e.g. an asset it does not trade) stops the strategy with nothing half-registered.
        self._rule_symbols = {}
        for symbol in self.traded_symbols:
            state = _SymbolRules(Program(params))
            for rule in rule_set.rules:
                state.conditions.append(rule_set.condition(rule, state.program))
                state.actions.append(rule_set.action(rule, state.program, self, symbol))
            self._rule_symbols[symbol] = state
        many = len(self._rule_symbols) > 1
        for symbol, state in self._rule_symbols.items():
            for index, rule in enumerate(rule_set.rules):
                self.when(
                    state.result(index),
                    state.actions[index],
                    once=rule.once,
                    cooldown=rule.cooldown,
                    name=f"{rule.name} [{symbol}]" if many else rule.name,
                )

    def _state(self, symbol: str) -> _SymbolRules | None:
        # Absent when on_start failed: the hooks then do nothing rather than raise each time.
        states: dict[str, _SymbolRules] = vars(self).get("_rule_symbols", {})
        return states.get(symbol)

    def on_trade(self, trade: Trade) -> None:
        state = self._state(trade.symbol)
        if state is not None:
            state.program.values["price"] = float(trade.price)

    def on_bar(self, bar: Bar) -> None:
        state = self._state(bar.symbol)
        if state is None:
            return
        values = state.program.values
        quote = self.last_quote(bar.symbol)
        if quote is not None:
            values["bid"], values["ask"] = float(quote.bid), float(quote.ask)
            values["mid"] = float(quote.mid)
        pos = self.position_of(bar.symbol)
        if pos.is_flat:
            values["position"] = values["entry_price"] = values["unrealized_pnl"] = 0.0
        else:
            mark = quote.mid if quote is not None else bar.close
            values["position"] = float(pos.qty)
            values["entry_price"] = float(pos.avg_price)
            values["unrealized_pnl"] = float(pos.unrealized_pnl(mark))
        values["realized_pnl"] = float(pos.realized_pnl)
        o, h, lo, c, v = bar.open, bar.high, bar.low, bar.close, bar.volume
        state.program.update_bar(BarValues(float(o), float(h), float(lo), float(c), float(v)))
        state.evaluate()


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    raise RulesError(f"parameter value {value!r} is not a number")
