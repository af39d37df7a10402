"""The workloads of a release, built from its spec: the one place a target is made."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gatekeeper.domain.errors import InvalidInput
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

        api = Api(connect(kubeconfig), release_id=spec.release_id, retry_for_s=_retry_for_s())
        return KubernetesWorkloads(spec, api)
    from .local.target import LocalProcessTarget  # processes load only when a target is made

    return LocalProcessTarget(spec.app, state_dir, router_port=spec.target.router_port)


RETRY_ENV = "GATEKEEPER_KUBERNETES_RETRY_S"
DEFAULT_RETRY_S = 30.0


def _retry_for_s() -> float:
    """How long one API request is retried on temporary errors (connection refused, 429, 5xx)
    before the step ends with a temporary error (exit 75 under `gatekeeper step run`, which
    Argo's retryStrategy runs again): GATEKEEPER_KUBERNETES_RETRY_S, default 30 s."""
    text = os.environ.get(RETRY_ENV, "").strip()
    if not text:
        return DEFAULT_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise InvalidInput(f"{RETRY_ENV} {text!r}: give seconds in (0, 3600]")
    return value
