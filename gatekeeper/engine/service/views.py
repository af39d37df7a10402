"""Releases as the API shows them: a summary for lists, the detail with steps, approvals,
gate results and events. Plain dataclasses; the API layer turns them into JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatekeeper.domain.plan import Plan, WaitForApproval
from gatekeeper.store.base import ReleaseBundle, ReleaseRecord


@dataclass(frozen=True)
class StepView:
    index: int
    name: str
    kind: str
    description: str
    # done | running | waiting-approval | pending | not-run (the release ended before it)
    status: str
    completed_at: datetime | None
    roles: tuple[str, ...]  # an approval step: the roles that approve it


@dataclass(frozen=True)
class ApprovalView:
    step: str
    approver: str
    role: str
    at: datetime
    comment: str


@dataclass(frozen=True)
class GateView:
    gate: str
    verdict: str
    reason: str
    at: datetime
    value: float | None
    threshold: float | None
    window_s: float | None
    requests: float | None


@dataclass(frozen=True)
class EventView:
    at: datetime
    kind: str
    message: str
    actor: str


@dataclass(frozen=True)
class ReleaseSummary:
    release_id: str
    app: str
    environment: str
    version: str
    stable_version: str
    strategy: str
    executor: str
    expedited: bool
    phase: str
    reason: str
    final: bool
    submitted_by: str | None
    created_at: datetime
    updated_at: datetime
    next_step: int
    steps_total: int
    current_step: str | None
    stalled: str | None


@dataclass(frozen=True)
class ReleaseDetail(ReleaseSummary):
    expedited_reason: str | None
    spec: dict[str, Any]
    steps: list[StepView]
    approvals: list[ApprovalView]
    gate_results: list[GateView]
    events: list[EventView]


def summary(record: ReleaseRecord) -> ReleaseSummary:
    plan = Plan.model_validate(record.plan)
    steps = plan.steps
    current = (
        steps[record.next_step].name
        if record.phase.active and record.next_step < len(steps)
        else None
    )
    return ReleaseSummary(
        release_id=record.release_id,
        app=record.app,
        environment=record.environment,
        version=record.version,
        stable_version=record.stable_version,
        strategy=record.strategy,
        executor=str(record.spec.get("executor", "local")),
        expedited=record.expedited,
        phase=record.phase.value,
        reason=record.reason,
        final=record.phase.final,
        submitted_by=record.submitted_by,
        created_at=record.created_at,
        updated_at=record.updated_at,
        next_step=record.next_step,
        steps_total=len(steps),
        current_step=current,
        stalled=record.stalled,
    )


def _status(record: ReleaseRecord, index: int, kind: str) -> str:
    if index < record.next_step:
        return "done"
    if record.phase.final:
        return "not-run"
    if index == record.next_step and record.phase.active:
        return "waiting-approval" if kind == "approval" else "running"
    return "pending"


def detail(bundle: ReleaseBundle) -> ReleaseDetail:
    record = bundle.record
    plan = Plan.model_validate(record.plan)
    done = {entry.index: entry.at for entry in bundle.steps}
    steps = [
        StepView(
            index=i,
            name=s.name,
            kind=s.kind,
            description=s.describe(),
            status=_status(record, i, s.kind),
            completed_at=done.get(i),
            roles=tuple(s.roles) if isinstance(s, WaitForApproval) else (),
        )
        for i, s in enumerate(plan.steps)
    ]
    base = summary(record)
    return ReleaseDetail(
        **{f: getattr(base, f) for f in ReleaseSummary.__dataclass_fields__},
        expedited_reason=record.spec.get("expedited_reason"),
        spec=record.spec,
        steps=steps,
        approvals=[
            ApprovalView(a.step, a.approver, a.role, a.at, a.comment) for a in bundle.approvals
        ],
        gate_results=[
            GateView(
                r.gate,
                r.verdict.value,
                r.reason,
                r.at,
                r.value,
                r.threshold,
                r.window_s,
                r.requests,
            )
            for r in bundle.gate_results
        ],  # fmt: skip
        events=[EventView(e.at, e.kind, e.message, e.actor) for e in bundle.events],
    )
