"""The bed's Gateway API data plane: Traefik's kubernetesgateway provider, its RBAC and Gateway.

Traefik runs as a bed process on loopback: the entryPoint `web` is the bed Gateway's listener
(Traefik binds a Gateway listener to the entryPoint of the same port) and the entryPoint
`metrics` serves Prometheus metrics (`traefik_service_requests_total` by service and code) and
`/ping`. It reads the API server with a token of its own, bound to the ClusterRole of Traefik's
documentation (docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.testbed.kubeapi import KubeApi, object_path

USER = "testbed:traefik"
CONTROLLER_NAME = "traefik.io/gateway-controller"
GATEWAY_CLASS = "traefik"
GATEWAY_NAMESPACE = "gateway"
GATEWAY_NAME = "bed"
LISTENER = "web"
GATEWAY_API = "gateway.networking.k8s.io"

# Traefik's documented ClusterRole for the Gateway API provider, less `pods get` (needed only
# for OpenTelemetry attributes, which the bed does not turn on).
CLUSTER_ROLE: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "testbed-traefik-gateway"},
    "rules": [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["services", "secrets", "configmaps"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": [GATEWAY_API],
            "resources": [
                "gatewayclasses",
                "gateways",
                "httproutes",
                "grpcroutes",
                "tcproutes",
                "tlsroutes",
                "referencegrants",
                "backendtlspolicies",
            ],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": [GATEWAY_API],
            "resources": [
                "gatewayclasses/status",
                "gateways/status",
                "httproutes/status",
                "grpcroutes/status",
                "tcproutes/status",
                "tlsroutes/status",
                "referencegrants/status",
                "backendtlspolicies/status",
            ],
            "verbs": ["update"],
        },
    ],
}


@dataclass(frozen=True)
class TraefikPorts:
    web: int
    metrics: int


def argv(
    binary: Path, server: str, token_file: Path, ca_file: Path, ports: TraefikPorts
) -> list[str]:
    return [
        str(binary),
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
        "--log.noColor=true",
        f"--entryPoints.{LISTENER}.address=127.0.0.1:{ports.web}",
        f"--entryPoints.metrics.address=127.0.0.1:{ports.metrics}",
        "--ping=true",
        "--ping.entryPoint=metrics",
        "--metrics.prometheus=true",
        "--metrics.prometheus.entryPoint=metrics",
        "--metrics.prometheus.addServicesLabels=true",
        "--metrics.prometheus.addRoutersLabels=true",
        "--metrics.prometheus.addEntryPointsLabels=true",
        # Apply a route change within ~0.2 s of the event rather than Traefik's default 2 s.
        "--providers.providersThrottleDuration=200ms",
        "--providers.kubernetesgateway=true",
        f"--providers.kubernetesgateway.endpoint={server}",
        f"--providers.kubernetesgateway.token={token_file}",
        f"--providers.kubernetesgateway.certAuthFilePath={ca_file}",
        "--providers.kubernetesgateway.statusAddress.ip=127.0.0.1",
    ]


def install(api: KubeApi, web_port: int) -> None:
    """RBAC for Traefik's user, the GatewayClass, and the bed's Gateway on the web entryPoint."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "testbed-traefik-gateway"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": CLUSTER_ROLE["metadata"]["name"],
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    }
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": GATEWAY_NAMESPACE},
    }
    gateway_class = {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": CONTROLLER_NAME},
    }
    gateway = {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [
                {
                    "name": LISTENER,
                    "protocol": "HTTP",
                    "port": web_port,
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                }
            ],
        },
    }
    for obj in (CLUSTER_ROLE, binding, namespace, gateway_class, gateway):
        api.apply(_path(obj), obj)


def gateway_programmed(api: KubeApi) -> bool:
    gw = api.get(f"/apis/{GATEWAY_API}/v1/namespaces/{GATEWAY_NAMESPACE}/gateways/{GATEWAY_NAME}")
    return any(
        c.get("type") == "Programmed" and c.get("status") == "True"
        for c in (gw.get("status") or {}).get("conditions", [])
    )


def _path(obj: dict[str, Any]) -> str:
    kind = obj["kind"]
    if kind == "GatewayClass":
        return f"/apis/{GATEWAY_API}/v1/gatewayclasses/{obj['metadata']['name']}"
    if kind == "Gateway":
        meta = obj["metadata"]
        return f"/apis/{GATEWAY_API}/v1/namespaces/{meta['namespace']}/gateways/{meta['name']}"
    return object_path(obj)
