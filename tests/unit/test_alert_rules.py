"""The operators' signals as files: the Prometheus alerting rules, the Grafana dashboard and the compose stack's
scrape configuration. No Prometheus runs here (promtool is a 10-minute Go build), so this checks what promtool's
`check rules` would and a little more: every expression parses as PromQL (promql-parser, the Rust parser
GreptimeDB uses), every metric it reads is one the code registers (a misspelt name would make an alert that can
never fire), every rule has a severity and a summary, and the scrape jobs reach each service on its contract port.
The last tests break a copy on purpose to show the checks catch it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.unit.test_docker_compose import LIB_SH, server_ports

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
CODE = [ROOT / "shared" / "src", *sorted((ROOT / "services").glob("*/src"))]
# Exported by prometheus_client's process, platform and GC collectors, and by Prometheus itself.
STANDARD = frozenset(
    {
        "up",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_objects_collected_total",
    }
)


# The series a metric of each type exports, by suffix (prometheus_client).
SERIES = {
    "Counter": ("_total", "_created"),
    "Histogram": ("_bucket", "_count", "_sum", "_created"),
    "Gauge": ("",),
    "gauge_by": ("",),
}


def registered_metrics() -> set[str]:
    """Every series the code's metrics export: Counter("x", …) → x_total, Histogram → x_bucket/_count/_sum, Gauge
    and service.gauge_by("x", …) → x."""
    pattern = re.compile(r'(Counter|Gauge|Histogram|gauge_by)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
    return {
        name + suffix
        for root in CODE
        for path in root.rglob("*.py")
        for kind, name in pattern.findall(path.read_text())
        for suffix in SERIES[kind]
    }


def metric_names(expr: str) -> Iterator[str]:
    """The metric of every selector in a PromQL expression (raises ValueError if it does not parse)."""
    stack: list[Any] = [promql_parser.parse(expr)]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.VectorSelector):
            yield node.name
        elif isinstance(node, promql_parser.MatrixSelector):
            stack.append(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            stack += [node.lhs, node.rhs]
        elif isinstance(node, promql_parser.AggregateExpr):
            stack += [node.expr] + ([node.param] if node.param is not None else [])
        elif isinstance(node, promql_parser.Call):
            stack += list(node.args)
        elif isinstance(node, promql_parser.SubqueryExpr | promql_parser.ParenExpr | promql_parser.UnaryExpr):
            stack.append(node.expr)


def unknown_metrics(expr: str, known: set[str]) -> list[str]:
    """The series an expression reads that nothing exports (a counter read without `_total` is one)."""
    return [name for name in metric_names(expr) if name not in known and name not in STANDARD]


def rule_problems(rules: dict[str, Any], known: set[str]) -> list[str]:
    problems, seen = [], set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert", "<no name>")
            if name in seen:
                problems.append(f"{name}: twice")
            seen.add(name)
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                problems.append(f"{name}: no severity")
            if not rule.get("annotations", {}).get("summary"):
                problems.append(f"{name}: no summary")
            try:
                problems += [f"{name}: reads {m}, which nothing exports" for m in unknown_metrics(rule["expr"], known)]
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    return problems


def dashboard_problems(dashboard: dict[str, Any], known: set[str]) -> list[str]:
    problems = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            try:
                problems += [f"{panel['title']}: reads {m}" for m in unknown_metrics(target["expr"], known)]
            except ValueError as exc:
                problems.append(f"{panel['title']}: {exc}")
    return problems


@pytest.fixture(scope="module")
def known() -> set[str]:
    return registered_metrics()


def _rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return loaded


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    return loaded


def test_the_code_registers_what_the_operators_are_promised(known: set[str]) -> None:
    assert {
        "xinfang_consumer_lag",
        "xinfang_outbox_backlog",
        "xinfang_outbox_oldest_age_seconds",
        "xinfang_http_requests_total",
        "xinfang_http_request_seconds_bucket",
        "xinfang_dead_lettered_messages_total",
        "xinfang_consumer_halted",
        "supervision_open_deadlines",
        "notify_notices_waiting",
        "stats_surge_alerts_open",
    } <= known


def test_every_alert_parses_reads_exported_metrics_and_says_how_bad_and_what(known: set[str]) -> None:
    rules = _rules()
    assert rule_problems(rules, known) == []
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    # What issue 19 asks to be alerted on: lag growing, outbox age, a halted consumer, DLQ, overdue rising.
    assert {
        "XinfangConsumerLagGrowing",
        "XinfangOutboxStale",
        "XinfangConsumerHalted",
        "XinfangDeadLetters",
        "XinfangOverdueDeadlinesRising",
    } <= alerts


def test_every_dashboard_panel_parses_and_reads_exported_metrics(known: set[str]) -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["panels"]
    assert dashboard_problems(dashboard, known) == []


def test_prometheus_scrapes_each_service_on_its_contract_port_and_loads_the_rules() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    ports = server_ports(LIB_SH.read_text())  # the five services and the console
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    assert jobs == {
        f"xinfang-{service}": {"names": [service], "type": "A", "port": port, "refresh_interval": "15s"}
        for service, port in ports.items()
    }
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_checks_catch_a_misspelt_metric_a_broken_expression_and_a_missing_severity(known: set[str]) -> None:
    rules = _rules()
    first = rules["groups"][0]["rules"][0]
    first["expr"] = "sum(xinfang_consumer_lagg) > 1"
    second = rules["groups"][0]["rules"][1]
    second["expr"] = "max(xinfang_consumer_halted"
    del rules["groups"][1]["rules"][0]["labels"]["severity"]
    problems = rule_problems(rules, known)
    assert any("xinfang_consumer_lagg" in p for p in problems)
    assert any(p.startswith(f"{second['alert']}:") and "parenthes" in p for p in problems)
    assert any(p.endswith("no severity") for p in problems)
    dashboard = _dashboard()
    dashboard["panels"][0]["targets"][0]["expr"] = "rate(xinfang_records_consumd_total[5m])"
    dashboard["panels"][1]["targets"][0]["expr"] = "rate(xinfang_http_requests[5m])"  # a counter without _total
    first, second = dashboard["panels"][0]["title"], dashboard["panels"][1]["title"]
    assert dashboard_problems(dashboard, known) == [
        f"{first}: reads xinfang_records_consumd_total",
        f"{second}: reads xinfang_http_requests",
    ]
