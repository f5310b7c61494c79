"""The shipped Prometheus config, alerting rules and Grafana dashboard: they parse, have the
structure Prometheus and Grafana need, and their PromQL reads. (Whether the metrics exist is
tests/integration/test_monitoring_metrics.py, against a running daemon.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from botd.settings import ControlSettings
from tests.monitoring_files import (
    DASHBOARD,
    PROMETHEUS,
    RULES,
    PromQLError,
    Selector,
    alert_rules,
    all_expressions,
    dashboard,
    dashboard_panels,
    load_yaml,
    parse,
    variable_selector,
)

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RULES_TESTS = RULES.with_name("botd.rules.test.yml")

# -- the PromQL reader the checks rely on ----------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names", "functions"),
    [
        ("up == 0", {"up"}, set()),
        (
            'histogram_quantile(0.99, sum by (le, venue) (rate(botd_x_bucket{venue=~"$v"}'
            "[$__rate_interval])))",
            {"botd_x_bucket"},
            {"histogram_quantile", "sum", "rate"},
        ),
        (
            "sum(rate(a_total[5m])) by (venue) / ignoring (pool) b",
            {"a_total", "b"},
            {"sum", "rate"},
        ),
        ("a > bool 1e3 and on (job) b unless c offset 5m", {"a", "b", "c"}, set()),
        ("x * on (instance) group_left (version) botd_info", {"x", "botd_info"}, set()),
        ('{__name__="botd_g", venue="by"}', {"botd_g"}, set()),
        ('label_replace(m, "dst", "$1 (x)", "src", "(.*)")', {"m"}, {"label_replace"}),
        ("max_over_time(deriv(g[5m])[1h:1m]) > 0.5", {"g"}, {"max_over_time", "deriv"}),
        ("time() - ts # a comment about rate(x)", {"ts"}, {"time"}),
    ],
)
def test_promql_names(expr: str, names: set[str], functions: set[str]) -> None:
    parsed = parse(expr)
    assert parsed.names == names
    assert parsed.functions == functions


def test_promql_matchers() -> None:
    parsed = parse('botd_trading_state{scope="global", state!="active",} == 1')
    assert parsed.selectors == (
        Selector("botd_trading_state", (("scope", "=", "global"), ("state", "!=", "active"))),
    )


@pytest.mark.parametrize(
    "expr",
    [
        "rate(x[5m]",  # unclosed
        "sum(x))",
        "rat(x[5m])",  # a misspelt function is not taken for a metric name
        "histogram_quantil(0.9, x)",
        "x{venue}",  # not a matcher
        '{venue="paper"}',  # no metric name
        "x ~ y",
    ],
)
def test_promql_errors(expr: str) -> None:
    with pytest.raises(PromQLError):
        parse(expr)


# -- prometheus.yml --------------------------------------------------------------------------


def test_prometheus_config_scrapes_botd_with_the_token_file() -> None:
    config = load_yaml(PROMETHEUS)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "botd"]
    assert job["metrics_path"] == "/metrics"
    assert _DURATION.match(job["scrape_interval"])
    assert _DURATION.match(config["global"]["scrape_interval"])
    auth = job["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials_file"].endswith(".token")
    assert "credentials" not in auth, "the token itself never goes in the file"
    (target,) = job["static_configs"][0]["targets"]
    assert target == f"127.0.0.1:{ControlSettings().port}", "the control API's default address"


def test_prometheus_config_loads_the_shipped_rules() -> None:
    config = load_yaml(PROMETHEUS)
    files = [PROMETHEUS.parent / name for name in config["rule_files"]]
    assert RULES in files


# -- botd.rules.yml --------------------------------------------------------------------------

REQUIRED_ALERTS = {
    "BotdDown",
    "BotdKillSwitchEngaged",
    "BotdTradingHalted",
    "BotdStreamDisconnected",
    "BotdStreamStale",
    "BotdRateLimitHeadroomLow",
    "BotdVenueBan",
    "BotdJournalUnhealthy",
    "BotdJournalBacklogGrowing",
    "BotdStrategyHalted",
    "BotdStrategyFailing",
    "BotdEventLoopLagHigh",
}


def test_rules_structure() -> None:
    doc = load_yaml(RULES)
    assert set(doc) == {"groups"}
    group_names = [g["name"] for g in doc["groups"]]
    assert len(group_names) == len(set(group_names))
    for group in doc["groups"]:
        assert set(group) <= {"name", "rules", "interval", "limit"}
        assert group["rules"]
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert re.fullmatch(r"Botd[A-Z][A-Za-z0-9]+", rule["alert"])
        assert isinstance(rule["expr"], str)
        assert parse(rule["expr"]).names, rule["alert"]
        assert _DURATION.match(rule.get("for", "0s")), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert set(rule["annotations"]) == {"summary", "description"}
        for text in rule["annotations"].values():
            # Go templates: every {{ ... }} closed; only $labels and $value used.
            assert text.count("{{") == text.count("}}"), rule["alert"]
            for inner in re.findall(r"{{(.*?)}}", text):
                assert re.match(r"\s*\$(labels\.\w+|value)\b", inner), (rule["alert"], inner)


def test_critical_alerts() -> None:
    critical = {r["alert"] for r in alert_rules() if r["labels"]["severity"] == "critical"}
    assert {"BotdDown", "BotdKillSwitchEngaged", "BotdVenueBan", "BotdJournalUnhealthy"} <= critical


def test_no_fills_is_explained_not_alerted() -> None:
    text = RULES.read_text()
    assert 'NOT an alert: "no fills' in text
    assert not any("fill" in r["alert"].lower() for r in alert_rules())


def test_halted_does_not_page_twice_with_the_kill_switch() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "BotdTradingHalted"]
    assert parse(rule["expr"]).names == {"botd_trading_state", "botd_kill_switch_engaged"}
    assert "unless" in rule["expr"]


# -- the Grafana dashboard -------------------------------------------------------------------


def test_dashboard_is_importable() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"]
    assert board["id"] is None, "an exported dashboard carries no database id"
    (ds_input,) = board["__inputs"]
    assert ds_input["name"] == "DS_PROMETHEUS"
    assert (ds_input["type"], ds_input["pluginId"]) == ("datasource", "prometheus")


def _datasource(obj: dict[str, Any]) -> dict[str, Any]:
    ds: dict[str, Any] = obj["datasource"]
    return ds


def test_every_panel_has_a_datasource_and_a_query() -> None:
    panels = dashboard_panels()
    assert len(panels) >= 20
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert _datasource(panel) == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert _datasource(target)["uid"] == "${DS_PROMETHEUS}"
            assert target["expr"].strip()
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["type"] in {"stat", "timeseries"}


def test_dashboard_rows_and_their_panels() -> None:
    board = dashboard()
    rows: dict[str, list[str]] = {}
    current: list[str] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            current.append(panel["title"])
    assert list(rows) == ["Overview", "Venues", "Orders", "Strategies", "Journal"]
    assert board["panels"][0]["type"] == "row"
    exprs: dict[str, str] = {}
    for panel in dashboard_panels(board):
        exprs[panel["title"]] = " ".join(t["expr"] for t in panel["targets"])

    def row_uses(row: str) -> set[str]:
        return set().union(*(parse(exprs[title]).names for title in rows[row]))

    assert {
        "up",
        "botd_trading_state",
        "botd_kill_switch_engaged",
        "botd_uptime_seconds",
        "botd_realized_pnl_today",
    } <= row_uses("Overview")
    assert {
        "botd_stream_connected",
        "botd_stream_staleness_seconds",
        "botd_stream_events_total",
        "botd_stream_reconnects_total",
        "botd_ratelimit_headroom_ratio",
        "botd_venue_http_429_total",
        "botd_venue_http_418_total",
    } <= row_uses("Venues")
    assert {
        "botd_orders_total",
        "botd_open_orders",
        "botd_tick_to_intent_seconds_bucket",
        "botd_intent_to_venue_seconds_bucket",
    } <= row_uses("Orders")
    assert {
        "botd_strategy_hook_seconds_total",
        "botd_strategy_hook_errors_total",
        "botd_strategy_hook_overruns_total",
        "botd_strategy_status",
        "botd_position",
        "botd_position_realized_pnl",
        "botd_position_unrealized_pnl",
    } <= row_uses("Strategies")
    assert {
        "botd_journal_commit_seconds_bucket",
        "botd_journal_backlog",
        "botd_journal_healthy",
    } <= row_uses("Journal")


def test_latency_panels_show_p50_and_p99() -> None:
    for panel in dashboard_panels():
        exprs = [t["expr"] for t in panel["targets"]]
        if any("_seconds_bucket" in e for e in exprs):
            quantiles = set(re.findall(r"histogram_quantile\((0\.\d+),", " ".join(exprs)))
            assert quantiles == {"0.5", "0.99"}, panel["title"]
            assert all("sum by (le," in e for e in exprs), "aggregate buckets before quantiles"


def test_grafana_variables_are_defined() -> None:
    board = dashboard()
    defined = {v["name"] for v in board["templating"]["list"]}
    assert defined == {"job", "instance", "venue", "strategy"}
    for var in board["templating"]["list"]:
        assert _datasource(var)["uid"] == "${DS_PROMETHEUS}"
        variable_selector(var["query"]["query"])
    builtins = {"__rate_interval", "__interval", "__range"}
    for where, expr in all_expressions().items():
        for used in re.findall(r"\$\{?(\w+)", expr):
            assert used in defined | builtins, (where, used)


def test_files_are_where_the_docs_say() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for path in (PROMETHEUS, RULES, DASHBOARD):
        assert f"deploy/{path.parent.name}/{path.name}" in docs


# -- promtool, when installed (Debian: apt-get install prometheus) ---------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def _promtool(*args: str, cwd: Path) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    out = _promtool("check", "rules", str(RULES), cwd=RULES.parent)
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


@needs_promtool
def test_promtool_checks_the_config(tmp_path: Path) -> None:
    """The config as shipped, with the token path pointed at a file that exists here."""
    token = tmp_path / "botd.token"
    token.write_text("x" * 32)
    text = PROMETHEUS.read_text().replace("/etc/prometheus/botd.token", str(token))
    (tmp_path / PROMETHEUS.name).write_text(text)
    shutil.copy(RULES, tmp_path / RULES.name)
    out = _promtool("check", "config", PROMETHEUS.name, cwd=tmp_path)
    assert "is valid prometheus config file syntax" in out
    assert "SUCCESS: 1 rule files found" in out


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    """deploy/prometheus/botd.rules.test.yml: alerts fire (and stay quiet) as intended."""
    out = _promtool("test", "rules", RULES_TESTS.name, cwd=RULES_TESTS.parent)
    assert "SUCCESS" in out


def test_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                taken[x, y] = panel["title"]
