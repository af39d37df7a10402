"""Traffic gates: the candidate takes the share of requests the router was told to give it,
and the total request rate does not drop after a shift.

A candidate that turns users away before its metrics count them (a crash on accept, a
connection closed early, a router retrying elsewhere), or a router that did not apply
the weight, shows as a share below (or above) the weight; requests lost from every
version show as a drop of the total.

Both checks are binomial. The share: given ``n`` requests counted by the two versions,
the candidate's count is Binomial(n, share). Its one-sided Wilson bounds at the gate's
``confidence`` must leave the band of shares whose odds are within ``tolerance`` of the
weight's odds (at 25% and a tolerance of 0.1: 23.08% to 27.03%); the odds, because
a candidate that loses a fifth of its requests has 0.8 times the odds of its weight
at every weight, where the share itself moves less the larger the weight. The drop:
given ``a`` requests in the window after a shift and ``b`` in the window before it,
``a`` is Binomial(a + b, r Ta / (r Ta + Tb)) for a rate ratio ``r``; the upper bound of
``r`` must stay above ``1 - max_drop``.
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

from ..provider import Subject
from ..spec import GateSpec
from ..verdict import _little_traffic, _result, _wilson, fmt_pct, fmt_requests, not_applicable

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release

# A share is judged on at least this many scrapes after a shift: increase() over fewer
# samples extrapolates each version's count on its own, and the two would disagree.
MIN_SCRAPES = 4
# The gate looks every 30s at overlapping windows, so a fixed confidence per look is loose
# where the evidence is small: as the error-ratio gates do (gates/verdict.py), a look
# whose smaller side expects m requests must clear z x sqrt(SEQUENTIAL / m) below
# SEQUENTIAL, the gate's own z from there on (bench/traffic_gate.py).
SEQUENTIAL = 1000


@dataclass(frozen=True)
class Rate:
    """Requests counted by every version over ``seconds``."""

    requests: float
    seconds: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    return {r.candidate: evaluate_one(ev, gate, r, at) for r in live}


def evaluate_one(ev: GateEvaluator, gate: GateSpec, r: Release, at: datetime) -> GateResult:
    window = ev.window(gate, r, at)
    if r.baseline is None:
        return not_applicable(
            gate, at, window, "no baseline version named, so no share to compare with"
        )
    told = r.weight_at(at)
    if told is None:
        return not_applicable(gate, at, window, "no weight told to the router yet")
    since, weight = told
    span = min(gate.window, (at - since).total_seconds())
    needed = min(gate.window, MIN_SCRAPES * (ev.scrape_s or 0.0))
    if span <= 0 or span < needed:
        return _result(
            gate,
            Verdict.INCONCLUSIVE,
            f"too little data: shifted to {weight}% {human_duration(max(span, 0.0))} ago; "
            f"judged from {human_duration(needed)} on ({MIN_SCRAPES} scrapes)",
            at,
            window_s=max(span, 0.0),
        )
    subjects = [r.candidate, r.baseline]
    ev.queries += 1
    now = ev.provider.counts(ev.profile, subjects, span, at)
    cand = now.get(r.candidate)
    base = now.get(r.baseline)
    x = cand.requests if cand else 0.0
    y = base.requests if base else 0.0
    # A drop: the first window after the shift (the one judged while it lasts) against
    # the window before it, not against a morning hours ago; and not before the release,
    # since a version started with it has no traffic to show earlier and a window
    # reaching back would count its rate short.
    after = Rate(x + y, span)
    before: Rate | None = None
    before_span = min(gate.window, (since - r.started).total_seconds())
    if before_span >= max(needed, 1e-3):
        ev.queries += 1
        prior = ev.provider.counts(ev.profile, subjects, before_span, since)
        before = Rate(sum(c.requests for c in prior.values()), before_span)
        first_end = since + timedelta(seconds=gate.window)
        if first_end < at:
            ev.queries += 1
            first = ev.provider.counts(ev.profile, subjects, gate.window, first_end)
            after = Rate(sum(c.requests for c in first.values()), gate.window)
    return judge_traffic(gate, weight, x, y, span, at, before=before, after=after)


def share_band(weight: int, tolerance: float) -> tuple[float, float]:
    """The shares whose odds are within ``tolerance`` of the weight's odds."""
    w = weight / 100
    odds = w / (1 - w)
    low, high = odds * (1 - tolerance), odds / (1 - tolerance)
    return low / (1 + low), high / (1 + high)


