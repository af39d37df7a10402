"""The expedited rule: the same strategy with fewer steps, shorter analyses, approval first.

An expedited release (a hotfix) keeps its strategy's shape but is compressed:

* ladders: a canary shifts 25% then 100%; a rolling release replaces 50% then 100% of
  the replicas. A spec whose own ladder has no more steps than that keeps its own, so an
  expedited plan never has more steps than the plain one. Blue-green keeps its shape.
* analyses and bakes: a quarter as long, but never below one minute (before time_scale);
  a duration already shorter than a minute is kept as it is, never lengthened.
* the scale-down delay after promotion is kept: the old version staying up is what makes
  a rollback after promotion fast, and it does not slow the release.
* the plan opens with an approval by an engineering lead or the CTO.

The abort guard still watches every moment of an expedited release: that is the
executor's job and does not depend on the plan.
"""

from __future__ import annotations

from typing import TypeVar

from gatekeeper.domain.plan import WaitForApproval
from gatekeeper.domain.release import BlueGreenStrategy, CanaryStrategy, RollingStrategy

EXPEDITED_APPROVERS: tuple[str, ...] = ("engineering-lead", "cto")
EXPEDITED_APPROVAL_STEP = "approve-expedited"
CANARY_WEIGHTS: tuple[int, ...] = (25, 100)
ROLLING_BATCHES: tuple[int, ...] = (50, 100)
DIVISOR = 4.0
FLOOR_SECONDS = 60.0

S = TypeVar("S", CanaryStrategy, BlueGreenStrategy, RollingStrategy)


def compress_duration(seconds: float) -> float:
    """A quarter of ``seconds``, at least a minute, and never longer than ``seconds``."""
    return max(seconds / DIVISOR, min(seconds, FLOOR_SECONDS))


def compress_ladder(ladder: tuple[int, ...], expedited: tuple[int, ...]) -> tuple[int, ...]:
    """The expedited ladder, unless the spec's own is already no longer."""
    return ladder if len(ladder) <= len(expedited) else expedited


def compress(settings: S) -> S:
    """The strategy settings of the expedited variant of the same strategy."""
    if isinstance(settings, CanaryStrategy):
        return settings.model_copy(
            update={
                "steps": compress_ladder(settings.steps, CANARY_WEIGHTS),
                "analysis": compress_duration(settings.analysis),
            }
        )
    if isinstance(settings, RollingStrategy):
        return settings.model_copy(
            update={
                "batches": compress_ladder(settings.batches, ROLLING_BATCHES),
                "analysis": compress_duration(settings.analysis),
            }
        )
    return settings.model_copy(update={"bake": compress_duration(settings.bake)})


def expedited_approval() -> WaitForApproval:
    """The first step of every expedited plan."""
    return WaitForApproval(name=EXPEDITED_APPROVAL_STEP, roles=EXPEDITED_APPROVERS)
