"""Evidence since a breach began: re-judges an error-ratio warning on all the counts since then.

A fixed window never accumulates evidence: 1,200 requests in 2m cannot tell 6% from 5% at
95%, however long the breach lasts. Here the counts of equal slices ending at the
evaluation instant find where the current breach began, and the counts since then are
judged with the same one-sided Wilson bound as the window.

The onset is where the walk of excess errors (5xx minus threshold x requests, summed back
from now) peaks: the longest run whose ratio still breaches would reach back into healthy
time until its excess is used up, leaving a ratio just over the threshold that never
becomes significant. A healthy stretch has negative excess, so the onset moves past it (it
resets the breach); a slice without traffic adds nothing, so a gap neither breaks nor
proves a breach. The evidence is used only when the onset lies before the gate's window:
the window stays the shortest span ever judged, so a burst inside it is not re-tested on
its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from math import isnan

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from .provider import Counts
from .spec import Comparison, GateSpec
from .verdict import error_ratio, fmt_pct, fmt_requests, wilson_bound

# Time comparisons on a millisecond grid: a float second is not exact.
_EPS = timedelta(microseconds=500)


@dataclass(frozen=True)
class Evidence:
    """The counts since the current breach began, and what the Wilson bound says of them."""

    since: datetime  # where the breach began: the start of its first slice
    span_s: float  # from ``since`` to the evaluation instant
    counts: Counts
    ratio: float
    bound: float  # one-sided Wilson bound at the gate's confidence
    significant: bool


def _excess(gate: GateSpec, c: Counts) -> float:
    """Errors beyond what the threshold allows (positive: breaching)."""
    assert gate.threshold is not None
    over = c.errors - gate.threshold * c.requests
    return -over if gate.comparison in (Comparison.LT, Comparison.LE) else over


def since_breach(
    gate: GateSpec,
    slices: Sequence[tuple[datetime, Counts]],
    at: datetime,
    slice_s: float,
) -> Evidence | None:
    """The evidence since the breach began, or None when it began inside the window.

    ``slices``: (end, counts over the ``slice_s`` before it), oldest first, the last one
    ending at ``at``; slices without data may be left out. None also when nothing breaches.
    """
    assert gate.threshold is not None
    usable = [
        (t, c) for t, c in slices if t <= at + _EPS and not isnan(c.requests + c.errors)
    ]
    ordered = sorted(usable, key=lambda p: p[0])
    best_excess = 0.0
    best: int | None = None
    running = 0.0
    for i in range(len(ordered) - 1, -1, -1):
        running += _excess(gate, ordered[i][1])
        if running > best_excess:  # ties keep the later onset: the shorter span
            best_excess, best = running, i
    if best is None:
        return None
    since = ordered[best][0] - timedelta(seconds=slice_s)
    span_s = (at - since).total_seconds()
    import os
    if span_s <= gate.window * float(os.environ.get("MINSPAN", "0")) + _EPS.total_seconds():
        return None
    if os.environ.get("CHANGE") and span_s < gate.window - _EPS.total_seconds():
        lo = at - timedelta(seconds=gate.window)
        before = [c for t, c in ordered[:best] if t - timedelta(seconds=slice_s) >= lo - _EPS]
        b = Counts(sum(c.requests for c in before), sum(c.errors for c in before))
        up = gate.comparison in (Comparison.LT, Comparison.LE)
        other = wilson_bound(b.errors, b.requests, gate.confidence, upper=not up)
        if not (b.requests > 0 and not gate.comparison.breaches(other, gate.threshold)):
            return None
    counts = Counts(
        requests=sum(c.requests for _, c in ordered[best:]),
        errors=sum(c.errors for _, c in ordered[best:]),
    )
    ratio = error_ratio(counts)
    upper = gate.comparison in (Comparison.LT, Comparison.LE)
    bound = wilson_bound(counts.errors, counts.requests, gate.confidence, upper=upper)
    significant = (
        counts.requests >= gate.min_requests
        and gate.comparison.breaches(ratio, gate.threshold)
        and gate.comparison.breaches(bound, gate.threshold)
    )
    return Evidence(since, span_s, counts, ratio, bound, significant)


def judge_accumulated(
    gate: GateSpec,
    result: GateResult,
    slices: Sequence[tuple[datetime, Counts]],
    at: datetime,
    slice_s: float,
) -> GateResult:
    """A window warning re-judged on the evidence since the breach began.

    It fails when that evidence is significant at the gate's confidence and still warns
    otherwise; any other verdict, or a breach that began inside the window, stands as is.
    The value, window and request count stay the window's; the reason names both spans.
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
    side = "upper" if gate.comparison in (Comparison.LT, Comparison.LE) else "lower"
    if ev.significant:
        head = result.reason.partition("; not significant")[0]
        return replace(
            result,
            verdict=Verdict.FAIL,
            reason=(
                f"{head}; {accumulated}, significant at {fmt_pct(gate.confidence)} "
                f"({side} bound {fmt_pct(ev.bound)})"
            ),
        )
    return replace(
        result,
        reason=(
            f"{result.reason}; {accumulated}, not significant either "
            f"({side} bound {fmt_pct(ev.bound)})"
        ),
    )
