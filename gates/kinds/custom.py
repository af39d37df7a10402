"""Custom gates: a PromQL template of the user's, judged series by series (or as a baseline
comparison of every series on each side)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gatekeeper.domain.verdicts import GateResult, worst

from ..promql import render
from ..provider import Subject
from ..spec import GateSpec, Kind
from ..verdict import _compare, _little_traffic, _result, _too_little, no_data, not_applicable
from .baseline import judge_baseline

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    return {r.candidate: evaluate_one(ev, gate, r, at) for r in live}


def evaluate_one(ev: GateEvaluator, gate: GateSpec, r: Release, at: datetime) -> GateResult:
    assert gate.query is not None
    window = ev.window(gate, r, at)
    if gate.kind is Kind.BASELINE:
        if r.baseline is None:
            return not_applicable(gate, at, window, "no baseline version named")
        cand = side(ev, gate, r.candidate, r.baseline, window, at)
        base = side(ev, gate, r.baseline, r.baseline, window, at)
        return judge_baseline(gate, cand, base, at, window)
    filled = variables(r.candidate, window, r.baseline)
    ev.queries += 1
    series = ev.provider.query(render(gate.query, filled), at)
    requests: float | None = None
    if gate.requests_query is not None:
        ev.queries += 1
        got = ev.provider.query(render(gate.requests_query, filled), at)
        requests = sum(value for _, value in got) if got else 0.0
    return judge_series(gate, series, requests, at, window)


def side(
    ev: GateEvaluator, gate: GateSpec, s: Subject, baseline: Subject, window: float, at: datetime
) -> tuple[float, float] | None:
    """One side of a custom comparison: (value, requests) over every series.

    The value is the mean of the series weighted by each one's requests (the
    requests query's series with the same labels), as summing counts weights a
    ratio; equal weights when the requests cannot be matched to the series.
    Without a requests query the traffic is not known and counts as enough.
    """
    assert gate.query is not None
    filled = variables(s, window, baseline)
    ev.queries += 1
    series = [
        (labels, value)
        for labels, value in ev.provider.query(render(gate.query, filled), at)
        if not math.isnan(value)
    ]
    requests = math.inf
    weights: dict[tuple[tuple[str, str], ...], float] = {}
    if gate.requests_query is not None:
        ev.queries += 1
        got = ev.provider.query(render(gate.requests_query, filled), at)
        requests = sum(value for _, value in got if not math.isnan(value))
        weights = {label_key(labels): value for labels, value in got}
    if not series:
        return None if requests == math.inf or requests <= 0 else (math.nan, requests)
    matched = [weights.get(label_key(labels)) for labels, _ in series]
    if all(w is not None and w >= 0 for w in matched) and sum(w or 0.0 for w in matched) > 0:
        total = sum(w or 0.0 for w in matched)
        value = sum((w or 0.0) * x for w, (_, x) in zip(matched, series, strict=True)) / total
    else:
        value = sum(x for _, x in series) / len(series)
    return value, requests


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


def label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def variables(s: Subject, window: float, baseline: Subject | None) -> dict[str, str | float]:
    return {
        "app": s.app,
        "namespace": s.namespace,
        "version": s.version,
        "baseline_version": baseline.version if baseline else "",
        "workload": f"{s.app}-{s.version}",
        "window": window,
    }
