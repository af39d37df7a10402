"""The queue: which queued release may start now, by the policy in the domain.

For each queued release, in queue order (an approved expedited hotfix first, then
submission order), ``decide_start`` weighs the releases active for its app and
environment, those ahead of it, its expedited approval, its environment's windows and
freezes, and the app's alerts. Alertmanager is asked only for a release that would
start otherwise, once per app in a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from gatekeeper.domain.access import EXPEDITED_APPROVAL_STEP, HOTFIX_APPROVERS
from gatekeeper.domain.clock import SYSTEM_CLOCK, Clock
from gatekeeper.domain.policy import (
    AlertState,
    Decision,
    PolicyConfig,
    ReleaseRequest,
    decide_start,
    queue_order,
    window_open,
)
from gatekeeper.domain.release import Phase
from gatekeeper.store.base import Approval, ReleaseRecord


class AlertSource(Protocol):
    def alert_state(self, app: str) -> AlertState: ...


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one queued release."""

    record: ReleaseRecord
    decision: Decision


def expedited_approved(approvals: Iterable[Approval]) -> bool:
    """Whether an engineering lead or the CTO approved the expedited release to start."""
    return any(
        a.step == EXPEDITED_APPROVAL_STEP and a.role in {r.value for r in HOTFIX_APPROVERS}
        for a in approvals
    )


def request_of(record: ReleaseRecord, approved: bool) -> ReleaseRequest:
    return ReleaseRequest(
        release_id=record.release_id,
        app=record.app,
        environment=record.environment,
        submitted_at=record.created_at,
        expedited=record.expedited,
        expedited_approved=record.expedited and approved,
    )


class Scheduler:
    """Decides, for every queued release, whether it starts now."""

    def __init__(
        self,
        policy: PolicyConfig,
        alerts: AlertSource | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.policy = policy
        self.alerts = alerts
        self.clock = clock

    def decide(
        self,
        records: Iterable[ReleaseRecord],
        approvals: Callable[[str], list[Approval]],
    ) -> list[Verdict]:
        """A decision for each queued release among ``records`` (every unfinished one),
        in queue order; those that start count as active for the ones after them."""
        now = self.clock.now()
        live = list(records)
        active = [request_of(r, False) for r in live if r.phase.active]
        queued = {
            r.release_id: (
                r,
                request_of(r, r.expedited and expedited_approved(approvals(r.release_id))),
            )
            for r in live
            if r.phase is Phase.QUEUED
        }
        waiting = [req for _, req in queued.values()]
        alert_cache: dict[str, AlertState] = {}
        verdicts: list[Verdict] = []
        for req in sorted(waiting, key=queue_order):
            record = queued[req.release_id][0]
            env = self.policy.for_environment(req.environment)
            window = window_open(env, now)
            decision = decide_start(req, active=active, queue=waiting, window=window)
            if decision.starts and self.alerts is not None and env.alertmanager_block:
                state = alert_cache.get(req.app)
                if state is None:
                    state = alert_cache[req.app] = self.alerts.alert_state(req.app)
                decision = decide_start(
                    req, active=active, queue=waiting, window=window, alerts=state
                )
            if decision.starts:
                active.append(req)
                waiting = [w for w in waiting if w.release_id != req.release_id]
            verdicts.append(Verdict(record, decision))
        return verdicts
