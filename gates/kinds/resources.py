"""CPU and memory against the baseline: the candidate's pods against stable's, same window.

CPU is judged per request (CPU seconds used / requests counted), memory as held (the
mean of resident memory). With at least ``MIN_PODS`` pods on each side, the pods are
the samples of a Mann-Whitney test on the logarithm of each pod's figure, and the gate
fails when the candidate is significantly higher by more than ``max_ratio`` (the
interval's lower bound past log(max_ratio)). With fewer pods there is nothing to test:
the candidate's figure (all its pods pooled) may be at most ``max_ratio`` times the
baseline's, and fails when it is significantly so: the window is cut into ``SAMPLES``
samples, and the spread of each side's samples bounds its pooled figure (the ratio
estimator's variance, on the log scale) at the gate's ``confidence``. Above the limit
but not significantly: warn (hold).

Per request, a pod's fixed costs (scrapes, timers, a garbage collector, idle threads)
are spread over its requests: the demo service takes 0.55 ms of CPU a request at 50
requests/s and 0.34 ms at 150, the same code. The CPU comparison is made only while
the candidate's pods take at least 1/``MAX_LOAD_RATIO`` of the load of the baseline's
(about 1.3x for the demo at half); below it is not applicable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import TYPE_CHECKING

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from ..grid import grid
from ..mannwhitney import Classification, classify
from ..provider import PodSeries, ResourceProvider, Subject, Usage
from ..spec import GateSpec, Metric
from ..verdict import _little_traffic, _result, fmt_pct, fmt_requests, no_data, not_applicable

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release

MIN_PODS = 5  # fewer: a Mann-Whitney test cannot reach p < 0.05 (4 and 4: 0.03 at best)
MAX_LOAD_RATIO = 2.0
SAMPLES = 10  # samples per window, for the spread of the pooled figures
MIN_SAMPLES = 3


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    return {r.candidate: evaluate_one(ev, gate, r, at) for r in live}


def judged_window(
    ev: GateEvaluator, gate: GateSpec, r: Release, at: datetime
) -> tuple[float, GateResult | None]:
    """The window a resource gate may judge now: after the candidate's first traffic and
    its warm-up; or why it cannot judge yet (an inconclusive result)."""
    window = ev.window(gate, r, at)
    first = r.first_traffic(at) if r.weights else r.started
    if first is None:
        return window, _result(
            gate, Verdict.INCONCLUSIVE, "the candidate has no traffic yet", at, window_s=window
        )
    warm = first + timedelta(seconds=gate.warmup)
    since_warm = (at - warm).total_seconds()
    if since_warm <= 0:
        return window, _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"warming up: {human_duration((at - first).total_seconds())} of traffic of the "
            f"{human_duration(gate.warmup)} warm-up",
            at,
            window_s=0.0,
        )
    window = min(window, since_warm)
    needed = MIN_SAMPLES * sample_step(ev, gate.window)
    if window < min(needed, gate.window):
        return window, _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"too little data: {human_duration(window)} since the warm-up, "
            f"{human_duration(needed)} ({MIN_SAMPLES} samples) needed",
            at,
            window_s=window,
        )
    return window, None


def pods_measured(ev: GateEvaluator) -> tuple[ResourceProvider | None, str]:
    """The provider if it can measure the versions' pods; else None and why not."""
    if ev.profile.own_series is None:
        return None, (
            f"profile {ev.profile.name}'s request counter is a proxy's, not the pods': the "
            "versions' pods cannot be found by it (use profile http or istio)"
        )
    provider = ev.resource_provider
    if provider is None:
        return None, f"the metrics source {ev.provider.name} does not measure pods"
    return provider, ""


def sample_step(ev: GateEvaluator, window: float) -> float:
    """The length of one sample: a tenth of the window, and at least two scrapes (an
    increase over one scrape sees nothing)."""
    return max(window / SAMPLES, 2 * (ev.scrape_s or 0.0))


