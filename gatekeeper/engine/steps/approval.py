"""approval: wait for a person with one of the step's roles; every gate keeps judging."""

from __future__ import annotations

from collections.abc import Iterable

from gatekeeper.domain.plan import WaitForApproval
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.store.base import Approval

from .context import StepContext


def counting(step: WaitForApproval, approvals: Iterable[Approval]) -> Approval | None:
    """The approval that lets ``step`` go on: one for this step, by one of its roles."""
    return next((a for a in approvals if step.accepts(a.step, a.role)), None)


def run(release: ReleaseSpec, step: WaitForApproval, ctx: StepContext) -> None:
    judge = ctx.judge
    start = ctx.clock.now()
    ctx.recorder.phase(Phase.HOLDING, f"waiting for approval by {' or '.join(step.roles)}")
    while True:
        judge.check_stop()
        given = counting(step, judge.store.approvals(release.release_id))
        if given is not None:
            ctx.recorder.event(
                "approval", f"{step.name} approved by {given.approver} ({given.role})"
            )
            ctx.recorder.phase(Phase.RUNNING, "approved")
            return
        # Every gate, not only the guard: a candidate that turns bad while a person
        # decides is rolled back, not promoted on an old analysis.
        judge.tick()
        judge.hold_deadline(start, ctx.clock.now(), f"{step.name}: no approval")
        ctx.clock.sleep(judge.tick_s)
