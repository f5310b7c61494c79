"""Tokenizer for rule expressions and actions.

Hand-written and deliberately strict: only printable ASCII is accepted, so look-alike characters
(a Cyrillic letter that looks like ``a``, an Arabic-Indic digit, a zero-width space) are
reported instead of silently becoming part of a name or a number. Every token carries its
1-based line and column within the expression text; the rules file maps those onto the file.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from botd.strategy.rules.errors import RulesError

__all__ = [
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "Token",
    "TokenKind",
    "tokenize",
]

MAX_LENGTH = 2000  # characters in one expression: rules are one-liners, not programs
MAX_DIGITS = 40  # digits in one number literal
MAX_EXPONENT = 30  # magnitude of a literal's exponent
MAX_NAME = 64  # characters in one name

_TWO_CHAR_OPS = frozenset({"<=", ">=", "==", "!="})
_ONE_CHAR_OPS = frozenset("<>(),*/+-")
_WHITESPACE = frozenset(" \t\r\n")

# Characters people reach for from other languages, with what to write instead.
_HINTS: dict[str, str] = {
    "=": "'=' assigns, which rules cannot do; use '==' to compare",
    "!": "use 'not' instead of '!'",
    "&": "use 'and' instead of '&'",
    "|": "use 'or' instead of '|'",
    "'": "strings are not supported in rule expressions",
    '"': "strings are not supported in rule expressions",
    "[": "indexing is not supported in rule expressions",
    "]": "indexing is not supported in rule expressions",
    ".": "attribute access is not supported in rule expressions",
    "%": "operator '%' is not supported",
    "^": "operator '^' is not supported",
    "~": "operator '~' is not supported",
    "@": "operator '@' is not supported",
    ":": "':' is not supported (no slices, lambdas or dictionaries in rules)",
    "{": "'{' is not supported in rule expressions",
    "}": "'}' is not supported in rule expressions",
    "\\": "'\\' is not supported in rule expressions",
}


class TokenKind(Enum):
    NUMBER = "number"
    NAME = "name"
    OP = "operator"
    END = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    line: int
    column: int
    number: Decimal | None = None  # set for NUMBER tokens

    def describe(self) -> str:
        return "end of input" if self.kind is TokenKind.END else repr(self.text)


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with one END token. Raises :class:`RulesError`."""
    if len(text) > MAX_LENGTH:
        raise RulesError(f"expression too long: {len(text)} characters (the limit is {MAX_LENGTH})")
    return _Scanner(text).run()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0  # index of the first character of the current line
        self.tokens: list[Token] = []

    def col(self, index: int) -> int:
        return index - self.line_start + 1

    def error(self, message: str, index: int) -> RulesError:
        return RulesError(message, line=self.line, column=self.col(index))

    def run(self) -> list[Token]:
        text, n = self.text, len(self.text)
        while self.i < n:
            ch = text[self.i]
            if ch in _WHITESPACE:
                if ch == "\n":
                    self.line += 1
                    self.line_start = self.i + 1
                self.i += 1
            elif ch.isascii() and ch.isdigit():
                self.number()
            elif ch.isascii() and (ch.isalpha() or ch == "_"):
                self.name()
            else:
                self.operator()
        self.tokens.append(Token(TokenKind.END, "", self.line, self.col(self.i)))
        return self.tokens

    def number(self) -> None:
        text, start = self.text, self.i
        j = _digits_end(text, start)
        if j < len(text) and text[j] == "." and _is_digit(text, j + 1):
            j = _digits_end(text, j + 1)
        mantissa_end = j
        exponent = 0
        if j < len(text) and text[j] in "eE":
            k = j + 1
            if k < len(text) and text[k] in "+-":
                k += 1
            if not _is_digit(text, k):
                raise self.error(f"invalid number {text[start : k + 1]!r}", start)
            end = _digits_end(text, k)
            # Only the magnitude matters; a long exponent is out of range whatever it says.
            digits = text[k:end].lstrip("0") or "0"
            exponent = int(digits) if len(digits) <= 3 else MAX_EXPONENT + 1
            if text[j + 1] == "-":
                exponent = -exponent
            j = end
        if j < len(text) and (text[j].isalnum() or text[j] in "._"):
            raise self.error(f"invalid number {text[start : j + 1]!r}", start)
        mantissa_digits = sum(c.isdigit() for c in text[start:mantissa_end])
        if mantissa_digits > MAX_DIGITS or abs(exponent) > MAX_EXPONENT:
            raise self.error(
                f"number too large: at most {MAX_DIGITS} digits and an exponent between "
                f"-{MAX_EXPONENT} and {MAX_EXPONENT}",
                start,
            )
        literal = text[start:j]
        self.tokens.append(
            Token(TokenKind.NUMBER, literal, self.line, self.col(start), Decimal(literal))
        )
        self.i = j

    def name(self) -> None:
        text, start = self.text, self.i
        j = start
        while j < len(text) and text[j].isascii() and (text[j].isalnum() or text[j] == "_"):
            j += 1
        word = text[start:j]
        if word.startswith("_"):
            raise self.error(f"names cannot start with '_': {word[:MAX_NAME]!r}", start)
        if len(word) > MAX_NAME:
            raise self.error(f"name too long ({len(word)} characters; at most {MAX_NAME})", start)
        self.tokens.append(Token(TokenKind.NAME, word, self.line, self.col(start)))
        self.i = j

    def operator(self) -> None:
        text, start = self.text, self.i
        pair = text[start : start + 2]
        if pair in _TWO_CHAR_OPS:
            self.tokens.append(Token(TokenKind.OP, pair, self.line, self.col(start)))
            self.i += 2
            return
        ch = text[start]
        if ch in _ONE_CHAR_OPS:
            if pair in ("**", "//"):
                raise self.error(f"operator {pair!r} is not supported", start)
            self.tokens.append(Token(TokenKind.OP, ch, self.line, self.col(start)))
            self.i += 1
            return
        raise self.error(_describe_bad_char(text, start), start)


def _is_digit(text: str, index: int) -> bool:
    return index < len(text) and text[index].isascii() and text[index].isdigit()


def _digits_end(text: str, index: int) -> int:
    while _is_digit(text, index):
        index += 1
    return index


def _describe_bad_char(text: str, index: int) -> str:
    ch = text[index]
    if ch == "." and _is_digit(text, index + 1):
        return "write numbers with a leading digit, e.g. 0.5"
    if ch in _HINTS:
        return _HINTS[ch]
    code = f"U+{ord(ch):04X}"
    if not ch.isprintable():
        return f"control or invisible character {code} is not allowed"
    name = unicodedata.name(ch, "")
    shown = f"{ch!r} ({code} {name})" if name else f"{ch!r} ({code})"
    if not ch.isascii():
        return f"unexpected character {shown}: rules are written in plain ASCII"
    return f"unexpected character {shown}"
