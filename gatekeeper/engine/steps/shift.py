"""shift: the candidate's share of traffic; more of it only on a fresh verdict of every gate."""

from __future__ import annotations

from gatekeeper.domain.plan import ShiftTraffic
from gatekeeper.domain.release import ReleaseSpec

from .context import StepContext


def run(release: ReleaseSpec, step: ShiftTraffic, ctx: StepContext) -> None:
    shift(ctx, step.weight, step.name)


def shift(ctx: StepContext, weight: int, step: str, *, judged: bool = False) -> None:
    """Idempotent: reads the actual weight first. ``judged``: the caller already took the
    fresh verdict that a traffic increase needs."""
    current = ctx.router.weight()
    if current == weight:
        ctx.judge.gates.weight_told(weight, ctx.clock.now())  # resumed: known from now on
        ctx.recorder.event("shift", f"traffic already at candidate {weight}%")
        return
    if weight > current and not judged:
        ctx.judge.require_fresh_pass(step)
    # A router that does not answer for a moment is retried (with backoff, for a minute).
    ctx.retrying(lambda: ctx.router.set_weight(weight))
    ctx.judge.gates.weight_told(weight, ctx.clock.now())  # the traffic gate judges against it
    if weight > 0:
        ctx.judge.gates.traffic_started(ctx.clock.now())
    ctx.recorder.event("shift", f"traffic: candidate {current}% -> {weight}%")
    ctx.traffic()
