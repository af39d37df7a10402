"""Evidence since a breach began: an error-ratio warning re-judged on all the counts since.

A fixed window never accumulates evidence: 1,200 requests in 2m cannot tell 6% from 5% at
95%, however long the breach lasts. Here the counts of equal slices ending at the
evaluation instant place the start of the current breach, and the counts since then are
judged at the same sequential boundary as the window (gates/verdict.py ``sequential_bound``:
the Wilson bound at the gate's confidence from 250 requests on, stricter in fewer).

The onset is where the walk of excess errors (5xx minus threshold x requests, summed back
from now) peaks, Page's CUSUM change point. The longest run whose ratio still breaches
would reach back into healthy time until its excess is used up, leaving a ratio just over
the threshold that never becomes significant. A healthy stretch has negative excess, so
the onset moves past it (it resets the breach); a slice without traffic adds nothing, so
a gap neither breaks nor proves a breach.

The slices must add up to what the counters counted. Prometheus's increase() over adjacent
ranges does not: it leaves out the stretch between one range's last sample and the next
one's first and extrapolates over it, so with two scrapes a slice half of the requests are
estimated, and the bound on them is as tight as twice the evidence would make it (a steady
3% candidate was aborted on "7.46% in 402 requests"). The Prometheus provider answers
adjacent slices with the counters' own differences instead (gates/prometheus.py ``_tiles``).

An onset inside the gate's window counts only when the window before it is significantly
healthy: a change the window itself shows. Without that, the best of the many short runs
a window holds is mostly noise: a simulated 4% candidate at 10 requests/s was aborted 73
times in 40 hours without it, 16 times with it (bench/abort_delay.py's traffic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from math import isnan

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from .provider import Counts
from .spec import Comparison, GateSpec
from .verdict import Sequential, error_ratio, fmt_pct, fmt_requests, sequential_bound, wilson_bound

# Time comparisons on a millisecond grid: a float second is not exact.
_EPS = timedelta(microseconds=500)


@dataclass(frozen=True)
class Evidence:
    """The counts since the current breach began, and what the Wilson bound says of them."""

    since: datetime  # where the breach began: the start of its first slice
    span_s: float  # from ``since`` to the evaluation instant
    counts: Counts
    ratio: float
    bound: Sequential  # the one-sided Wilson bound at the sequential boundary
    significant: bool


def _excess(gate: GateSpec, c: Counts) -> float:
    """Errors beyond what the threshold allows (positive: breaching)."""
    assert gate.threshold is not None
    over = c.errors - gate.threshold * c.requests
    return -over if _upper(gate) else over


def since_breach(
    gate: GateSpec,
    slices: Sequence[tuple[datetime, Counts]],
    at: datetime,
    slice_s: float,
) -> Evidence | None:
    """The evidence since the current breach began; None when nothing breaches.

    ``slices``: (end, counts over the ``slice_s`` before it), oldest first, the last one
    ending at ``at``; slices without data may be left out. The onset is the start of the
    run of slices, ending now, with the most excess errors (ties: the shorter run). A run
    shorter than the gate's window counts only when the window before it is significantly
    healthy (its bound on the other side at or within the threshold): the best of many
    short runs is otherwise mostly noise.
    """
    assert gate.threshold is not None
    usable = [(t, c) for t, c in slices if t <= at + _EPS and not isnan(c.requests + c.errors)]
    ordered = sorted(usable, key=lambda p: p[0])
    slice_len = timedelta(seconds=slice_s)
    # Slices from here on lie inside the window (they start at or after its start).
    inside = next(
        (
            i
            for i, (t, _) in enumerate(ordered)
            if t - slice_len >= at - timedelta(seconds=gate.window) - _EPS
        ),
        len(ordered),
    )
    best_excess = 0.0
    best: int | None = None
    running = 0.0
    for i in range(len(ordered) - 1, -1, -1):
        running += _excess(gate, ordered[i][1])
        if running <= best_excess:  # ties keep the later onset: the shorter run
            continue
        if i > inside and not _healthy(gate, _total(c for _, c in ordered[inside:i])):
            continue
        best_excess, best = running, i
    if best is None:
        return None
    since = ordered[best][0] - slice_len
    counts = _total(c for _, c in ordered[best:])
    ratio = error_ratio(counts)
    bound = sequential_bound(counts.errors, counts.requests, gate.confidence, upper=_upper(gate))
    significant = (
        counts.requests >= gate.min_requests
        and gate.comparison.breaches(ratio, gate.threshold)
        and gate.comparison.breaches(bound.bound, gate.threshold)
    )
    return Evidence(since, (at - since).total_seconds(), counts, ratio, bound, significant)


def _healthy(gate: GateSpec, c: Counts) -> bool:
    """Whether counts are significantly within the threshold (the bound on the other side).

    The plain Wilson bound, not the sequential boundary: this only lets an onset inside the
    window count, and the evidence after it must still clear the boundary.
    """
    assert gate.threshold is not None
    if c.requests <= 0:
        return False
    bound = wilson_bound(c.errors, c.requests, gate.confidence, upper=not _upper(gate))
    return not gate.comparison.breaches(bound, gate.threshold)


def _total(counts: Iterable[Counts]) -> Counts:
    req = err = 0.0
    for c in counts:
        req += c.requests
        err += c.errors
    return Counts(requests=req, errors=err)


def _upper(gate: GateSpec) -> bool:
    """Whether a breach is a low value, judged by the upper bound."""
    return gate.comparison in (Comparison.LT, Comparison.LE)


def judge_accumulated(
    gate: GateSpec,
    result: GateResult,
    slices: Sequence[tuple[datetime, Counts]],
    at: datetime,
    slice_s: float,
) -> GateResult:
    """A window warning re-judged on the evidence since the breach began.

    It fails when that evidence is significant at the gate's confidence and still warns
    otherwise; any other verdict stands as is. The value, window and request count stay
    the window's; the reason names both spans.
    """
    if result.verdict is not Verdict.WARN or not gate.confidence:
        return result
    ev = since_breach(gate, slices, at, slice_s)
    if ev is None:
        return result
    accumulated = (
        f"{fmt_pct(ev.ratio)} over the {human_duration(ev.span_s)} since the breach began "
        f"({fmt_requests(ev.counts.requests)})"
    )
    if ev.significant:
        head = result.reason.partition("; not significant")[0]
        return replace(
            result,
            verdict=Verdict.FAIL,
            reason=(
                f"{head}; {accumulated}, significant at {fmt_pct(gate.confidence)} "
                f"({ev.bound.text})"
            ),
        )
    window_s = result.window_s if result.window_s is not None else gate.window
    if abs(ev.span_s - window_s) < slice_s / 2:
        return result  # the breach fills the window and no more: nothing to add
    return replace(
        result,
        reason=(f"{result.reason}; {accumulated}, not significant either ({ev.bound.text})"),
    )
