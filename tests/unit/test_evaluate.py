"""Gate evaluation through a fake provider: query counts, window clipping, errors, baselines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatekeeper.domain.errors import InvalidInput, ProviderError, ProviderUnavailable
from gatekeeper.domain.verdicts import Verdict
from gates.evaluate import GateEvaluator, Release
from gates.profiles import Profile
from gates.provider import Buckets, Counts, LabeledValue, Provider, Subject
from gates.spec import GateSet, GateSpec, Kind, Metric, default_gates

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LONG_AGO = AT - timedelta(hours=1)

A = Subject(app="checkout", version="v2")
B = Subject(app="search", version="v7", namespace="shop")
C = Subject(app='we"ird\\app\n', version="v1")
STABLE = Subject(app="checkout", version="v1")

HEALTHY = Counts(requests=2000, errors=10)  # 0.5%
ERRORS6 = Counts(requests=2000, errors=120)  # 6%
FAST: Buckets = ((0.25, 1900), (0.5, 1990), (1.0, 2000), (float("inf"), 2000))


@dataclass
class Call:
    method: str
    subjects: tuple[Subject, ...] = ()
    window_s: float | None = None
    at: datetime | None = None
    start: datetime | None = None
    step_s: float | None = None
    promql: str | None = None


@dataclass
class FakeProvider:
    """Canned figures per subject; records every call made to it."""

    counts_by: dict[Subject, Counts] = field(default_factory=dict)
    buckets_by: dict[Subject, Buckets] = field(default_factory=dict)
    range_by: dict[Subject, Counts] = field(default_factory=dict)  # same counts at each step
    series: list[LabeledValue] = field(default_factory=list)
    scrape_s: float | None = 15.0
    error: Exception | None = None
    calls: list[Call] = field(default_factory=list)
    name: str = "fake"

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        if self.error is not None:
            raise self.error

    def scrape_interval(self) -> float | None:
        return self.scrape_s

    def scrape_interval_for(self, profile: Profile, subject: Subject) -> float | None:
        return self.scrape_interval()

    def scraped(self, endpoints: Sequence[str], at: datetime) -> dict[str, bool]:
        self._record(Call("scraped", at=at))
        return {e: True for e in endpoints}

    def counts(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Counts]:
        self._record(Call("counts", tuple(subjects), window_s, at))
        return {s: self.counts_by[s] for s in subjects if s in self.counts_by}

    def counts_range(
        self,
        profile: Profile,
        subjects: Sequence[Subject],
        window_s: float,
        start: datetime,
        end: datetime,
        step_s: float,
    ) -> dict[Subject, list[tuple[datetime, Counts]]]:
        self._record(Call("counts_range", tuple(subjects), window_s, end, start, step_s))
        n = round((end - start).total_seconds() / step_s)
        times = [start + timedelta(seconds=k * step_s) for k in range(n + 1)]
        return {s: [(t, self.range_by[s]) for t in times] for s in subjects if s in self.range_by}

    def buckets(
        self, profile: Profile, subjects: Sequence[Subject], window_s: float, at: datetime
    ) -> dict[Subject, Buckets]:
        self._record(Call("buckets", tuple(subjects), window_s, at))
        return {s: self.buckets_by[s] for s in subjects if s in self.buckets_by}

    def query(self, promql: str, at: datetime) -> list[LabeledValue]:
        self._record(Call("query", at=at, promql=promql))
        return list(self.series)


def _check_protocol(p: FakeProvider) -> Provider:
    return p  # mypy checks that the fake implements the protocol


ABORT, SUSTAINED, LATENCY = default_gates().gates[:3]
BASELINE = GateSpec(
    name="vs-stable",
    kind=Kind.BASELINE,
    metric=Metric.ERROR_RATIO,
    max_increase=0.01,
    window=300,
)
CUSTOM = GateSpec(
    name="queue",
    query='max by (pod) (queue_depth{app="$app",version="$version"}[$window])',
    threshold=100,
)


def _evaluator(provider: FakeProvider, *gates: GateSpec, **kw: Any) -> GateEvaluator:
    gate_set = GateSet(gates=gates or (ABORT, SUSTAINED, LATENCY))
    return GateEvaluator(gate_set, provider, **kw)


def _verdicts(results: Mapping[Subject, list[Any]]) -> dict[Subject, list[str]]:
    return {s: [r.verdict.value for r in rs] for s, rs in results.items()}


# -- one query per gate per tick ------------------------------------------------------------


def test_evaluate_many_makes_one_call_per_gate_for_all_releases() -> None:
    p = FakeProvider(
        counts_by={A: HEALTHY, B: ERRORS6, C: HEALTHY},
        range_by={A: HEALTHY, B: ERRORS6, C: HEALTHY},
        buckets_by={A: FAST, B: FAST, C: FAST},
    )
    ev = _evaluator(p)
    releases = [Release(candidate=s, started=LONG_AGO) for s in (A, B, C)]
    results = ev.evaluate_many(releases, AT)
    # The sustained gate's confirmation is asked only for the release that breaches now.
    assert [c.method for c in p.calls] == ["counts", "counts_range", "counts", "buckets"]
    assert [set(c.subjects) for c in p.calls] == [{A, B, C}, {A, B, C}, {B}, {A, B, C}]
    assert ev.queries == 4
    assert _verdicts(results) == {
        A: ["pass", "pass", "pass"],
        B: ["fail", "fail", "pass"],
        C: ["pass", "pass", "pass"],
    }
    assert [r.gate for r in results[A]] == ["abort", "sustained", "latency"]


def test_evaluate_is_evaluate_many_for_one() -> None:
    p = FakeProvider(counts_by={A: ERRORS6})
    results = _evaluator(p, ABORT).evaluate(Release(candidate=A, started=LONG_AGO), AT)
    assert [r.reason for r in results] == ["abort: error ratio 6% > 5% over 2m (2,000 requests)"]


def test_only_the_named_gates_are_evaluated() -> None:
    p = FakeProvider(counts_by={A: HEALTHY})
    ev = _evaluator(p)
    results = ev.evaluate(Release(candidate=A, started=LONG_AGO), AT, gates=[ABORT])
    assert [r.gate for r in results] == ["abort"]
    assert [c.method for c in p.calls] == ["counts"]


# -- windows --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started_ago", "window", "shown"),
    [
        pytest.param(3600, 120, "2m", id="old-release-full-window"),
        pytest.param(60, 60, "1m", id="young-release-window-clipped-to-start"),
        pytest.param(120, 120, "2m", id="exactly-one-window-old"),
        pytest.param(0.5, 0.5, "500ms", id="half-a-second-old"),
    ],
)
def test_window_is_clipped_to_release_start(started_ago: float, window: float, shown: str) -> None:
    p = FakeProvider(counts_by={A: ERRORS6})
    started = AT - timedelta(seconds=started_ago)
    [r] = _evaluator(p, ABORT).evaluate(Release(candidate=A, started=started), AT)
    assert [(c.method, c.window_s, c.at) for c in p.calls] == [("counts", window, AT)]
    assert r.window_s == window
    assert f"over {shown} " in r.reason


def test_releases_with_the_same_clipped_window_share_a_query() -> None:
    p = FakeProvider(counts_by={A: HEALTHY, B: HEALTHY, C: HEALTHY})
    releases = [
        Release(candidate=A, started=LONG_AGO),
        Release(candidate=B, started=AT - timedelta(minutes=30)),
        Release(candidate=C, started=AT - timedelta(seconds=30)),
    ]
    _evaluator(p, ABORT).evaluate_many(releases, AT)
    assert sorted((c.window_s, c.subjects) for c in p.calls) == [(30, (C,)), (120, (A, B))]


@pytest.mark.parametrize(
    "started", [AT, AT + timedelta(minutes=1)], ids=["starting-now", "starting-later"]
)
def test_release_not_started_is_inconclusive_without_a_query(started: datetime) -> None:
    p = FakeProvider(counts_by={A: ERRORS6})
    [r] = _evaluator(p, ABORT).evaluate(Release(candidate=A, started=started), AT)
    assert r.verdict is Verdict.INCONCLUSIVE
    assert r.reason == "abort: release not started"
    assert p.calls == []


def test_sustained_reads_a_range_and_ignores_points_before_the_release() -> None:
    p = FakeProvider(range_by={A: Counts(1000, 30)})
    started = AT - timedelta(minutes=10)
    [r] = _evaluator(p, SUSTAINED).evaluate(Release(candidate=A, started=started), AT)
    call = p.calls[0]
    assert (call.method, call.window_s, call.start, call.at, call.step_s) == (
        "counts_range",
        300,
        AT - timedelta(minutes=15),
        AT,
        30,
    )
    assert r.verdict is Verdict.WARN
    assert r.reason.endswith("held 9m30s of 15m")


def test_sustained_confirms_over_one_window_of_confirm_window() -> None:
    gate = SUSTAINED.model_copy(update={"confirm_window": 1800.0})
    p = FakeProvider(range_by={A: Counts(1000, 30)}, counts_by={A: Counts(6000, 180)})
    [r] = _evaluator(p, gate).evaluate(Release(candidate=A, started=LONG_AGO), AT)
    streak, confirm = p.calls
    assert (streak.method, streak.start, streak.at) == (
        "counts_range",
        AT - timedelta(minutes=15),
        AT,
    )
    assert (confirm.method, confirm.window_s, confirm.at) == ("counts", 1800.0, AT)
    assert r.verdict is Verdict.FAIL
    assert r.reason.endswith("3% over 30m (6,000 requests)")


@pytest.mark.parametrize("time_scale", [1, 7, 9, 11, 13, 60])
def test_sustained_range_stays_under_the_point_cap_and_ends_at_the_instant(
    time_scale: int,
) -> None:
    """With time_scale 9, 11 or 13 a step that had to divide every duration shrank to
    1 ms (80,000-100,000 points, refused by Prometheus) or missed the last point."""
    gate = SUSTAINED.scaled(time_scale)
    at = AT + timedelta(microseconds=123_456)
    p = FakeProvider(range_by={A: Counts(1000, 30)}, counts_by={A: Counts(3000, 90)})
    ev = _evaluator(p, gate, check_windows=False)
    [r] = ev.evaluate(Release(candidate=A, started=LONG_AGO), at)
    call = p.calls[0]
    assert call.at == AT + timedelta(milliseconds=123)
    assert call.step_s is not None and call.start is not None
    points = round((call.at - call.start).total_seconds() / call.step_s) + 1
    assert points <= 11_000
    assert (call.at - call.start).total_seconds() >= gate.sustained_for
    assert r.verdict is Verdict.FAIL, r.reason


@pytest.mark.parametrize(
    ("scrape_s", "refused"),
    [
        pytest.param(None, None, id="unknown-interval-not-checked"),
        pytest.param(15.0, None, id="15s-scrapes-fine"),
        pytest.param(60.0, None, id="exactly-two-scrapes-in-2m-fine"),
        pytest.param(
            61.0,
            "gate 'abort': window 2m is shorter than two scrape intervals (2 x 1m1s)",
            id="2m-window-under-two-61s-scrapes-refused",
        ),
        pytest.param(180.0, "gate 'abort': window 2m", id="first-short-gate-named"),
    ],
)
def test_check_windows(scrape_s: float | None, refused: str | None) -> None:
    p = FakeProvider(scrape_s=scrape_s)
    if refused is None:
        _evaluator(p)
    else:
        with pytest.raises(InvalidInput, match=refused.replace("(", r"\(").replace(")", r"\)")):
            _evaluator(p)
    assert p.calls == []


def test_check_windows_can_be_skipped() -> None:
    _evaluator(FakeProvider(scrape_s=600.0), check_windows=False)


# -- provider errors never pass -------------------------------------------------------------


@pytest.mark.parametrize(
    "gate", [ABORT, SUSTAINED, LATENCY, BASELINE, CUSTOM], ids=lambda g: g.name
)
@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailable("prometheus at http://prom:9090: ConnectionError: refused"),
        ProviderError("prometheus at http://prom:9090: HTTP Status Code 400 (bad_data)"),
    ],
    ids=["unavailable", "rejected"],
)
def test_provider_error_is_an_inconclusive_measurement_error(
    gate: GateSpec, error: Exception
) -> None:
    p = FakeProvider(error=error)
    releases = [
        Release(candidate=A, started=LONG_AGO, baseline=STABLE),
        Release(candidate=B, started=LONG_AGO),
    ]
    results = _evaluator(p, gate).evaluate_many(releases, AT)
    for [r] in results.values():
        assert r.verdict is Verdict.INCONCLUSIVE
        assert r.reason == f"{gate.name}: measurement error: {error}"


def test_one_failing_gate_does_not_stop_the_others() -> None:
    class LatencyDown(FakeProvider):
        def buckets(self, *args: Any, **kw: Any) -> dict[Subject, Buckets]:
            raise ProviderUnavailable("down")

    p = LatencyDown(counts_by={A: ERRORS6}, range_by={A: HEALTHY})
    [abort, sustained, latency] = _evaluator(p).evaluate(Release(candidate=A, started=LONG_AGO), AT)
    assert (abort.verdict, sustained.verdict, latency.verdict) == (
        Verdict.FAIL,
        Verdict.PASS,
        Verdict.INCONCLUSIVE,
    )


# -- baseline -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "baseline", "verdict", "reason"),
    [
        pytest.param(
            Counts(1000, 50),
            Counts(1000, 10),
            Verdict.FAIL,
            "vs-stable: candidate error ratio 5% is 4 points above baseline 1% "
            "(> 1 points allowed) over 5m (1,000 requests vs 1,000)",
            id="candidate-worse-than-allowed-fails",
        ),
        pytest.param(
            Counts(1000, 1),
            Counts(1000, 300),
            Verdict.PASS,
            "vs-stable: candidate error ratio 0.1% is 29.9 points below baseline 30% "
            "(<= 1 points allowed) over 5m (1,000 requests vs 1,000)",
            id="bad-baseline-never-fails-good-candidate",
        ),
        pytest.param(
            Counts(1000, 1),
            None,
            Verdict.NOT_APPLICABLE,
            "vs-stable: not applicable: no baseline data over 5m; the absolute gates judge "
            "the candidate",
            id="baseline-without-data-not-applicable",
        ),
        pytest.param(
            Counts(1000, 1),
            Counts(0, 0),
            Verdict.NOT_APPLICABLE,
            "vs-stable: not applicable: baseline has too little traffic (0 requests < 100) "
            "over 5m; the absolute gates judge the candidate",
            id="stable-without-traffic-at-100-percent-not-applicable",
        ),
        pytest.param(
            Counts(1000, 40),
            Counts(1000, 30),
            Verdict.PASS,
            "vs-stable: candidate error ratio 4% is 1 points above baseline 3% "
            "(<= 1 points allowed) over 5m (1,000 requests vs 1,000)",
            id="increase-equal-to-the-limit-passes-without-float-drift",
        ),
    ],
)
def test_baseline_gate(
    candidate: Counts, baseline: Counts | None, verdict: Verdict, reason: str
) -> None:
    p = FakeProvider(counts_by={A: candidate, **({STABLE: baseline} if baseline else {})})
    [r] = _evaluator(p, BASELINE).evaluate(
        Release(candidate=A, started=LONG_AGO, baseline=STABLE), AT
    )
    assert (r.verdict, r.reason) == (verdict, reason)
    [call] = p.calls
    assert set(call.subjects) == {A, STABLE}


def test_baseline_gate_without_a_baseline_version_is_not_applicable() -> None:
    p = FakeProvider(counts_by={A: Counts(1000, 500)})
    [r] = _evaluator(p, BASELINE).evaluate(Release(candidate=A, started=LONG_AGO), AT)
    assert r.verdict is Verdict.NOT_APPLICABLE
    assert r.reason == "vs-stable: not applicable: no baseline version named"


def test_baseline_gates_for_many_releases_share_one_query() -> None:
    p = FakeProvider(counts_by={A: HEALTHY, STABLE: HEALTHY, B: ERRORS6})
    releases = [
        Release(candidate=A, started=LONG_AGO, baseline=STABLE),
        Release(candidate=B, started=LONG_AGO, baseline=Subject("search", "v6", "shop")),
    ]
    results = _evaluator(p, BASELINE).evaluate_many(releases, AT)
    assert len(p.calls) == 1
    assert _verdicts(results) == {A: ["pass"], B: ["not_applicable"]}


# -- latency and custom queries -------------------------------------------------------------


def test_latency_reads_buckets() -> None:
    slow: Buckets = ((0.25, 100), (0.5, 150), (1.0, 200), (float("inf"), 200))
    p = FakeProvider(buckets_by={A: FAST, B: slow})
    releases = [Release(candidate=s, started=LONG_AGO) for s in (A, B)]
    results = _evaluator(p, LATENCY).evaluate_many(releases, AT)
    assert _verdicts(results) == {A: ["pass"], B: ["fail"]}
    assert [(c.method, c.window_s) for c in p.calls] == [("buckets", 300)]


def test_latency_without_buckets_is_no_data() -> None:
    p = FakeProvider()
    [r] = _evaluator(p, LATENCY).evaluate(Release(candidate=A, started=LONG_AGO), AT)
    assert (r.verdict, r.reason) == (Verdict.INCONCLUSIVE, "latency: no data over 5m")


def test_custom_query_is_rendered_escaped_and_each_series_judged() -> None:
    p = FakeProvider(series=[({"pod": "a"}, 40.0), ({"pod": "b"}, 250.0)])
    [r] = _evaluator(p, CUSTOM).evaluate(
        Release(candidate=C, started=AT - timedelta(seconds=90)), AT
    )
    [call] = p.calls
    assert call.promql == (
        'max by (pod) (queue_depth{app="we\\"ird\\\\app\\n",version="v1"}[1m30s])'
    )
    assert r.verdict is Verdict.FAIL
    assert r.labels == {"pod": "b"}
    assert r.reason == "queue: value 250 > 100 over 1m30s [pod='b']; 1 of 2 series fail"
