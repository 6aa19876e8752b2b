"""The Prometheus and Grafana configuration in `deploy/`: valid for the tools that read it,
its rules tested, and every query about metrics the services actually produce, under labels
that never identify a customer or an order."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from devtools import stack

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = PROMETHEUS / "rules" / "amends.rules.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "amends.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "amends.yml"

INSTALL_HINT = "install Debian's prometheus package (apt-get install prometheus)"

JOBS = {"amends-intake": "127.0.0.1:8001", "amends-decision": "127.0.0.1:8002",
        "amends-fulfilment": "127.0.0.1:8003"}

# What the services expose (name: type), the contract the rules and the dashboard are written
# against.
AMENDS_METRICS = {
    "amends_upstream_events": "counter",
    "amends_incidents_detected": "counter",
    "amends_decisions": "counter",
    "amends_caps_applied": "counter",
    "amends_compensation_issued": "counter",
    "amends_budget_remaining": "gauge",
    "amends_budget_limit": "gauge",
    "amends_budget_reserved": "counter",
    "amends_restitution_decided": "counter",
    "amends_restitution_issued": "counter",
    "amends_actions": "counter",
    "amends_dead_letters": "counter",
    "amends_time_to_apology_seconds": "histogram",
    "amends_consumer_lag_messages": "gauge",
    "amends_batch_failures": "counter",
    "amends_published_messages": "counter",
    "amends_effects_paused": "counter",
    "amends_remote_credentials_valid": "gauge",
    "amends_public_reply_seconds": "histogram",
    "amends_public_reply_draft_seconds": "histogram",
    "amends_public_replies_open": "gauge",
    "amends_public_replies_overdue": "gauge",
    "amends_public_replies_breached": "gauge",
    "amends_public_reply_oldest_open_seconds": "gauge",
    "amends_public_reply_sla_seconds": "gauge",
    "amends_status_posts": "counter",
    "amends_aftermath_closed": "gauge",
    "amends_aftermath_reordered": "gauge",
    "amends_aftermath_complained_again": "gauge",
    "amends_fairness_findings": "gauge",
    "amends_held_decisions": "gauge",
    "amends_outage_decisions": "counter",
    "amends_paced_issues": "counter",
    "amends_pace_wait_seconds": "counter",
}

# Label names the queries may use: the services' bounded labels, FastStream's, Prometheus'
# target labels and the alerts' own.
KNOWN_LABELS = {
    "job", "instance", "le",
    "type", "detection", "status", "cap", "kind", "currency", "result", "service", "reason",
    "topic", "partition", "handler", "remote", "bound", "queue",
    "app_name", "broker", "destination", "exception_type",
    "severity", "slo",
    "stage", "outcome",
    "days", "dimension",
    "state", "provider",  # an outage's held remedies, and the paced providers (ADR 0015)
}
IDENTIFYING = re.compile(r"customer|client|user|e_?mail|mail|phone|contact|address|order|"
                         r"subject|incident_id|decision_id|action_id|idempotency", re.IGNORECASE)


# --- running promtool -------------------------------------------------------------------

def prometheus_tool(name: str) -> str:
    """The path of `name` (promtool, prometheus); fails with how to get it, or skips when
    AMENDS_SKIP_PROMTOOL=1."""
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("AMENDS_SKIP_PROMTOOL") == "1":
        pytest.skip(f"{name} is not installed and AMENDS_SKIP_PROMTOOL=1")
    pytest.fail(f"{name} is not on PATH: {INSTALL_HINT}, "
                "or set AMENDS_SKIP_PROMTOOL=1 to skip these checks")


def promtool(*args: str | Path) -> str:
    command = [prometheus_tool("promtool"), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                            cwd=ROOT)
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"{' '.join(command[1:])} failed:\n{output}"
    return output


def test_prometheus_config_is_valid() -> None:
    output = promtool("check", "config", CONFIG)
    assert "1 rule files found" in output


def test_the_local_stacks_config_is_valid(tmp_path: Path) -> None:
    """What `python -m devtools stack up` gives its Prometheus: the same config with the
    services' ports, rules named from wherever it is written."""
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(
        stack.prometheus_config({"intake": 18001, "decision": 18002, "fulfilment": 18003})))
    output = promtool("check", "config", path)
    assert "1 rule files found" in output
    assert f"Checking {RULES}" in output  # the repository's rules, wherever the config is


