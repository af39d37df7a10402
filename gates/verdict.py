"""Pure verdict logic: measurements in, pass | warn | fail | inconclusive out, with a reason.

Every reason names the gate, the value, the threshold, the window and the request
count, e.g. "abort: error ratio 6.1% > 5% over 2m (2,412 requests)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from statistics import NormalDist

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from .provider import Buckets, Counts
from .spec import Comparison, GateSpec, Metric, NoData


def fmt_value(gate: GateSpec, value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if gate.metric is Metric.ERROR_RATIO:
        return fmt_pct(value)
    if gate.metric is Metric.LATENCY:
        return fmt_seconds(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def fmt_pct(ratio: float) -> str:
    text = f"{ratio * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def fmt_seconds(seconds: float) -> str:
    if math.isinf(seconds):
        return "+Inf"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.3g}s"


def fmt_requests(n: float) -> str:
    return f"{n:,.0f} request{'s' if round(n) != 1 else ''}"


def _result(
    gate: GateSpec,
    verdict: Verdict,
    reason: str,
    at: datetime,
    *,
    value: float | None = None,
    window_s: float | None = None,
    requests: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> GateResult:
    return GateResult(
        gate=gate.name,
        verdict=verdict,
        reason=f"{gate.name}: {reason}",
        at=at,
        value=value,
        threshold=gate.threshold,
        window_s=window_s if window_s is not None else gate.window,
        requests=requests,
        labels=dict(labels or {}),
    )


def no_data(gate: GateSpec, at: datetime, window_s: float, why: str = "no data") -> GateResult:
    """No series at all: inconclusive, or fail when the gate says so. Never a pass."""
    verdict = Verdict.FAIL if gate.no_data is NoData.FAIL else Verdict.INCONCLUSIVE
    return _result(gate, verdict, f"{why} over {human_duration(window_s)}", at, window_s=window_s)


def not_started(gate: GateSpec, at: datetime) -> GateResult:
    """Before the release starts there is nothing to judge, whatever the no-data policy."""
    return _result(gate, Verdict.INCONCLUSIVE, "release not started", at, window_s=0.0)


def not_applicable(gate: GateSpec, at: datetime, window_s: float, why: str) -> GateResult:
    """A comparison with nothing to compare against: neither a pass nor a hold."""
    return _result(gate, Verdict.NOT_APPLICABLE, f"not applicable: {why}", at, window_s=window_s)


MEASUREMENT_ERROR = "measurement error: "  # the reason of a result whose query kept failing


def provider_error(gate: GateSpec, at: datetime, error: str) -> GateResult:
    """A query that kept failing: inconclusive (and fails closed at the deadline)."""
    return _result(gate, Verdict.INCONCLUSIVE, f"{MEASUREMENT_ERROR}{error}", at)


def is_measurement_error(result: GateResult) -> bool:
    """Whether ``result`` is one of ``provider_error`` (its reason starts with its gate's
    name), also once it has failed closed."""
    return result.reason.startswith(f"{result.gate}: {MEASUREMENT_ERROR}")


def _too_little(gate: GateSpec, requests: float) -> bool:
    return math.isnan(requests) or requests < gate.min_requests or requests <= 0


def _little_traffic(
    gate: GateSpec, at: datetime, window_s: float, requests: float, labels: Mapping[str, str]
) -> GateResult:
    shown = "NaN" if math.isnan(requests) else f"{requests:,.0f}"
    return _result(
        gate,
        Verdict.INCONCLUSIVE,
        f"too little traffic: {shown} requests over {human_duration(window_s)} "
        f"< {gate.min_requests:,} needed",
        at,
        window_s=window_s,
        requests=None if math.isnan(requests) else requests,
        labels=labels,
    )


def _compare(
    gate: GateSpec,
    value: float,
    at: datetime,
    window_s: float,
    requests: float | None,
    labels: Mapping[str, str],
    extra: str = "",
) -> GateResult:
    where = f" over {human_duration(window_s)}"
    counted = (
        f" ({fmt_requests(requests)}{extra})"
        if requests is not None
        else (f" ({extra.lstrip('; ')})" if extra else "")
    )
    series = f" [{_labels_text(labels)}]" if labels else ""
    if math.isnan(value):
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"{gate.subject} is NaN{where}{series}",
            at,
            value=value,
            window_s=window_s,
            requests=requests,
            labels=labels,
        )
    assert gate.threshold is not None
    breach = gate.comparison.breaches(value, gate.threshold)
    op = gate.comparison.value if breach else gate.comparison.holds_text
    text = (
        f"{gate.subject} {fmt_value(gate, value)} {op} {fmt_value(gate, gate.threshold)}"
        f"{where}{counted}{series}"
    )
    return _result(
        gate,
        Verdict.FAIL if breach else Verdict.PASS,
        text,
        at,
        value=value,
        window_s=window_s,
        requests=requests,
        labels=labels,
    )


def _labels_text(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items()))


def error_ratio(counts: Counts) -> float:
    return counts.errors / counts.requests if counts.requests > 0 else math.nan


def judge_error_ratio(
    gate: GateSpec, counts: Counts | None, at: datetime, window_s: float
) -> GateResult:
    """The candidate's 5xx ratio against the threshold, once the window has enough traffic."""
    if counts is None:
        return no_data(gate, at, window_s)
    if _too_little(gate, counts.requests):
        return _little_traffic(gate, at, window_s, counts.requests, {})
    result = _compare(gate, error_ratio(counts), at, window_s, counts.requests, {})
    if result.verdict is not Verdict.FAIL or not gate.confidence:
        return result
    # A breach seen in few requests may be noise: it fails only when the Wilson bound at
    # the sequential boundary (the gate's confidence, stricter in few requests) is past
    # the threshold too; until then it warns (holds).
    assert gate.threshold is not None
    upper = gate.comparison in (Comparison.LT, Comparison.LE)
    seq = sequential_bound(counts.errors, counts.requests, gate.confidence, upper=upper)
    if gate.comparison.breaches(seq.bound, gate.threshold):
        return result
    return replace(
        result,
        verdict=Verdict.WARN,
        reason=f"{result.reason}; not significant at {fmt_pct(gate.confidence)} ({seq.text})",
    )


