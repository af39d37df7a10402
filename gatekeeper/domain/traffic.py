"""What a traffic router can do, and whether a plan asks only for that.

A router declares one rule: any percent (a weighted proxy, Gateway API backendRefs,
a mesh); only 0 or 100 (a Service selector flips); or steps of 1/replicas (a replica
ratio behind one Service). A plan that asks for a weight its router cannot carry out
is refused before anything starts, naming the step, the weight and the router.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidInput
from .plan import Plan, ScaleBatch, ShiftTraffic


class WeightRule(StrEnum):
    ANY = "any"  # any whole percent
    ALL_OR_NOTHING = "all-or-nothing"  # 0 or 100 only
    REPLICA_STEPS = "replica-steps"  # whole replicas: k/replicas, as whole percents


@dataclass(frozen=True)
class RouterAbility:
    router: str  # the router's name, e.g. "local", "service-selector"
    rule: WeightRule
    replicas: int = 1  # REPLICA_STEPS: the candidate's share moves one replica at a time

    def carries(self, weight: int) -> bool:
        if self.rule is WeightRule.ANY:
            return 0 <= weight <= 100
        if self.rule is WeightRule.ALL_OR_NOTHING:
            return weight in (0, 100)
        # A share of whole replicas, shown as a whole percent (1 of 3 is 33%).
        replicas = round(weight * self.replicas / 100)
        return abs(replicas * 100 / self.replicas - weight) <= 0.5

    def describe(self) -> str:
        if self.rule is WeightRule.ANY:
            return "any percent"
        if self.rule is WeightRule.ALL_OR_NOTHING:
            return "only 0% or 100% (it flips a Service selector)"
        allowed = [round(100 * k / self.replicas) for k in range(self.replicas + 1)]
        shown = ", ".join(f"{w}%" for w in allowed)
        return f"only whole replicas of {self.replicas} (steps of 1/{self.replicas}): {shown}"


def check_plan(plan: Plan, ability: RouterAbility) -> None:
    """Refuse a plan with a traffic weight ``ability`` cannot carry out."""
    for step in plan.steps:
        weight = (
            step.weight
            if isinstance(step, ShiftTraffic)
            else step.percent
            if isinstance(step, ScaleBatch)
            else None
        )
        if weight is not None and not ability.carries(weight):
            raise InvalidInput(
                f"strategy {plan.strategy}: step {step.name} sends {weight}% of traffic to "
                f"the candidate, but router {ability.router!r} can carry out "
                f"{ability.describe()}"
            )
