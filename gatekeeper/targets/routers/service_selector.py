"""Service selector flip (blue-green): 0 or 100.

The user's Service (``target.service``) is pinned to a version: stable's while the candidate
is previewed (``<service>-preview``, created by the router, selects the candidate's pods), the
candidate's at 100. The weight is read from the Service's selector. ``finalize`` after
promotion pins the Service to stable's new pods, retires the candidate after the drain, and
puts the Service's own selector back and the preview Service away.
"""

from __future__ import annotations

from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.traffic import RouterAbility, WeightRule
from gatekeeper.targets.kubernetes.services import RouterBase

ABILITY = RouterAbility(router="service-selector", rule=WeightRule.ALL_OR_NOTHING)


class ServiceSelectorRouter(RouterBase):
    @property
    def ability(self) -> RouterAbility:
        return ABILITY

    def problems(self) -> list[str]:
        return self.service_problems()

    def weight(self) -> int:
        return 100 if self.pinned_version() == self.s.candidate_version else 0

    def set_weight(self, weight: int) -> None:
        if weight not in (0, 100):
            raise StepFailed(
                f"weight {weight}: router service-selector flips a Service: 0% or 100% only"
            )
        if weight == 100:
            self.require_ready_candidate(weight)
            self.pin(self.s.candidate_version)
        elif self.pinned_version() is not None:
            self.pin(self.s.stable_version)
        self.read_back(weight)

    def isolate(self) -> None:
        problems = self.problems()
        if problems:
            raise StepFailed("; ".join(problems))
        if self.pinned_version() is None:
            self.pin(self.s.stable_version)
        self.ensure_candidate_service(self.s.preview_service)

    def restore(self, stable_version: str) -> None:
        self.unpin(stable_version)
        self.delete_candidate_service(self.s.preview_service)

    def finalize(self) -> None:
        # The Service moves from the candidate's pods to stable's new ones (same version, told
        # apart by pod-template-hash) before the candidate's are deleted after the drain.
        self.pin_promoted()
        self.workloads.retire_candidate()
        self.unpin(self.s.candidate_version)
        self.delete_candidate_service(self.s.preview_service)
