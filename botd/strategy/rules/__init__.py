"""Rules without code: ``strategies/*.rules.toml`` files compiled onto the strategy engine.

See :mod:`botd.strategy.rules.parser` for the expression grammar and
:mod:`botd.strategy.rules.actions` for the actions.
"""

from botd.strategy.rules.compiler import Program, compile_expression
from botd.strategy.rules.errors import RulesError
from botd.strategy.rules.parser import parse_expression
from botd.strategy.rules.rulefile import load_rules_file

__all__ = ["Program", "RulesError", "compile_expression", "load_rules_file", "parse_expression"]