def evaluate_one(ev: GateEvaluator, gate: GateSpec, r: Release, at: datetime) -> GateResult:
    if r.baseline is None:
        return not_applicable(gate, at, ev.window(gate, r, at), "no baseline version named")
    provider, why = pods_measured(ev)
    if provider is None:
        return not_applicable(gate, at, ev.window(gate, r, at), why)
    window, early = judged_window(ev, gate, r, at)
    what = Usage.CPU_SECONDS if gate.metric is Metric.CPU else Usage.MEMORY_BYTES
    subjects = [r.candidate, r.baseline]
    metric_name = (
        ev.resources.cpu_metric if gate.metric is Metric.CPU else ev.resources.memory_metric
    )
    if early is not None:
        # Warming up, or too little data yet; but an app that exports nothing never will.
        if not exports(ev, provider, what, subjects, gate.window, at):
            return not_applicable(gate, at, window, f"neither version exports {metric_name}")
        return early
    step = sample_step(ev, gate.window)
    span = grid(at, max(0.0, window - step), step)
    ev.queries += 2
    usage = provider.usage_range(
        ev.profile, ev.resources, what, subjects, step, span.start, span.end, span.step_s
    )
    requests = provider.requests_range(
        ev.profile, ev.resources, subjects, step, span.start, span.end, span.step_s
    )
    return judge_resource(
        gate,
        usage.get(r.candidate, {}),
        usage.get(r.baseline, {}),
        requests.get(r.candidate, {}),
        requests.get(r.baseline, {}),
        window,
        at,
        metric_name=metric_name,
    )


def exports(
    ev: GateEvaluator,
    provider: ResourceProvider,
    what: Usage,
    subjects: Sequence[Subject],
    window: float,
    at: datetime,
) -> bool:
    """Whether any of ``subjects`` exports the figure at all (one point, one query)."""
    ev.queries += 1
    seen = provider.usage_range(ev.profile, ev.resources, what, subjects, window, at, at, 1.0)
    return bool(seen)


def fmt_figure(gate: GateSpec, value: float) -> str:
    """CPU seconds per request in ms or µs, memory in MiB."""
    if math.isnan(value):
        return "NaN"
    if gate.metric is Metric.CPU:
        ms = value * 1000
        return f"{ms:.3g}ms" if ms >= 0.1 else f"{ms * 1000:.3g}µs"
    return f"{value / 2**20:,.1f} MiB"


@dataclass(frozen=True)
class Side:
    """One version's pods over the window: per pod, and per sample of all pods together."""

    per_pod: dict[str, float]  # CPU seconds per request, or mean memory, of each pod
    requests: float
    pods: int
    value: float  # all pods pooled: CPU seconds per request, or mean memory per pod
    log_var: float  # the variance of log(value), from the samples' spread
    samples: int


def side(gate: GateSpec, usage: PodSeries, requests: PodSeries) -> Side:
    """A version's figures from per-pod points of usage and requests."""
    cpu = gate.metric is Metric.CPU
    req_per_pod = {pod: sum(v for _, v in pts) for pod, pts in requests.items()}
    total_requests = sum(req_per_pod.values())
    per_pod: dict[str, float] = {}
    for pod, pts in usage.items():
        if not pts:
            continue
        if cpu:
            n = req_per_pod.get(pod, 0.0)
            if n > 0:
                per_pod[pod] = sum(v for _, v in pts) / n
        else:
            per_pod[pod] = sum(v for _, v in pts) / len(pts)
    # Per sample, all pods together: usage summed (memory: averaged over pods), requests.
    used: dict[datetime, list[float]] = {}
    for pts in usage.values():
        for t, v in pts:
            used.setdefault(t, []).append(v)
    served: dict[datetime, float] = {}
    for pts in requests.values():
        for t, v in pts:
            served[t] = served.get(t, 0.0) + v
    if cpu:
        rows = [(sum(u), served[t]) for t, u in used.items() if served.get(t, 0.0) > 0]
        value = sum(u for u, _ in rows) / sum(r for _, r in rows) if rows else math.nan
        log_var = _ratio_log_var([u for u, _ in rows], [r for _, r in rows], value)
    else:
        rows = [(sum(u) / len(u), 1.0) for u in used.values()]
        value = sum(u for u, _ in rows) / len(rows) if rows else math.nan
        log_var = _ratio_log_var([u for u, _ in rows], [1.0] * len(rows), value)
    return Side(per_pod, total_requests, len(usage), value, log_var, len(rows))


