"""Baseline comparisons: the candidate against the stable version over the same window."""

from __future__ import annotations

import math
from datetime import datetime

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from ..spec import GateSpec, Metric
from ..verdict import _little_traffic, _result, _too_little, fmt_requests, fmt_value, no_data


def judge_baseline(
    gate: GateSpec,
    candidate: tuple[float, float] | None,
    baseline: tuple[float, float] | None,
    at: datetime,
    window_s: float,
) -> GateResult:
    """candidate <= baseline + max_increase, both measured over the same window.

    Each side is (value, requests); ``min_requests`` applies to both. Only the
    candidate's lack of data holds the release (and fails closed at the deadline): a
    baseline with too little traffic (stable takes none at 100%) or no usable value
    makes the gate *not applicable*, and a baseline worse than the candidate never
    fails it; the absolute gates judge the candidate on their own.
    """
    assert gate.max_increase is not None
    if candidate is None:
        return no_data(gate, at, window_s, "no candidate data")
    value, requests = candidate
    if _too_little(gate, requests):
        return _little_traffic(gate, at, window_s, requests, {})
    over = f"over {human_duration(window_s)}"
    if math.isnan(value):
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"candidate {gate.subject} is NaN {over} ({fmt_requests(requests)})",
            at,
            value=value,
            window_s=window_s,
            requests=requests,
        )
    why = _baseline_unusable(gate, baseline)
    if why is not None:
        return _result(
            gate,
            Verdict.NOT_APPLICABLE,
            f"not applicable: {why} {over}; the absolute gates judge the candidate",
            at,
            value=value,
            window_s=window_s,
            requests=requests,
        )
    assert baseline is not None
    base_value, base_requests = baseline
    increase = value - base_value
    if math.isnan(increase):
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"candidate {gate.subject} {fmt_value(gate, value)} and baseline "
            f"{fmt_value(gate, base_value)} cannot be compared {over}",
            at,
            value=value,
            window_s=window_s,
            requests=requests,
        )
    # 0.04 - 0.03 is 0.010000000000000002: an increase equal to the limit is allowed.
    breach = increase > gate.max_increase and not math.isclose(
        increase, gate.max_increase, rel_tol=1e-9, abs_tol=1e-12
    )
    points = gate.metric is Metric.ERROR_RATIO
    limit = _increase_text(gate, gate.max_increase, points)
    shown = _increase_text(gate, abs(increase), points)
    direction = "above" if increase >= 0 else "below"
    text = (
        f"candidate {gate.subject} {fmt_value(gate, value)} is {shown} {direction} baseline "
        f"{fmt_value(gate, base_value)} ({'>' if breach else '<='} {limit} allowed) {over} "
        f"({fmt_requests(requests)} vs {base_requests:,.0f})"
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


def _baseline_unusable(gate: GateSpec, baseline: tuple[float, float] | None) -> str | None:
    """Why the baseline cannot be compared with, in words; None when it can."""
    if baseline is None:
        return "no baseline data"
    base_value, base_requests = baseline
    if math.isnan(base_requests) or base_requests < gate.min_requests or base_requests <= 0:
        shown = "NaN" if math.isnan(base_requests) else f"{base_requests:,.0f}"
        return f"baseline has too little traffic ({shown} requests < {gate.min_requests:,})"
    if math.isnan(base_value):
        return f"baseline {gate.subject} is NaN ({fmt_requests(base_requests)})"
    return None


def _increase_text(gate: GateSpec, amount: float, points: bool) -> str:
    text = fmt_value(gate, amount)
    return text.replace("%", " points") if points else text
