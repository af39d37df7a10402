"""batch (rolling): replace a share of stable's replicas with the candidate; traffic follows."""

from __future__ import annotations

from gatekeeper.domain.plan import ScaleBatch
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext
from .shift import shift


def run(release: ReleaseSpec, step: ScaleBatch, ctx: StepContext) -> None:
    state = ctx.target.state()
    if step.percent > state.candidate_weight:
        ctx.judge.require_fresh_pass(step.name)
    if state.candidate_scale_percent < step.percent:
        ctx.target.deploy_candidate(ctx.candidate_run(), step.percent)
    if state.stable_scale_percent != 100 - step.percent:
        ctx.target.scale_stable(100 - step.percent)
    shift(ctx, step.percent, step.name, judged=True)
