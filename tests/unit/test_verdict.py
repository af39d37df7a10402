"""Pure verdict rules: gates/verdict.py, the inconclusive tracker and the release decision."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

import pytest

from gatekeeper.domain.verdicts import Decision, GateResult, Verdict, decide, worst
from gates.kinds.baseline import judge_baseline
from gates.kinds.custom import judge_series
from gates.kinds.sustained import judge as judge_sustained
from gates.provider import Buckets, Counts
from gates.spec import Comparison, GateSpec, Kind, Metric, NoData, default_gates
from gates.tracker import InconclusiveTracker
from gates.verdict import (
    SEQUENTIAL_REQUESTS,
    fmt_pct,
    fmt_requests,
    fmt_seconds,
    is_measurement_error,
    judge_error_ratio,
    judge_latency,
    no_data,
    provider_error,
    quantile_from_buckets,
    sequential_bound,
    sequential_z,
    share_at_or_under,
    wilson_bound,
)

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
INF = math.inf
NAN = math.nan

ABORT, SUSTAINED, LATENCY = default_gates().gates[:3]
ABORT_FAILS_ON_NO_DATA = ABORT.model_copy(update={"no_data": NoData.FAIL})
QUERY = GateSpec(name="custom", query='sum by (pod) (x{app="$app"})', threshold=0.1)
BASELINE = GateSpec(
    name="vs-stable", kind=Kind.BASELINE, metric=Metric.ERROR_RATIO, max_increase=0.01
)
LATENCY_BASELINE = GateSpec(
    name="lat-vs-stable", kind=Kind.BASELINE, metric=Metric.LATENCY, max_increase=0.1
)


# -- judge_error_ratio ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "counts", "verdict", "reason"),
    [
        pytest.param(
            ABORT,
            Counts(1000, 10),
            Verdict.PASS,
            "abort: error ratio 1% <= 5% over 2m (1,000 requests)",
            id="below-threshold-passes",
        ),
        pytest.param(
            ABORT,
            Counts(1000, 60),
            Verdict.WARN,
            "abort: error ratio 6% > 5% over 2m (1,000 requests); not significant at 95% "
            "(lower bound 4.88%)",
            id="above-threshold-in-1000-requests-is-not-yet-significant",
        ),
        pytest.param(
            ABORT,
            Counts(1000, 80),
            Verdict.FAIL,
            "abort: error ratio 8% > 5% over 2m (1,000 requests)",
            id="significant-breach-fails",
        ),
        pytest.param(
            ABORT.model_copy(update={"confidence": 0.0}),
            Counts(1000, 60),
            Verdict.FAIL,
            "abort: error ratio 6% > 5% over 2m (1,000 requests)",
            id="confidence-zero-fails-on-the-observed-ratio",
        ),
        pytest.param(
            ABORT,
            Counts(1000, 50),
            Verdict.PASS,
            "abort: error ratio 5% <= 5% over 2m (1,000 requests)",
            id="exactly-at-threshold-passes",
        ),
        pytest.param(
            ABORT,
            Counts(NAN, 0),
            Verdict.INCONCLUSIVE,
            "abort: too little traffic: NaN requests over 2m < 100 needed",
            id="nan-requests-inconclusive",
        ),
        pytest.param(
            ABORT,
            Counts(0, 0),
            Verdict.INCONCLUSIVE,
            "abort: too little traffic: 0 requests over 2m < 100 needed",
            id="zero-requests-inconclusive",
        ),
        pytest.param(
            ABORT,
            Counts(10, 1),
            Verdict.INCONCLUSIVE,
            "abort: too little traffic: 10 requests over 2m < 100 needed",
            id="one-error-in-ten-requests-below-default-minimum",
        ),
        pytest.param(
            ABORT,
            Counts(99.6, 50),
            Verdict.INCONCLUSIVE,
            "abort: too little traffic: 100 requests over 2m < 100 needed",
            id="just-under-minimum-inconclusive-even-at-50pct",
        ),
        pytest.param(
            ABORT,
            Counts(100, 6),
            Verdict.WARN,
            "abort: error ratio 6% > 5% over 2m (100 requests); not significant at 95% "
            "(lower bound 2.19%, sequential boundary 99.53% for 100 requests)",
            id="exactly-minimum-is-judged",
        ),
        pytest.param(
            ABORT,
            Counts(108, 10),
            Verdict.WARN,
            "abort: error ratio 9.26% > 5% over 2m (108 requests); not significant at 95% "
            "(lower bound 4.35%, sequential boundary 99.38% for 108 requests)",
            id="healthy-1pct-cluster-10-in-108-warns-at-the-sequential-boundary",
        ),
        pytest.param(
            ABORT,
            Counts(108, 12),
            Verdict.FAIL,
            "abort: error ratio 11.11% > 5% over 2m (108 requests)",
            id="12-in-108-clears-the-sequential-boundary",
        ),
        pytest.param(
            ABORT,
            Counts(2400, 144),
            Verdict.FAIL,
            "abort: error ratio 6% > 5% over 2m (2,400 requests)",
            id="6pct-over-2400-requests-fails-as-before",
        ),
        pytest.param(
            ABORT,
            Counts(250, 18),
            Verdict.WARN,
            "abort: error ratio 7.2% > 5% over 2m (250 requests); not significant at 95% "
            "(lower bound 4.94%)",
            id="from-250-requests-the-plain-bound-and-reason",
        ),
        pytest.param(
            ABORT.model_copy(update={"min_requests": 5, "confidence": 0.0}),
            Counts(10, 1),
            Verdict.FAIL,
            "abort: error ratio 10% > 5% over 2m (10 requests)",
            id="minimum-is-configurable",
        ),
        pytest.param(
            ABORT.model_copy(update={"min_requests": 0}),
            Counts(0, 0),
            Verdict.INCONCLUSIVE,
            "abort: too little traffic: 0 requests over 2m < 0 needed",
            id="zero-minimum-still-needs-some-traffic",
        ),
        pytest.param(
            ABORT,
            None,
            Verdict.INCONCLUSIVE,
            "abort: no data over 2m",
            id="no-data-inconclusive",
        ),
        pytest.param(
            ABORT_FAILS_ON_NO_DATA,
            None,
            Verdict.FAIL,
            "abort: no data over 2m",
            id="no-data-fails-under-fail-policy",
        ),
        pytest.param(
            ABORT_FAILS_ON_NO_DATA,
            Counts(10, 0),
            Verdict.INCONCLUSIVE,
            "abort: too little traffic: 10 requests over 2m < 100 needed",
            id="fail-policy-does-not-apply-to-little-traffic",
        ),
    ],
)
def test_judge_error_ratio(
    gate: GateSpec, counts: Counts | None, verdict: Verdict, reason: str
) -> None:
    r = judge_error_ratio(gate, counts, AT, 120)
    assert (r.verdict, r.reason) == (verdict, reason)
    assert r.gate == gate.name
    assert r.at == AT
    assert r.window_s == 120
    assert r.threshold == gate.threshold


# -- the sequential boundary (judge_error_ratio and the evidence since a breach began) ----


def test_sequential_boundary_is_stricter_in_few_requests_and_plain_from_250() -> None:
    z95 = NormalDist().inv_cdf(0.95)
    assert SEQUENTIAL_REQUESTS == 250
    assert sequential_z(108, 0.95) == pytest.approx(z95 * math.sqrt(250 / 108))
    assert sequential_z(108, 0.95) >= 2.06  # 10 in 108 needs z < 2.03 to fail
    for n in (250, 251, 1200, 2400, 100_000):
        assert sequential_z(n, 0.95) == z95
        for errors in (0, n * 0.05, n * 0.06, n * 0.2):
            got = sequential_bound(errors, n, 0.95, upper=False)
            assert got.bound == wilson_bound(errors, n, 0.95, upper=False)
            assert got.level == pytest.approx(0.95)


def test_sequential_boundary_is_monotone_in_the_requests() -> None:
    counts = range(1, 3001)
    zs = [sequential_z(n, 0.95) for n in counts]
    assert all(a >= b for a, b in zip(zs, zs[1:], strict=False))
    # the same ratio is never less significant in more requests
    for ratio in (0.06, 0.08, 0.1):
        bounds = [sequential_bound(ratio * n, n, 0.95, upper=False).bound for n in counts]
        assert all(a <= b + 1e-12 for a, b in zip(bounds, bounds[1:], strict=False))
        assert all(
            sequential_bound(ratio * n, n, 0.95, upper=False).bound
            <= wilson_bound(ratio * n, n, 0.95, upper=False)
            for n in counts
        )
    upper = [sequential_bound(0, n, 0.95, upper=True).bound for n in counts]
    assert all(a >= b for a, b in zip(upper, upper[1:], strict=False))


@pytest.mark.parametrize(
    ("requests", "fewest"),
    [
        pytest.param(100, 11, id="100"),
        pytest.param(108, 12, id="108"),
        pytest.param(150, 14, id="150"),
        pytest.param(200, 16, id="200"),
        pytest.param(250, 19, id="250"),
        pytest.param(1200, 73, id="1200"),
        pytest.param(2400, 138, id="2400"),
    ],
)
def test_fewest_5xx_that_fail_the_abort_gate(requests: int, fewest: int) -> None:
    """Below 250 requests: more than 5.67 5xx beyond 5% of them (the score test)."""
    verdicts = [
        judge_error_ratio(ABORT, Counts(requests, k), AT, 120).verdict for k in (fewest - 1, fewest)
    ]
    assert verdicts == [Verdict.WARN, Verdict.FAIL]
    if requests < SEQUENTIAL_REQUESTS:
        assert fewest - 0.05 * requests > 5.67 > fewest - 1 - 0.05 * requests


def test_sequential_boundary_applies_to_the_comparison_below_too() -> None:
    gate = GateSpec(name="ok", metric=Metric.ERROR_RATIO, comparison=Comparison.LT, threshold=0.95)
    r = judge_error_ratio(gate, Counts(108, 98), AT, 120)  # 90.74% < 95%
    assert wilson_bound(98, 108, 0.95, upper=True) < 0.95  # a fixed 95% would fail it
    assert r.verdict is Verdict.WARN
    assert r.reason.endswith(
        "not significant at 95% (upper bound 95.65%, sequential boundary 99.38% for 108 requests)"
    )


def test_the_sustained_confirmation_keeps_the_plain_bound() -> None:
    """judge_sustained is not a repeated small look: 12 in 150 confirms there."""
    points = _points(Counts(150, 12))
    r = judge_sustained(SUSTAINED, points, AT, 300, Counts(150, 12))
    assert r.verdict is Verdict.FAIL, r.reason
    assert judge_error_ratio(ABORT, Counts(150, 12), AT, 120).verdict is Verdict.WARN


def test_reason_names_gate_value_threshold_window_and_requests_exactly() -> None:
    r = judge_error_ratio(ABORT, Counts(requests=2412, errors=147.132), AT, 120)
    assert r.verdict is Verdict.FAIL
    assert r.reason == "abort: error ratio 6.1% > 5% over 2m (2,412 requests)"
    assert r.value == pytest.approx(0.061)
    assert r.requests == 2412


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        pytest.param(0.05, "5%", id="whole-percent"),
        pytest.param(0.061, "6.1%", id="one-decimal"),
        pytest.param(0.02346, "2.35%", id="two-decimals-rounded"),
        pytest.param(0.0, "0%", id="zero"),
        pytest.param(1.0, "100%", id="hundred-keeps-its-zeros"),
        pytest.param(0.1, "10%", id="ten-keeps-its-zero"),
    ],
)
def test_fmt_pct(ratio: float, text: str) -> None:
    assert fmt_pct(ratio) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0.5, "500ms", id="sub-second-in-ms"),
        pytest.param(1.0, "1s", id="one-second"),
        pytest.param(2.25, "2.25s", id="seconds-three-digits"),
        pytest.param(INF, "+Inf", id="infinite"),
    ],
)
def test_fmt_seconds(seconds: float, text: str) -> None:
    assert fmt_seconds(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        pytest.param(1, "1 request", id="singular"),
        pytest.param(2412, "2,412 requests", id="thousands-separator"),
        pytest.param(2411.6, "2,412 requests", id="fractional-increase-rounded"),
        pytest.param(0, "0 requests", id="zero-plural"),
    ],
)
def test_fmt_requests(n: float, text: str) -> None:
    assert fmt_requests(n) == text


# -- judge_latency --------------------------------------------------------------------------


def _b(*pairs: tuple[float, float]) -> Buckets:
    return tuple(pairs)


@pytest.mark.parametrize(
    ("buckets", "verdict", "reason", "value"),
    [
        pytest.param(
            _b((0.25, 100), (0.5, 190), (1.0, 200), (INF, 200)),
            Verdict.PASS,
            "latency: p95 latency 500ms <= 500ms over 5m (200 requests; 95% at or under 500ms)",
            0.5,
            id="exact-bucket-boundary-95pct-passes",
        ),
        pytest.param(
            _b((0.25, 100), (0.5, 189), (1.0, 200), (INF, 200)),
            Verdict.FAIL,
            "latency: p95 latency 545ms > 500ms over 5m (200 requests; 94.5% at or under 500ms)",
            0.5 + 0.5 * (190 - 189) / 11,
            id="exact-bucket-boundary-94.5pct-fails",
        ),
        pytest.param(
            _b((0.25, 190), (1.0, 200), (INF, 200)),
            Verdict.PASS,
            "latency: p95 latency 250ms <= 500ms over 5m "
            "(200 requests; 96.67% at or under 500ms, interpolated)",
            0.25,
            id="interpolated-inside-bucket-passes",
        ),
        pytest.param(
            _b((0.25, 180), (1.0, 200), (INF, 200)),
            Verdict.FAIL,
            "latency: p95 latency 625ms > 500ms over 5m "
            "(200 requests; 93.33% at or under 500ms, interpolated)",
            0.625,
            id="interpolated-inside-bucket-fails",
        ),
        pytest.param(
            _b((0.25, 0), (0.5, 0), (1.0, 0), (INF, 200)),
            Verdict.FAIL,
            "latency: p95 latency above 1s > 500ms over 5m (200 requests; 0% at or under 500ms)",
            INF,
            id="all-requests-in-inf-bucket-fails-above-last-bound",
        ),
        pytest.param(
            (),
            Verdict.INCONCLUSIVE,
            "latency: no data over 5m",
            None,
            id="empty-buckets-no-data",
        ),
        pytest.param(
            _b((0.5, 0), (INF, 0)),
            Verdict.INCONCLUSIVE,
            "latency: too little traffic: 0 requests over 5m < 100 needed",
            None,
            id="zero-requests-inconclusive",
        ),
        pytest.param(
            _b((0.5, 10), (INF, 50)),
            Verdict.INCONCLUSIVE,
            "latency: too little traffic: 50 requests over 5m < 100 needed",
            None,
            id="too-little-traffic-even-when-slow",
        ),
    ],
)
def test_judge_latency(
    buckets: Buckets, verdict: Verdict, reason: str, value: float | None
) -> None:
    r = judge_latency(LATENCY, buckets, AT, 300)
    assert (r.verdict, r.reason) == (verdict, reason)
    if value is None:
        assert r.value is None
    else:
        assert r.value == pytest.approx(value)


def test_judge_latency_none_is_no_data_and_follows_policy() -> None:
    gate = LATENCY.model_copy(update={"no_data": NoData.FAIL})
    assert judge_latency(LATENCY, None, AT, 300).verdict is Verdict.INCONCLUSIVE
    assert judge_latency(gate, None, AT, 300).verdict is Verdict.FAIL


# -- judge_series ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("series", "requests", "verdict", "reason", "labels"),
    [
        pytest.param(
            [], None, Verdict.INCONCLUSIVE, "custom: no data over 2m", {}, id="empty-vector-no-data"
        ),
        pytest.param(
            [({"pod": "a"}, NAN)],
            None,
            Verdict.INCONCLUSIVE,
            "custom: value is NaN over 2m",
            {},
            id="nan-value-inconclusive",
        ),
        pytest.param(
            [({"pod": "a"}, INF)],
            None,
            Verdict.FAIL,
            "custom: value +Inf > 0.1 over 2m",
            {},
            id="inf-value-fails",
        ),
        pytest.param(
            [({"pod": "a"}, 0.05)],
            None,
            Verdict.PASS,
            "custom: value 0.05 <= 0.1 over 2m",
            {},
            id="single-series-passes",
        ),
        pytest.param(
            [({"pod": "a"}, 0.05)],
            500.0,
            Verdict.PASS,
            "custom: value 0.05 <= 0.1 over 2m (500 requests)",
            {},
            id="requests-query-shown",
        ),
        pytest.param(
            [({"pod": "a"}, 0.5)],
            20.0,
            Verdict.INCONCLUSIVE,
            "custom: too little traffic: 20 requests over 2m < 100 needed",
            {},
            id="requests-query-too-little-traffic",
        ),
        pytest.param(
            [({"pod": "a"}, 0.01), ({"pod": "b"}, 0.19)],
            None,
            Verdict.FAIL,
            "custom: value 0.19 > 0.1 over 2m [pod='b']; 1 of 2 series fail",
            {"pod": "b"},
            id="one-of-two-failing-fails-naming-it-mean-would-pass",
        ),
        pytest.param(
            [({"pod": "a"}, 0.2), ({"pod": "b"}, 0.3), ({"pod": "c"}, 0.0)],
            None,
            Verdict.FAIL,
            "custom: value 0.2 > 0.1 over 2m [pod='a']; 2 of 3 series fail",
            {"pod": "a"},
            id="two-of-three-failing",
        ),
        pytest.param(
            [({"pod": "a"}, 0.01), ({"pod": "b"}, NAN)],
            None,
            Verdict.INCONCLUSIVE,
            "custom: value is NaN over 2m [pod='b']; 1 of 2 series inconclusive",
            {"pod": "b"},
            id="nan-series-beats-passing-series",
        ),
        pytest.param(
            [({"pod": "a"}, 0.01), ({"pod": "b"}, 0.02)],
            None,
            Verdict.PASS,
            "custom: value 0.01 <= 0.1 over 2m [pod='a']; 2 of 2 series pass",
            {"pod": "a"},
            id="all-series-pass",
        ),
    ],
)
def test_judge_series(
    series: list[tuple[dict[str, str], float]],
    requests: float | None,
    verdict: Verdict,
    reason: str,
    labels: dict[str, str],
) -> None:
    r = judge_series(QUERY, series, requests, AT, 120)
    assert (r.verdict, r.reason, r.labels) == (verdict, reason, labels)


# -- judge_sustained ------------------------------------------------------------------------

BAD = Counts(1000, 30)  # 3%: above the 2% threshold
GOOD = Counts(1000, 10)  # 1%
THIN = Counts(10, 5)  # too little traffic: a gap


def _points(
    default: Counts | None, overrides: dict[int, Counts | None] | None = None, span: int = 900
) -> list[tuple[datetime, Counts]]:
    """A point every 30s from AT-span to AT; ``overrides`` by seconds before AT (None drops it)."""
    out = []
    for ago in range(span, -1, -30):
        c = (overrides or {}).get(ago, default)
        if c is not None:
            out.append((AT - timedelta(seconds=ago), c))
    return out


@pytest.mark.parametrize(
    ("points", "verdict", "reason"),
    [
        pytest.param(
            _points(GOOD, {ago: BAD for ago in range(0, 601, 30)}),
            Verdict.WARN,
            "sustained: error ratio 3% > 2% over 5m (1,000 requests), held 10m of 15m",
            id="breach-held-10m-warns",
        ),
        pytest.param(
            _points(GOOD, {0: BAD}),
            Verdict.WARN,
            "sustained: error ratio 3% > 2% over 5m (1,000 requests), held 0s of 15m",
            id="breach-starting-now-warns",
        ),
        pytest.param(
            _points(BAD),
            Verdict.FAIL,
            "sustained: error ratio 3% > 2% over 5m (1,000 requests), held 15m (>= 15m); "
            "3% over 15m (3,000 requests)",
            id="held-15m-and-confirmed-fails",
        ),
        pytest.param(
            _points(BAD, {ago: THIN for ago in range(300, 481, 30)}),
            Verdict.FAIL,
            "sustained: error ratio 3% > 2% over 5m (1,000 requests), held 15m (>= 15m); "
            "3.23% over 15m (2,010 requests)",
            id="low-traffic-gap-in-middle-does-not-reset",
        ),
        pytest.param(
            _points(BAD, {ago: None for ago in range(330, 571, 30)}),
            Verdict.FAIL,
            "sustained: error ratio 3% > 2% over 5m (1,000 requests), held 15m (>= 15m); "
            "3% over 15m (3,000 requests)",
            id="missing-points-in-middle-do-not-reset",
        ),
        pytest.param(
            _points(BAD, {450: GOOD}),
            Verdict.WARN,
            "sustained: error ratio 3% > 2% over 5m (1,000 requests), held 7m of 15m",
            id="healthy-point-resets-streak",
        ),
        pytest.param(
            _points(BAD, {0: Counts(100, 3), 300: Counts(99, 0), 600: Counts(99, 0)}),
            Verdict.WARN,
            "sustained: error ratio 3% > 2% over 5m (100 requests), held 15m; "
            "1.01% over 15m does not confirm",
            id="confirm-over-15m-below-threshold-warns",
        ),
        pytest.param(
            _points(BAD, {0: GOOD}),
            Verdict.PASS,
            "sustained: error ratio 1% <= 2% over 5m (1,000 requests)",
            id="healthy-now-passes-whatever-came-before",
        ),
        pytest.param(
            _points(BAD, {0: THIN}),
            Verdict.INCONCLUSIVE,
            "sustained: too little traffic: 10 requests over 5m < 100 needed",
            id="gap-now-inconclusive",
        ),
        pytest.param(
            _points(BAD, {0: None}),
            Verdict.INCONCLUSIVE,
            "sustained: no data over 5m",
            id="no-point-now-no-data",
        ),
        pytest.param([], Verdict.INCONCLUSIVE, "sustained: no data over 5m", id="no-points"),
    ],
)
def test_judge_sustained(
    points: list[tuple[datetime, Counts]], verdict: Verdict, reason: str
) -> None:
    r = judge_sustained(SUSTAINED, points, AT, 300, _confirm(points))
    assert (r.verdict, r.reason) == (verdict, reason)


def _confirm(points: list[tuple[datetime, Counts]]) -> Counts | None:
    """The 15m confirmation as the sum of the three 5m windows ending at AT, AT-5m, AT-10m."""
    chosen = [c for t, c in points if (AT - t).total_seconds() in (0, 300, 600)]
    if not chosen:
        return None
    return Counts(sum(c.requests for c in chosen), sum(c.errors for c in chosen))


def test_judge_sustained_ignores_point_order() -> None:
    points = _points(BAD)
    r = judge_sustained(SUSTAINED, list(reversed(points)), AT, 300, _confirm(points))
    assert r.verdict is Verdict.FAIL


def test_sustained_needs_breaching_evidence_spread_over_the_period() -> None:
    """29 of 31 points without enough traffic: the two breaching ends are 15m apart, and the
    15 minutes between them were never judged, so the breach has not held 15m."""
    points = _points(THIN, {0: BAD, 900: BAD})
    r = judge_sustained(SUSTAINED, points, AT, 300, Counts(3000, 90))
    assert r.verdict is Verdict.WARN
    assert r.reason.endswith("held 0s of 15m")


@pytest.mark.parametrize(
    ("judged_every_s", "verdict"),
    [(300, Verdict.FAIL), (330, Verdict.WARN)],
    ids=["breaching-points-one-window-apart-cover-15m", "wider-gaps-leave-it-unproven"],
)
def test_sustained_coverage_rule_is_one_window_between_breaching_points(
    judged_every_s: int, verdict: Verdict
) -> None:
    judged = set(range(0, 901, judged_every_s)) | {900}
    points = _points(THIN, {ago: BAD for ago in judged})
    r = judge_sustained(SUSTAINED, points, AT, 300, Counts(3000, 90))
    assert r.verdict is verdict, r.reason


def test_sustained_confirmation_must_be_significant() -> None:
    """3% over 15m from 300 requests cannot tell 3% from 2% at 95%: warn, not fail."""
    points = _points(Counts(100, 3))
    r = judge_sustained(SUSTAINED, points, AT, 300, Counts(300, 9))
    assert r.verdict is Verdict.WARN
    assert "3% over 15m (300 requests) is not significant at 95% (lower bound" in r.reason
    r = judge_sustained(SUSTAINED, points, AT, 300, Counts(30_000, 900))
    assert r.verdict is Verdict.FAIL, r.reason


def test_sustained_held_is_exact_at_sub_millisecond_instants() -> None:
    """An evaluation instant 0.4 ms past a millisecond once made "held 15m" 899.9996 s."""
    at = AT + timedelta(microseconds=400)
    points = _points(BAD)  # Prometheus answers with millisecond timestamps
    r = judge_sustained(SUSTAINED, points, at, 300, Counts(3000, 90))
    assert r.verdict is Verdict.FAIL, r.reason


# -- judge_baseline -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "candidate", "baseline", "verdict", "reason"),
    [
        pytest.param(
            BASELINE,
            (0.05, 1000),
            (0.01, 1000),
            Verdict.FAIL,
            "vs-stable: candidate error ratio 5% is 4 points above baseline 1% "
            "(> 1 points allowed) over 5m (1,000 requests vs 1,000)",
            id="candidate-worse-by-more-than-allowed-fails",
        ),
        pytest.param(
            BASELINE,
            (0.015, 1000),
            (0.01, 1000),
            Verdict.PASS,
            "vs-stable: candidate error ratio 1.5% is 0.5 points above baseline 1% "
            "(<= 1 points allowed) over 5m (1,000 requests vs 1,000)",
            id="candidate-worse-within-allowance-passes",
        ),
        pytest.param(
            BASELINE,
            (0.001, 1000),
            (0.2, 1000),
            Verdict.PASS,
            "vs-stable: candidate error ratio 0.1% is 19.9 points below baseline 20% "
            "(<= 1 points allowed) over 5m (1,000 requests vs 1,000)",
            id="bad-baseline-never-fails-good-candidate",
        ),
        pytest.param(
            BASELINE,
            (0.001, 1000),
            None,
            Verdict.NOT_APPLICABLE,
            "vs-stable: not applicable: no baseline data over 5m; the absolute gates judge "
            "the candidate",
            id="missing-baseline-not-applicable",
        ),
        pytest.param(
            BASELINE,
            (0.001, 1000),
            (0.0, 20),
            Verdict.NOT_APPLICABLE,
            "vs-stable: not applicable: baseline has too little traffic (20 requests < 100) "
            "over 5m; the absolute gates judge the candidate",
            id="thin-baseline-not-applicable",
        ),
        pytest.param(
            BASELINE,
            (0.001, 1000),
            (math.nan, 5000),
            Verdict.NOT_APPLICABLE,
            "vs-stable: not applicable: baseline error ratio is NaN (5,000 requests) over 5m; "
            "the absolute gates judge the candidate",
            id="nan-baseline-with-traffic-says-nan-not-too-little-traffic",
        ),
        pytest.param(
            BASELINE,
            (0.04, 1000),
            (0.03, 1000),
            Verdict.PASS,
            "vs-stable: candidate error ratio 4% is 1 points above baseline 3% "
            "(<= 1 points allowed) over 5m (1,000 requests vs 1,000)",
            id="increase-equal-to-the-limit-passes-without-float-drift",
        ),
        pytest.param(
            BASELINE,
            None,
            (0.0, 1000),
            Verdict.INCONCLUSIVE,
            "vs-stable: no candidate data over 5m",
            id="missing-candidate-inconclusive",
        ),
        pytest.param(
            BASELINE,
            (0.5, 20),
            (0.0, 1000),
            Verdict.INCONCLUSIVE,
            "vs-stable: too little traffic: 20 requests over 5m < 100 needed",
            id="thin-candidate-inconclusive",
        ),
        pytest.param(
            LATENCY_BASELINE,
            (0.45, 500),
            (0.3, 500),
            Verdict.FAIL,
            "lat-vs-stable: candidate p95 latency 450ms is 150ms above baseline 300ms "
            "(> 100ms allowed) over 5m (500 requests vs 500)",
            id="latency-worse-than-allowed-fails",
        ),
        pytest.param(
            LATENCY_BASELINE,
            (INF, 500),
            (INF, 500),
            Verdict.INCONCLUSIVE,
            "lat-vs-stable: candidate p95 latency +Inf and baseline +Inf cannot be compared "
            "over 5m",
            id="both-past-last-bucket-cannot-pass",
        ),
        pytest.param(
            LATENCY_BASELINE,
            (INF, 500),
            (0.3, 500),
            Verdict.FAIL,
            "lat-vs-stable: candidate p95 latency +Inf is +Inf above baseline 300ms "
            "(> 100ms allowed) over 5m (500 requests vs 500)",
            id="candidate-past-last-bucket-fails",
        ),
    ],
)
def test_judge_baseline(
    gate: GateSpec,
    candidate: tuple[float, float] | None,
    baseline: tuple[float, float] | None,
    verdict: Verdict,
    reason: str,
) -> None:
    r = judge_baseline(gate, candidate, baseline, AT, 300)
    assert (r.verdict, r.reason) == (verdict, reason)


def test_provider_error_is_inconclusive_never_pass() -> None:
    r = provider_error(ABORT, AT, "prometheus at http://x: ConnectionError")
    assert r.verdict is Verdict.INCONCLUSIVE
    assert r.reason == "abort: measurement error: prometheus at http://x: ConnectionError"
    assert is_measurement_error(r)  # what the service counts as a metrics provider error
    failed_closed = InconclusiveTracker().apply(
        ABORT.model_copy(update={"inconclusive_deadline": 0.0}), r, AT
    )
    assert failed_closed.verdict is Verdict.FAIL and is_measurement_error(failed_closed)
    assert not is_measurement_error(no_data(ABORT, AT, 120.0))


# -- the inconclusive tracker ---------------------------------------------------------------

TEN_MINUTE_DEADLINE = ABORT.model_copy(update={"inconclusive_deadline": 600.0})
START = AT


def _result(verdict: Verdict, minutes: float) -> GateResult:
    return GateResult(
        gate="abort",
        verdict=verdict,
        reason="abort: no data over 2m",
        at=START + timedelta(minutes=minutes),
    )


INC, P, W, F = Verdict.INCONCLUSIVE, Verdict.PASS, Verdict.WARN, Verdict.FAIL


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [(INC, 1), (INC, 5), (INC, 10.9)],
            [INC, INC, INC],
            id="inconclusive-before-deadline-holds",
        ),
        pytest.param(
            [(INC, 1), (INC, 6), (INC, 11)], [INC, INC, F], id="inconclusive-at-deadline-fails"
        ),
        pytest.param([(INC, 1), (INC, 20)], [INC, F], id="inconclusive-past-deadline-fails"),
        pytest.param(
            [(INC, 1), (INC, 8), (P, 9), (INC, 10), (INC, 19)],
            [INC, INC, P, INC, INC],
            id="pass-resets-the-clock",
        ),
        pytest.param(
            [(INC, 1), (INC, 8), (W, 9), (INC, 10), (INC, 20)],
            [INC, INC, W, INC, F],
            id="warn-resets-the-clock-then-deadline-again",
        ),
        pytest.param([(F, 1), (F, 30)], [F, F], id="fail-passes-through"),
    ],
)
def test_tracker(steps: list[tuple[Verdict, float]], expected: list[Verdict]) -> None:
    tracker = InconclusiveTracker()
    got = [
        tracker.apply(TEN_MINUTE_DEADLINE, _result(verdict, minutes), START).verdict
        for verdict, minutes in steps
    ]
    assert got == expected


def test_tracker_fail_reason_says_failing_closed() -> None:
    tracker = InconclusiveTracker()
    tracker.apply(TEN_MINUTE_DEADLINE, _result(INC, 1), START)
    r = tracker.apply(TEN_MINUTE_DEADLINE, _result(INC, 11), START)
    assert r.verdict is Verdict.FAIL
    assert r.reason == (
        "abort: no data over 2m; inconclusive for 10m >= deadline 10m, failing closed"
    )


def test_tracker_conclusive_result_forgets_since() -> None:
    tracker = InconclusiveTracker()
    tracker.apply(TEN_MINUTE_DEADLINE, _result(INC, 1), START)
    assert tracker.inconclusive_since("abort") == START + timedelta(minutes=1)
    tracker.apply(TEN_MINUTE_DEADLINE, _result(P, 2), START)
    assert tracker.inconclusive_since("abort") is None


def test_tracker_counts_each_gate_separately() -> None:
    tracker = InconclusiveTracker()
    other = TEN_MINUTE_DEADLINE.model_copy(update={"name": "other"})
    tracker.apply(TEN_MINUTE_DEADLINE, _result(INC, 0), START)
    assert tracker.apply(other, _result(INC, 10), START).verdict is Verdict.INCONCLUSIVE
    assert tracker.apply(TEN_MINUTE_DEADLINE, _result(INC, 10), START).verdict is Verdict.FAIL


# -- worst and decide -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        pytest.param([], P, id="none-is-pass"),
        pytest.param([P, P], P, id="all-pass"),
        pytest.param([P, INC], INC, id="inconclusive-beats-pass"),
        pytest.param([INC, W, P], W, id="warn-beats-inconclusive"),
        pytest.param([W, F, INC, P], F, id="fail-beats-everything"),
        pytest.param(iter([P, F]), F, id="takes-any-iterable"),
    ],
)
def test_worst(verdicts: Sequence[Verdict], expected: Verdict) -> None:
    assert worst(verdicts) is expected


def _results(*verdicts: Verdict) -> list[GateResult]:
    return [GateResult(gate=f"g{i}", verdict=v, reason="", at=AT) for i, v in enumerate(verdicts)]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        pytest.param([], Decision.HOLD, id="no-results-hold"),
        pytest.param([P, P, P], Decision.PROMOTE, id="all-pass-promotes"),
        pytest.param([P, INC], Decision.HOLD, id="inconclusive-holds"),
        pytest.param([P, W], Decision.HOLD, id="warn-holds-never-promotes"),
        pytest.param([P, W, INC, F], Decision.ROLLBACK, id="any-fail-rolls-back"),
        pytest.param([F], Decision.ROLLBACK, id="single-fail-rolls-back"),
    ],
)
def test_decide(verdicts: list[Verdict], expected: Decision) -> None:
    assert decide(_results(*verdicts)) is expected
    assert decide(iter(_results(*verdicts))) is expected


# -- latency histograms that cannot answer ------------------------------------------------
# Buckets 0.1, 0.25, +Inf: a p95 < 500ms gate's threshold lies in the +Inf bucket.


@pytest.mark.parametrize(
    ("buckets", "verdict", "reason", "value"),
    [
        pytest.param(
            _b((0.1, 100), (0.25, 180), (INF, 200)),
            Verdict.INCONCLUSIVE,
            "latency: p95 latency above 250ms; the histogram cannot tell whether it is "
            "<= 500ms over 5m (200 requests; 90% at or under 250ms, the largest bucket bound; "
            "add a bucket at le=0.5)",
            INF,
            id="threshold-in-inf-bucket-share-below-quantile-is-inconclusive",
        ),
        pytest.param(
            _b((0.1, 100), (0.25, 192), (INF, 200)),
            Verdict.PASS,
            "latency: p95 latency 247ms <= 500ms over 5m "
            "(200 requests; 96% at or under 250ms, the largest bucket bound)",
            0.1 + 0.15 * (190 - 100) / 92,
            id="largest-bound-already-holds-the-quantile-passes",
        ),
        pytest.param(
            _b((0.1, 100), (0.25, 190), (INF, 200)),
            Verdict.PASS,
            "latency: p95 latency 250ms <= 500ms over 5m "
            "(200 requests; 95% at or under 250ms, the largest bucket bound)",
            0.25,
            id="largest-bound-holding-exactly-the-quantile-passes",
        ),
        pytest.param(
            _b(
                (INF, 200),
            ),
            Verdict.INCONCLUSIVE,
            "latency: p95 latency unknown; the histogram cannot tell whether it is <= 500ms "
            "over 5m (200 requests; no bucket below +Inf; add a bucket at le=0.5)",
            None,
            id="only-an-inf-bucket-is-inconclusive",
        ),
        pytest.param(
            _b((0.1, 100), (0.25, 189), (0.5, 189), (INF, 200)),
            Verdict.FAIL,
            "latency: p95 latency above 500ms > 500ms over 5m "
            "(200 requests; 94.5% at or under 500ms)",
            INF,
            id="threshold-on-the-largest-bound-is-exact-and-fails",
        ),
        pytest.param(
            _b((0.1, 185), (1.0, 200), (INF, 200)),
            Verdict.PASS,
            "latency: p95 latency 400ms <= 500ms over 5m "
            "(200 requests; 95.83% at or under 500ms, interpolated)",
            0.4,
            id="threshold-inside-a-finite-bucket-is-interpolated",
        ),
        pytest.param(
            _b((0.25, 150), (1.0, 200), (INF, 200)),
            Verdict.FAIL,
            "latency: p95 latency 850ms > 500ms over 5m "
            "(200 requests; 83.33% at or under 500ms, interpolated)",
            0.85,
            id="interpolated-share-below-the-quantile-fails",
        ),
    ],
)
def test_judge_latency_when_the_histogram_cannot_bound_the_threshold(
    buckets: Buckets, verdict: Verdict, reason: str, value: float | None
) -> None:
    r = judge_latency(LATENCY, buckets, AT, 300)
    assert (r.verdict, r.reason) == (verdict, reason)
    if value is None:
        assert r.value is None
    else:
        assert r.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("bound", "share", "exact"),
    [
        pytest.param(0.25, 0.9, True, id="on-a-bound-exact"),
        pytest.param(0.05, 0.25, False, id="first-bucket-interpolated-from-zero"),
        pytest.param(0.175, 0.7, False, id="inside-a-bucket-interpolated"),
        pytest.param(0.5, NAN, False, id="in-the-inf-bucket-unknown"),
    ],
)
def test_share_at_or_under(bound: float, share: float, exact: bool) -> None:
    got, got_exact = share_at_or_under(_b((0.1, 100), (0.25, 180), (INF, 200)), bound)
    assert got_exact is exact
    assert got == pytest.approx(share, nan_ok=True)


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        pytest.param(0.5, _b((0.1, 100), (0.25, 180), (INF, 200)), 0.1, id="on-a-bound"),
        pytest.param(0.7, _b((0.1, 100), (0.25, 180), (INF, 200)), 0.175, id="interpolated"),
        pytest.param(
            0.25, _b((0.1, 100), (0.25, 180), (INF, 200)), 0.05, id="first-bucket-from-zero"
        ),
        # histogram_quantile says 0.25 here; the quantile is only known to be above it.
        pytest.param(
            0.95,
            _b((0.1, 100), (0.25, 180), (INF, 200)),
            INF,
            id="rank-in-the-inf-bucket-is-above-the-largest-bound",
        ),
        # histogram_quantile says NaN for fewer than two buckets.
        pytest.param(
            0.95,
            _b(
                (INF, 200),
            ),
            NAN,
            id="only-an-inf-bucket-is-unknown",
        ),
    ],
)
def test_quantile_from_buckets(q: float, buckets: Buckets, expected: float) -> None:
    assert quantile_from_buckets(q, buckets) == pytest.approx(expected, nan_ok=True)
