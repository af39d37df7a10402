"""Blue-green: a full-size candidate is smoke-checked, takes all traffic, bakes, and is promoted."""

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
from gatekeeper.domain.release import BlueGreenStrategy

from .base import ShapedStrategy


class BlueGreen(ShapedStrategy[BlueGreenStrategy]):
    """deploy (100% of stable's size), verify, shift-100, bake, promote.

    Stable stays at full size until promotion, so a rollback at any point before it is a
    traffic flip back to stable. After promotion the old version stays up for
    ``scale_down_delay``.
    """

    name = "blue-green"
    settings_type = BlueGreenStrategy

    def shape(self, settings: BlueGreenStrategy) -> tuple[Step, ...]:
        checks = tuple(
            SmokeCheck(path=s.path, expect_status=s.expect_status) for s in settings.smoke
        )
        return (
            DeployCandidate(name="deploy", scale_percent=100),
            Verify(name="verify", checks=checks),
            ShiftTraffic(name="shift-100", weight=100),
            Analyze(name="bake", duration=settings.bake),
            Promote(name="promote", scale_down_delay=settings.scale_down_delay),
        )
