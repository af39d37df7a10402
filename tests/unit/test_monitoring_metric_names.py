"""Every metric name in the Grafana dashboard's queries and in the alert expressions is one that
`gatekeeper serve` exports: names come from the service's own registry, so a renamed metric
fails here before a panel goes blank or an alert goes silent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper.engine.service_metrics import ServiceMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "release-gatekeeper.json"
RULES = REPO / "deploy" / "prometheus" / "gatekeeper-rules.yaml"
# Prometheus' own series: the alerts read `up` to tell a newborn counter from a target that
# Prometheus had not scraped yet.
PROMETHEUS_SERIES = {"up"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "group_left", "group_right"}
_MODIFIERS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME_MATCHER = re.compile(r"__name__\s*(=~|=)\s*\"([^\"]*)\"")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<expr>.*),\s*\w+\s*\)\s*$", re.S)


def exported_names() -> dict[str, str]:
    """Each series name the service exports -> its metric family."""
    names: dict[str, str] = {}
    for family in ServiceMetrics().registry.collect():
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's `$variables` allowed)."""
    names = {
        alternative
        for _, value in _NAME_MATCHER.findall(expr)
        for alternative in value.split("|")
        if alternative
    }
    text = re.sub(r"\"(\\.|[^\"\\])*\"|'(\\.|[^'\\])*'", '""', expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "0", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _MODIFIERS.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if re.match(r"\s*\(", text[match.end() :]):  # a function or an aggregation
            continue
        if word.lower() not in KEYWORDS:
            names.add(word)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expression) for every query of the dashboard: panels, variables, annotations."""
    dash = json.loads(DASHBOARD.read_text())
    found = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in _panels(dash["panels"])
        for t in p.get("targets", [])
    ]
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query)
        assert match is not None, f"variable {var['name']}: expected label_values(...): {query}"
        found.append((f"variable {var['name']}", match["expr"]))
    for annotation in dash["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        (f"alert {rule['alert']}", rule["expr"])
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    ]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (app) (rate(a_total{code=~"5.."}[5m]))', {"a_total"}),
        ("x unless x offset 10m and on (job, instance) (up offset 10m)", {"x", "up"}),
        ("histogram_quantile(0.95, sum by (le) (increase(h_bucket[1d])))", {"h_bucket"}),
        ('time() - max by (app, step) (ts{step="holding"}) > 4 * 3600', {"ts"}),
        ('sum(increase(c_total{app=~"$app"}[$__range])) / sum(c_total)', {"c_total"}),
        ('{__name__=~"a_total|b", app=~"$app"}', {"a_total", "b"}),
        ("max(g) < 1 or absent(g)", {"g"}),
        ("sum(x) by (gate) / ignoring (le) group_left y", {"x", "y"}),
        ("1e3 * rate(x[1h:5m])", {"x"}),
    ],
)
def test_the_name_reader_finds_exactly_the_metrics_of_an_expression(
    expr: str, names: set[str]
) -> None:
    assert metric_names(expr) == names


def test_the_service_exports_histograms_and_counters_with_their_suffixes() -> None:
    names = exported_names()
    assert "gatekeeper_rollbacks_total" in names
    assert "gatekeeper_rollbacks" not in names
    for suffix in ("_bucket", "_sum", "_count"):
        assert f"gatekeeper_time_to_rollback_seconds{suffix}" in names
    assert "gatekeeper_leader" in names


@pytest.mark.parametrize(
    ("where", "expr"),
    [pytest.param(w, e, id=w) for w, e in dashboard_queries() + alert_expressions()],
)
def test_every_query_reads_only_metrics_the_service_exports(where: str, expr: str) -> None:
    allowed = set(exported_names())
    if where.startswith("alert "):
        allowed |= PROMETHEUS_SERIES
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = names - allowed
    assert not unknown, f"{where} reads {sorted(unknown)}, which the service does not export"


def test_the_dashboard_shows_every_metric_family_the_service_exports() -> None:
    families = exported_names()
    shown = {families[n] for _, expr in dashboard_queries() for n in metric_names(expr)}
    assert set(families.values()) - shown == set()
