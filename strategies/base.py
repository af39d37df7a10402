"""The strategy protocol, and the template each strategy here follows to build a plan."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, Protocol, TypeVar

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Plan, Rollback, Step
from gatekeeper.domain.release import (
    BlueGreenStrategy,
    CanaryStrategy,
    ReleaseSpec,
    RollingStrategy,
)

from .approvals import insert_approvals
from .expedite import compress, expedited_approval
from .timing import scale_durations

StrategySettings = CanaryStrategy | BlueGreenStrategy | RollingStrategy
"""The ``strategy`` section of a release spec, one model per strategy type."""

S = TypeVar("S", CanaryStrategy, BlueGreenStrategy, RollingStrategy)


class Strategy(Protocol):
    """Turns a release spec into a plan; ``name`` is the spec's ``strategy.type``."""

    name: str

    def plan(self, spec: ReleaseSpec) -> Plan: ...


class ShapedStrategy(ABC, Generic[S]):
    """A strategy defined by its shape: the steps it makes of its own settings.

    ``plan`` adds what every strategy shares, in this order:

    1. expedited: the settings are compressed first (``expedite.compress``), so the shape
       is built from fewer steps and shorter analyses; the plan then opens with the
       expedited approval;
    2. ``spec.approvals``: an approval right before each named step;
    3. ``spec.time_scale``: every duration divided by it.

    The rollback steps restore stable: all traffic to stable at full size, candidate removed.
    """

    name: str
    settings_type: type[S]

    @abstractmethod
    def shape(self, settings: S) -> tuple[Step, ...]:
        """The steps of this strategy for ``settings``, from deploy to promote."""

    def plan(self, spec: ReleaseSpec) -> Plan:
        settings = spec.strategy
        if not isinstance(settings, self.settings_type):
            raise InvalidInput(
                f"strategy.type: the {self.name} strategy cannot plan a {settings.type!r} release"
            )
        if spec.expedited:
            settings = compress(settings)
        steps: tuple[Step, ...] = self.shape(settings)
        if spec.expedited:
            steps = (expedited_approval(), *steps)
        steps = insert_approvals(steps, spec.approvals)
        plan = Plan(
            release=spec.release_id,
            strategy=self.name,
            expedited=spec.expedited,
            steps=steps,
            rollback=(Rollback(name="rollback"),),
        )
        return scale_durations(plan, spec.time_scale)
