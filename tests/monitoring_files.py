"""The shipped Prometheus and Grafana files, and the metric names their PromQL uses.

A small PromQL reader, enough to find every series selector in an expression: metric names,
functions and aggregators, label matchers. It does not evaluate anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
RULES = REPO / "deploy" / "prometheus" / "botd.rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "botd-dashboard.json"

# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
)
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})

FUNCTIONS = frozenset(  # as a word list, the way the PromQL docs list them
    """abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min
    count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor
    histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev
    histogram_stdvar histogram_sum holt_winters hour idelta increase irate
    label_join label_replace last_over_time ln log10 log2 max_over_time min_over_time minute
    month predict_linear present_over_time quantile_over_time rate resets round scalar sgn sort
    sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time time timestamp vector year
    acos acosh asin asinh atan atanh cos cosh deg pi rad sin sinh tan tanh""".split()  # noqa: SIM905
)
AGGREGATORS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile".split()  # noqa: SIM905
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:\d|\.\d)[\w.+]*)          # 0.99, 1e3, 5m, 1h30m (durations too)
  | (?P<var>\$\{?\w+\}?)                      # a Grafana variable: $__rate_interval
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=@,(){}\[\]:])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Selector:
    """``name{label op "value", ...}`` as written in an expression."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, unquoted value)


@dataclass(frozen=True)
class Parsed:
    selectors: tuple[Selector, ...]
    functions: frozenset[str]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.selectors)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    depth: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for kind, text in out:
        if kind != "op":
            continue
        if text in "([{":
            depth.append(text)
        elif text in pairs and (not depth or depth.pop() != pairs[text]):
            raise PromQLError(f"unbalanced {text!r} in {expr!r}")
    if depth:
        raise PromQLError(f"unclosed {depth[-1]!r} in {expr!r}")
    return out


def _closing(toks: list[tuple[str, str]], start: int) -> int:
    """Index of the bracket closing the one at ``start``."""
    opening = toks[start][1]
    closing = {"(": ")", "[": "]", "{": "}"}[opening]
    depth = 0
    for i in range(start, len(toks)):
        if toks[i] == ("op", opening):
            depth += 1
        elif toks[i] == ("op", closing):
            depth -= 1
            if depth == 0:
                return i
    raise PromQLError("unbalanced")  # tokens() already checked


def _matchers(
    toks: list[tuple[str, str]], start: int, end: int
) -> tuple[tuple[str, str, str], ...]:
    found: list[tuple[str, str, str]] = []
    i = start + 1
    while i < end:
        if i + 3 > end:
            raise PromQLError(f"bad label matcher near {toks[i][1]!r}")
        label, op, value = toks[i : i + 3]
        if label[0] != "ident" or op[1] not in {"=", "!=", "=~", "!~"} or value[0] != "string":
            raise PromQLError(f"bad label matcher near {label[1]!r}")
        found.append((label[1], op[1], value[1][1:-1]))
        i += 3
        if i < end and toks[i] == ("op", ","):
            i += 1
    return tuple(found)


def parse(expr: str) -> Parsed:
    toks = tokens(expr)
    selectors: list[Selector] = []
    functions: set[str] = set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if kind == "op" and text == "[":  # a range or subquery: durations only
            i = _closing(toks, i) + 1
            continue
        if kind == "op" and text == "{":  # {__name__="..."} with no name in front
            end = _closing(toks, i)
            matchers = _matchers(toks, i, end)
            names = [v for label, op, v in matchers if label == "__name__" and op == "="]
            if not names:
                raise PromQLError(f"a selector without a metric name in {expr!r}")
            selectors.append(Selector(names[0], matchers))
            i = end + 1
            continue
        if kind != "ident":
            i += 1
            continue
        lowered = text.lower()
        if lowered in GROUPING:
            # by (label, ...): label names, not series
            i = _closing(toks, i + 1) + 1 if following == ("op", "(") else i + 1
            continue
        if lowered in KEYWORDS:
            i += 1
            continue
        if following == ("op", "("):
            if text not in FUNCTIONS and lowered not in AGGREGATORS:
                raise PromQLError(f"unknown function {text!r} in {expr!r}")
            functions.add(text)
            i += 1
            continue
        if lowered in AGGREGATORS and following[0] == "ident" and following[1] in GROUPING:
            functions.add(text)  # sum by (x) (...)
            i += 1
            continue
        if following == ("op", "{"):
            end = _closing(toks, i + 1)
            selectors.append(Selector(text, _matchers(toks, i + 1, end)))
            i = end + 1
        else:
            selectors.append(Selector(text, ()))
            i += 1
    return Parsed(tuple(selectors), frozenset(functions))


# -- the files -------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in load_yaml(RULES)["groups"]:
        rules.extend(group["rules"])
    return rules


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included; rows themselves excluded."""
    board = dashboard() if board is None else board
    out: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)\s*$")


def variable_selector(query: str) -> tuple[str, str]:
    """``label_values(selector, label)`` -> (selector, label)."""
    m = _LABEL_VALUES.match(query)
    if m is None:
        raise PromQLError(f"not a label_values() query: {query!r}")
    return m.group("selector"), m.group("label")


def all_expressions() -> dict[str, str]:
    """Where -> PromQL, for every expression in the rules and the dashboard."""
    found = {f"rule {rule['alert']}": str(rule["expr"]) for rule in alert_rules()}
    board = dashboard()
    for panel in dashboard_panels(board):
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for var in board["templating"]["list"]:
        found[f"variable {var['name']}"] = variable_selector(var["query"]["query"])[0]
    return found
