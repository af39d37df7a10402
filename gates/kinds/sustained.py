"""Sustained gates: an error ratio above its threshold, held for sustained_for, confirmed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from ..grid import grid, to_ms
from ..provider import Counts, Subject
from ..spec import Comparison, GateSpec
from ..verdict import (
    _compare,
    _little_traffic,
    _result,
    _too_little,
    error_ratio,
    fmt_pct,
    fmt_requests,
    no_data,
    wilson_bound,
)

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    """The streak over sustained_for from one range query for every release; the
    confirmation asked only for those breaching now."""
    span = grid(at, gate.sustained_for, gate.interval)
    ev.queries += 1
    series = ev.provider.counts_range(
        ev.profile,
        [r.candidate for r in live],
        gate.window,
        span.start,
        span.end,
        span.step_s,
    )
    points = {
        r.candidate: [(t, c) for t, c in series.get(r.candidate, []) if t > r.started] for r in live
    }
    # The confirmation is one exact window, asked only for the releases it can decide.
    breaching = [r.candidate for r in live if breaching_now(gate, points[r.candidate], at)]
    confirm: Mapping[Subject, Counts] = {}
    if breaching:
        ev.queries += 1
        confirm = ev.provider.counts(ev.profile, breaching, gate.confirm_s, at)
    return {
        r.candidate: judge(gate, points[r.candidate], at, gate.window, confirm.get(r.candidate))
        for r in live
    }


def breaching_now(gate: GateSpec, points: Sequence[tuple[datetime, Counts]], at: datetime) -> bool:
    """Whether the point at ``at`` breaches with enough traffic to count."""
    now = [c for t, c in points if t >= at - timedelta(milliseconds=1)]
    if not now or gate.threshold is None:
        return False
    c = now[-1]
    return c.requests >= max(gate.min_requests, 1) and gate.comparison.breaches(
        error_ratio(c), gate.threshold
    )


def judge(
    gate: GateSpec,
    points: Sequence[tuple[datetime, Counts]],
    at: datetime,
    window_s: float,
    confirm: Counts | None = None,
) -> GateResult:
    """Error ratio above the threshold that has held for ``sustained_for``.

    ``points`` are window ratios sampled over ``[at - sustained_for, at]`` on a grid that
    ends at ``at``; ``confirm`` the counts over ``confirm_window`` ending at ``at``.

    * A point with too little traffic or no data is a gap: it neither breaks nor proves
      the streak; only a healthy point resets it (a Prometheus `for:` resets on a gap).
    * Coverage: each point judges the window that ends at it, so breaching points at
      most one window apart leave no moment of the streak unjudged. A wider gap between
      two breaching points is a stretch nobody saw: the streak restarts after it, so a
      handful of points cannot stand for 15 minutes of evidence.
    * Held long enough, the breach must be confirmed over ``confirm_window`` with a
      significant ratio (the one-sided Wilson bound at the gate's ``confidence`` past the
      threshold) before it fails; until then it warns.

    Times are compared in whole milliseconds, so "held 15m" on a grid is exactly 15m.
    """
    at_ms = to_ms(at)
    window_ms = round(window_s * 1000)
    by_time = sorted(((to_ms(t), c) for t, c in points), key=lambda p: p[0])
    current = by_time[-1] if by_time and by_time[-1][0] >= at_ms - 1 else None
    if current is None:
        return no_data(gate, at, window_s)
    counts = current[1]
    if _too_little(gate, counts.requests):
        return _little_traffic(gate, at, window_s, counts.requests, {})
    assert gate.threshold is not None
    ratio = error_ratio(counts)
    if not gate.comparison.breaches(ratio, gate.threshold):
        return _compare(gate, ratio, at, window_s, counts.requests, {})
    breach_start = latest = current[0]
    for t, c in reversed(by_time[:-1]):
        if _too_little(gate, c.requests):
            continue
        if not gate.comparison.breaches(error_ratio(c), gate.threshold):
            break
        if latest - t > window_ms:
            break  # an unjudged stretch: the evidence restarts after it
        breach_start = latest = t
    held_ms = at_ms - breach_start
    held = held_ms / 1000
    op = gate.comparison.value
    head = (
        f"{gate.subject} {fmt_pct(ratio)} {op} {fmt_pct(gate.threshold)} over "
        f"{human_duration(window_s)} ({fmt_requests(counts.requests)})"
    )

    def warn(text: str) -> GateResult:
        return _result(
            gate,
            Verdict.WARN,
            f"{head}, {text}",
            at,
            value=ratio,
            window_s=window_s,
            requests=counts.requests,
        )

    if held_ms < round(gate.sustained_for * 1000):
        return warn(f"held {human_duration(held)} of {human_duration(gate.sustained_for)}")
    confirm_text = human_duration(gate.confirm_s)
    if confirm is None or _too_little(gate, confirm.requests):
        return warn(
            f"held {human_duration(held)}; not confirmed over {confirm_text} (too little data)"
        )
    confirmed = error_ratio(confirm)
    if not gate.comparison.breaches(confirmed, gate.threshold):
        return warn(
            f"held {human_duration(held)}; {fmt_pct(confirmed)} over {confirm_text} "
            "does not confirm"
        )
    if gate.confidence:
        upper = gate.comparison in (Comparison.LT, Comparison.LE)
        bound = wilson_bound(confirm.errors, confirm.requests, gate.confidence, upper=upper)
        if not gate.comparison.breaches(bound, gate.threshold):
            return warn(
                f"held {human_duration(held)}; {fmt_pct(confirmed)} over {confirm_text} "
                f"({fmt_requests(confirm.requests)}) is not significant at "
                f"{fmt_pct(gate.confidence)} ({'upper' if upper else 'lower'} bound "
                f"{fmt_pct(bound)})"
            )
    return _result(
        gate,
        Verdict.FAIL,
        f"{head}, held {human_duration(held)} (>= {human_duration(gate.sustained_for)}); "
        f"{fmt_pct(confirmed)} over {confirm_text} ({fmt_requests(confirm.requests)})",
        at,
        value=ratio,
        window_s=window_s,
        requests=counts.requests,
    )
