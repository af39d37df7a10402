"""Holes a review found in the gates, shown against a real Prometheus with backfilled history."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gatekeeper.domain.verdicts import Decision, Verdict
from gatekeeper.engine.gating import run_backtest
from gates.evaluate import GateEvaluator, Release
from gates.prometheus import PrometheusProvider
from gates.provider import Subject
from gates.spec import default_gates
from tests.support.prom import LocalPrometheus as PrometheusServer

pytestmark = pytest.mark.integration


def test_a_baseline_without_traffic_is_not_applicable_and_a_good_candidate_is_promoted(
    history_prometheus: PrometheusServer, history_start: datetime, tmp_path: Path
) -> None:
    """At 100% on the candidate stable serves nothing: the comparison gates have no baseline.
    They used to go inconclusive and hold (then fail closed); now they are not applicable."""
    gates = tmp_path / "gates.yaml"
    base = [g.model_dump(mode="json", exclude_none=True) for g in default_gates().gates]
    extra = [
        {"name": "vs-stable", "kind": "baseline", "metric": "error_ratio",
         "max_increase": 0.01, "window": "5m", "interval": "30s"},
        {"name": "mw", "kind": "mann_whitney", "metric": "error_ratio", "window": "10m",
         "interval": "30s"},
    ]  # fmt: skip
    gates.write_text(yaml.safe_dump({"gates": base + extra}))
    result = run_backtest(
        prometheus_url=history_prometheus.url,
        app="healthy",
        version="v2",
        namespace="default",
        baseline_version="v0",  # a stable version with no requests in its window
        gates_file=gates,
        start=history_start,
        end=history_start + timedelta(minutes=25),
        step=timedelta(seconds=30),
    )
    last = {r.gate: r for r in result.timeline if r.at == result.timeline[-1].at}
    assert last["vs-stable"].verdict is Verdict.NOT_APPLICABLE, last["vs-stable"].reason
    assert last["mw"].verdict is Verdict.NOT_APPLICABLE, last["mw"].reason
    assert "baseline" in last["vs-stable"].reason
    assert result.decision is Decision.PROMOTE


@pytest.mark.parametrize("time_scale", [9, 11, 13])
def test_the_sustained_gate_under_time_scale_asks_prometheus_a_query_it_accepts(
    history_prometheus: PrometheusServer, history_start: datetime, time_scale: int
) -> None:
    """A step that had to divide every duration shrank to 1 ms: 80,000-100,000 points,
    which Prometheus refuses (over 11,000), leaving the gate inconclusive for ever."""
    gate_set = default_gates().scaled(time_scale)
    provider = PrometheusProvider(history_prometheus.url)
    try:
        evaluator = GateEvaluator(gate_set, provider, check_windows=False)
        release = Release(
            candidate=Subject("errors3", "v2"), started=history_start - timedelta(hours=1)
        )
        at = history_start + timedelta(minutes=10, microseconds=123_456)
        sustained = evaluator.evaluate(release, at)[1]
    finally:
        provider.close()
    assert "measurement error" not in sustained.reason, sustained.reason
    assert sustained.verdict in (Verdict.WARN, Verdict.FAIL), sustained.reason


def _pod_history(start: float, minutes: int) -> str:
    """Per-pod request and 5xx counters: the candidate v2 has pod "a" at 0.1% 5xx and pod
    "b" at 40%; the baseline v1 has pods "c" and "d" at 0.2%; 10 requests/s per pod."""
    pods = {("v2", "a"): 0.001, ("v2", "b"): 0.40, ("v1", "c"): 0.002, ("v1", "d"): 0.002}
    requests, errors = [], []
    for (version, pod), ratio in pods.items():
        labels = f'app="podapp",version="{version}",pod="{pod}"'
        for i in range(minutes * 4 + 1):
            t = start + i * 15
            requests.append(f"pod_requests_total{{{labels}}} {i * 150:.3f} {t:.3f}")
            errors.append(f"pod_errors_total{{{labels}}} {i * 150 * ratio:.3f} {t:.3f}")
    return (
        "# TYPE pod_requests counter\n" + "\n".join(requests) + "\n"
        "# TYPE pod_errors counter\n" + "\n".join(errors) + "\n# EOF\n"
    )


def test_a_custom_baseline_gate_weighs_every_pod_against_the_baseline(
    tmp_path: Path, history_start: datetime
) -> None:
    """It read the first series only: with pod "a" first, 40% 5xx on pod "b" passed."""
    from tests.support.prom import backfill, prometheus

    data = tmp_path / "data"
    backfill(data, _pod_history(history_start.timestamp(), 20))
    gate = {
        "name": "pod-errors",
        "kind": "baseline",
        "query": 'sum by (pod) (increase(pod_errors_total{app="$app", version="$version"}'
        '[$window])) / sum by (pod) (increase(pod_requests_total{app="$app", '
        'version="$version"}[$window]))',
        "requests_query": 'sum by (pod) (increase(pod_requests_total{app="$app", '
        'version="$version"}[$window]))',
        "max_increase": 0.01,
        "window": "5m",
    }
    from gates.spec import parse_gate_set

    with prometheus(data_dir=data) as server:
        provider = PrometheusProvider(server.url)
        try:
            evaluator = GateEvaluator(parse_gate_set([gate]), provider, check_windows=False)
            release = Release(
                candidate=Subject("podapp", "v2"),
                baseline=Subject("podapp", "v1"),
                started=history_start,
            )
            [r] = evaluator.evaluate(release, history_start + timedelta(minutes=15))
        finally:
            provider.close()
    assert r.verdict is Verdict.FAIL, r.reason
    assert "above baseline 0.002" in r.reason, r.reason
