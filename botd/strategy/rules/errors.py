"""The one error type of the rules language: every problem points at a file line and column."""

from __future__ import annotations

__all__ = ["EXPRESSION_PATH", "RulesError"]

# What ``path`` says for an expression that did not come from a file (tests, the REPL).
EXPRESSION_PATH = "<expression>"


class RulesError(ValueError):
    """A rules file or expression that cannot be used as written.

    Inherits :class:`ValueError` so that the strategy host, which treats ``ValueError`` as
    "invalid configuration", reports it without a traceback.
    """

    def __init__(
        self, message: str, *, path: str = EXPRESSION_PATH, line: int = 1, column: int = 1
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"

    def relocated(self, *, path: str, line: int, column: int) -> RulesError:
        """The same problem reported at another place (used to map into a file)."""
        return RulesError(self.message, path=path, line=line, column=column)
