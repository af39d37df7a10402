"""Backtest: the gates as they would have been evaluated at each step of a past range.

It answers "would this gate have caught last week's incident?" and is how
thresholds get tuned. Each evaluation is as of its instant; windows look back from
it; the release is taken to start at ``start``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.verdicts import Decision, GateResult, Verdict, decide

from .evaluate import GateEvaluator, Release
from .tracker import InconclusiveTracker

MAX_STEPS = 20_000


@dataclass(frozen=True)
class BacktestResult:
    timeline: list[GateResult]
    decision: Decision
    decided_at: datetime | None
    steps: int
    queries: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "timeline": [
                {
                    "time": rfc3339(r.at),
                    "gate": r.gate,
                    "value": _json_number(r.value),
                    "verdict": r.verdict.value,
                    "reason": r.reason,
                }
                for r in self.timeline
            ],
            "decision": self.decision.value,
            "decided_at": rfc3339(self.decided_at) if self.decided_at else None,
        }


def _json_number(x: float | None) -> float | str | None:
    if x is None:
        return None
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    return round(x, 6)


def rfc3339(t: datetime) -> str:
    text = t.isoformat(timespec="milliseconds" if t.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def backtest(
    evaluator: GateEvaluator,
    release: Release,
    end: datetime,
    step: timedelta,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Evaluate every gate at start+step, start+2*step, ..., end; decide like the controller."""
    start = release.started
    if end <= start:
        raise InvalidInput(f"backtest end {rfc3339(end)} must be after start {rfc3339(start)}")
    if step.total_seconds() <= 0:
        raise InvalidInput(f"backtest step {step} must be longer than 0s")
    total = int((end - start) / step)
    if total > MAX_STEPS:
        raise InvalidInput(
            f"backtest range has {total:,} steps, more than {MAX_STEPS:,}: use a longer --step"
        )
    tracker = InconclusiveTracker()
    gates = {g.name: g for g in evaluator.gate_set.gates}
    timeline: list[GateResult] = []
    first_fail: datetime | None = None
    last: list[GateResult] = []
    before = evaluator.queries
    for i in range(1, total + 1):
        at = start + step * i
        results = [tracker.apply(gates[r.gate], r, start) for r in evaluator.evaluate(release, at)]
        timeline.extend(results)
        last = results
        if first_fail is None and any(r.verdict is Verdict.FAIL for r in results):
            first_fail = at
        if progress:
            progress(i, total)
    # The controller's rule (``decide``): the first fail rolls back; otherwise the last
    # step's verdicts promote or hold.
    final = decide(last, gates)
    if first_fail is not None:
        decision, decided_at = Decision.ROLLBACK, first_fail
    elif final is Decision.PROMOTE:
        decision, decided_at = Decision.PROMOTE, last[0].at
    else:
        decision, decided_at = Decision.HOLD, None
    return BacktestResult(
        timeline=timeline,
        decision=decision,
        decided_at=decided_at,
        steps=total,
        queries=evaluator.queries - before,
    )