def _ratio_log_var(used: Sequence[float], served: Sequence[float], ratio: float) -> float:
    """The variance of log(sum(used) / sum(served)), the ratio estimator's (delta method)."""
    k = len(used)
    if k < 2 or not ratio > 0:
        return math.nan
    residuals = [u - ratio * r for u, r in zip(used, served, strict=True)]
    mean_served = sum(served) / k
    var = sum(d * d for d in residuals) / (k - 1) / (k * mean_served**2)
    return var / ratio**2


def judge_resource(
    gate: GateSpec,
    candidate: PodSeries,
    baseline: PodSeries,
    candidate_requests: PodSeries,
    baseline_requests: PodSeries,
    window_s: float,
    at: datetime,
    *,
    metric_name: str = "",
) -> GateResult:
    """The candidate's pods against the baseline's over the window, from per-pod samples
    of CPU seconds used (or memory held) and of requests (a pod the request series do
    not name is under "")."""
    assert gate.max_ratio is not None
    over = f"over {human_duration(window_s)}"
    what = metric_name or gate.subject
    if not candidate:
        if not baseline:
            return not_applicable(gate, at, window_s, f"neither version exports {what} {over}")
        return no_data(gate, at, window_s, f"the candidate exports no {what}, the baseline does")
    cand = side(gate, candidate, candidate_requests)
    if cand.requests < max(gate.min_requests, 1):
        return _little_traffic(gate, at, window_s, cand.requests, {})
    if not baseline:
        return not_applicable(gate, at, window_s, f"the baseline exports no {what} {over}")
    base = side(gate, baseline, baseline_requests)
    cpu = gate.metric is Metric.CPU
    if cpu and base.requests < max(gate.min_requests, 1):
        return not_applicable(
            gate,
            at,
            window_s,
            f"baseline has too little traffic ({base.requests:,.0f} requests < "
            f"{gate.min_requests:,}) {over}; the absolute gates judge the candidate",
        )
    if cpu:
        cand_load = cand.requests / max(cand.pods, 1)
        base_load = base.requests / max(base.pods, 1)
        if cand_load * MAX_LOAD_RATIO < base_load:
            return not_applicable(
                gate,
                at,
                window_s,
                f"candidate pods took {cand_load:,.0f} requests each {over}, the baseline's "
                f"{base_load:,.0f}: under 1/{MAX_LOAD_RATIO:g} of the load, fixed costs weigh "
                "more per request; compared from there on",
            )
    cand_pods = [v for v in cand.per_pod.values() if math.isfinite(v) and v > 0]
    base_pods = [v for v in base.per_pod.values() if math.isfinite(v) and v > 0]
    if len(cand_pods) >= MIN_PODS and len(base_pods) >= MIN_PODS:
        return _mann_whitney(gate, cand_pods, base_pods, cand.requests, window_s, at)
    return _ratio(gate, cand, base, window_s, at)