def wilson_bound(errors: float, requests: float, confidence: float, *, upper: bool) -> float:
    """One-sided Wilson score bound of errors/requests at ``confidence``."""
    if requests <= 0:
        return math.nan
    return _wilson(errors, requests, NormalDist().inv_cdf(confidence), upper=upper)


def _wilson(errors: float, requests: float, z: float, *, upper: bool) -> float:
    """One-sided Wilson score bound of errors/requests, ``z`` standard errors out."""
    if requests <= 0:
        return math.nan
    p = min(max(errors / requests, 0.0), 1.0)
    n = requests
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre + margin if upper else centre - margin


# The sequential boundary. A guard looks at its data every 250ms, over overlapping
# windows and many candidate onsets, so a fixed 95% per look is loose where the evidence
# is small: a healthy 1% candidate at 1 request/s shows 10 5xx in 108 requests (Wilson
# lower bound 5.6% at 95%) about once in 25,000 hours. As in a group-sequential design
# with an O'Brien-Fleming boundary, ``n`` requests must clear the gate's z scaled by
# sqrt(SEQUENTIAL_REQUESTS / n), and from SEQUENTIAL_REQUESTS on the gate's own z: at
# 95%, z 2.60 (99.53%) at 100 requests, 2.50 at 108 (10 or 11 5xx in 108 warn), 2.12 at
# 150, 1.645 from 250 on. The Wilson bound is the score test inverted, so below 250
# requests the boundary is a fixed excess: at 5% and 95%, more than 5.67 5xx beyond 5% of
# the requests (12 in 108, 14 in 150). From 250 requests on (10 requests/s: every window)
# it is the plain Wilson bound at the gate's confidence. 250 puts the healthy candidate's
# window rule at about one abort in two million hours and keeps 10% 5xx at 1 request/s
# failing within 2 minutes (median); see bench/abort_delay.py.
SEQUENTIAL_REQUESTS = 250


@dataclass(frozen=True)
class Sequential:
    """A one-sided Wilson bound at the sequential boundary for ``requests``."""

    bound: float
    level: float  # the one-sided confidence asked of this many requests
    requests: float
    upper: bool

    @property
    def text(self) -> str:
        """``lower bound 4.35%, sequential boundary 99.38% for 108 requests``."""
        text = f"{'upper' if self.upper else 'lower'} bound {fmt_pct(self.bound)}"
        if self.requests < SEQUENTIAL_REQUESTS:
            text += f", sequential boundary {fmt_pct(self.level)} for {fmt_requests(self.requests)}"
        return text


def sequential_z(requests: float, confidence: float) -> float:
    """The z a breach in ``requests`` must clear: the gate's, stricter in fewer requests."""
    z = NormalDist().inv_cdf(confidence)
    if requests <= 0 or math.isnan(requests):
        return z
    return z * math.sqrt(max(1.0, SEQUENTIAL_REQUESTS / requests))


def sequential_bound(
    errors: float, requests: float, confidence: float, *, upper: bool
) -> Sequential:
    """The one-sided Wilson bound of errors/requests at the sequential boundary.

    The one place the error-ratio significance of a repeated look is decided: the window
    rule (``judge_error_ratio``) and the evidence since a breach began (gates/evidence.py).
    """
    z = sequential_z(requests, confidence)
    return Sequential(
        bound=_wilson(errors, requests, z, upper=upper),
        level=NormalDist().cdf(z),
        requests=requests,
        upper=upper,
    )


