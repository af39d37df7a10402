"""The gateway's own view of the candidate: 5xx its users got from the data plane.

A candidate pod that crashes or stops answering never counts the requests it failed: the
gateway answers them (502 when the pod refuses, 503 when no ready endpoint is left) before
they reach it. So on a Gateway API router the abort guard also reads the gateway's counters.

A gateway profile says where one implementation exports them. Its series are per route and
per backend Service, not per version, and a 503 for a backend without a ready endpoint is
counted on the route only (the backend has no service then). So the candidate's side is
what the route served minus what stable's Service served:

    candidate requests = route requests - stable's requests
    candidate 5xx      = route 5xx      - stable's 5xx

which counts every answer a user routed to the candidate got, from the candidate or from
the gateway in its place.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.domain.errors import InvalidInput

from .promql import escape_regex
from .spec import Comparison, GateSpec, Kind


@dataclass(frozen=True)
class GatewayProfile:
    name: str
    route_metric: str  # requests the gateway answered per route, by code
    route_label: str
    # The route's label value as a regex template: {namespace}, {route} are filled in
    # (escaped); the rest is the implementation's own naming.
    route_pattern: str
    backend_metric: str  # requests a backend Service answered, by code
    backend_label: str
    backend_pattern: str  # {namespace}, {service}
    code_label: str


GATEWAY_PROFILES: dict[str, GatewayProfile] = {
    p.name: p
    for p in (
        # Traefik's kubernetesgateway provider, with addRoutersLabels and addServicesLabels:
        # router="httproute-<ns>-<route>-gw-<gw ns>-<gw>-ep-<entrypoint>-<i>-<hash>@..."
        # service="<ns>-<svc>-http-<port>@kubernetesgateway"
        GatewayProfile(
            name="traefik",
            route_metric="traefik_router_requests_total",
            route_label="router",
            route_pattern="httproute-{namespace}-{route}-gw-.+@kubernetesgateway",
            backend_metric="traefik_service_requests_total",
            backend_label="service",
            backend_pattern="{namespace}-{service}-http-[0-9]+@kubernetesgateway",
            code_label="code",
        ),
    )
}

GATE_NAME = "gateway"
# The abort threshold of the operating rules: more than 5% of the candidate's requests
# answered 5xx. The window is short (the gateway sees a dead backend at once), and 20
# requests keep one unlucky 502 of a healthy candidate from failing it.
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


def gateway_gate(
    profile: GatewayProfile, namespace: str, route: str, stable_service: str
) -> GateSpec:
    """An abort guard on the 5xx ratio of the requests the route gave the candidate."""
    ns = escape_regex(namespace)
    route_re = profile.route_pattern.format(namespace=ns, route=escape_regex(route))
    stable_re = profile.backend_pattern.format(namespace=ns, service=escape_regex(stable_service))
    of_route = f'{profile.route_label}=~"{route_re}"'
    of_stable = f'{profile.backend_label}=~"{stable_re}"'
    errors = f'{profile.code_label}=~"5.."'

    def total(metric: str, matchers: str) -> str:
        return f"(sum(increase({metric}{{{matchers}}}[$window])) or vector(0))"

    requests = (
        f"{total(profile.route_metric, of_route)} - {total(profile.backend_metric, of_stable)}"
    )
    failed = (
        f"{total(profile.route_metric, f'{of_route},{errors}')}"
        f" - {total(profile.backend_metric, f'{of_stable},{errors}')}"
    )
    return GateSpec(
        name=GATE_NAME,
        kind=Kind.THRESHOLD,
        query=f"({failed}) / ({requests})",
        requests_query=requests,
        comparison=Comparison.GT,
        threshold=THRESHOLD,
        window=WINDOW_S,
        interval=INTERVAL_S,
        min_requests=MIN_REQUESTS,
        guard=True,
    )
