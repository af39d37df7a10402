"""Gate specs: loading YAML, refusing bad specs with a message naming the field, defaults."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
import yaml

from gatekeeper.domain.errors import InvalidInput
from gates.spec import (
    Comparison,
    GateSet,
    GateSpec,
    Kind,
    Metric,
    NoData,
    default_gates,
    load_gate_set,
    parse_gate_set,
)

VALID = dedent(
    """\
    profile: istio
    gates:
      - name: abort
        metric: error_ratio
        threshold: 0.05
        window: 2m
        interval: 10s
        guard: true
      - name: sustained
        metric: error_ratio
        threshold: 0.02
        window: 5m
        sustained_for: 15m
        confirm_window: 15m
        min_requests: 500
      - name: latency
        metric: latency
        quantile: 0.99
        threshold: 0.75
        window: 300
      - name: vs-stable
        kind: baseline
        metric: error_ratio
        max_increase: 0.01
        no_data: fail
        inconclusive_deadline: 1h
      - name: queue-depth
        query: 'max by (pod) (queue_depth{app="$app", version="$version"})'
        requests_query: 'sum(increase(jobs_total{app="$app"}[$window]))'
        comparison: ">="
        threshold: 1000
    """
)


def test_load_valid_gate_set(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(VALID)
    gs = load_gate_set(path)
    assert gs.profile == "istio"
    assert [g.name for g in gs.gates] == [
        "abort",
        "sustained",
        "latency",
        "vs-stable",
        "queue-depth",
    ]
    abort, sustained, latency, baseline, queue = gs.gates
    assert (abort.metric, abort.threshold, abort.window, abort.interval) == (
        Metric.ERROR_RATIO,
        0.05,
        120.0,
        10.0,
    )
    assert gs.guards == (abort,)
    assert (sustained.sustained_for, sustained.confirm_s, sustained.min_requests) == (
        900.0,
        900.0,
        500,
    )
    assert (latency.quantile, latency.window, latency.subject) == (0.99, 300.0, "p99 latency")
    assert (baseline.kind, baseline.no_data, baseline.inconclusive_deadline) == (
        Kind.BASELINE,
        NoData.FAIL,
        3600.0,
    )
    assert (queue.comparison, queue.metric, queue.subject) == (Comparison.GE, None, "value")
    assert queue.requests_query is not None


def test_gate_list_alone_is_a_gate_set_with_the_http_profile() -> None:
    gs = parse_gate_set([{"name": "a", "metric": "error_ratio", "threshold": 0.1}])
    assert gs.profile == "http"
    assert gs.gates[0].min_requests == 100


def test_durations_serialize_back_as_text() -> None:
    dumped = default_gates().model_dump(mode="json")
    assert dumped["gates"][1]["sustained_for"] == "15m"
    assert GateSet.model_validate(dumped) == default_gates()


def _one(**fields: Any) -> dict[str, Any]:
    gate = {"name": "g", "metric": "error_ratio", "threshold": 0.05}
    gate.update(fields)
    return {"gates": [{k: v for k, v in gate.items() if v is not None}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            _one(tresh=0.05), "gates.0.tresh: is not a known field", id="unknown-field-named"
        ),
        pytest.param(
            {"gates": [], "colour": "red"},
            "colour: is not a known field",
            id="unknown-top-level-field-named",
        ),
        pytest.param(
            _one(threshold=None),
            "gate 'g': a threshold gate needs threshold",
            id="missing-threshold",
        ),
        pytest.param(
            _one(query='x{app="$app"}'),
            "gate 'g': set exactly one of metric (error_ratio, latency, requests, cpu, memory, "
            "db_pool) or query",
            id="both-metric-and-query",
        ),
        pytest.param(_one(metric=None), "set exactly one of metric", id="neither-metric-nor-query"),
        pytest.param(
            _one(window="soon"),
            "gates.0.window: duration 'soon' is not a duration",
            id="bad-duration-text",
        ),
        pytest.param(
            _one(window="5 minutes"),
            "gates.0.window: duration '5 minutes'",
            id="duration-with-words",
        ),
        pytest.param(
            _one(window=-5), "gates.0.window: duration -5 is negative", id="negative-duration"
        ),
        pytest.param(
            _one(window=float("nan")),
            "gates.0.window: duration nan is not a finite",
            id="nan-duration",
        ),
        pytest.param(
            _one(window=float("inf")),
            "gates.0.window: duration inf is not a finite",
            id="infinite-duration",
        ),
        pytest.param(
            _one(window=True),
            "gates.0.window: duration True is not a duration",
            id="boolean-duration",
        ),
        pytest.param(
            _one(window="0s"), "gate 'g': window must be longer than 0s", id="zero-window"
        ),
        pytest.param(
            {"gates": [_one()["gates"][0], _one()["gates"][0]]},
            "gate name 'g' is used twice",
            id="duplicate-gate-names",
        ),
        pytest.param(
            {"profile": "graphite", "gates": _one()["gates"]},
            "profile 'graphite' is not known; allowed: envoy, http, istio, nginx",
            id="unknown-profile",
        ),
        pytest.param({"gates": []}, "a gate set needs at least one gate", id="no-gates"),
        pytest.param({"profile": "http"}, "gates: Field required", id="gates-missing"),
        pytest.param(
            _one(name="Abort"),
            "gates.0.name: 'Abort' is not a gate name: a-z, 0-9",
            id="name-not-lowercase",
        ),
        pytest.param(
            _one(kind="baseline", threshold=None),
            "gate 'g': a baseline gate needs max_increase",
            id="baseline-without-increase",
        ),
        pytest.param(
            _one(metric="latency", comparison="<", threshold=0.5),
            "a latency gate breaches when above its threshold",
            id="latency-below",
        ),
        pytest.param(
            _one(metric="latency", threshold=0),
            "latency threshold 0.0 must be above 0 seconds",
            id="latency-zero",
        ),
        pytest.param(
            _one(metric="latency", threshold=0.5, sustained_for="15m"),
            "gate 'g': sustained_for applies to error_ratio gates only",
            id="sustained-latency-refused",
        ),
        pytest.param(
            _one(metric=None, query="vector(1)", sustained_for="15m"),
            "gate 'g': sustained_for applies to error_ratio gates only",
            id="sustained-query-refused",
        ),
        pytest.param(
            _one(kind="baseline", max_increase=0.01, sustained_for="15m"),
            "sustained_for applies to threshold gates only",
            id="sustained-baseline",
        ),
        pytest.param(
            _one(sustained_for="10s", interval="30s"),
            "sustained_for 10s is shorter than the interval 30s",
            id="sustained-shorter-than-interval",
        ),
        pytest.param(
            _one(metric=None, query="x{app=$app}"),
            "gate 'g': query: $app at position 6 must stand inside",
            id="query-label-outside-quotes",
        ),
        pytest.param(
            _one(metric=None, query="vector(1)", requests_query="x[$windows]"),
            "gate 'g': requests_query: unknown variable $windows",
            id="requests-query-unknown-variable",
        ),
        pytest.param(
            _one(quantile=1.0), "gates.0.quantile: Input should be less than 1", id="quantile-one"
        ),
        pytest.param(_one(min_requests=-1), "gates.0.min_requests", id="negative-min-requests"),
        pytest.param(
            _one(no_data="pass"),
            "gates.0.no_data: Input should be 'inconclusive' or 'fail'",
            id="no-data-can-never-pass",
        ),
    ],
)
def test_parse_rejects(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_gate_set(data, source="gates.yaml")
    assert message in str(e.value)
    assert str(e.value).startswith("gates.yaml: ")


def test_every_bad_field_is_reported() -> None:
    data = {"gates": [{"name": "a", "metric": "error_ratio", "threshold": 0.05, "x": 1, "y": 2}]}
    with pytest.raises(InvalidInput) as e:
        parse_gate_set(data)
    assert str(e.value).splitlines() == [
        "gates: gates.0.x: is not a known field",
        "gates: gates.0.y: is not a known field",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("gates: [", "not valid YAML", id="broken-yaml"),
        pytest.param(
            "gates:\n  - name: a\n    metric: error_ratio\n    threshold: 0.05\n    windw: 2m\n",
            "gates.0.windw: is not a known field",
            id="typo-in-file",
        ),
    ],
)
def test_load_rejects(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as e:
        load_gate_set(path)
    assert str(path) in str(e.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="No such file"):
        load_gate_set(tmp_path / "absent.yaml")


def test_yaml_nan_window_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a finite"):
        parse_gate_set(
            yaml.safe_load(
                "gates:\n  - {name: a, metric: error_ratio, threshold: 0.05, window: .nan}\n"
            )
        )


# -- scaled ---------------------------------------------------------------------------------


def test_scaled_divides_every_duration_and_nothing_else() -> None:
    gs = default_gates().scaled(60)
    abort, sustained, latency, traffic, cpu, memory, pool = gs.gates
    assert (abort.window, abort.interval, abort.inconclusive_deadline) == (2.0, 0.25, 30.0)
    assert sustained.interval == 0.5
    assert (sustained.window, sustained.sustained_for, sustained.confirm_window) == (
        5.0,
        15.0,
        15.0,
    )
    assert latency.confirm_window is None
    assert (cpu.window, cpu.warmup, cpu.growth_period) == (5.0, 5.0, 60.0)
    assert (traffic.tolerance, traffic.max_drop, cpu.max_ratio, memory.max_ratio) == (
        0.1,
        0.1,
        1.5,
        1.5,
    )
    assert [g.threshold for g in gs.gates] == [0.05, 0.02, 0.5, None, None, None, 0.8]
    assert [g.min_requests for g in gs.gates] == [100] * 7
    assert gs.profile == default_gates().profile


def test_scaled_by_one_is_the_same() -> None:
    assert default_gates().scaled(1) == default_gates()


@pytest.mark.parametrize("factor", [0, -2], ids=["zero", "negative"])
def test_scaled_refuses_non_positive_factor(factor: float) -> None:
    with pytest.raises(InvalidInput, match=f"time compression factor {factor} must be above 0"):
        default_gates().scaled(factor)


# -- default_gates matches the operating rules ----------------------------------------------


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        pytest.param(
            "abort",
            dict(
                metric=Metric.ERROR_RATIO,
                comparison=Comparison.GT,
                threshold=0.05,
                window=120.0,
                sustained_for=0.0,
                guard=True,
            ),
            id="abort-above-5pct-over-2m-at-once",
        ),
        pytest.param(
            "sustained",
            dict(
                metric=Metric.ERROR_RATIO,
                comparison=Comparison.GT,
                threshold=0.02,
                window=300.0,
                sustained_for=900.0,
                confirm_s=900.0,
                kind=Kind.THRESHOLD,
            ),
            id="sustained-above-2pct-held-15m-on-5m-windows-confirmed-over-15m",
        ),
        pytest.param(
            "latency",
            dict(
                metric=Metric.LATENCY,
                quantile=0.95,
                threshold=0.5,
                comparison=Comparison.GT,
                subject="p95 latency",
            ),
            id="latency-p95-under-500ms",
        ),
    ],
)
def test_default_gates_follow_the_rules(gate: str, expected: dict[str, Any]) -> None:
    spec = {g.name: g for g in default_gates().gates}[gate]
    assert {k: getattr(spec, k) for k in expected} == expected
    assert spec.min_requests == 100
    assert spec.no_data is NoData.INCONCLUSIVE
    assert spec.inconclusive_deadline > 0


def test_default_gates_are_the_rules_error_latency_and_resources() -> None:
    gs = default_gates()
    assert [g.name for g in gs.gates] == [
        "abort",
        "sustained",
        "latency",
        "traffic",
        "cpu",
        "memory",
        "db-pool",
    ]
    assert gs.resources == "process"
    assert gs.profile == "http"
    assert default_gates("istio").profile == "istio"


def test_default_gates_unknown_profile() -> None:
    with pytest.raises(ValueError, match="profile 'nope' is not known"):
        default_gates("nope")


@pytest.mark.parametrize(
    ("comparison", "value", "breaches", "holds"),
    [
        pytest.param(Comparison.GT, 0.05, False, "<=", id="gt-equal-holds"),
        pytest.param(Comparison.GE, 0.05, True, "<", id="ge-equal-breaches"),
        pytest.param(Comparison.LT, 0.04, True, ">=", id="lt-below-breaches"),
        pytest.param(Comparison.LE, 0.06, False, ">", id="le-above-holds"),
    ],
)
def test_comparison(comparison: Comparison, value: float, breaches: bool, holds: str) -> None:
    assert comparison.breaches(value, 0.05) is breaches
    assert comparison.holds_text == holds


def test_specs_are_frozen() -> None:
    gate = GateSpec(name="a", metric=Metric.ERROR_RATIO, threshold=0.1)
    with pytest.raises(ValueError):
        gate.threshold = 0.2


def test_a_release_spec_carries_its_gates_typed() -> None:
    from gatekeeper.domain.release import parse_release

    data = {
        "app": "shop",
        "version": "v2",
        "command": "svc {port}",
        "stable": {"version": "v1", "command": "svc {port}"},
        "strategy": {"type": "canary"},
        "gates": [{"name": "abort", "metric": "error_ratio", "threshold": 0.05}],
    }
    spec = parse_release(data)
    assert isinstance(spec.gates, GateSet)
    assert spec.gates.gates[0].threshold == 0.05
    bad = {**data, "gates": [{"name": "abort", "metric": "error_ratio"}]}
    with pytest.raises(InvalidInput) as refused:
        parse_release(bad, source="r.yaml")
    assert str(refused.value) == (
        "r.yaml: gates: gates.0: gate 'abort': a threshold gate needs threshold"
    )


def test_the_domain_knows_every_metric_profile() -> None:
    from gates.profiles import PROFILES
    from gates.spec import PROFILE_NAMES

    assert set(PROFILES) == set(PROFILE_NAMES)
