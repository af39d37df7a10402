"""Instant gates (threshold on error ratio or latency, and baseline comparisons): one query
per window for every release, and for a breach that is not yet significant, the evidence
gathered since it began."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gatekeeper.domain.verdicts import GateResult, Verdict

from ..evidence import judge_accumulated
from ..grid import grid
from ..provider import Buckets, Counts, Subject
from ..spec import GateSpec, Kind, Metric
from ..verdict import (
    error_ratio,
    judge_error_ratio,
    judge_latency,
    not_applicable,
    quantile_from_buckets,
)
from .baseline import judge_baseline

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release

# Slices per gate window for the evidence since a breach began: 15s for the built-in 2m.
EVIDENCE_SLICES = 8


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    # Releases sharing a clipped window share one query.
    by_window: dict[float, list[Release]] = {}
    for r in live:
        by_window.setdefault(round(ev.window(gate, r, at), 3), []).append(r)
    results: dict[Subject, GateResult] = {}
    for window, group in by_window.items():
        subjects = sorted({r.candidate for r in group} | {r.baseline for r in group if r.baseline})
        figures = _figures(ev, gate, subjects, window, at)
        for r in group:
            results[r.candidate] = _judge(gate, r, figures, window, at)
        results.update(_accumulate(ev, gate, group, results, at))
    return results


def _accumulate(
    ev: GateEvaluator,
    gate: GateSpec,
    group: Sequence[Release],
    results: Mapping[Subject, GateResult],
    at: datetime,
) -> dict[Subject, GateResult]:
    """Warnings re-judged on the counts since the breach began (gates/evidence.py).

    One range query of slices for the group, and only when one of its releases warns:
    a healthy tick costs nothing more.
    """
    if (
        not gate.evidence_window
        or not gate.confidence
        or gate.metric is not Metric.ERROR_RATIO
        or gate.kind is not Kind.THRESHOLD
    ):
        return {}
    warning = [r for r in group if results[r.candidate].verdict is Verdict.WARN]
    if not warning:
        return {}
    lookback = min(gate.evidence_window, max((at - r.started).total_seconds() for r in warning))
    # Each slice is an increase() of its own: it must hold two samples, like a window.
    slice_s = max(gate.window / EVIDENCE_SLICES, 2 * (ev.scrape_s or 0.0))
    span = grid(at, max(0.0, lookback - slice_s), slice_s)
    ev.queries += 1
    series = ev.provider.counts_range(
        ev.profile,
        [r.candidate for r in warning],
        span.step_s,
        span.start,
        span.end,
        span.step_s,
    )
    return {
        r.candidate: judge_accumulated(
            gate,
            results[r.candidate],
            [(t, c) for t, c in series.get(r.candidate, []) if t > r.started],
            span.end,
            span.step_s,
        )
        for r in warning
    }


def _figures(
    ev: GateEvaluator, gate: GateSpec, subjects: Sequence[Subject], window: float, at: datetime
) -> Mapping[Subject, Counts | Buckets]:
    ev.queries += 1
    if gate.metric is Metric.LATENCY:
        return ev.provider.buckets(ev.profile, subjects, window, at)
    return ev.provider.counts(ev.profile, subjects, window, at)


def _judge(
    gate: GateSpec,
    r: Release,
    figures: Mapping[Subject, Counts | Buckets],
    window: float,
    at: datetime,
) -> GateResult:
    cand = figures.get(r.candidate)
    if gate.kind is Kind.BASELINE:
        if r.baseline is None:
            return not_applicable(gate, at, window, "no baseline version named")
        base = figures.get(r.baseline)
        return judge_baseline(gate, _value(gate, cand), _value(gate, base), at, window)
    if gate.metric is Metric.LATENCY:
        return judge_latency(gate, cand if isinstance(cand, tuple) else None, at, window)
    return judge_error_ratio(gate, cand if isinstance(cand, Counts) else None, at, window)


def _value(gate: GateSpec, fig: Counts | Buckets | None) -> tuple[float, float] | None:
    """(value, requests) of one side of a baseline comparison."""
    if fig is None:
        return None
    if isinstance(fig, Counts):
        return error_ratio(fig), fig.requests
    if not fig:
        return None
    return quantile_from_buckets(gate.quantile, fig), fig[-1][1]
