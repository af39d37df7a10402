"""promote: judged afresh, the candidate becomes stable; the old version goes after a delay.

During the scale-down delay the candidate takes all traffic while the old version stays
up and every gate keeps judging, so a failure then is a flip back to it.
"""

from __future__ import annotations

from gatekeeper.domain.durations import human_duration
from gatekeeper.domain.plan import Promote
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext
from .shift import shift


def run(release: ReleaseSpec, step: Promote, ctx: StepContext) -> None:
    ctx.judge.require_fresh_pass(step.name)
    if step.scale_down_delay > 0:
        shift(ctx, 100, step.name, judged=True)
        delay = human_duration(step.scale_down_delay)
        ctx.recorder.event(
            "promote", f"{release.stable.version} stays up for {delay} while the gates keep judging"
        )
        ctx.judge.wait(step.scale_down_delay)
    ctx.workloads.promote(0.0)
    ctx.router.finalize()
    ctx.recorder.event("promote", f"{release.version} is now stable")
    ctx.traffic()
