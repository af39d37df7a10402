"""Time scale: every wait in a plan divided by the spec's time_scale, in exact milliseconds."""

from __future__ import annotations

from gatekeeper.domain.durations import compressed
from gatekeeper.domain.plan import Analyze, Plan, Promote, Step


def _scaled(step: Step, factor: float) -> Step:
    if isinstance(step, Analyze):
        return step.model_copy(update={"duration": compressed(step.duration, factor)})
    if isinstance(step, Promote):
        delay = compressed(step.scale_down_delay, factor)
        return step.model_copy(update={"scale_down_delay": delay})
    return step


def scale_durations(plan: Plan, factor: float) -> Plan:
    """``plan`` with analyses, bakes and scale-down delays divided by ``factor``.

    Smoke-check timeouts are request timeouts, not waits, and are left alone.
    """
    return plan.model_copy(
        update={
            "steps": tuple(_scaled(s, factor) for s in plan.steps),
            "rollback": tuple(_scaled(s, factor) for s in plan.rollback),
        }
    )