def judge_traffic(
    gate: GateSpec,
    weight: int,
    candidate: float,
    stable: float,
    span_s: float,
    at: datetime,
    *,
    before: Rate | None = None,
    after: Rate | None = None,
) -> GateResult:
    """The candidate's share of ``candidate + stable`` requests over ``span_s`` against
    ``weight``, and the total of ``after`` against ``before`` (None: not judged).

    At a weight of 0% or 100% the side that should take nothing may take a share of at
    most ``tolerance`` (health probes and kept-alive connections reach it directly).
    """
    n = candidate + stable
    if math.isnan(n) or n < max(gate.min_requests, 1):
        return _little_traffic(gate, at, span_s, n, {})
    share = candidate / n
    conf = gate.confidence
    w = weight / 100
    expected = n * (min(w, 1 - w) if 0 < weight < 100 else gate.tolerance)
    upper, lower = _bounds(candidate, n, conf, expected)
    over = f"over {human_duration(span_s)} at weight {weight}%"
    head = f"candidate took {fmt_pct(share)} of {fmt_requests(n)} {over}"
    at_conf = f"at {fmt_pct(conf)}" if conf else "(confidence 0: as counted)"
    failed: list[str] = []
    if 0 < weight < 100:
        low, high = share_band(weight, gate.tolerance)
        allowed = f"{fmt_pct(low)} to {fmt_pct(high)} allowed"
        if upper < low:
            failed.append(
                f"{head}: below its weight (upper bound {fmt_pct(upper)} {at_conf} < "
                f"{fmt_pct(low)}; {allowed})"
            )
        elif lower > high:
            failed.append(
                f"{head}: above its weight (lower bound {fmt_pct(lower)} {at_conf} > "
                f"{fmt_pct(high)}; {allowed})"
            )
        share_text = f"{head} ({allowed})"
    else:
        wrong, wrong_lower = (
            ("stable", _bounds(stable, n, conf, expected)[1])
            if weight == 100
            else (
                "candidate",
                lower,
            )
        )
        wrong_share = (stable if weight == 100 else candidate) / n
        limit = f"{fmt_pct(gate.tolerance)} allowed"
        if wrong_lower > gate.tolerance:
            failed.append(
                f"{wrong} took {fmt_pct(wrong_share)} of {fmt_requests(n)} {over} "
                f"(lower bound {fmt_pct(wrong_lower)} {at_conf} > {limit})"
            )
        share_text = f"{wrong} took {fmt_pct(wrong_share)} of {fmt_requests(n)} {over} ({limit})"
    drop_text = ""
    if before is not None and after is not None:
        drop = judge_drop(gate, before, after, conf)
        if drop is not None:
            text, breach = drop
            if breach:
                failed.append(text)
            drop_text = f"; {text}"
    if failed:
        return _result(
            gate,
            Verdict.FAIL,
            "; ".join(failed),
            at,
            value=share,
            window_s=span_s,
            requests=n,
        )
    return _result(
        gate,
        Verdict.PASS,
        f"{share_text}{drop_text}",
        at,
        value=share,
        window_s=span_s,
        requests=n,
    )


def judge_drop(gate: GateSpec, before: Rate, after: Rate, conf: float) -> tuple[str, bool] | None:
    """(text, breached) for the total request rate after a shift against before it;
    None when the window before holds too few requests to compare with."""
    if before.requests < max(gate.min_requests, 1) or after.seconds <= 0:
        return None
    a, b = after.requests, before.requests
    q_upper = _bounds(a, a + b, conf, min(a, b))[0]
    ratio = after.per_s / before.per_s
    ratio_upper = (
        math.inf if q_upper >= 1 else q_upper / (1 - q_upper) * before.seconds / after.seconds
    )
    floor = 1 - gate.max_drop
    change = ratio - 1
    text = (
        f"total {after.per_s:,.1f} requests/s after the shift vs {before.per_s:,.1f} before "
        f"({'+' if change >= 0 else ''}{fmt_pct(change)}"
    )
    if ratio_upper < floor:
        bound = f"; at most {fmt_pct(ratio_upper - 1)} at {fmt_pct(conf)}" if conf else ""
        return f"{text}{bound}, beyond the -{fmt_pct(gate.max_drop)} allowed)", True
    return f"{text}; a drop of {fmt_pct(gate.max_drop)} allowed)", False


def _bounds(k: float, n: float, conf: float, expected: float) -> tuple[float, float]:
    """(upper, lower) one-sided Wilson bounds of k/n at ``conf``, stricter while the smaller
    side's ``expected`` count is under ``SEQUENTIAL``; k/n itself at confidence 0."""
    if n <= 0:
        return math.nan, math.nan
    if not conf:
        return k / n, k / n
    z = NormalDist().inv_cdf(conf) * math.sqrt(max(1.0, SEQUENTIAL / max(expected, 1e-9)))
    return _wilson(k, n, z, upper=True), _wilson(k, n, z, upper=False)
