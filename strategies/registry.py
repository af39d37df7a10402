"""The strategies by name, and plan_for: the plan of a release spec."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Plan
from gatekeeper.domain.release import ReleaseSpec

from .base import Strategy
from .blue_green import BlueGreen
from .canary import Canary
from .rolling import Rolling

STRATEGIES: Mapping[str, Strategy] = MappingProxyType(
    {s.name: s for s in (Canary(), BlueGreen(), Rolling())}
)


def strategy_for(spec: ReleaseSpec) -> Strategy:
    """The strategy named by ``spec.strategy.type``."""
    kind = spec.strategy.type
    try:
        return STRATEGIES[kind]
    except KeyError:
        raise InvalidInput(
            f"strategy.type: unknown strategy {kind!r}; known: {', '.join(sorted(STRATEGIES))}"
        ) from None


def plan_for(spec: ReleaseSpec) -> Plan:
    """The full plan of ``spec``: its strategy's steps, expedited, approvals and time scale.

    The plan is what the executor runs; the abort guard that watches every moment of a
    release, expedited or not, belongs to the executor and is not a step.
    """
    return strategy_for(spec).plan(spec)
