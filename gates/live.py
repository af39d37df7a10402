"""The live gate loop: each gate evaluated on its own interval, as of now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.verdicts import Decision, GateResult, blocking, decide

from .evaluate import GateEvaluator, Release
from .spec import GateSpec
from .tracker import InconclusiveTracker


class LiveGates:
    """Evaluates the gates that are due at each tick and keeps the latest result of each.

    The clock is injected so tests never sleep through a window.
    """

    def __init__(
        self,
        evaluator: GateEvaluator,
        release: Release,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.evaluator = evaluator
        self.release = release
        self.clock = clock
        self.tracker = InconclusiveTracker()
        self.latest: dict[str, GateResult] = {}
        self.traffic_since: datetime | None = None
        self._last_run: dict[str, datetime] = {}
        self._specs = {g.name: g for g in evaluator.gate_set.gates}

    def due(self, gates: Sequence[GateSpec], at: datetime) -> list[GateSpec]:
        out = []
        for g in gates:
            last = self._last_run.get(g.name)
            if last is None or (at - last).total_seconds() + 1e-6 >= g.interval:
                out.append(g)
        return out

    def tick(
        self, gates: Sequence[GateSpec] | None = None, *, force: bool = False
    ) -> list[GateResult]:
        """Evaluate the due gates (all of ``gates`` when forced); returns the fresh results."""
        at = self.clock.now()
        chosen = list(gates if gates is not None else self.evaluator.gate_set.gates)
        todo = chosen if force else self.due(chosen, at)
        if not todo:
            return []
        fresh = []
        for r in self.evaluator.evaluate(self.release, at, todo):
            r = self.tracker.apply(self._specs[r.gate], r, self.traffic_since)
            self.latest[r.gate] = r
            self._last_run[r.gate] = at
            fresh.append(r)
        return fresh

    def decision(self) -> tuple[Decision, list[GateResult]]:
        """What every gate's latest verdict says of the release, and the results that keep
        it from moving on (the shared rule: ``decide``)."""
        names = [g.name for g in self.evaluator.gate_set.gates]
        latest = [self.latest[n] for n in names if n in self.latest]
        return decide(latest, names), blocking(latest)

    def weight_told(self, weight: int, at: datetime) -> None:
        """The router was told to give the candidate ``weight`` percent from ``at``: the
        traffic gate judges the candidate's share against it (the same weight again is
        not a change)."""
        told = self.release.weights
        if told and told[-1][1] == weight:
            return
        self.release = replace(self.release, weights=(*told, (at, weight)))

    def traffic_started(self, at: datetime) -> None:
        """The candidate gets traffic from ``at``: inconclusive gates may now fail closed."""
        if self.traffic_since is None:
            self.traffic_since = at

    def reset(self) -> None:
        """Forget the latest results (a new analysis starts from fresh evidence)."""
        self.latest.clear()
        self._last_run.clear()
