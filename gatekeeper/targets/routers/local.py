"""The local weighted router (a proxy process on loopback): any percent."""

from __future__ import annotations

from gatekeeper.domain.errors import StepFailed, TemporaryError
from gatekeeper.domain.traffic import RouterAbility, WeightRule

from ..base import Target

ABILITY = RouterAbility(router="local", rule=WeightRule.ANY)


class LocalRouter:
    """The traffic half of the local target: reads and sets its router's weights."""

    def __init__(self, target: Target) -> None:
        self.target = target

    @property
    def ability(self) -> RouterAbility:
        return ABILITY

    def weight(self) -> int:
        return self.target.state().candidate_weight

    def set_weight(self, weight: int) -> None:
        self.target.set_weight(weight)
        state = self.target.state()
        if state.details.get("router", "up") != "up":
            raise TemporaryError(
                f"router local: set the candidate to {weight}%, but its admin API did not "
                "answer the read-back"
            )
        if state.candidate_weight != weight:
            raise StepFailed(
                f"router local: the candidate's weight reads {state.candidate_weight}% "
                f"after setting {weight}%"
            )

    def verify_weight(self, weight: int) -> bool:
        state = self.target.state()
        return state.candidate_weight == weight and state.details.get("router", "up") == "up"

    def finalize(self) -> None:
        """The local target's promotion re-applies the routing: nothing left to do."""
