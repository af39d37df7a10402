"""Baseline and Mann-Whitney gates through the evaluator, with a fake provider."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from gatekeeper.domain.verdicts import Verdict
from gates.evaluate import GateEvaluator, Release
from gates.provider import Counts, LabeledValue, Subject
from gates.spec import GateSet, parse_gate_set
from tests.support.fakes import T0, FakeProvider

CANDIDATE = Subject("shop", "v2")
BASELINE = Subject("shop", "v1")
AT = T0 + timedelta(minutes=30)


def noisy(
    ratios: dict[str, float], seed: int = 3
) -> Callable[[Subject, datetime, datetime], Counts]:
    """Per-interval error ratios around each version's mean, deterministic."""

    def fn(s: Subject, start: datetime, end: datetime) -> Counts:
        n = 50.0 * (end - start).total_seconds()
        rng = random.Random(f"{seed}-{s.version}-{end.timestamp()}")
        ratio = max(0.0, ratios[s.version] + rng.uniform(-0.004, 0.004))
        return Counts(requests=n, errors=n * ratio)

    return fn


def gates(kind: str, **extra: object) -> GateSet:
    gate = {
        "name": "vs-stable",
        "kind": kind,
        "metric": "error_ratio",
        "window": "10m",
        "interval": "30s",
        **extra,
    }
    return parse_gate_set({"gates": [gate]})


@pytest.mark.parametrize(
    ("candidate", "baseline", "verdict", "words"),
    [
        (0.030, 0.010, Verdict.FAIL, "High"),
        (0.010, 0.010, Verdict.PASS, "Pass"),
        (0.005, 0.030, Verdict.PASS, "Low"),  # a bad baseline never fails a good candidate
    ],
    ids=["candidate-worse-fails", "same-passes", "worse-baseline-does-not-fail-candidate"],
)
def test_mann_whitney_classifies_against_the_baseline(candidate, baseline, verdict, words):
    provider = FakeProvider(noisy({"v2": candidate, "v1": baseline}))
    # min_effect: a shift under 0.2 points is not worth a rollback, however significant.
    evaluator = GateEvaluator(gates("mann_whitney", min_effect=0.002), provider)
    [r] = evaluator.evaluate(Release(CANDIDATE, started=T0, baseline=BASELINE), AT)
    assert r.verdict is verdict, r.reason
    assert r.reason.startswith(f"vs-stable: {words}")
    assert provider.calls == 1  # both versions' samples in one range query


def test_mann_whitney_without_a_baseline_is_not_applicable():
    evaluator = GateEvaluator(gates("mann_whitney"), FakeProvider(noisy({"v2": 0.01})))
    [r] = evaluator.evaluate(Release(CANDIDATE, started=T0), AT)
    assert r.verdict is Verdict.NOT_APPLICABLE
    assert "no baseline" in r.reason


@pytest.mark.parametrize(
    ("candidate", "baseline", "verdict"),
    [(0.03, 0.01, Verdict.FAIL), (0.015, 0.01, Verdict.PASS), (0.01, 0.04, Verdict.PASS)],
    ids=["two-points-above-fails", "half-a-point-above-passes", "bad-baseline-passes"],
)
def test_baseline_gate_allows_at_most_max_increase(candidate, baseline, verdict):
    provider = FakeProvider(noisy({"v2": candidate, "v1": baseline}))
    evaluator = GateEvaluator(gates("baseline", max_increase=0.01), provider)
    [r] = evaluator.evaluate(Release(CANDIDATE, started=T0, baseline=BASELINE), AT)
    assert r.verdict is verdict, r.reason
    assert "baseline" in r.reason


def test_mann_whitney_is_not_applicable_when_stable_gets_no_traffic():
    """At 100% on the candidate the baseline has no samples: a good candidate is not held or
    failed closed for the baseline's lack."""

    def all_on_candidate(s: Subject, start: datetime, end: datetime) -> Counts | None:
        if s.version == "v1":
            return Counts(0.0, 0.0)
        return noisy({"v2": 0.01})(s, start, end)

    evaluator = GateEvaluator(gates("mann_whitney"), FakeProvider(all_on_candidate))
    [r] = evaluator.evaluate(Release(CANDIDATE, started=T0, baseline=BASELINE), AT)
    assert r.verdict is Verdict.NOT_APPLICABLE, r.reason
    assert "too few baseline samples (0 with 0 requests" in r.reason


