"""Manifests of the demo app as the bed runs it: a Deployment whose pods are local processes.

The pod template carries the bed's app label (`testbed.gatekeeper.dev/run: process`), so a
Deployment derived from it (new image, new `version` label) runs on the bed too. The process
is `python -m gatekeeper.targets.local.demo_service`; its app and version come from the pod's
own labels and it listens on the pod's address, the way a real image would read the Downward
API:

    containers:
      - name: app
        image: demo:v1                      # not pulled: the command is what runs
        command: [python, -m, gatekeeper.targets.local.demo_service]
        args: [--app, $(APP), --version, $(VERSION), --host, $(POD_IP), --port, "8080"]
        env:
          - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
          - {name: VERSION, valueFrom: {fieldRef: {fieldPath: "metadata.labels['version']"}}}
          - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}

`image_container` builds the other kind, the one a release changes by image alone: no
command, so the image (`demo:v1`, `demo:v2-bad`, ... in the bed's registry, images.py) says
what runs and how it behaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.e2e.testbed.kubelet import APP_LABEL, APP_LABEL_VALUE

DEMO_MODULE = "gatekeeper.targets.local.demo_service"
DEMO_PORT = 8080


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def demo_container(
    *,
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    extra_args: Sequence[str] = (),
    command: Sequence[str] | None = None,
    image: str = "demo:bed",
) -> dict[str, Any]:
    """The demo app's container; `command` replaces the whole process (e.g. one that crashes)."""
    args = [
        "--app",
        "$(APP)",
        "--version",
        "$(VERSION)",
        "--host",
        "$(POD_IP)",
        "--port",
        str(DEMO_PORT),
        "--latency-ms",
        f"{latency_ms:g}",
        "--latency-jitter-ms",
        "0",
        "--error-rate",
        f"{error_rate:g}",
        *extra_args,
    ]
    return {
        "name": "app",
        "image": image,
        "command": list(command) if command else ["python", "-m", DEMO_MODULE],
        "args": [] if command else args,
        "env": [
            _field("APP", "metadata.labels['app']"),
            _field("VERSION", "metadata.labels['version']"),
            _field("POD_IP", "status.podIP"),
        ],
        "ports": [{"name": "http", "containerPort": DEMO_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }


def image_container(image: str, *, name: str = "app", port: int = DEMO_PORT) -> dict[str, Any]:
    """A container that runs its image (no command: see images.py), with the environment the
    demo images read (APP and VERSION from the pod's labels, POD_IP, PORT), the port `http`
    and a readiness probe on `/healthz`."""
    return {
        "name": name,
        "image": image,
        "env": [
            _field("APP", "metadata.labels['app']"),
            _field("VERSION", "metadata.labels['version']"),
            _field("POD_IP", "status.podIP"),
            {"name": "PORT", "value": str(port)},
        ],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }


def demo_deployment(
    name: str, app: str, version: str, *, replicas: int = 1, **container: Any
) -> dict[str, Any]:
    """A Deployment of the demo app the bed runs as processes (selector: app + version)."""
    labels = {"app": app, "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": {**labels, APP_LABEL: APP_LABEL_VALUE}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [demo_container(**container)],
                },
            },
        },
    }


def service(name: str, selector: dict[str, str], port: int = 80) -> dict[str, Any]:
    """A ClusterIP Service on the demo's named port `http`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": dict(selector),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


def http_route(
    name: str,
    hostname: str,
    backends: Sequence[tuple[str, int]],
    *,
    gateway_namespace: str,
    gateway_name: str,
    port: int = 80,
) -> dict[str, Any]:
    """An HTTPRoute on the bed's Gateway splitting `hostname` over (service, weight) pairs."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": gateway_name, "namespace": gateway_namespace}],
            "hostnames": [hostname],
            "rules": [
                {
                    "backendRefs": [
                        {"name": svc, "port": port, "weight": weight} for svc, weight in backends
                    ]
                }
            ],
        },
    }
