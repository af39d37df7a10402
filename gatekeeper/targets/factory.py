"""The workloads of a release, built from its spec: the one place a target is made."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gatekeeper.domain.release import KubernetesTarget, ReleaseSpec

if TYPE_CHECKING:
    from .kubernetes.workloads import KubernetesWorkloads
    from .local.target import LocalProcessTarget


def workloads_for(
    spec: ReleaseSpec, state_dir: Path, *, kubeconfig: str | None = None
) -> LocalProcessTarget | KubernetesWorkloads:
    """The spec's workloads: for the local target, its folder of processes and router; for
    the kubernetes target, its Deployments through a client from ``kubeconfig`` (else
    KUBECONFIG, ~/.kube/config, or in-cluster config). Its router is built with
    ``routers.factory.router_for`` and attached to it."""
    if isinstance(spec.target, KubernetesTarget):
        # The client loads only when a Kubernetes release runs: the CLI starts without it.
        from .kubernetes.api import Api
        from .kubernetes.connect import connect
        from .kubernetes.workloads import KubernetesWorkloads

        api = Api(connect(kubeconfig), release_id=spec.release_id)
        return KubernetesWorkloads(spec, api)
    from .local.target import LocalProcessTarget  # processes load only when a target is made

    return LocalProcessTarget(spec.app, state_dir, router_port=spec.target.router_port)