def _ratio(gate: GateSpec, cand: Side, base: Side, window_s: float, at: datetime) -> GateResult:
    """Few pods: the pooled figures' ratio, and a confidence bound from the samples' spread."""
    assert gate.max_ratio is not None
    over = f"over {human_duration(window_s)}"
    if cand.samples < MIN_SAMPLES:
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"too little data: {cand.samples} candidate samples {over} ({MIN_SAMPLES} needed)",
            at,
            window_s=window_s,
            requests=cand.requests,
        )
    if base.samples < MIN_SAMPLES:
        return not_applicable(
            gate,
            at,
            window_s,
            f"too few baseline samples ({base.samples} {over}; {MIN_SAMPLES} needed); the "
            "absolute gates judge the candidate",
        )
    ratio = cand.value / base.value if base.value > 0 else math.inf
    if math.isnan(ratio):
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"candidate {gate.subject} {fmt_figure(gate, cand.value)} and baseline "
            f"{fmt_figure(gate, base.value)} cannot be compared {over}",
            at,
            window_s=window_s,
            requests=cand.requests,
        )
    se = math.sqrt(cand.log_var + base.log_var) if ratio < math.inf else 0.0
    z = NormalDist().inv_cdf(gate.confidence) if gate.confidence else 0.0
    lower = ratio * math.exp(-z * se) if math.isfinite(se) else 0.0
    limit = gate.max_ratio
    above = ratio > limit and not math.isclose(ratio, limit, rel_tol=1e-9)
    significant = lower > limit and not math.isclose(lower, limit, rel_tol=1e-9)
    bound = f"at least {lower:.2f}x at {fmt_pct(gate.confidence)}" if gate.confidence else ""
    if above and significant:
        verdict, judged = Verdict.FAIL, f"> {limit:g}x allowed" + (f"; {bound}" if bound else "")
    elif above:
        verdict, judged = Verdict.WARN, f"> {limit:g}x allowed, not significant: {bound}"
    else:
        verdict, judged = Verdict.PASS, f"<= {limit:g}x allowed"
    pods = f"{cand.pods} vs {base.pods} pod{'s' if base.pods != 1 else ''}"
    text = (
        f"candidate {gate.subject} {fmt_figure(gate, cand.value)} is {ratio:.2f}x baseline "
        f"{fmt_figure(gate, base.value)} ({judged}) {over} ({fmt_requests(cand.requests)}; "
        f"{pods})"
    )
    return _result(
        gate, verdict, text, at, value=cand.value, window_s=window_s, requests=cand.requests
    )


def _mann_whitney(
    gate: GateSpec,
    cand: Sequence[float],
    base: Sequence[float],
    requests: float,
    window_s: float,
    at: datetime,
) -> GateResult:
    xs = [math.log(v) for v in cand]
    ys = [math.log(v) for v in base]
    assert gate.max_ratio is not None
    mw = classify(
        xs, ys, metric=gate.subject, alpha=gate.alpha, min_effect=math.log(gate.max_ratio)
    )
    median_c = math.exp(sorted(xs)[len(xs) // 2])
    median_b = math.exp(sorted(ys)[len(ys) // 2])
    res = mw.result
    shift = (
        f"x{math.exp(res.estimate):.2f} (95% CI x{math.exp(res.conf_int[0]):.2f} to "
        f"x{math.exp(res.conf_int[1]):.2f})"
        if res.estimate is not None and res.conf_int is not None
        else "no shift (all tied)"
    )
    high = mw.classification is Classification.HIGH
    text = (
        f"candidate {gate.subject} {fmt_figure(gate, median_c)} vs baseline "
        f"{fmt_figure(gate, median_b)} (medians of {len(xs)} and {len(ys)} pods); "
        f"Mann-Whitney: {shift}, p={res.p_value:.2g}, "
        f"{'higher by more than' if high else 'not higher by more than'} "
        f"{gate.max_ratio:g}x at alpha {gate.alpha:g} over {human_duration(window_s)} "
        f"({fmt_requests(requests)})"
    )
    return _result(
        gate,
        Verdict.FAIL if high else Verdict.PASS,
        text,
        at,
        value=median_c,
        window_s=window_s,
        requests=requests,
    )