def test_mann_whitney_without_candidate_traffic_is_inconclusive_not_not_applicable():
    def stable_only(s: Subject, start: datetime, end: datetime) -> Counts | None:
        if s.version == "v2":
            return Counts(0.0, 0.0)
        return noisy({"v1": 0.01})(s, start, end)

    evaluator = GateEvaluator(gates("mann_whitney"), FakeProvider(stable_only))
    [r] = evaluator.evaluate(Release(CANDIDATE, started=T0, baseline=BASELINE), AT)
    assert r.verdict is Verdict.INCONCLUSIVE, r.reason
    assert "too few candidate samples" in r.reason


# -- custom baseline gates: every series, traffic minimum on both sides ------------------------


class SeriesByVersion(FakeProvider):
    """Answers a custom query with the series of the version named in its text."""

    def __init__(self, by_version: dict[str, list[LabeledValue]]) -> None:
        super().__init__(lambda s, a, b: None)
        self.by_version = by_version
        self.promql: list[str] = []

    def query(self, promql: str, at: datetime) -> list[LabeledValue]:
        self.promql.append(promql)
        kind = "requests" if promql.startswith("sum by (pod) (increase(") else "ratio"
        version = "v2" if 'version="v2"' in promql else "v1"
        return list(self.by_version[f"{kind}-{version}"])


CUSTOM_BASELINE = {
    "name": "pod-errors",
    "kind": "baseline",
    "query": 'rate5xx{app="$app", version="$version"}',
    "requests_query": 'sum by (pod) (increase(reqs{app="$app", version="$version"}[$window]))',
    "max_increase": 0.01,
    "window": "5m",
}


def _custom_baseline(by_version) -> tuple[Verdict, str, SeriesByVersion]:
    provider = SeriesByVersion(by_version)
    evaluator = GateEvaluator(parse_gate_set({"gates": [CUSTOM_BASELINE]}), provider)
    [r] = evaluator.evaluate(Release(CANDIDATE, started=T0, baseline=BASELINE), AT)
    return r.verdict, r.reason, provider


def test_custom_baseline_gate_weighs_every_candidate_series_not_the_first():
    """One pod at 40% 5xx and one at 0.1%: the first series alone passed it."""
    verdict, reason, provider = _custom_baseline(
        {
            "ratio-v2": [({"pod": "a"}, 0.001), ({"pod": "b"}, 0.40)],
            "requests-v2": [({"pod": "a"}, 1000.0), ({"pod": "b"}, 1000.0)],
            "ratio-v1": [({"pod": "c"}, 0.002), ({"pod": "d"}, 0.004)],
            "requests-v1": [({"pod": "c"}, 1000.0), ({"pod": "d"}, 1000.0)],
        }
    )
    assert verdict is Verdict.FAIL, reason
    assert "candidate value 0.2005 is 0.1975 above baseline 0.003" in reason
    assert "(2,000 requests vs 2,000)" in reason
    assert len(provider.promql) == 4


def test_custom_baseline_gate_weights_series_by_their_requests():
    verdict, reason, _ = _custom_baseline(
        {
            "ratio-v2": [({"pod": "a"}, 0.001), ({"pod": "b"}, 0.40)],
            "requests-v2": [({"pod": "a"}, 99_900.0), ({"pod": "b"}, 100.0)],
            "ratio-v1": [({"pod": "c"}, 0.002)],
            "requests-v1": [({"pod": "c"}, 1000.0)],
        }
    )
    assert verdict is Verdict.PASS, reason  # 0.1% on almost every request


def test_custom_baseline_gate_applies_min_requests_to_the_baseline():
    verdict, reason, _ = _custom_baseline(
        {
            "ratio-v2": [({"pod": "a"}, 0.001)],
            "requests-v2": [({"pod": "a"}, 1000.0)],
            "ratio-v1": [({"pod": "c"}, 0.5)],
            "requests-v1": [({"pod": "c"}, 12.0)],
        }
    )
    assert verdict is Verdict.NOT_APPLICABLE
    assert "baseline has too little traffic (12 requests < 100)" in reason


def test_custom_baseline_gate_applies_min_requests_to_the_candidate():
    verdict, reason, _ = _custom_baseline(
        {
            "ratio-v2": [({"pod": "a"}, 0.001)],
            "requests-v2": [({"pod": "a"}, 40.0)],
            "ratio-v1": [({"pod": "c"}, 0.001)],
            "requests-v1": [({"pod": "c"}, 1000.0)],
        }
    )
    assert verdict is Verdict.INCONCLUSIVE
    assert "too little traffic: 40 requests" in reason


def test_custom_baseline_gate_without_requests_query_is_refused():
    from gatekeeper.domain.errors import InvalidInput

    gate = {k: v for k, v in CUSTOM_BASELINE.items() if k != "requests_query"}
    with pytest.raises(InvalidInput, match="needs requests_query, so that min_requests"):
        parse_gate_set({"gates": [gate]})
    parse_gate_set({"gates": [{**gate, "min_requests": 0}]})
