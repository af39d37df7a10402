"""The names and settings of one release on the Kubernetes target, read once from its spec."""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.domain.release import KubernetesTarget, ReleaseSpec

# Labels and annotations the target writes. The role label is on the candidate's pods (its
# selector needs a label stable's pods never carry) and on the objects the target creates.
ROLE_LABEL = "gatekeeper.dev/role"
CANDIDATE = "candidate"
MANAGED_BY = "app.kubernetes.io/managed-by"
RELEASE_ID = "gatekeeper.dev/release-id"
ORIGINAL = "gatekeeper.dev/original"  # on a user's object: what the release changed, as it was
FIELD_MANAGER = "gatekeeper"


@dataclass(frozen=True)
class Settings:
    namespace: str
    app: str
    release_id: str
    stable_version: str
    candidate_version: str
    candidate_image: str
    router: str
    deployment: str  # the user's stable Deployment
    candidate: str  # the candidate Deployment the target derives from it
    container: str | None
    service: str  # the user's stable Service
    candidate_service: str  # gateway-api: the backendRef the route shifts to
    preview_service: str  # service-selector: the candidate, reachable before the flip
    route: str
    virtual_service: str
    destination_rule: str
    version_label: str
    metrics_port: int | None
    replicas: int | None
    progress_deadline_s: float
    not_ready_grace_s: float
    max_restarts: int
    drain_s: float

    @classmethod
    def of(cls, spec: ReleaseSpec) -> Settings:
        t = spec.target
        if not isinstance(t, KubernetesTarget):
            raise TypeError(f"not a kubernetes target: {t.type}")
        deployment = t.deployment or spec.app
        service = t.service or spec.app
        return cls(
            namespace=t.namespace,
            app=spec.app,
            release_id=spec.release_id,
            stable_version=spec.stable.version,
            candidate_version=spec.version,
            candidate_image=spec.image or "",
            router=t.router,
            deployment=deployment,
            candidate=f"{deployment}-candidate",
            container=t.container,
            service=service,
            candidate_service=f"{service}-candidate",
            preview_service=f"{service}-preview",
            route=t.route or spec.app,
            virtual_service=t.virtual_service or spec.app,
            destination_rule=t.destination_rule or spec.app,
            version_label=t.version_label,
            metrics_port=t.metrics_port,
            replicas=t.replicas,
            progress_deadline_s=t.progress_deadline,
            not_ready_grace_s=t.not_ready_grace,
            max_restarts=t.max_restarts,
            drain_s=t.drain,
        )
