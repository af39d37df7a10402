"""The router of a release: what it can do (for plan checks) and the router itself."""

from __future__ import annotations

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import KubernetesTarget, ReleaseSpec
from gatekeeper.domain.traffic import RouterAbility, WeightRule

from ..base import Target, TrafficRouter
from . import local

# The Kubernetes routers, by the name a spec gives in target.router.
KUBERNETES: dict[str, WeightRule] = {
    "gateway-api": WeightRule.ANY,  # HTTPRoute backendRefs weights
    "service-selector": WeightRule.ALL_OR_NOTHING,  # the Service's selector flips
    "replica-ratio": WeightRule.REPLICA_STEPS,  # one Service over both Deployments
}


def ability_for(spec: ReleaseSpec) -> RouterAbility:
    """What the spec's router can carry out; known before anything runs."""
    if isinstance(spec.target, KubernetesTarget):
        name = spec.target.router
        return RouterAbility(router=name, rule=KUBERNETES[name], replicas=spec.target.replicas)
    return local.ABILITY


def router_for(spec: ReleaseSpec, target: Target) -> TrafficRouter:
    """The router that splits the spec's traffic, over its workloads."""
    if isinstance(spec.target, KubernetesTarget):
        raise InvalidInput(
            f"target.router {spec.target.router!r}: the kubernetes target is not available yet"
        )
    return local.LocalRouter(target)
