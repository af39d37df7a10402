"""Time scale: every wait in a plan divided by the spec's time_scale, in exact milliseconds."""

from __future__ import annotations

from gatekeeper.domain.durations import format_duration, parse_duration
from gatekeeper.domain.plan import Analyze, Plan, Promote, Step

SMALLEST = 0.001  # a positive wait stays at least a millisecond


def exact(seconds: float) -> float:
    """``seconds`` as its written form reads back, so a plan survives JSON unchanged."""
    if seconds <= 0:
        return 0.0
    return parse_duration(format_duration(max(seconds, SMALLEST)))


def _scaled(step: Step, factor: float) -> Step:
    if isinstance(step, Analyze):
        return step.model_copy(update={"duration": exact(step.duration / factor)})
    if isinstance(step, Promote):
        return step.model_copy(update={"scale_down_delay": exact(step.scale_down_delay / factor)})
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
