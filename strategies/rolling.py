"""Rolling: the candidate replaces stable's replicas batch by batch, analyzed after each batch."""

from __future__ import annotations

from gatekeeper.domain.plan import Analyze, DeployCandidate, Promote, ScaleBatch, Step
from gatekeeper.domain.release import RollingStrategy

from .base import ShapedStrategy


class Rolling(ShapedStrategy[RollingStrategy]):
    """deploy (0%), then batch-p and analyze-batch-p for each batch p, then promote.

    A batch of p% runs the candidate at p% of the replicas and stable at (100-p)%;
    traffic follows the replicas. Every batch is analyzed, the last (100%) one too: that
    analysis is the gate before promotion, the only time the candidate is judged alone.
    Promotion has no scale-down delay: no old replicas are left to scale down. A rollback
    restores stable's replicas to full size and removes the candidate's.
    """

    name = "rolling"
    settings_type = RollingStrategy

    def shape(self, settings: RollingStrategy) -> tuple[Step, ...]:
        steps: list[Step] = [DeployCandidate(name="deploy", scale_percent=0)]
        for percent in settings.batches:
            steps.append(ScaleBatch(name=f"batch-{percent}", percent=percent))
            steps.append(Analyze(name=f"analyze-batch-{percent}", duration=settings.analysis))
        steps.append(Promote(name="promote", scale_down_delay=0.0))
        return tuple(steps)
