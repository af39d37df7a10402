"""Canary: a full-size candidate takes a growing share of traffic, analyzed at each share."""

from __future__ import annotations

from gatekeeper.domain.plan import (
    Analyze,
    DeployCandidate,
    Promote,
    ShiftTraffic,
    SmokeCheck,
    Step,
    Verify,
)
from gatekeeper.domain.release import CanaryStrategy

from .base import ShapedStrategy


class Canary(ShapedStrategy[CanaryStrategy]):
    """deploy, verify, then shift-w and analyze-w for each weight w, then promote.

    The candidate is deployed at stable's full size rather than in proportion to its
    weight: no step rescales it as the weight grows, and at 100% it carries all traffic.
    Stable stays at full size throughout, so a rollback is a traffic flip. The smoke
    check on the preview route is ``/`` answering 200 (the canary settings have none).
    """

    name = "canary"
    settings_type = CanaryStrategy

    def shape(self, settings: CanaryStrategy) -> tuple[Step, ...]:
        steps: list[Step] = [
            DeployCandidate(name="deploy", scale_percent=100),
            Verify(name="verify", checks=(SmokeCheck(),)),
        ]
        for weight in settings.steps:
            steps.append(ShiftTraffic(name=f"shift-{weight}", weight=weight))
            steps.append(Analyze(name=f"analyze-{weight}", duration=settings.analysis))
        steps.append(Promote(name="promote", scale_down_delay=0.0))
        return tuple(steps)
