"""analyze: every gate on its interval for a duration; then promote-worthy, or hold."""

from __future__ import annotations

from datetime import datetime

from gatekeeper.domain.plan import Analyze
from gatekeeper.domain.release import Phase, ReleaseSpec
from gatekeeper.domain.verdicts import Decision

from .context import StepContext


def run(release: ReleaseSpec, step: Analyze, ctx: StepContext) -> None:
    judge = ctx.judge
    judge.gates.reset()
    start = ctx.clock.now()
    hold_start: datetime | None = None
    while True:
        judge.check_stop()
        results = judge.tick()
        now = ctx.clock.now()
        if (now - start).total_seconds() >= step.duration:
            decision, why = judge.decision()
            if decision is Decision.PROMOTE:
                if hold_start is not None:
                    ctx.recorder.phase(Phase.RUNNING, "gates pass")
                return
            if hold_start is None:
                hold_start = now
                ctx.recorder.phase(Phase.HOLDING, f"holding: {why}")
            judge.hold_deadline(hold_start, now, f"{step.name}: gates did not all pass", why)
        if not results:
            ctx.clock.sleep(judge.tick_s)
