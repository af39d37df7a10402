"""The record of a release as it runs: phases (compare-and-set), events, traffic, gate results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gatekeeper.domain.clock import Clock
from gatekeeper.domain.phases import PhaseConflict
from gatekeeper.domain.release import Phase
from gatekeeper.domain.verdicts import GateResult, Verdict
from gatekeeper.store.base import Event, Store
from gatekeeper.targets.base import TargetState

from .listener import Listener
from .signals import AbortedElsewhere


class Recorder:
    """Writes what happens to the store and tells the listener."""

    def __init__(
        self,
        release_id: str,
        store: Store,
        clock: Clock,
        listener: Listener,
        *,
        record_interval_s: float = 10.0,
    ) -> None:
        self.release_id = release_id
        self.store = store
        self.clock = clock
        self.listener = listener
        self.record_interval_s = record_interval_s
        self._recorded: dict[str, tuple[Verdict, datetime]] = {}

    def phase(self, phase: Phase, reason: str) -> None:
        """Move to ``phase``; an abort written by another process wins (AbortedElsewhere)."""
        try:
            self.set_phase(phase, reason)
        except PhaseConflict as e:
            if e.current is Phase.ABORTED:
                record = self.store.get_release(self.release_id)
                raise AbortedElsewhere(record.reason if record else str(e)) from e
            raise
        self.event("phase", f"{phase.value}: {reason}")

    def set_phase(self, phase: Phase, reason: str, *, stopped: bool | None = None) -> None:
        self.store.set_phase(self.release_id, phase, reason, stopped=stopped)

    def event(self, kind: str, message: str) -> None:
        self.store.record_event(
            Event(release_id=self.release_id, at=self.clock.now(), kind=kind, message=message)
        )
        self.listener.event(kind, message)

    def traffic(self, state: TargetState) -> None:
        self.store.save_target_state(
            self.release_id,
            {
                "stable_version": state.stable_version,
                "candidate_version": state.candidate_version,
                "candidate_weight": state.candidate_weight,
            },
        )
        self.listener.traffic(state)

    def gate_results(self, results: list[GateResult]) -> None:
        keep = [r for r in results if self._worth_recording(r)]
        if keep:
            self.store.record_gate_results(self.release_id, keep)
        self.listener.gates(results)

    def _worth_recording(self, r: GateResult) -> bool:
        """Every change of verdict, and otherwise one result per gate each record interval:
        a guard judged four times a second need not write four rows a second."""
        last = self._recorded.get(r.gate)
        if (
            last is None
            or last[0] is not r.verdict
            or (r.at - last[1]).total_seconds() >= self.record_interval_s
        ):
            self._recorded[r.gate] = (r.verdict, r.at)
            return True
        return False

    def best_effort(self, action: Callable[[], None]) -> None:
        """Run a write that must not stop a rollback; say when it failed."""
        try:
            action()
        except Exception as e:
            self.listener.event("error", f"could not record: {type(e).__name__}: {e}")
