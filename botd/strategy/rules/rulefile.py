"""Load a ``*.rules.toml`` file into a :class:`~botd.strategy.api.Strategy` subclass.

Everything that can be checked without a running market is checked here, and every problem is
a :class:`RulesError` naming the file, line and column. What depends on the venue (the
instrument's assets) or on parameter overrides from settings is checked again in ``on_start``,
with the same positions.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from botd.durations import DurationError, parse_duration, timeframe_ns
from botd.strategy.api import API_VERSION, Strategy
from botd.strategy.params import param
from botd.strategy.rules.actions import parse_action
from botd.strategy.rules.compiler import CROSSES, VALUE_NAMES
from botd.strategy.rules.errors import RulesError
from botd.strategy.rules.functions import FUNCTIONS
from botd.strategy.rules.parser import KEYWORDS, RESERVED, parse_expression
from botd.strategy.rules.runtime import RuleSet, RuleSpec, RulesStrategy
from botd.strategy.rules.source import SourceMap

__all__ = ["RulesError", "load_rules_file"]

SUFFIX = ".rules.toml"
MAX_FILE_BYTES = 256 * 1024
MAX_RULES = 256
TOP_KEYS = (
    "api_version",
    "venue",
    "symbol",
    "symbols",
    "timeframe",
    "description",
    "params",
    "rule",
)
RULE_KEYS = ("name", "when", "then", "once", "cooldown")
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,39}$")
_PARAM = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def load_rules_file(path: Path) -> type[Strategy]:
    """Parse, check and compile ``path``; return a Strategy class that runs its rules."""
    return _Loader(path).load()


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.source = SourceMap("")

    def error(self, message: str, line: int = 1, column: int = 1) -> RulesError:
        return RulesError(message, path=self.where, line=line, column=column)

    def key_error(self, message: str, key: str, table: str = "", index: int = 0) -> RulesError:
        line, column = self.source.key(key, table, index) or (
            self.source.table_line(table, index),
            1,
        )
        return self.error(message, line, column)

    # -- the file ---------------------------------------------------------------------------
    def load(self) -> type[Strategy]:
        doc = self.read()
        self.check_keys(doc, TOP_KEYS, "at the top level", "")
        version = doc.get("api_version")
        if version != API_VERSION or isinstance(version, bool):
            msg = f"set `api_version = {API_VERSION}`" + (
                f" (this botd runs rules version {API_VERSION}, not {version!r})"
                if "api_version" in doc
                else " at the top of the file"
            )
            raise self.key_error(msg, "api_version")
        venue = self.string(doc, "venue", "paper")
        symbols = self.symbols(doc)
        timeframe = self.string(doc, "timeframe", "1m")
        try:
            timeframe_ns(timeframe)
        except DurationError as exc:
            raise self.key_error(str(exc), "timeframe") from None
        description = self.string(doc, "description", "")
        params = self.params(doc.get("params", {}))
        rule_set = RuleSet(self.where, params, self.rules(doc))
        rule_set.check()
        return _make_class(self.path, venue, symbols, timeframe, description, rule_set)

    def read(self) -> dict[str, Any]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise self.error(f"cannot read the file: {exc.strerror or exc}") from None
        if len(data) > MAX_FILE_BYTES:
            raise self.error(f"file too large ({len(data)} bytes; at most {MAX_FILE_BYTES})")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise self.error("the file is not valid UTF-8 text", line) from None
        self.source = SourceMap(text)
        try:
            # Decimal floats: a quantity written as 0.001 must stay exactly 0.001.
            return tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            match = _TOML_POSITION.search(message)
            if match is None:
                raise self.error(f"invalid TOML: {message}") from None
            line, column = int(match.group(1)), int(match.group(2))
            raise self.error(f"invalid TOML: {message[: match.start()]}", line, column) from None

    def check_keys(
        self, table: dict[str, Any], known: tuple[str, ...], where: str, name: str, index: int = 0
    ) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.key_error(
                    f"unknown key {key!r} {where}{hint}; known keys: {', '.join(known)}",
                    key,
                    name,
                    index,
                )

    def string(
        self, table: dict[str, Any], key: str, default: str, name: str = "", index: int = 0
    ) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.key_error(f"{key} must be a string in quotes", key, name, index)
        return value

    def symbols(self, doc: dict[str, Any]) -> tuple[str, ...]:
        if ("symbol" in doc) == ("symbols" in doc):
            key = "symbols" if "symbols" in doc else "api_version"
            raise self.key_error(
                'give exactly one of `symbol = "BTCUSDT"` or `symbols = ["BTCUSDT", ...]`', key
            )
        key = "symbol" if "symbol" in doc else "symbols"
        raw = doc[key]
        items = [raw] if key == "symbol" else raw
        if not isinstance(items, list) or not items:
            raise self.key_error("symbols must be a non-empty list of strings", key)
        for item in items:
            if not isinstance(item, str) or not _SYMBOL.match(item):
                raise self.key_error(f'{item!r} is not a symbol like "BTCUSDT"', key)
        if len(set(items)) != len(items):
            raise self.key_error("a symbol is listed twice", key)
        return tuple(items)

    def params(self, table: object) -> dict[str, Decimal | int]:
        if not isinstance(table, dict):
            raise self.key_error("params must be a table: [params]", "params")
        reserved = set(VALUE_NAMES) | set(FUNCTIONS) | set(CROSSES) | KEYWORDS | RESERVED
        reserved |= {"at", "all", *dir(RulesStrategy)}
        for klass in RulesStrategy.__mro__:
            reserved |= set(getattr(klass, "__annotations__", {}))
        out: dict[str, Decimal | int] = {}
        for name, value in table.items():
            if not _PARAM.match(name):
                raise self.key_error(
                    f"parameter name {name!r} must be a letter then letters, digits or '_'",
                    name,
                    "params",
                )
            if name in reserved:
                raise self.key_error(f"parameter name {name!r} is reserved", name, "params")
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, Decimal) and value.is_finite()
            )
            if not ok:
                raise self.key_error(f"parameter {name!r} must be a number", name, "params")
            out[name] = value
        return out

    # -- rules ------------------------------------------------------------------------------
    def rules(self, doc: dict[str, Any]) -> tuple[RuleSpec, ...]:
        raw = doc.get("rule")
        if isinstance(raw, dict):
            raise self.error(
                "write [[rule]] (two brackets) before each rule", self.source.table_line("rule")
            )
        if not isinstance(raw, list) or not raw:
            raise self.error("no rules: add at least one [[rule]] with `when` and `then`")
        if len(raw) > MAX_RULES:
            raise self.error(f"too many rules ({len(raw)}; at most {MAX_RULES})")
        specs: list[RuleSpec] = []
        names: set[str] = set()
        for index, table in enumerate(raw):
            if not isinstance(table, dict):
                raise self.key_error("each rule must be a table: [[rule]]", "rule")
            spec = self.rule(table, index)
            if spec.name in names:
                raise self.key_error(f"two rules are named {spec.name!r}", "name", "rule", index)
            names.add(spec.name)
            specs.append(spec)
        return tuple(specs)

    def rule(self, table: dict[str, Any], index: int) -> RuleSpec:
        self.check_keys(table, RULE_KEYS, f"in rule {index + 1}", "rule", index)
        for required in ("when", "then"):
            if required not in table:
                raise self.error(
                    f"rule {index + 1} has no `{required}`", self.source.table_line("rule", index)
                )
        name = self.string(table, "name", f"rule {index + 1}", "rule", index)
        when = self.string(table, "when", "", "rule", index)
        then = self.string(table, "then", "", "rule", index)
        once = table.get("once", False)
        if not isinstance(once, bool):
            raise self.key_error("once must be true or false", "once", "rule", index)
        cooldown = self.cooldown(table, index)
        when_span = self.source.value("when", when, "rule", index)
        then_span = self.source.value("then", then, "rule", index)
        try:
            when_expr = parse_expression(when)
        except RulesError as exc:
            raise when_span.locate(exc, self.where) from None
        try:
            action = parse_action(then)
        except RulesError as exc:
            raise then_span.locate(exc, self.where) from None
        return RuleSpec(name, when_expr, action, once, cooldown, when_span, then_span)

    def cooldown(self, table: dict[str, Any], index: int) -> float | None:
        raw = table.get("cooldown")
        if raw is None:
            return None
        if isinstance(raw, Decimal):
            raw = float(raw)
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise self.key_error(
                'cooldown must be like "30s", "5m", "1h" or a number of seconds',
                "cooldown",
                "rule",
                index,
            )
        try:
            return parse_duration(raw)
        except DurationError as exc:
            raise self.key_error(f"cooldown: {exc}", "cooldown", "rule", index) from None


def _class_name(path: Path) -> str:
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    words = re.split(r"[^A-Za-z0-9]+", stem)
    name = "".join(w[:1].upper() + w[1:] for w in words if w)
    if not name or name[0].isdigit():
        name = "Rules" + name
    return name


def _make_class(
    path: Path,
    venue: str,
    symbols: tuple[str, ...],
    timeframe: str,
    description: str,
    rule_set: RuleSet,
) -> type[Strategy]:
    name = _class_name(path)
    namespace: dict[str, Any] = {
        "__module__": f"botd.strategy.rules.files.{name}",
        "__qualname__": name,
        "__doc__": description or f"Rules from {path.name}.",
        "api_version": API_VERSION,
        "venue": venue,
        "symbol": symbols[0],
        "symbols": symbols,
        "timeframe": timeframe,
        "rule_set": rule_set,
    }
    for key, default in rule_set.params.items():
        doc = f"[params] {key} in {path.name}"
        # Two calls so that each one is typed with the parameter's own kind (int or Decimal).
        if isinstance(default, int):
            namespace[key] = param(default, doc=doc)
        else:
            namespace[key] = param(default, doc=doc)
    return type(name, (RulesStrategy,), namespace)
