"""Gate verdicts and the release decision they lead to: pure values and rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Verdict(StrEnum):
    """What one gate says at one instant."""

    PASS = "pass"
    WARN = "warn"  # breaching, not yet sustained: hold, never promote
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # no data, too little traffic, provider error: hold

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.WARN: 2, Verdict.FAIL: 3}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe verdict: fail > warn > inconclusive > pass; pass when none."""
    return max(verdicts, key=lambda v: v.severity, default=Verdict.PASS)


class Decision(StrEnum):
    """What the gates say about the release as a whole."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HOLD = "hold"


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict at one instant, with the figures behind it."""

    gate: str
    verdict: Verdict
    reason: str
    at: datetime
    value: float | None = None
    threshold: float | None = None
    window_s: float | None = None
    requests: float | None = None
    labels: dict[str, str] = field(default_factory=dict)


def decide(results: Iterable[GateResult]) -> Decision:
    """Any fail rolls back; all pass promotes; anything else holds. No results hold."""
    rs = list(results)
    if any(r.verdict is Verdict.FAIL for r in rs):
        return Decision.ROLLBACK
    if rs and all(r.verdict is Verdict.PASS for r in rs):
        return Decision.PROMOTE
    return Decision.HOLD