def test_rules_are_valid() -> None:
    promtool("check", "rules", RULES)


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool rule tests in deploy/prometheus/tests"
    promtool("test", "rules", *RULE_TESTS)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool has no parser command, so each query becomes a recording rule to check."""
    rules = [{"record": f"dashboard:query:{n}", "expr": with_variables_filled(expr)}
             for n, expr in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", path)


# --- reading the files ------------------------------------------------------------------

def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)  # rows may nest their panels


def dashboard_targets() -> list[dict[str, Any]]:
    return [target for panel in panels(dashboard()) for target in panel.get("targets", [])]


LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.DOTALL)


def variable_queries() -> list[str]:
    queries = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def dashboard_queries() -> list[str]:
    """Every PromQL expression on the dashboard, variable queries included."""
    exprs = [target["expr"] for target in dashboard_targets()]
    for query in variable_queries():
        match = LABEL_VALUES.match(query)
        exprs.append(match.group(1) if match else query)
    return exprs


def with_variables_filled(expr: str) -> str:
    for variable, value in {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s",
                            "${job}": "amends-.+", "$job": "amends-.+"}.items():
        expr = expr.replace(variable, value)
    return expr


# --- a small reader of PromQL: the metric names and label names an expression uses -------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub(" ", bare)
    bare = _GROUPING.sub(" ", bare)
    bare = _RANGE.sub(" ", bare)
    return {name for name, call in _IDENTIFIER.findall(bare)
            if not call and name not in _KEYWORDS}


def label_names(expr: str) -> set[str]:
    bare = _STRING.sub('""', expr)
    names = {name for matchers in _MATCHERS.findall(bare)
             for name in _MATCHER_LABEL.findall(matchers)}
    for grouping in _GROUPING.findall(bare):
        names |= {label.strip() for label in grouping.split(",") if label.strip()}
    return names


def test_the_promql_reader_finds_metrics_and_labels() -> None:
    expr = ('sum by (job, le) (rate(x_bucket{le=~"300(\\\\.0)?", job=~"$job"}[$__rate_interval]'
            ' offset 5m)) / on (job) group_left y:z:rate5m > bool 1e3 unless absent(w)')
    assert metric_names(expr) == {"x_bucket", "y:z:rate5m", "w"}
    assert label_names(expr) == {"job", "le"}


# --- what the services produce ------------------------------------------------------------

def exposed(name: str, kind: str) -> set[str]:
    """The series names prometheus_client exposes for one metric."""
    if kind == "counter":
        return {f"{name}_total"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def faststream_metrics() -> set[str]:
    """FastStream's Kafka middleware metrics, as the installed version names them."""
    registry = CollectorRegistry()
    KafkaPrometheusMiddleware(registry=registry, app_name="amends")
    names = set()
    for family in registry.collect():
        names |= exposed(family.name, family.type)
    return names


def produced() -> set[str]:
    amends = {series for name, kind in AMENDS_METRICS.items() for series in exposed(name, kind)}
    return amends | faststream_metrics() | recorded_names() | {"up"}


def test_faststream_metrics_include_the_ones_the_rules_use() -> None:
    assert {"faststream_received_messages_total", "faststream_received_processed_messages_total",
            "faststream_received_processed_messages_duration_seconds_bucket",
            } <= faststream_metrics()


