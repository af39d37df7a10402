"""verify: HTTP smoke checks against the candidate directly, on the preview route."""

from __future__ import annotations

from gatekeeper.domain.plan import Verify
from gatekeeper.domain.release import ReleaseSpec

from ..smoke import run_smoke_checks
from .context import StepContext


def run(release: ReleaseSpec, step: Verify, ctx: StepContext) -> None:
    for line in run_smoke_checks(ctx.workloads.preview_url(), step.checks, sleep=ctx.clock.sleep):
        ctx.recorder.event("verify", line)
