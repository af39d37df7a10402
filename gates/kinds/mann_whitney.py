"""Mann-Whitney gates: the candidate's per-interval error ratios against the baseline's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.verdicts import GateResult, Verdict

from ..grid import grid
from ..mannwhitney import Classification, classify
from ..provider import Subject
from ..spec import GateSpec, Metric
from ..verdict import no_data, not_applicable

if TYPE_CHECKING:
    from ..evaluate import GateEvaluator, Release

MW_MIN_SAMPLES = 3


def evaluate(
    ev: GateEvaluator, gate: GateSpec, live: Sequence[Release], at: datetime
) -> dict[Subject, GateResult]:
    return {r.candidate: evaluate_one(ev, gate, r, at) for r in live}


def evaluate_one(ev: GateEvaluator, gate: GateSpec, r: Release, at: datetime) -> GateResult:
    window = ev.window(gate, r, at)
    if r.baseline is None:
        return not_applicable(gate, at, window, "no baseline version named")
    if gate.metric is not Metric.ERROR_RATIO:
        raise InvalidInput(f"gate {gate.name!r}: mann_whitney gates judge error_ratio samples")
    # Non-overlapping samples of one interval each, the last one ending at ``at``.
    span = grid(at, max(0.0, window - gate.interval), gate.interval)
    ev.queries += 1
    series = ev.provider.counts_range(
        ev.profile,
        [r.candidate, r.baseline],
        span.step_s,
        span.start,
        span.end,
        span.step_s,
    )

    def samples(s: Subject) -> tuple[list[float], float]:
        pts = [c for t, c in series.get(s, []) if t > r.started and c.requests > 0]
        return [c.errors / c.requests for c in pts], sum(c.requests for c in pts)

    cand, cand_req = samples(r.candidate)
    base, base_req = samples(r.baseline)
    need = f"need {MW_MIN_SAMPLES} samples and {gate.min_requests:,} requests"
    if cand_req < gate.min_requests or len(cand) < MW_MIN_SAMPLES:
        return no_data(
            gate,
            at,
            window,
            f"too few candidate samples ({len(cand)} with {cand_req:,.0f} requests; {need})",
        )
    if base_req < gate.min_requests or len(base) < MW_MIN_SAMPLES:
        return not_applicable(
            gate,
            at,
            window,
            f"too few baseline samples ({len(base)} with {base_req:,.0f} requests; {need}) "
            f"over {human_duration(window)}; the absolute gates judge the candidate",
        )
    mw = classify(cand, base, metric=gate.subject, alpha=gate.alpha, min_effect=gate.min_effect)
    verdict = Verdict.FAIL if mw.classification is Classification.HIGH else Verdict.PASS
    return GateResult(
        gate=gate.name,
        verdict=verdict,
        reason=f"{gate.name}: {mw.classification.value}: {mw.reason} over "
        f"{human_duration(window)} ({cand_req:,.0f} requests)",
        at=at,
        value=mw.result.estimate,
        threshold=gate.alpha,
        window_s=window,
        requests=cand_req,
    )
