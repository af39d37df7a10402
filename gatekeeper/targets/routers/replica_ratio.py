"""Replica ratio (rolling, no router): one Service spans both versions, so the candidate's share
of traffic is its share of the ready replicas, one replica at a time.

Setting a weight sizes the two Deployments (the growing one first and ready, then the
shrinking one) and waits until the ready replicas say that weight. The weight is read from
the Deployments' status. Only the rolling strategy may use it (the spec refuses others: a
candidate behind this Service takes traffic as soon as it runs).
"""

from __future__ import annotations

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.errors import StepFailed
from gatekeeper.domain.traffic import RouterAbility, WeightRule
from gatekeeper.targets.kubernetes import derive, pods
from gatekeeper.targets.kubernetes.services import RouterBase


def ability(replicas: int) -> RouterAbility:
    return RouterAbility(router="replica-ratio", rule=WeightRule.REPLICA_STEPS, replicas=replicas)


class ReplicaRatioRouter(RouterBase):
    # One Service spans both versions: the candidate's pods leave it only as they are deleted
    # (their app drains on SIGTERM, as in any rolling update), so there is nothing to wait for.
    drains = False

    @property
    def ability(self) -> RouterAbility:
        return ability(self.s.replicas or 1)

    def problems(self) -> list[str]:
        return self.service_problems(spans_versions=True)

    def weight(self) -> int:
        stable = self.api.get(self.workloads.stable_ref)
        candidate = self.api.get(self.workloads.candidate_ref)
        ready_stable = _ready(stable)
        ready_candidate = _ready(candidate)
        total = ready_stable + ready_candidate
        return 0 if total == 0 else round(100 * ready_candidate / total)

    def set_weight(self, weight: int) -> None:
        if not self.ability.carries(weight):
            raise StepFailed(f"weight {weight}: {self.ability.describe()}")
        full = derive.full_size(self.workloads.stable())
        candidate = derive.replicas_for(full, weight)
        if self.api.get(self.workloads.candidate_ref) is None:
            if weight > 0:
                raise StepFailed(f"weight {weight}: {self.workloads.candidate_ref} is not deployed")
            self.workloads.set_replicas(stable=full)
        else:
            self.workloads.set_replicas(stable=full - candidate, candidate=candidate)
        self._settle(weight)

    def _settle(self, weight: int) -> None:
        """Until the ready replicas say ``weight`` (pods of the shrinking side are leaving)."""
        clock, start = self.workloads.clock, self.workloads.clock.now()
        limit = self.s.progress_deadline_s
        while self.weight() != weight:
            waited = (clock.now() - start).total_seconds()
            if waited >= limit:
                not_ready = [pods.describe(p) for p in self.workloads.pods() if not pods.ready(p)]
                raise StepFailed(
                    f"router replica-ratio: the ready replicas give the candidate "
                    f"{self.weight()}%, not {weight}%, after {human_duration(waited)}"
                    + (f": {'; '.join(not_ready)}" if not_ready else "")
                )
            clock.sleep(self.workloads.poll_s)

    def isolate(self) -> None:
        problems = self.problems()
        if problems:
            raise StepFailed("; ".join(problems))

    def restore(self, stable_version: str) -> None:
        """Nothing of the router's to put back: it writes only the Deployments' sizes."""

    def finalize(self) -> None:
        self.workloads.retire_candidate()


def _ready(deployment: dict[str, object] | None) -> int:
    if deployment is None:
        return 0
    status = deployment.get("status") or {}
    assert isinstance(status, dict)
    return int(status.get("readyReplicas", 0))
