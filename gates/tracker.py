"""Inconclusive holds, but not forever: after the gate's deadline it fails closed."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.verdicts import GateResult, Verdict

from .spec import GateSpec


class InconclusiveTracker:
    """Remembers since when each gate has been inconclusive without a break."""

    def __init__(self) -> None:
        self._since: dict[str, datetime] = {}

    def apply(self, gate: GateSpec, result: GateResult, start: datetime | None) -> GateResult:
        """``start``: when the clock may start (the candidate's first traffic); None: not yet."""
        if result.verdict is not Verdict.INCONCLUSIVE:
            self._since.pop(gate.name, None)
            return result
        since = self._since.setdefault(gate.name, result.at)
        if start is None:
            return result
        since = min(max(since, start), result.at)
        waited = (result.at - since).total_seconds()
        if waited + 1e-6 < gate.inconclusive_deadline:
            return result
        return replace(
            result,
            verdict=Verdict.FAIL,
            reason=(
                f"{result.reason}; inconclusive for {human_duration(waited)} "
                f">= deadline {human_duration(gate.inconclusive_deadline)}, failing closed"
            ),
        )

    def inconclusive_since(self, gate: str) -> datetime | None:
        return self._since.get(gate)
