"""rollback: all traffic back to stable at full size; the candidate stops."""

from __future__ import annotations

from gatekeeper.domain.plan import Rollback
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext


def run(release: ReleaseSpec, step: Rollback, ctx: StepContext) -> None:
    ctx.retrying(ctx.target.rollback)
    ctx.traffic()