def share_at_or_under(buckets: Buckets, bound_s: float) -> tuple[float, bool]:
    """The share of requests that took at most ``bound_s``, and whether it is exact.

    Exact when ``bound_s`` is a bucket boundary; otherwise interpolated linearly inside
    the finite bucket that holds it, as histogram_quantile does (from 0 in the first
    bucket). Past the largest finite bound, in the +Inf bucket, a histogram says nothing
    about where its requests fall: the share is NaN (unknown), and the share at the
    largest finite bound is only a lower bound of it.
    """
    total = buckets[-1][1]
    if total <= 0:
        return math.nan, True
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if math.isclose(le, bound_s, rel_tol=1e-9):
            return count / total, True
        if le > bound_s:
            if math.isinf(le):
                return math.nan, False
            frac = (bound_s - prev_le) / (le - prev_le)
            return (prev_count + frac * (count - prev_count)) / total, False
        prev_le, prev_count = le, count
    return 1.0, True


def quantile_from_buckets(q: float, buckets: Buckets) -> float:
    """The q-quantile, interpolated inside its bucket like histogram_quantile.

    Where histogram_quantile answers the largest finite bound for a rank in the +Inf
    bucket, this answers +Inf: the quantile is only known to be above that bound, and
    a bound read as the answer would pass a comparison it cannot support. A histogram
    with no finite bucket gives NaN (histogram_quantile's answer too): nothing is known.
    """
    total = buckets[-1][1]
    if total <= 0 or len(buckets) < 2:
        return math.nan
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return math.inf
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return math.inf


def judge_latency(
    gate: GateSpec, buckets: Buckets | None, at: datetime, window_s: float
) -> GateResult:
    """p(q) < threshold, judged as: the share of requests at or under the threshold >= q.

    The share is exact when the threshold is a bucket boundary (0.5 s is one in the
    default buckets), where histogram_quantile would interpolate inside a bucket; inside
    a finite bucket it is interpolated the same way, and the reason says so. A threshold
    past the largest finite bound can still pass, exactly, when that bound already holds
    q of the requests; otherwise the histogram cannot answer, and the gate is
    inconclusive with the bucket to add (a fail here would be a guess).
    """
    if not buckets:
        return no_data(gate, at, window_s)
    requests = buckets[-1][1]
    if _too_little(gate, requests):
        return _little_traffic(gate, at, window_s, requests, {})
    assert gate.threshold is not None
    share, exact = share_at_or_under(buckets, gate.threshold)
    estimate = quantile_from_buckets(gate.quantile, buckets)
    finite = [(le, count) for le, count in buckets if not math.isinf(le)]
    largest = finite[-1] if finite else None
    shown = fmt_seconds(estimate)
    if math.isinf(estimate):
        shown = f"above {fmt_seconds(largest[0] if largest else 0)}"
    head = f"{gate.subject} {shown}"
    where = f"over {human_duration(window_s)} ({fmt_requests(requests)}"
    if math.isnan(share):
        if largest is not None and largest[1] / requests >= gate.quantile:
            # The share at the threshold is at least the share at this smaller bound.
            return _result(
                gate,
                Verdict.PASS,
                f"{head} <= {fmt_seconds(gate.threshold)} {where}; "
                f"{fmt_pct(largest[1] / requests)} at or under {fmt_seconds(largest[0])}, "
                "the largest bucket bound)",
                at,
                value=estimate,
                window_s=window_s,
                requests=requests,
            )
        known = (
            f"{fmt_pct(largest[1] / requests)} at or under {fmt_seconds(largest[0])}, "
            "the largest bucket bound"
            if largest is not None
            else "no bucket below +Inf"
        )
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"{gate.subject} {'unknown' if math.isnan(estimate) else shown}; "
            f"the histogram cannot tell whether it is <= {fmt_seconds(gate.threshold)} "
            f"{where}; {known}; add a bucket at le={gate.threshold:g})",
            at,
            value=None if math.isnan(estimate) else estimate,
            window_s=window_s,
            requests=requests,
        )
    breach = share < gate.quantile
    op = ">" if breach else "<="
    text = (
        f"{head} {op} {fmt_seconds(gate.threshold)} {where}; {fmt_pct(share)} at or under "
        f"{fmt_seconds(gate.threshold)}{'' if exact else ', interpolated'})"
    )
    return _result(
        gate,
        Verdict.FAIL if breach else Verdict.PASS,
        text,
        at,
        value=estimate,
        window_s=window_s,
        requests=requests,
    )
