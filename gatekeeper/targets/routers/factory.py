"""The router of a release: what it can do (for plan checks) and the router itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import KubernetesTarget, ReleaseSpec
from gatekeeper.domain.traffic import RouterAbility, WeightRule

from ..base import Target, TrafficRouter
from . import local

if TYPE_CHECKING:
    from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads

# The Kubernetes routers, by the name a spec gives in target.router.
KUBERNETES: dict[str, WeightRule] = {
    "gateway-api": WeightRule.ANY,  # HTTPRoute backendRefs weights
    "service-selector": WeightRule.ALL_OR_NOTHING,  # the Service's selector flips
    "replica-ratio": WeightRule.REPLICA_STEPS,  # one Service over both Deployments
    "istio": WeightRule.ANY,  # VirtualService weights over DestinationRule subsets
}


def ability_for(spec: ReleaseSpec) -> RouterAbility:
    """What the spec's router can carry out; known before anything runs."""
    if isinstance(spec.target, KubernetesTarget):
        name = spec.target.router
        # Only replica-ratio needs the count (the spec requires it there).
        return RouterAbility(router=name, rule=KUBERNETES[name], replicas=spec.target.replicas or 1)
    return local.ABILITY


def router_for(spec: ReleaseSpec, target: Target | KubernetesWorkloads) -> TrafficRouter:
    """The router that splits the spec's traffic, over its workloads. A Kubernetes router is
    attached to its workloads: they isolate the candidate through it before its first pod and
    have it restore its objects after the last."""
    if isinstance(spec.target, KubernetesTarget):
        # Loaded only for a Kubernetes release: the local path never imports the client.
        from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads

        if not isinstance(target, KubernetesWorkloads):
            raise InvalidInput(
                f"target.router {spec.target.router!r} needs the kubernetes workloads, "
                f"got {type(target).__name__}"
            )
        return kubernetes_router(spec.target.router, target)
    return local.LocalRouter(target)


def kubernetes_router(name: str, workloads: KubernetesWorkloads) -> TrafficRouter:
    if name == "gateway-api":
        from .gateway_api import GatewayApiRouter

        return GatewayApiRouter(workloads)
    if name == "service-selector":
        from .service_selector import ServiceSelectorRouter

        return ServiceSelectorRouter(workloads)
    if name == "replica-ratio":
        from .replica_ratio import ReplicaRatioRouter

        return ReplicaRatioRouter(workloads)
    if name == "istio":
        from .istio import IstioRouter

        return IstioRouter(workloads)
    raise InvalidInput(f"target.router {name!r}: one of {', '.join(KUBERNETES)}")
