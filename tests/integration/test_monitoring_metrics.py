"""The shipped Prometheus rules and Grafana dashboard against a real daemon's ``/metrics``.

Every series the PromQL selects, every label it matches on, and every value of the enumerated
labels (``state``, ``status``, ``scope``) must exist in what a running daemon exports, so a
renamed metric or label breaks this test rather than silently emptying a panel or an alert.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.daemon_proc import Daemon, make_workspace, run_args
from tests.integration.test_control_api import RESTER, TAKER, Api
from tests.monitoring_files import (
    PROMETHEUS,
    PROMETHEUS_SERIES,
    RULES,
    TARGET_LABELS,
    alert_rules,
    all_expressions,
    dashboard,
    load_yaml,
    parse,
    variable_selector,
)

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "unknown": ("",),
}
# Labels whose every value the daemon exports (one sample per candidate state).
_ENUMERATED = ("state", "status", "scope")
# Exported but deliberately on neither the dashboard nor in an alert.
_UNUSED = {"botd_ratelimit_used"}


@dataclass
class Exposition:
    families: dict[str, str] = field(default_factory=dict)  # family name -> type
    series: set[str] = field(default_factory=set)  # every name PromQL may select
    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))


def read_exposition(text: str) -> Exposition:
    found = Exposition()
    for family in text_string_to_metric_families(text):
        found.families[family.name] = family.type
        found.series.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        for sample in family.samples:
            found.series.add(sample.name)
            found.labels[sample.name].update(sample.labels)
            for label, value in sample.labels.items():
                found.values[sample.name, label].add(value)
    return found


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A daemon that has placed, filled and rested orders (so the order histograms and the
    position gauges have samples)."""
    tmp = tmp_path_factory.mktemp("monitoring")
    ws = make_workspace(tmp, examples=False)
    (ws["strategies"] / "rester.py").write_text(RESTER)
    (ws["strategies"] / "taker.py").write_text(TAKER)
    daemon = Daemon(run_args(ws), cwd=tmp)
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        daemon.wait_for(lambda r: r["event"] == "order accepted" and r["strategy"] == "rester")
        daemon.wait_for(lambda r: r["event"] == "fill")
        yield Api(ws, daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()


@pytest.fixture(scope="module")
def exposition(api: Api) -> Exposition:
    """One scrape, taken before any test changes the daemon's state."""
    assert api.call("GET", "/metrics", token=None).status_code == 401
    resp = api.call("GET", "/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    return read_exposition(resp.text)


def test_the_scrape_is_read() -> None:
    registry = CollectorRegistry()
    Counter("botd_orders", "Orders.", ["venue", "outcome"], registry=registry).labels(
        "paper", "filled"
    ).inc()
    Histogram("botd_x_seconds", "X.", registry=registry).observe(0.5)
    Gauge("botd_g", "G.", ["venue"], registry=registry)  # no samples yet
    found = read_exposition(generate_latest(registry).decode())
    expected = {"botd_orders": "counter", "botd_x_seconds": "histogram", "botd_g": "gauge"}
    assert expected.items() <= found.families.items()
    assert {"botd_orders_total", "botd_x_seconds_bucket", "botd_x_seconds_count"} <= found.series
    assert "botd_g" in found.series, "a family without samples still has its name"
    assert "botd_orders" not in found.series, "a counter is stored as <name>_total"
    assert "botd_g_total" not in found.series
    assert "botd_x_seconds" not in found.series
    assert found.labels["botd_orders_total"] == {"venue", "outcome"}
    assert found.labels["botd_x_seconds_bucket"] == {"le"}
    assert found.values["botd_orders_total", "outcome"] == {"filled"}
    assert "botd_g" not in found.labels


def test_every_referenced_series_is_exported(exposition: Exposition) -> None:
    missing = {
        where: sorted(parse(expr).names - exposition.series - PROMETHEUS_SERIES)
        for where, expr in all_expressions().items()
    }
    assert not {k: v for k, v in missing.items() if v}


def test_every_matched_label_and_enumerated_value_exists(exposition: Exposition) -> None:
    problems: list[str] = []
    for where, expr in all_expressions().items():
        for sel in parse(expr).selectors:
            if sel.name in PROMETHEUS_SERIES:
                continue
            labels = exposition.labels.get(sel.name)
            if labels is None:  # e.g. handler errors in a healthy daemon: only target labels
                if {label for label, _, _ in sel.matchers} - TARGET_LABELS:
                    problems.append(f"{where}: {sel.name} has no samples to check labels on")
                continue
            for label, op, value in sel.matchers:
                if label not in labels | TARGET_LABELS:
                    problems.append(f"{where}: {sel.name} has no label {label!r}")
                elif label in _ENUMERATED and op == "=" and value:
                    known = exposition.values[sel.name, label]
                    if value not in known:
                        problems.append(f"{where}: {sel.name}{{{label}={value!r}}} not in {known}")
    assert not problems, "\n".join(problems)


def test_dashboard_variables_read_real_labels(exposition: Exposition) -> None:
    for var in dashboard()["templating"]["list"]:
        selector, label = variable_selector(var["query"]["query"])
        (name,) = parse(selector).names
        assert label in exposition.labels.get(name, set()) | TARGET_LABELS, var["name"]


def test_every_exported_metric_is_watched(exposition: Exposition) -> None:
    """A new metric shows up here until it gets a panel or an alert (or joins _UNUSED)."""
    used: set[str] = set()
    for expr in all_expressions().values():
        used |= parse(expr).names
    unwatched = []
    for name, kind in exposition.families.items():
        if name.endswith("_created"):  # a counter's or histogram's creation time
            continue
        names = {name + suffix for suffix in _SUFFIXES[kind]}
        if not names & used and not names & _UNUSED:
            unwatched.append(name)
    assert not unwatched


# -- a real Prometheus scraping the daemon, when installed (Debian: apt-get install prometheus) --

PROMETHEUS_BIN = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        resp = requests.get(self.url + path, params=params, timeout=10)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.25)
        raise AssertionError(f"{what}: not within {timeout}s")


def _grafana_to_promql(expr: str) -> str:
    """What Grafana sends for the dashboard's variables set to their defaults (All)."""
    expr = expr.replace("$__rate_interval", "10s").replace('job=~"$job"', 'job=~"botd"')
    return re.sub(r"\$\w+", ".*", expr)


@pytest.mark.skipif(PROMETHEUS_BIN is None, reason="prometheus is not installed")
def test_prometheus_scrapes_the_daemon_and_alerts(
    api: Api, exposition: Exposition, tmp_path: Path
) -> None:
    """The shipped prometheus.yml (target and token path pointed at this daemon, faster
    intervals) and rules in a real Prometheus: the scrape is up with the token, every dashboard
    query and rule evaluates, and engaging the kill switch fires its alert."""
    assert PROMETHEUS_BIN is not None
    assert exposition.series  # taken before the kill switch below
    token = tmp_path / "botd.token"
    token.write_text(api.token)
    config = load_yaml(PROMETHEUS)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["authorization"]["credentials_file"] = str(token)
    job["static_configs"][0]["targets"] = [api.url.removeprefix("http://")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / RULES.name)
    port = _free_port()
    proc = subprocess.Popen(
        [
            PROMETHEUS_BIN,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def answers() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return requests.get(prom.url + "/-/ready", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        prom.wait_for(answers, "prometheus ready")

        def scraped() -> bool:
            found = prom.query('up{job="botd"}')
            return bool(found) and found[0]["value"][1] == "1"

        prom.wait_for(scraped, "botd scraped (up == 1) with the token")
        # Enough scrapes for rate() and increase() over 10 s windows.
        prom.wait_for(
            lambda: bool(prom.query("rate(botd_stream_events_total[10s]) > 0")),
            "two scrapes of the stream counter",
        )

        empty = []
        for where, expr in all_expressions().items():
            if where.startswith("rule "):
                continue
            if not prom.query(_grafana_to_promql(expr)):
                empty.append(where)
        # Only panels of what this daemon has not done (no errors, no halted scope, no closed
        # position so no per-strategy realized PnL today) may be empty.
        allowed_empty = {"Non-active scopes", "Daemon errors", "Realized PnL today by strategy"}
        assert not [w for w in empty if not any(a in w for a in allowed_empty)], empty

        groups = prom.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == len(alert_rules())
        prom.wait_for(
            lambda: all(
                r.get("lastEvaluation", "").startswith("20")
                for g in prom.get("/api/v1/rules")["groups"]
                for r in g["rules"]
            ),
            "every rule evaluated once",
        )
        bad = [
            (r["name"], r.get("lastError"))
            for g in prom.get("/api/v1/rules")["groups"]
            for r in g["rules"]
            if r["health"] != "ok"
        ]
        assert not bad
        active = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["alerts"]}
        # A healthy paper daemon raises none, unless this machine is so busy that the event
        # loop or the hooks run late.
        assert active <= {"BotdEventLoopLagHigh", "BotdStrategyOverruns"}, active

        api.ok("POST", "/v1/kill", json={"reason": "monitoring test"})

        def kill_alert() -> bool:
            alerts = prom.get("/api/v1/alerts")["alerts"]
            return any(
                a["labels"]["alertname"] == "BotdKillSwitchEngaged" and a["state"] == "firing"
                for a in alerts
            )

        prom.wait_for(kill_alert, "BotdKillSwitchEngaged firing")
        # The halted state that comes with it does not page a second time.
        alerts = prom.get("/api/v1/alerts")["alerts"]
        assert "BotdTradingHalted" not in {a["labels"]["alertname"] for a in alerts}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
