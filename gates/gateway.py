"""The gateway's own view of the candidate: 5xx the data plane answered for its backend.

A candidate pod that crashes or stops answering never counts the requests it failed: the
gateway answers them (502, 503, 504) before they reach it. So on a Gateway API router the
abort guard also reads the gateway's per-backend counter for the candidate's Service.

A gateway profile says where one implementation exports that counter and how it names a
backend. Its series are per Kubernetes Service, not per version, so the gate is a query gate
over the candidate's own Service (which only the candidate's pods back during a release).
"""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.domain.errors import InvalidInput

from .promql import escape_regex
from .spec import Comparison, GateSpec, Kind


@dataclass(frozen=True)
class GatewayProfile:
    name: str
    requests_metric: str  # a counter of the requests the gateway sent to a backend
    code_label: str  # the response code the gateway answered
    backend_label: str  # the label naming the backend
    # The backend's label value as a regex template: {namespace}, {service} are filled in
    # (escaped); the rest is the implementation's own naming (ports, provider suffix).
    backend_pattern: str


GATEWAY_PROFILES: dict[str, GatewayProfile] = {
    p.name: p
    for p in (
        # Traefik's kubernetesgateway provider: service="<ns>-<svc>-http-<port>@kubernetesgateway"
        GatewayProfile(
            name="traefik",
            requests_metric="traefik_service_requests_total",
            code_label="code",
            backend_label="service",
            backend_pattern="{namespace}-{service}-http-[0-9]+@kubernetesgateway",
        ),
    )
}

GATE_NAME = "gateway"
# Abort thresholds of the operating rules: more than 5% of the candidate's requests
# answered 5xx by the gateway. The window is short (the gateway sees a dead backend at
# once), and 20 requests keep one unlucky 502 of a healthy candidate from failing it.
THRESHOLD = 0.05
WINDOW_S = 30.0
MIN_REQUESTS = 20
INTERVAL_S = 1.0


def gateway_profile(name: str) -> GatewayProfile:
    try:
        return GATEWAY_PROFILES[name]
    except KeyError:
        raise InvalidInput(
            f"gateway_metrics {name!r} is not known; allowed: {', '.join(sorted(GATEWAY_PROFILES))}"
        ) from None


def gateway_gate(profile: GatewayProfile, namespace: str, service: str) -> GateSpec:
    """An abort guard on the gateway's 5xx ratio for the requests it sent to ``service``."""
    backend = profile.backend_pattern.format(
        namespace=escape_regex(namespace), service=escape_regex(service)
    )
    of_backend = f'{profile.backend_label}=~"{backend}"'
    errors = f'{of_backend},{profile.code_label}=~"5.."'
    total = f"sum(increase({profile.requests_metric}{{{of_backend}}}[$window]))"
    return GateSpec(
        name=GATE_NAME,
        kind=Kind.THRESHOLD,
        query=f"sum(increase({profile.requests_metric}{{{errors}}}[$window])) / {total}",
        requests_query=total,
        comparison=Comparison.GT,
        threshold=THRESHOLD,
        window=WINDOW_S,
        interval=INTERVAL_S,
        min_requests=MIN_REQUESTS,
        guard=True,
    )
