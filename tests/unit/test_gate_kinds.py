"""Baseline and Mann-Whitney gates through the evaluator, with a fake provider."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from gatekeeper.domain.verdicts import Verdict
from gates.evaluate import GateEvaluator, Release
from gates.provider import Counts, Subject
from gates.spec import GateSet, parse_gate_set
from tests.support.fakes import T0, FakeProvider

CANDIDATE = Subject("shop", "v2")
BASELINE = Subject("shop", "v1")
AT = T0 + timedelta(minutes=30)


def noisy(ratios: dict[str, float], seed: int = 3):
    """Per-interval error ratios around each version's mean, deterministic."""

    def fn(s: Subject, start: datetime, end: datetime) -> Counts:
        n = 50.0 * (end - start).total_seconds()
        rng = random.Random(f"{seed}-{s.version}-{end.timestamp()}")
        ratio = max(0.0, ratios[s.version] + rng.uniform(-0.004, 0.004))
        return Counts(requests=n, errors=n * ratio)

    return fn


def gates(kind: str, **extra: object) -> GateSet:
    gate = {"name": "vs-stable", "kind": kind, "metric": "error_ratio", "window": "10m",
            "interval": "30s", **extra}
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


def test_mann_whitney_without_a_baseline_is_inconclusive():
    evaluator = GateEvaluator(gates("mann_whitney"), FakeProvider(noisy({"v2": 0.01})))
    [r] = evaluator.evaluate(Release(CANDIDATE, started=T0), AT)
    assert r.verdict is Verdict.INCONCLUSIVE
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
