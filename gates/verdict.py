"""Pure verdict logic: measurements in, pass | warn | fail | inconclusive out, with a reason.

Every reason names the gate, the value, the threshold, the window and the request
count, e.g. "abort: error ratio 6.1% > 5% over 2m (2,412 requests)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from statistics import NormalDist

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict, worst

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


def provider_error(gate: GateSpec, at: datetime, error: str) -> GateResult:
    """A query that kept failing: inconclusive (and fails closed at the deadline)."""
    return _result(gate, Verdict.INCONCLUSIVE, f"measurement error: {error}", at)


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
    # A breach seen in few requests may be noise: it fails only when the Wilson bound
    # at the gate's confidence is past the threshold too; until then it warns (holds).
    assert gate.threshold is not None
    upper = gate.comparison in (Comparison.LT, Comparison.LE)
    bound = wilson_bound(counts.errors, counts.requests, gate.confidence, upper=upper)
    if gate.comparison.breaches(bound, gate.threshold):
        return result
    return replace(
        result,
        verdict=Verdict.WARN,
        reason=(
            f"{result.reason}; not significant at {fmt_pct(gate.confidence)} "
            f"({'upper' if upper else 'lower'} bound {fmt_pct(bound)})"
        ),
    )


def wilson_bound(errors: float, requests: float, confidence: float, *, upper: bool) -> float:
    """One-sided Wilson score bound of errors/requests at ``confidence``."""
    if requests <= 0:
        return math.nan
    z = NormalDist().inv_cdf(confidence)
    p = min(max(errors / requests, 0.0), 1.0)
    n = requests
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre + margin if upper else centre - margin


def share_at_or_under(buckets: Buckets, bound_s: float) -> tuple[float, bool]:
    """The share of requests that took at most ``bound_s``, and whether it is exact.

    Exact when ``bound_s`` is a bucket boundary; otherwise interpolated linearly inside
    the bucket that holds it, as histogram_quantile assumes.
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
                return prev_count / total, False
            frac = (bound_s - prev_le) / (le - prev_le)
            return (prev_count + frac * (count - prev_count)) / total, False
        prev_le, prev_count = le, count
    return 1.0, True


def quantile_from_buckets(q: float, buckets: Buckets) -> float:
    """The q-quantile, interpolated like histogram_quantile; +Inf past the last bound."""
    total = buckets[-1][1]
    if total <= 0:
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
    default buckets), where histogram_quantile would interpolate inside a bucket.
    """
    if not buckets:
        return no_data(gate, at, window_s)
    requests = buckets[-1][1]
    if _too_little(gate, requests):
        return _little_traffic(gate, at, window_s, requests, {})
    assert gate.threshold is not None
    share, exact = share_at_or_under(buckets, gate.threshold)
    estimate = quantile_from_buckets(gate.quantile, buckets)
    breach = share < gate.quantile
    op = ">" if breach else "<="
    shown = fmt_seconds(estimate)
    if math.isinf(estimate):
        shown = (
            f"above {fmt_seconds(max((le for le, _ in buckets if not math.isinf(le)), default=0))}"
        )
    text = (
        f"{gate.subject} {shown} {op} {fmt_seconds(gate.threshold)} over "
        f"{human_duration(window_s)} ({fmt_requests(requests)}; {fmt_pct(share)} at or under "
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


def judge_series(
    gate: GateSpec,
    series: Sequence[tuple[Mapping[str, str], float]],
    requests: float | None,
    at: datetime,
    window_s: float,
) -> GateResult:
    """A custom query's vector: each series is judged on its own and the worst one decides."""
    if not series:
        return no_data(gate, at, window_s)
    if requests is not None and _too_little(gate, requests):
        return _little_traffic(gate, at, window_s, requests, {})
    multi = len(series) > 1
    results = [
        _compare(gate, value, at, window_s, requests, labels if multi else {})
        for labels, value in series
    ]
    verdict = worst(r.verdict for r in results)
    chosen = next(r for r in results if r.verdict is verdict)
    if multi:
        bad = sum(1 for r in results if r.verdict is verdict)
        return _result(
            gate,
            verdict,
            f"{chosen.reason.split(': ', 1)[1]}; {bad} of {len(results)} series {verdict.value}",
            at,
            value=chosen.value,
            window_s=window_s,
            requests=requests,
            labels=chosen.labels,
        )
    return chosen


