"""batch (rolling): replace a share of stable's replicas with the candidate; traffic follows."""

from __future__ import annotations

from gatekeeper.domain.plan import ScaleBatch
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext
from .shift import shift


def run(release: ReleaseSpec, step: ScaleBatch, ctx: StepContext) -> None:
    state = ctx.workloads.state()
    if step.percent > ctx.router.weight():
        ctx.judge.require_fresh_pass(step.name)
    if state.candidate_scale_percent < step.percent:
        ctx.workloads.deploy_candidate(ctx.candidate_run(), step.percent)
    if state.stable_scale_percent != 100 - step.percent:
        ctx.workloads.scale_stable(100 - step.percent)
    shift(ctx, step.percent, step.name, judged=True)
