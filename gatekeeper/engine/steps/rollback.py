"""rollback: all traffic back to stable at full size; the candidate stops."""

from __future__ import annotations

from gatekeeper.domain.plan import Rollback
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext


def run(release: ReleaseSpec, step: Rollback, ctx: StepContext) -> None:
    # Traffic first: stable still runs at full size, so the flip alone ends the harm.
    if ctx.workloads.state().candidate_version is not None:
        ctx.retrying(lambda: ctx.router.set_weight(0))
    ctx.retrying(ctx.workloads.rollback)
    ctx.traffic()