def judge_sustained(
    gate: GateSpec,
    points: Sequence[tuple[datetime, Counts]],
    at: datetime,
    window_s: float,
) -> GateResult:
    """Error ratio above the threshold that has held for ``sustained_for``.

    ``points`` are window ratios sampled over ``[at - sustained_for, at]``. A point with
    too little traffic or no data is a gap: it neither breaks nor confirms the streak
    (Prometheus `for:` clauses reset on a gap; a breach must be disproved, not missed).
    Held long enough, the breach is confirmed over ``confirm_window`` from
    non-overlapping windows before it fails; breaching but not yet held is a warning.
    """
    by_time = sorted(points, key=lambda p: p[0])
    current = by_time[-1] if by_time and by_time[-1][0] >= at - timedelta(seconds=1e-3) else None
    if current is None:
        return no_data(gate, at, window_s)
    counts = current[1]
    if _too_little(gate, counts.requests):
        return _little_traffic(gate, at, window_s, counts.requests, {})
    assert gate.threshold is not None
    ratio = error_ratio(counts)
    if not gate.comparison.breaches(ratio, gate.threshold):
        return _compare(gate, ratio, at, window_s, counts.requests, {})
    breach_start = current[0]
    for t, c in reversed(by_time[:-1]):
        if _too_little(gate, c.requests):
            continue
        if not gate.comparison.breaches(error_ratio(c), gate.threshold):
            break
        breach_start = t
    held = (at - breach_start).total_seconds()
    op = gate.comparison.value
    head = (
        f"{gate.subject} {fmt_pct(ratio)} {op} {fmt_pct(gate.threshold)} over "
        f"{human_duration(window_s)} ({fmt_requests(counts.requests)})"
    )
    if held + 1e-6 < gate.sustained_for:
        return _result(
            gate,
            Verdict.WARN,
            f"{head}, held {human_duration(held)} of {human_duration(gate.sustained_for)}",
            at,
            value=ratio,
            window_s=window_s,
            requests=counts.requests,
        )
    confirm = _confirm_counts(by_time, at, window_s, gate.confirm_s)
    if confirm is None or _too_little(gate, confirm.requests):
        return _result(
            gate,
            Verdict.WARN,
            f"{head}, held {human_duration(held)}; not confirmed over "
            f"{human_duration(gate.confirm_s)} (too little data)",
            at,
            value=ratio,
            window_s=window_s,
            requests=counts.requests,
        )
    confirmed = error_ratio(confirm)
    if not gate.comparison.breaches(confirmed, gate.threshold):
        return _result(
            gate,
            Verdict.WARN,
            f"{head}, held {human_duration(held)}; {fmt_pct(confirmed)} over "
            f"{human_duration(gate.confirm_s)} does not confirm",
            at,
            value=ratio,
            window_s=window_s,
            requests=counts.requests,
        )
    return _result(
        gate,
        Verdict.FAIL,
        f"{head}, held {human_duration(held)} (>= {human_duration(gate.sustained_for)}); "
        f"{fmt_pct(confirmed)} over {human_duration(gate.confirm_s)} "
        f"({fmt_requests(confirm.requests)})",
        at,
        value=ratio,
        window_s=window_s,
        requests=counts.requests,
    )


def _confirm_counts(
    points: Sequence[tuple[datetime, Counts]], at: datetime, window_s: float, confirm_s: float
) -> Counts | None:
    """Counts over ``confirm_s`` summed from non-overlapping windows ending at at, at-w, ..."""
    by_time = {round(t.timestamp(), 3): c for t, c in points}
    n = max(1, math.ceil(confirm_s / window_s - 1e-9))
    req = err = 0.0
    found = 0
    for k in range(n):
        c = by_time.get(round(at.timestamp() - k * window_s, 3))
        if c is not None:
            req += c.requests
            err += c.errors
            found += 1
    return Counts(requests=req, errors=err) if found else None


def judge_baseline(
    gate: GateSpec,
    candidate: tuple[float, float] | None,
    baseline: tuple[float, float] | None,
    at: datetime,
    window_s: float,
) -> GateResult:
    """candidate <= baseline + max_increase, both measured over the same window.

    Each side is (value, requests). A baseline worse than the candidate never fails
    it; the absolute gates judge the candidate on their own.
    """
    assert gate.max_increase is not None
    if candidate is None:
        return no_data(gate, at, window_s, "no candidate data")
    value, requests = candidate
    if _too_little(gate, requests):
        return _little_traffic(gate, at, window_s, requests, {})
    if baseline is None or _too_little(gate, baseline[1]) or math.isnan(baseline[0]):
        why = (
            "no baseline data"
            if baseline is None
            else (
                f"baseline has too little traffic ({baseline[1]:,.0f} requests "
                f"< {gate.min_requests:,})"
            )
        )
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"{why} over {human_duration(window_s)}",
            at,
            value=value,
            window_s=window_s,
            requests=requests,
        )
    base_value = baseline[0]
    if math.isnan(value):
        return _result(gate, Verdict.INCONCLUSIVE, f"{gate.subject} is NaN", at, window_s=window_s)
    increase = value - base_value
    if math.isnan(increase):
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"candidate {gate.subject} {fmt_value(gate, value)} and baseline "
            f"{fmt_value(gate, base_value)} cannot be compared over {human_duration(window_s)}",
            at,
            value=value,
            window_s=window_s,
            requests=requests,
        )
    breach = increase > gate.max_increase
    limit = (
        fmt_value(gate, gate.max_increase).replace("%", " points")
        if (gate.metric is Metric.ERROR_RATIO)
        else fmt_value(gate, gate.max_increase)
    )
    shown = (
        fmt_value(gate, abs(increase)).replace("%", " points")
        if (gate.metric is Metric.ERROR_RATIO)
        else fmt_value(gate, abs(increase))
    )
    direction = "above" if increase >= 0 else "below"
    text = (
        f"candidate {gate.subject} {fmt_value(gate, value)} is {shown} {direction} baseline "
        f"{fmt_value(gate, base_value)} ({'>' if breach else '<='} {limit} allowed) over "
        f"{human_duration(window_s)} ({fmt_requests(requests)} vs {baseline[1]:,.0f})"
    )
    return _result(
        gate,
        Verdict.FAIL if breach else Verdict.PASS,
        text,
        at,
        value=value,
        window_s=window_s,
        requests=requests,
    )
