"""Growth gates: resident memory of the candidate's pods growing like a leak.

Each pod's memory over the window is fitted with a straight line (least squares), and
its slope is said as a share of the pod's mean memory per ``growth_period``. A leak
grows steadily, so the gate fails when memory grows faster than ``max_growth`` over
the window *and in each of its halves*; a warm-up (fast, then flat) or one step (a
cache filled once) grows in one half only, and only warns. With several pods, the
median pod decides. A pod younger than the window is left out: its warm-up is not a
leak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from statistics import median
from typing import TYPE_CHECKING

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from ..grid import grid
from ..provider import Subject, Usage
from ..spec import GateSpec
from ..verdict import _result, fmt_pct, no_data, not_applicable
from .resources import exports, judged_window, pods_measured

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release

POINTS = 30  # points of the range query over one window
MIN_POINTS = 6  # a pod needs at least this many, and three in each half

Points = Sequence[tuple[datetime, float]]


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    return {r.candidate: evaluate_one(ev, gate, r, at) for r in live}


def evaluate_one(ev: GateEvaluator, gate: GateSpec, r: Release, at: datetime) -> GateResult:
    window, early = judged_window(ev, gate, r, at)
    provider, why = pods_measured(ev)
    if provider is None:
        return not_applicable(gate, at, window, why)
    if early is None and window < gate.window:
        early = _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"too little data: {human_duration(window)} of the {human_duration(gate.window)} "
            "window since the candidate's warm-up",
            at,
            window_s=window,
        )
    subjects = [r.candidate] + ([r.baseline] if r.baseline else [])
    if early is not None:
        # Warming up, or too little data yet; but an app that exports nothing never will.
        seen = exports(ev, provider, Usage.MEMORY_BYTES, subjects, gate.window, at)
        if not seen:
            return not_applicable(
                gate, at, window, f"the app exports no {ev.resources.memory_metric}"
            )
        return early
    # Each point the mean over one step: at least one scrape, a sawtooth smoothed.
    step = max(gate.window / POINTS, ev.scrape_s or 0.0)
    span = grid(at, gate.window, step)
    ev.queries += 1
    series = provider.usage_range(
        ev.profile,
        ev.resources,
        Usage.MEMORY_BYTES,
        subjects,
        step,
        span.start,
        span.end,
        span.step_s,
    )
    cand = series.get(r.candidate, {})
    if not cand:
        if r.baseline is not None and series.get(r.baseline):
            return no_data(
                gate,
                at,
                gate.window,
                f"the candidate exports no {ev.resources.memory_metric}, the baseline does",
            )
        return not_applicable(
            gate, at, gate.window, f"the app exports no {ev.resources.memory_metric}"
        )
    return judge_growth(gate, cand, gate.window, at, span.step_s)


def slope(points: Points) -> float:
    """Least-squares slope in units per second (NaN with fewer than two points)."""
    if len(points) < 2:
        return math.nan
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def judge_growth(
    gate: GateSpec,
    pods: Mapping[str, Points],
    window_s: float,
    at: datetime,
    step_s: float,
) -> GateResult:
    """Memory per pod sampled over ``(at - window, at]`` every ``step_s``."""
    assert gate.max_growth is not None
    start = at.timestamp() - window_s
    covering: dict[str, list[tuple[datetime, float]]] = {}
    for pod, pts in pods.items():
        ordered = sorted((t, v) for t, v in pts if math.isfinite(v))
        if (
            len(ordered) >= MIN_POINTS
            and ordered[0][0].timestamp() <= start + 2 * step_s + 1e-6
            and ordered[-1][0].timestamp() >= at.timestamp() - 2 * step_s - 1e-6
        ):
            covering[pod] = ordered
    over = f"over {human_duration(window_s)}"
    if not covering:
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"too little data: no pod has memory samples across the window {over} "
            f"({len(pods)} younger or with gaps)",
            at,
            window_s=window_s,
        )
    period = gate.growth_period
    full, halves, means = [], [], []
    for pts in covering.values():
        mean = sum(v for _, v in pts) / len(pts)
        if mean <= 0:
            continue
        mid = at.timestamp() - window_s / 2
        first = [p for p in pts if p[0].timestamp() <= mid]
        second = [p for p in pts if p[0].timestamp() >= mid]
        g_full = slope(pts) * period / mean
        g_1 = slope(first) * period / mean if len(first) >= 3 else math.nan
        g_2 = slope(second) * period / mean if len(second) >= 3 else math.nan
        full.append(g_full)
        halves.append((g_1, g_2))
        means.append(mean)
    if not full:
        return _result(gate, Verdict.INCONCLUSIVE, f"memory is 0 {over}", at, window_s=window_s)
    g = median(full)
    both = median(
        min(a, b) if not (math.isnan(a) or math.isnan(b)) else -math.inf for a, b in halves
    )
    g1 = median(a for a, _ in halves)
    g2 = median(b for _, b in halves)
    size = median(means)
    per = f"per {human_duration(period)}"
    limit = f"{fmt_pct(gate.max_growth)} {per}"
    pods_text = f"{len(full)} pod{'s' if len(full) != 1 else ''}"
    head = (
        f"resident memory grows {_signed(g)} {per} ({_signed_mib(g * size)} of {_mib(size)}) {over}"
    )
    halves_text = f"{_signed(g1)} and {_signed(g2)} in its halves"
    if both > gate.max_growth:
        verdict, text = (
            Verdict.FAIL,
            f"{head}, > {limit} allowed, and in each half ({halves_text}; {pods_text})",
        )
    elif g > gate.max_growth:
        verdict, text = (
            Verdict.WARN,
            f"{head}, > {limit} allowed, but not in each half ({halves_text}; a step or a "
            f"warm-up, not yet a leak; {pods_text})",
        )
    else:
        verdict, text = Verdict.PASS, f"{head}, <= {limit} allowed ({halves_text}; {pods_text})"
    return _result(gate, verdict, text, at, value=g, window_s=window_s)


def _signed(share: float) -> str:
    return ("+" if share >= 0 else "") + fmt_pct(share)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _signed_mib(n: float) -> str:
    return ("+" if n >= 0 else "") + _mib(n)
