"""Evidence since a breach began (gates/evidence.py), its spec field, and the evaluator using it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.verdicts import GateResult, Verdict
from gates.evaluate import GateEvaluator, Release
from gates.evidence import judge_accumulated, since_breach
from gates.provider import Counts, Subject
from gates.spec import GateSet, default_gates, parse_gate_set
from gates.verdict import judge_error_ratio
from tests.support.fakes import T0, FakeProvider

ABORT = next(g for g in default_gates().gates if g.name == "abort")
SLICE = 15.0
AT = T0 + timedelta(hours=1)
CANDIDATE = Subject("shop", "v2")

Run = tuple[int, float, float]  # (slices, requests per slice, errors per slice)


def _slices(*runs: Run, at: datetime = AT) -> list[tuple[datetime, Counts]]:
    """Runs of equal 15s slices, oldest first, the last ending at ``at``."""
    flat = [Counts(req, err) for n, req, err in runs for _ in range(n)]
    return [(at - timedelta(seconds=SLICE * (len(flat) - 1 - i)), c) for i, c in enumerate(flat)]


HEALTHY: Run = (1, 150, 0.75)  # 10 req/s at 0.5%
SIX: Run = (1, 150, 9)  # 10 req/s at 6%


def _n(run: Run, n: int) -> Run:
    return (n, run[1], run[2])


# -- the onset ------------------------------------------------------------------------------


def test_onset_is_where_the_breach_began_after_healthy_time() -> None:
    ev = since_breach(ABORT, _slices(_n(HEALTHY, 20), _n(SIX, 16)), AT, SLICE)
    assert ev is not None
    assert ev.since == AT - timedelta(minutes=4)
    assert ev.span_s == 240
    assert (ev.counts.requests, ev.counts.errors) == (2400, 144)


def test_healthy_time_before_the_breach_is_not_counted_however_long() -> None:
    # The longest run that still breaches would reach far back into the healthy hour.
    ev = since_breach(ABORT, _slices(_n(HEALTHY, 240), _n(SIX, 16)), AT, SLICE)
    assert ev is not None and ev.span_s == 240


def test_a_healthy_point_before_the_breach_resets_the_onset() -> None:
    burst_of_good_traffic: Run = (1, 900, 0)  # 45 errors fewer than 5% allows
    ev = since_breach(ABORT, _slices(_n(SIX, 20), burst_of_good_traffic, _n(SIX, 10)), AT, SLICE)
    assert ev is not None
    assert ev.since == AT - timedelta(seconds=10 * SLICE)
    assert ev.counts.requests == 1500


def test_a_gap_without_traffic_neither_breaks_nor_proves_the_breach() -> None:
    gap = _slices(_n(HEALTHY, 8), _n(SIX, 8), (4, 0, 0), _n(SIX, 8))
    absent = [p for p in gap if p[1].requests > 0]  # the same gap, no series at all
    for slices in (gap, absent):
        ev = since_breach(ABORT, slices, AT, SLICE)
        assert ev is not None
        assert ev.since == AT - timedelta(seconds=20 * SLICE)  # the breach before the gap
        assert ev.counts.requests == 16 * 150  # the gap adds time, not requests


def test_only_a_gap_is_no_breach() -> None:
    assert since_breach(ABORT, _slices((60, 0, 0)), AT, SLICE) is None
    assert since_breach(ABORT, [], AT, SLICE) is None


def test_nothing_breaching_is_no_evidence() -> None:
    assert since_breach(ABORT, _slices(_n(HEALTHY, 60)), AT, SLICE) is None


def test_an_onset_inside_the_window_needs_a_healthy_stretch_before_it() -> None:
    # 8% for the last minute of a 2m window: after 0.5% it is a change the window shows;
    # after 4.5% (not significantly healthy) it is the best of many short runs: not used.
    eight: Run = (4, 150, 12)
    after_healthy = since_breach(ABORT, _slices(_n(HEALTHY, 20), eight), AT, SLICE)
    assert after_healthy is not None and after_healthy.span_s == 60
    assert after_healthy.significant
    after_murky = since_breach(ABORT, _slices((20, 150, 6.75), eight), AT, SLICE)
    assert after_murky is not None
    assert after_murky.span_s == 120  # the window, as the window itself judges it


# -- significance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_slices", "significant"),
    [
        pytest.param(8, False, id="2m-of-6pct-at-10rps-is-1200-requests-not-enough"),
        pytest.param(12, True, id="3m-of-6pct-is-1800-requests-significant"),
        pytest.param(16, True, id="4m-of-6pct-significant"),
    ],
)
def test_six_percent_at_10rps_becomes_significant_as_it_lasts(
    bad_slices: int, significant: bool
) -> None:
    ev = since_breach(ABORT, _slices(_n(HEALTHY, 20), _n(SIX, bad_slices)), AT, SLICE)
    assert ev is not None
    assert ev.significant is significant


def test_one_percent_noise_is_never_significant() -> None:
    rng = random.Random(7)
    flat: list[Run] = []
    for _ in range(2000):  # 8h20m of 1 req/s at 1%, binomial per slice
        n = sum(rng.random() < 0.5 for _ in range(30))
        flat.append((1, n, sum(rng.random() < 0.01 for _ in range(n))))
    history = _slices(*flat)
    breached = 0
    for end in range(60, len(history)):
        window = history[end - 60 : end + 1]  # a 15m lookback ending at each slice
        ev = since_breach(ABORT, window, window[-1][0], SLICE)
        breached += ev is not None
        assert ev is None or not ev.significant, ev
    assert breached > 0  # noise does breach now and then: the test saw some


# At 1 request/s a 15s slice holds 15 requests: the evidence is in the hundreds, where the
# sequential boundary (gates/verdict.py) asks more than the gate's 95% of one look.
HEALTHY_1RPS: Run = (1, 15, 0.15)  # 1%


@pytest.mark.parametrize(
    ("errors", "significant"),
    [
        pytest.param(13, False, id="13-in-150-not-at-the-sequential-boundary"),
        pytest.param(14, True, id="14-in-150-significant"),
    ],
)
def test_evidence_in_few_requests_is_judged_at_the_sequential_boundary(
    errors: int, significant: bool
) -> None:
    slices = _slices(_n(HEALTHY_1RPS, 20), (10, 15, errors / 10))
    ev = since_breach(ABORT, slices, AT, SLICE)
    assert ev is not None
    assert (ev.span_s, ev.counts.requests) == (150, 150)
    assert ev.significant is significant
    assert ev.bound.level == pytest.approx(0.9831, abs=1e-4)  # z 1.645 x sqrt(250/150)


def test_a_warning_on_few_requests_names_the_sequential_boundary() -> None:
    slices = _slices(_n(HEALTHY_1RPS, 20), (10, 15, 1.3))
    warning = _window_result(120, 10.4)
    r = judge_accumulated(ABORT, warning, slices, AT, SLICE)
    assert r.verdict is Verdict.WARN
    assert r.reason == (
        "abort: error ratio 8.67% > 5% over 2m (120 requests); not significant at 95% "
        "(lower bound 4.28%, sequential boundary 99.12% for 120 requests); 8.67% over the "
        "2m30s since the breach began (150 requests), not significant either (lower bound "
        "4.92%, sequential boundary 98.31% for 150 requests)"
    )
    r = judge_accumulated(
        ABORT,
        _window_result(120, 11.2),
        _slices(_n(HEALTHY_1RPS, 20), (10, 15, 1.4)),
        AT,
        SLICE,
    )
    assert r.verdict is Verdict.FAIL
    assert r.reason.endswith(
        "; 9.33% over the 2m30s since the breach began (150 requests), significant at 95% "
        "(lower bound 5.41%, sequential boundary 98.31% for 150 requests)"
    )


def test_a_healthy_candidates_cluster_of_10_in_108_does_not_abort() -> None:
    """The 1,000-hour bench's one false abort: 10 5xx in 108 requests within 2 minutes of a
    1% candidate at 1 request/s (Wilson lower bound 5.6% at 95%)."""
    slices = _slices(_n(HEALTHY_1RPS, 52), (8, 13.5, 1.25))
    window = _window_result(108, 10)
    assert window.verdict is Verdict.WARN
    assert "sequential boundary 99.38% for 108 requests" in window.reason
    r = judge_accumulated(ABORT, window, slices, AT, SLICE)
    assert r.verdict is Verdict.WARN


def test_a_slice_without_a_number_is_left_out() -> None:
    nan = float("nan")
    slices = _slices(_n(HEALTHY, 8), _n(SIX, 16))
    slices.insert(10, (slices[10][0] - timedelta(seconds=1), Counts(nan, nan)))
    ev = since_breach(ABORT, slices, AT, SLICE)
    assert ev is not None and ev.counts.requests == 2400


# -- the re-judged verdict ------------------------------------------------------------------


def _window_result(requests: float, errors: float) -> GateResult:
    return judge_error_ratio(ABORT, Counts(requests, errors), AT, ABORT.window)


def test_a_warning_fails_on_significant_evidence_and_names_both_spans() -> None:
    warning = _window_result(1200, 72)
    assert warning.verdict is Verdict.WARN
    r = judge_accumulated(ABORT, warning, _slices(_n(HEALTHY, 20), _n(SIX, 16)), AT, SLICE)
    assert r.verdict is Verdict.FAIL
    assert r.reason == (
        "abort: error ratio 6% > 5% over 2m (1,200 requests); 6% over the 4m since the "
        "breach began (2,400 requests), significant at 95% (lower bound 5.25%)"
    )
    assert (r.value, r.window_s, r.requests) == (warning.value, 120, 1200)


def test_a_warning_without_enough_evidence_still_warns_and_says_so() -> None:
    warning = _window_result(1200, 69.6)
    r = judge_accumulated(ABORT, warning, _slices(_n(HEALTHY, 20), (12, 150, 8.7)), AT, SLICE)
    assert r.verdict is Verdict.WARN
    assert r.reason == (
        "abort: error ratio 5.8% > 5% over 2m (1,200 requests); not significant at 95% "
        "(lower bound 4.79%); 5.8% over the 3m since the breach began (1,800 requests), "
        "not significant either (lower bound 4.96%)"
    )


def test_a_breach_exactly_as_long_as_the_window_adds_nothing() -> None:
    warning = _window_result(1200, 72)
    r = judge_accumulated(ABORT, warning, _slices(_n(HEALTHY, 20), _n(SIX, 8)), AT, SLICE)
    assert r == warning


@pytest.mark.parametrize(
    ("result", "gate"),
    [
        pytest.param(_window_result(1200, 10), ABORT, id="pass"),
        pytest.param(_window_result(1200, 120), ABORT, id="fail"),
        pytest.param(_window_result(50, 10), ABORT, id="inconclusive"),
        pytest.param(
            _window_result(1200, 72),
            ABORT.model_copy(update={"confidence": 0.0}),
            id="confidence-off",
        ),
    ],
)
def test_other_verdicts_stand_as_they_are(result: GateResult, gate: Any) -> None:
    slices = _slices(_n(HEALTHY, 20), _n(SIX, 16))
    assert judge_accumulated(gate, result, slices, AT, SLICE) == result


# -- the spec field -------------------------------------------------------------------------


def test_built_in_abort_gate_looks_back_15m_and_scales() -> None:
    assert ABORT.evidence_window == 900
    scaled = next(g for g in default_gates().scaled(10).gates if g.name == "abort")
    assert scaled.evidence_window == 90
    assert default_gates().model_dump(mode="json")["gates"][0]["evidence_window"] == "15m"


def _gate(**fields: Any) -> dict[str, Any]:
    return {"gates": [{"name": "g", "metric": "error_ratio", "threshold": 0.05, **fields}]}


def test_evidence_window_is_off_unless_set() -> None:
    assert parse_gate_set(_gate()).gates[0].evidence_window == 0
    assert parse_gate_set(_gate(evidence_window="10m")).gates[0].evidence_window == 600


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(
            {"evidence_window": "2m"},
            "gate 'g': evidence_window 2m must be longer than the window 2m (or 0 to turn it off)",
            id="not-longer-than-the-window",
        ),
        pytest.param(
            {"evidence_window": "15m", "confidence": 0},
            "gate 'g': evidence_window 15m needs confidence above 0",
            id="without-confidence",
        ),
        pytest.param(
            {"evidence_window": "15m", "metric": "latency", "threshold": 0.5},
            "gate 'g': evidence_window 15m applies to error_ratio threshold gates without "
            "sustained_for only",
            id="latency-gate",
        ),
        pytest.param(
            {"evidence_window": "30m", "window": "5m", "sustained_for": "15m"},
            "applies to error_ratio threshold gates without sustained_for only",
            id="sustained-gate",
        ),
        pytest.param(
            {"evidence_window": "-1m"},
            "gates.0.evidence_window",
            id="negative",
        ),
    ],
)
def test_evidence_window_refusals_name_the_gate_and_the_limit(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_gate_set(_gate(**fields), source="gates.yaml")
    assert message in str(e.value)


# -- through the evaluator ------------------------------------------------------------------


def step_change(
    started: datetime, onset: datetime, rps: float, before: float, after: float
) -> Callable[[Subject, datetime, datetime], Counts | None]:
    """Steady traffic from ``started``: ``before`` 5xx until ``onset``, ``after`` from then."""

    def traffic(s: Subject, start: datetime, end: datetime) -> Counts | None:
        if s != CANDIDATE or end <= started:
            return None
        start = max(start, started)
        healthy = max(0.0, (min(end, onset) - start).total_seconds())
        bad = max(0.0, (end - max(start, onset)).total_seconds())
        return Counts(rps * (healthy + bad), rps * (healthy * before + bad * after))

    return traffic


ONSET = T0 + timedelta(minutes=1)


def _abort(provider: FakeProvider, **update: Any) -> GateEvaluator:
    return GateEvaluator(GateSet(gates=(ABORT.model_copy(update=update),)), provider)


def _judge(ev: GateEvaluator, after_onset: timedelta) -> GateResult:
    [r] = ev.evaluate(Release(candidate=CANDIDATE, started=T0), ONSET + after_onset)
    return r


def test_six_percent_at_10rps_for_4_minutes_fails_where_the_window_alone_only_warns() -> None:
    provider = FakeProvider(step_change(T0, ONSET, 10, 0.005, 0.06))
    four_minutes = timedelta(minutes=4)
    window_only = _judge(_abort(provider, evidence_window=0.0), four_minutes)
    assert window_only.verdict is Verdict.WARN
    assert provider.range_calls == []
    r = _judge(_abort(provider), four_minutes)
    assert r.verdict is Verdict.FAIL
    assert r.reason == (
        "abort: error ratio 6% > 5% over 2m (1,200 requests); 6% over the 4m since the "
        "breach began (2,400 requests), significant at 95% (lower bound 5.25%)"
    )


def test_the_evaluator_fails_6pct_at_10rps_within_4_minutes_and_not_before_2() -> None:
    provider = FakeProvider(step_change(T0, ONSET, 10, 0.005, 0.06))
    ev = _abort(provider)
    first_fail = next(
        s for s in range(0, 600, 5) if _judge(ev, timedelta(seconds=s)).verdict is Verdict.FAIL
    )
    assert 120 < first_fail <= 240


def test_slices_are_one_range_query_anchored_at_the_instant() -> None:
    provider = FakeProvider(step_change(T0, ONSET, 10, 0.005, 0.06))
    at = ONSET + timedelta(minutes=4, milliseconds=250)
    [r] = _abort(provider).evaluate(Release(candidate=CANDIDATE, started=T0), at)
    assert r.verdict is Verdict.FAIL
    assert provider.calls == 2  # the window, then the slices
    # 5m0.25s since the release began: 21 slices of 15s back from the instant reach it
    assert provider.range_calls == [(15.0, at - timedelta(seconds=15 * 20), at, 15.0)]


def test_slices_hold_two_scrapes_and_never_more_than_11000_points() -> None:
    class Scraped(FakeProvider):
        def scrape_interval(self) -> float | None:
            return 20.0

    provider = Scraped(step_change(T0, ONSET, 10, 0.005, 0.06))
    ev = _abort(provider, evidence_window=30 * 86400.0)
    at = T0 + timedelta(days=40)
    [r] = ev.evaluate(Release(candidate=CANDIDATE, started=T0 + timedelta(days=39)), at)
    [(window_s, start, end, step_s)] = provider.range_calls
    assert window_s == step_s == 40.0  # two 20s scrapes in every slice
    assert end == at
    provider.range_calls.clear()
    [r] = ev.evaluate(Release(candidate=CANDIDATE, started=T0), at)
    [(window_s, start, end, step_s)] = provider.range_calls
    points = round((end - start).total_seconds() / step_s) + 1
    assert points <= 11_000
    assert window_s == step_s and (end - start).total_seconds() <= 30 * 86400


def test_a_healthy_release_costs_no_extra_query() -> None:
    provider = FakeProvider(step_change(T0, ONSET, 10, 0.005, 0.005))
    r = _judge(_abort(provider), timedelta(minutes=4))
    assert r.verdict is Verdict.PASS
    assert (provider.calls, provider.range_calls) == (1, [])


def test_warning_releases_share_one_range_query() -> None:
    other = Subject("search", "v7")
    bad = step_change(T0, ONSET, 10, 0.005, 0.06)

    def traffic(s: Subject, start: datetime, end: datetime) -> Counts | None:
        return bad(CANDIDATE, start, end)

    provider = FakeProvider(traffic)
    releases: Sequence[Release] = [
        Release(candidate=CANDIDATE, started=T0),
        Release(candidate=other, started=T0),
    ]
    results = _abort(provider).evaluate_many(releases, ONSET + timedelta(minutes=4))
    assert [rs[0].verdict for rs in results.values()] == [Verdict.FAIL, Verdict.FAIL]
    assert len(provider.range_calls) == 1
