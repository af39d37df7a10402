"""The Grafana dashboard: it shows what an SRE and a release manager look for (outcomes, success
and failure rate, rollbacks and time to rollback, releases in progress at their step, gate values
against thresholds, approvals waiting), and every panel reads the chosen data source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "release-gatekeeper.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


@pytest.fixture(scope="module")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _panels(dashboard["panels"]) if p["type"] != "row"]


def _by_title(panels: list[dict[str, Any]], title: str) -> dict[str, Any]:
    found = [p for p in panels if p["title"] == title]
    assert len(found) == 1, f"one panel titled {title!r}: found {len(found)}"
    return found[0]


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel["targets"]]


def test_the_dashboard_has_a_stable_uid_a_title_and_panels_with_unique_ids(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["uid"] == "release-gatekeeper"
    assert dashboard["title"] == "Release gatekeeper"
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))


def test_every_panel_and_query_reads_the_chosen_prometheus_data_source(
    dashboard: dict[str, Any], panels: list[dict[str, Any]]
) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_the_app_environment_and_gate_filters_are_variables_the_panels_use(
    dashboard: dict[str, Any], panels: list[dict[str, Any]]
) -> None:
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"app", "environment", "gate"} <= names
    per_release = _by_title(panels, "Releases by outcome")
    assert all(
        'app=~"$app"' in e and 'environment=~"$environment"' in e for e in _exprs(per_release)
    )


def test_panels_do_not_overlap_on_the_grid(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _panels(dashboard["panels"]):
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_releases_over_time_are_split_by_outcome(panels: list[dict[str, Any]]) -> None:
    (expr,) = _exprs(_by_title(panels, "Releases by outcome"))
    assert "sum by (outcome)" in expr and "gatekeeper_releases_total" in expr


@pytest.mark.parametrize(
    ("title", "outcomes"),
    [("Success rate", 'outcome="promoted"'), ("Failure rate", 'outcome=~"rolled_back|failed"')],
)
def test_success_and_failure_rate_divide_outcomes_by_every_release(
    panels: list[dict[str, Any]], title: str, outcomes: str
) -> None:
    panel = _by_title(panels, title)
    (expr,) = _exprs(panel)
    numerator, denominator = expr.split("\n/\n")
    assert outcomes in numerator and "outcome" not in denominator
    assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_rollbacks_are_shown_by_reason_with_the_time_they_took(
    panels: list[dict[str, Any]],
) -> None:
    (by_reason,) = _exprs(_by_title(panels, "Rollbacks by reason"))
    assert "reason_kind" in by_reason and "gatekeeper_rollbacks_total" in by_reason
    timing = _by_title(panels, "Time to rollback")
    assert all("gatekeeper_time_to_rollback_seconds" in e for e in _exprs(timing))
    assert any("histogram_quantile(0.95" in e for e in _exprs(timing))
    assert timing["fieldConfig"]["defaults"]["unit"] == "s"


def test_releases_in_progress_show_their_step_and_how_long_they_have_been_there(
    panels: list[dict[str, Any]],
) -> None:
    table = _by_title(panels, "Releases in progress")
    at_step = _exprs(table)[0]
    assert "time() -" in at_step and "gatekeeper_release_step_started_timestamp_seconds" in at_step
    assert "step" in at_step.split("by (")[1].split(")")[0]
    (timeline,) = _exprs(_by_title(panels, "Steps over time"))
    assert "gatekeeper_releases_in_progress" in timeline


def test_gate_values_are_drawn_against_their_thresholds_one_panel_per_gate(
    panels: list[dict[str, Any]],
) -> None:
    panel = _by_title(panels, "Gate $gate: value against threshold")
    value, threshold = _exprs(panel)
    assert "gatekeeper_gate_value" in value and "gatekeeper_gate_threshold" in threshold
    assert panel["repeat"] == "gate"
    (override,) = panel["fieldConfig"]["overrides"]
    assert override["matcher"]["options"].endswith("threshold$")
    assert panel["targets"][1]["legendFormat"].endswith("threshold")


def test_approvals_waiting_show_how_many_and_for_how_long(panels: list[dict[str, Any]]) -> None:
    count, oldest = _exprs(_by_title(panels, "Approvals waiting by app"))
    assert "gatekeeper_approvals_waiting" in count
    assert "time() -" in oldest and "gatekeeper_approval_oldest_waiting_timestamp_seconds" in oldest
