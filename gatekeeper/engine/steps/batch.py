"""batch (rolling): replace a share of stable's replicas with the candidate; traffic follows."""

from __future__ import annotations

from gatekeeper.domain.plan import ScaleBatch
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext
from .deploy import await_metrics
from .shift import shift


def run(release: ReleaseSpec, step: ScaleBatch, ctx: StepContext) -> None:
    state = ctx.workloads.state()
    if step.percent > ctx.router.weight():
        ctx.judge.require_fresh_pass(step.name)
    if state.candidate_scale_percent < step.percent:
        ctx.workloads.deploy_candidate(ctx.candidate_run(), step.percent)
        # Its new replicas (the first ones, when it was deployed at 0%) are scraped before the
        # batch's traffic is judged: requests a replica answered before its first scrape are
        # in no window, and the total rate after the shift would read as a drop.
        if ctx.on_deployed:
            ctx.on_deployed(ctx.workloads.metrics_endpoints())
        await_metrics(release, ctx)
    if state.stable_scale_percent != 100 - step.percent:
        ctx.workloads.scale_stable(100 - step.percent)
    shift(ctx, step.percent, step.name, judged=True)
