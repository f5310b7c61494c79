"""Parser for rule expressions: a small recursive-descent parser of our own grammar.

Nothing here (or anywhere in the rules package) uses ``eval``, ``exec``, ``compile`` or Python's
``ast`` module: a rule is data, and only the constructs below exist.

Grammar (EBNF; ``{ x }`` is zero or more, ``[ x ]`` is optional)::

    expression     = or_expr ;
    or_expr        = and_expr { "or" and_expr } ;
    and_expr       = not_expr { "and" not_expr } ;
    not_expr       = "not" not_expr | comparison ;
    comparison     = additive [ comp_op additive ] ;          (* not chainable *)
    comp_op        = "<" | "<=" | ">" | ">=" | "==" | "!=" ;
    additive       = multiplicative { ( "+" | "-" ) multiplicative } ;
    multiplicative = unary { ( "*" | "/" ) unary } ;
    unary          = "-" unary | primary ;
    primary        = number | "true" | "false"
                   | name [ "(" [ expression { "," expression } ] ")" ]
                   | "(" expression ")" ;
    number         = digit { digit } [ "." digit { digit } ]
                     [ ( "e" | "E" ) [ "+" | "-" ] digit { digit } ] ;
    name           = letter { letter | digit | "_" } ;

Precedence, loosest first: ``or`` < ``and`` < ``not`` < comparison < ``+ -`` < ``* /`` < unary
``-`` < call/atom. Binary operators associate to the left; ``a < b < c`` is an error (write
``a < b and b < c``). Whitespace (spaces, tabs, newlines) separates tokens and is otherwise
ignored. Limits that keep hostile input cheap: 2000 characters, nesting depth 64, 40 digits and
exponents within ±30 per number, 64 characters per name. Python keywords (``lambda``,
``import``, ``if``…) are reserved and rejected.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from decimal import Decimal

from botd.strategy.rules.errors import RulesError
from botd.strategy.rules.lexer import Token, TokenKind, tokenize

__all__ = [
    "MAX_DEPTH",
    "Binary",
    "Bool",
    "Call",
    "Expr",
    "Name",
    "Number",
    "Parser",
    "Unary",
    "parse_expression",
]

MAX_DEPTH = 64

COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})
KEYWORDS = frozenset({"and", "or", "not", "true", "false"})
# Reserved so that a Python habit gets a clear message instead of "unknown name".
RESERVED = frozenset(keyword.kwlist) - {"and", "or", "not"}


@dataclass(frozen=True, slots=True)
class Number:
    value: Decimal
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    line: int  # of the operator
    column: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # arithmetic, comparison, "and" or "or"
    left: Expr
    right: Expr
    line: int  # of the operator, which is what a type error is about
    column: int


Expr = Number | Bool | Name | Call | Unary | Binary


def parse_expression(text: str) -> Expr:
    """Parse one whole expression. Positions are relative to ``text`` (line 1, column 1)."""
    parser = Parser(tokenize(text))
    expr = parser.expression()
    parser.expect_end()
    return expr


class Parser:
    """Recursive descent over a token list; also used by the action parser for ``at <expr>``."""

    def __init__(self, tokens: list[Token], start: int = 0) -> None:
        self.tokens = tokens
        self.pos = start
        self.depth = 0

    # -- token helpers ----------------------------------------------------------------------
    @property
    def current(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind is not TokenKind.END:
            self.pos += 1
        return tok

    def at_op(self, *ops: str) -> bool:
        tok = self.current
        return tok.kind is TokenKind.OP and tok.text in ops

    def at_word(self, *words: str) -> bool:
        tok = self.current
        return tok.kind is TokenKind.NAME and tok.text in words

    def error(self, message: str, tok: Token | None = None) -> RulesError:
        tok = tok or self.current
        return RulesError(message, line=tok.line, column=tok.column)

    def at_comparison(self) -> bool:
        tok = self.current
        return tok.kind is TokenKind.OP and tok.text in COMPARISONS

    def expect_op(self, op: str, context: str) -> Token:
        if not self.at_op(op):
            raise self.error(f"expected {op!r} {context}, found {self.current.describe()}")
        return self.advance()

    def expect_end(self) -> None:
        tok = self.current
        if tok.kind is TokenKind.END:
            return
        if tok.kind is TokenKind.OP and tok.text in COMPARISONS:
            raise self.error(
                "comparisons cannot be chained; write 'a < b and b < c' instead of 'a < b < c'"
            )
        if tok.kind is TokenKind.OP and tok.text == "(":
            raise self.error("only names can be called: put an operator before '('")
        raise self.error(
            f"expected an operator or the end of the expression, found {tok.describe()}"
        )

    # -- grammar ----------------------------------------------------------------------------
    def expression(self) -> Expr:
        # Every recursion path goes through here, `not` or unary minus, and each counts one
        # level: the depth limit holds long before Python's own recursion limit.
        self._enter()
        try:
            return self._or()
        finally:
            self.depth -= 1

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested too deeply (more than {MAX_DEPTH} levels)")

    def _or(self) -> Expr:
        left = self._and()
        while self.at_word("or"):
            op = self.advance()
            left = Binary("or", left, self._and(), op.line, op.column)
        return left

    def _and(self) -> Expr:
        left = self._not()
        while self.at_word("and"):
            op = self.advance()
            left = Binary("and", left, self._not(), op.line, op.column)
        return left

    def _not(self) -> Expr:
        if not self.at_word("not"):
            return self._comparison()
        op = self.advance()
        self._enter()
        try:
            return Unary("not", self._not(), op.line, op.column)
        finally:
            self.depth -= 1

    def _comparison(self) -> Expr:
        left = self._additive()
        if self.at_comparison():
            op = self.advance()
            left = Binary(op.text, left, self._additive(), op.line, op.column)
            if self.at_comparison():
                raise self.error(
                    "comparisons cannot be chained; write 'a < b and b < c' instead of 'a < b < c'"
                )
        return left

    def _additive(self) -> Expr:
        left = self._multiplicative()
        while self.at_op("+", "-"):
            op = self.advance()
            left = Binary(op.text, left, self._multiplicative(), op.line, op.column)
        return left

    def _multiplicative(self) -> Expr:
        left = self._unary()
        while self.at_op("*", "/"):
            op = self.advance()
            left = Binary(op.text, left, self._unary(), op.line, op.column)
        return left

    def _unary(self) -> Expr:
        if not self.at_op("-"):
            return self._primary()
        op = self.advance()
        self._enter()
        try:
            return Unary("-", self._unary(), op.line, op.column)
        finally:
            self.depth -= 1

    def _primary(self) -> Expr:
        tok = self.current
        if tok.kind is TokenKind.NUMBER:
            self.advance()
            assert tok.number is not None
            return Number(tok.number, tok.line, tok.column)
        if tok.kind is TokenKind.NAME:
            return self._name_or_call()
        if self.at_op("("):
            self.advance()
            inner = self.expression()
            self.expect_op(")", "to close the '(' at column " + str(tok.column))
            return inner
        if self.at_op("+"):
            raise self.error("unary '+' is not supported; just write the number")
        if tok.kind is TokenKind.END:
            raise self.error("expression is incomplete: expected a value at the end")
        raise self.error(f"expected a value, found {tok.describe()}")

    def _name_or_call(self) -> Expr:
        tok = self.advance()
        word = tok.text
        if word in ("true", "false"):
            return Bool(word == "true", tok.line, tok.column)
        if word in KEYWORDS:
            raise self.error(f"expected a value, found {word!r}", tok)
        if word in RESERVED:
            hint = f"; write {word.lower()!r}" if word in ("True", "False") else ""
            raise self.error(f"{word!r} is not supported in rule expressions{hint}", tok)
        if not self.at_op("("):
            return Name(word, tok.line, tok.column)
        self.advance()
        args: list[Expr] = []
        if not self.at_op(")"):
            args.append(self.expression())
            while self.at_op(","):
                self.advance()
                args.append(self.expression())
        self.expect_op(")", f"to close the call of {word!r}")
        if self.at_op("("):
            raise self.error("the result of a call cannot be called")
        return Call(word, tuple(args), tok.line, tok.column)
