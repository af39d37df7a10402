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
    # A comparison gate whose baseline has too little traffic (stable takes none at 100%):
    # it neither promotes on its own nor holds, and never fails closed for the baseline's lack.
    NOT_APPLICABLE = "not_applicable"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    Verdict.NOT_APPLICABLE: -1,
    Verdict.PASS: 0,
    Verdict.INCONCLUSIVE: 1,
    Verdict.WARN: 2,
    Verdict.FAIL: 3,
}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe verdict: fail > warn > inconclusive > pass > not applicable; pass when
    none."""
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


def decide(results: Iterable[GateResult], expected: Iterable[str] = ()) -> Decision:
    """The one rule the executor, the live loop and the backtest share.

    Any fail rolls back. Promotion needs a verdict from every gate in ``expected`` and
    from each one that answered: pass, or not applicable (a comparison gate without a
    baseline to compare with); at least one gate must pass, since "not applicable"
    never promotes on its own. Anything else (warn, inconclusive, a gate not yet
    judged, no results) holds.
    """
    rs = list(results)
    if any(r.verdict is Verdict.FAIL for r in rs):
        return Decision.ROLLBACK
    judged = {r.gate for r in rs}
    if any(name not in judged for name in expected):
        return Decision.HOLD
    ok = (Verdict.PASS, Verdict.NOT_APPLICABLE)
    if rs and all(r.verdict in ok for r in rs) and any(r.verdict is Verdict.PASS for r in rs):
        return Decision.PROMOTE
    return Decision.HOLD


def blocking(results: Iterable[GateResult]) -> list[GateResult]:
    """The results that keep a release from moving on: every one but pass and not
    applicable."""
    return [r for r in results if r.verdict not in (Verdict.PASS, Verdict.NOT_APPLICABLE)]
