"""Where things are in a rules file, so that errors can name a line and a column.

``tomllib`` returns values without positions, so we find keys in the raw text: the lines of
each table (top level, ``[params]``, each ``[[rule]]``), then ``key =`` within those lines, then
the opening quote of a string value. When the raw text between the quotes is exactly the parsed
string (no escape sequences), a position inside an expression maps exactly onto the file;
otherwise errors point at the start of the string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botd.strategy.rules.errors import RulesError

__all__ = ["SourceMap", "Span"]

_HEADER = re.compile(r"^\s*\[(\[)?\s*([A-Za-z0-9_.\"' -]+?)\s*\]")


@dataclass(frozen=True, slots=True)
class Span:
    """Where a string value's content starts (1-based), and whether positions inside it map
    exactly."""

    line: int
    column: int
    exact: bool = False

    def locate(self, err: RulesError, path: str) -> RulesError:
        """``err`` (positioned within the string) repositioned within the file."""
        if not self.exact:
            return err.relocated(path=path, line=self.line, column=self.column)
        if err.line == 1:
            return err.relocated(path=path, line=self.line, column=self.column + err.column - 1)
        return err.relocated(path=path, line=self.line + err.line - 1, column=err.column)


@dataclass(frozen=True, slots=True)
class _Table:
    name: str  # "" for the top level
    first: int  # 0-based index of the first line of its body
    end: int  # 0-based index past its last line


class SourceMap:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        # Offsets of line starts, to check a string's raw text against its parsed value.
        self.starts: list[int] = []
        offset = 0
        for line in self.lines:
            self.starts.append(offset)
            offset += len(line) + 1
        self.tables: list[_Table] = []
        name, first = "", 0
        for i, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if match:
                self.tables.append(_Table(name, first, i))
                name, first = match.group(2).strip(), i + 1
        self.tables.append(_Table(name, first, len(self.lines)))

    def table_line(self, name: str, index: int = 0) -> int:
        """1-based line of the header of the ``index``-th table called ``name`` (1 if none)."""
        found = [t for t in self.tables if t.name == name]
        if index < len(found):
            return max(found[index].first, 1)
        return 1

    def key(self, key: str, table: str = "", index: int = 0) -> tuple[int, int] | None:
        """1-based (line, column) of ``key =`` in the ``index``-th table called ``table``."""
        found = [t for t in self.tables if t.name == table]
        if index >= len(found):
            return None
        pattern = re.compile(
            rf"^(\s*)(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*="
        )
        for i in range(found[index].first, found[index].end):
            match = pattern.match(self.lines[i])
            if match:
                return i + 1, len(match.group(1)) + 1
        return None

    def value(self, key: str, value: str, table: str = "", index: int = 0) -> Span:
        """Where the string ``value`` of ``key`` starts, for mapping errors inside it."""
        where = self.key(key, table, index)
        if where is None:
            return Span(self.table_line(table, index), 1)
        line_no, _ = where
        line = self.lines[line_no - 1]
        eq = line.index("=")
        col = eq + 1
        while col < len(line) and line[col] in " \t":
            col += 1
        quote = next((q for q in ('"""', "'''", '"', "'") if line.startswith(q, col)), None)
        if quote is None:
            return Span(line_no, col + 1)
        content = self.starts[line_no - 1] + col + len(quote)
        line_at, col_at = line_no, col + len(quote) + 1
        if len(quote) == 3 and self.text.startswith("\n", content):
            # TOML drops a newline right after the opening triple quote.
            content += 1
            line_at, col_at = line_no + 1, 1
        exact = self.text.startswith(value, content)
        return Span(line_at, col_at, exact)