def test_rules_use_only_metrics_the_services_produce() -> None:
    known = produced()
    unknown = {(rule.get("record") or rule["alert"], name) for rule in rules()
               for name in metric_names(rule["expr"]) if name not in known}
    assert not unknown


def test_dashboard_uses_only_metrics_the_services_produce() -> None:
    known = produced()
    unknown = {(expr, name) for expr in dashboard_queries() for name in metric_names(expr)
               if name not in known}
    assert not unknown


# --- labels --------------------------------------------------------------------------------

def rule_labels() -> set[str]:
    names: set[str] = set()
    for rule in rules():
        names |= label_names(rule["expr"])
        names |= set(rule.get("labels", {}))
        for text in rule.get("annotations", {}).values():
            names |= set(re.findall(r"\$labels\.(\w+)", text))
    return names


def dashboard_labels() -> set[str]:
    names = {label for expr in dashboard_queries() for label in label_names(expr)}
    for target in dashboard_targets():
        names |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    for query in variable_queries():
        match = LABEL_VALUES.match(query)
        if match:
            names.add(match.group(2))
    return names


@pytest.mark.parametrize("where", ["rules", "dashboard"])
def test_no_label_identifies_a_customer_or_an_order(where: str) -> None:
    names = rule_labels() if where == "rules" else dashboard_labels()
    assert names, "the label reader found nothing: it is broken"
    assert not {name for name in names if IDENTIFYING.search(name)}
    assert names <= KNOWN_LABELS


# --- the Prometheus configuration --------------------------------------------------------

def test_each_service_is_scraped_as_its_own_job() -> None:
    config = load_yaml(CONFIG)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: [target for group in job["static_configs"]
                              for target in group["targets"]]
            for job in config["scrape_configs"]}
    assert jobs == {job: [target] for job, target in JOBS.items()}
    # a target label named like a metric label would rename the metric's to exported_*
    assert all("labels" not in group for job in config["scrape_configs"]
               for group in job["static_configs"])


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    assert alerts()
    for alert in alerts():
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        assert {"summary", "description", "runbook"} <= set(alert["annotations"]), alert["alert"]


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_every_recording_rule_has_its_value_tested() -> None:
    tested: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("promql_expr_test", []):
                if check.get("exp_samples"):
                    tested |= metric_names(check["expr"])
    assert recorded_names() - tested == set()


def test_rule_tests_and_config_point_at_the_rules_file() -> None:
    for path in RULE_TESTS:
        files = load_yaml(path)["rule_files"]
        assert [(path.parent / f).resolve() for f in files] == [RULES.resolve()], path.name


# --- Grafana -------------------------------------------------------------------------------

def test_grafana_provisions_prometheus_and_the_dashboards_folder() -> None:
    sources = load_yaml(DATASOURCES)["datasources"]
    assert [(s["type"], s["url"]) for s in sources] == [("prometheus", "http://127.0.0.1:9090")]
    providers = load_yaml(PROVIDERS)["providers"]
    assert [p["type"] for p in providers] == ["file"]
    assert (ROOT / providers[0]["options"]["path"]).resolve() == DASHBOARD.parent.resolve()


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel.get("gridPos"), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_shows_what_operators_look_for() -> None:
    used = {name for expr in dashboard_queries() for name in metric_names(expr)}
    assert {
        "faststream_received_messages_total",  # traffic
        "job:faststream_received_processed_messages:error_ratio_rate5m",  # errors
        "faststream_received_processed_messages_duration_seconds_bucket",  # latency
        "amends_consumer_lag_messages",  # saturation, by topic and partition
        "amends_time_to_apology_seconds_bucket",
        "amends_time_to_apology_seconds_count",
        "kind_currency:amends_compensation_issued:increase1h",
        "currency:amends_restitution_issued:increase1h",
        "currency:amends_restitution_decided:increase1h",
        "currency:amends_budget_remaining:ratio",
        "currency:amends_budget_burn_rate:ratio1h",
        "amends_dead_letters_total",
    } <= used
