"""Helpers of the Kubernetes target's e2e tests: an app's objects as a user keeps them in Git,
the gatekeeper's ServiceAccount bound to deploy/kubernetes/role.yaml, the target built the way
`gatekeeper run` builds it, and objects read back without what the API server owns."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from gatekeeper.domain.release import ReleaseSpec, parse_release
from gatekeeper.targets.factory import workloads_for
from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads
from gatekeeper.targets.routers.factory import router_for
from tests.e2e.testbed import ClusterBed

REPO = Path(__file__).resolve().parents[2]
ROLE_FILE = REPO / "deploy" / "kubernetes" / "role.yaml"
ISTIO_CRDS = sorted((Path(__file__).parent / "crds" / "istio").glob("*.yaml"))
Obj = dict[str, Any]

PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
    "VirtualService": "/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices",
    "DestinationRule": "/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules",
    "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "Node": "/api/v1/nodes",
}
# What the API server (or its controllers) owns: left out when objects are compared.
SERVER_OWNED = ("resourceVersion", "generation", "managedFields", "creationTimestamp")
SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


class Raw:
    """The admin's plain JSON requests (the test's own hands, apart from the target's code)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> tuple[int, Obj]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        req = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*req, _request_timeout=(5, 30))
        data = response.read()
        try:
            found = json.loads(data) if data else {}
        except ValueError:  # a path nothing serves: plain text
            found = {"message": data.decode(errors="replace")}
        return int(response.status), found

    def ok(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Obj:
        status, found = self.request(method, path, body, content_type)
        assert 200 <= status < 300, f"{method} {path}: {status} {found.get('message')}"
        return found

    def get(self, kind: str, ns: str, name: str) -> Obj | None:
        status, found = self.request("GET", f"{PATHS[kind].format(ns=ns)}/{name}")
        if status == 404:
            return None
        assert status == 200, f"GET {kind} {ns}/{name}: {status} {found.get('message')}"
        return found

    def create(self, kind: str, ns: str, body: Obj) -> Obj:
        prefix = PATHS[kind].split("/namespaces/")[0]
        api_version = prefix.removeprefix("/apis/").removeprefix("/api/")
        body = {"apiVersion": api_version, "kind": kind, **body}
        return self.ok("POST", PATHS[kind].format(ns=ns), body)

    def patch(self, kind: str, ns: str, name: str, body: Obj, subresource: str = "") -> Obj:
        path = f"{PATHS[kind].format(ns=ns)}/{name}" + (f"/{subresource}" if subresource else "")
        return self.ok("PATCH", path, body, "application/merge-patch+json")

    def pods(self, ns: str, selector: str) -> list[Obj]:
        found = self.ok("GET", f"{PATHS['Pod'].format(ns=ns)}?labelSelector={selector}")
        items: list[Obj] = found["items"]
        return items

    def apply_crd(self, body: Obj) -> None:
        name = body["metadata"]["name"]
        path = f"{PATHS['CustomResourceDefinition']}/{name}?fieldManager=e2e&force=true"
        self.ok("PATCH", path, body, "application/apply-patch+yaml")


def comparable(obj: Obj | None) -> Obj | None:
    """``obj`` without status and the metadata the API server owns."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata", {})
    for key in SERVER_OWNED:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in SERVER_ANNOTATIONS:
        annotations.pop(key, None)
    if "annotations" in meta and not annotations:
        meta.pop("annotations")
    return out


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


# -- the app as its user keeps it -----------------------------------------------------------


def deployment(
    name: str = "shop",
    *,
    version: str = "v1",
    replicas: int = 3,
    labels: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
) -> Obj:
    pod_labels = {"app": name, "version": version, **(labels or {})}
    spec: Obj = {
        "containers": [
            {
                "name": name,
                "image": f"registry.invalid/{name}:{version}",
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "GREETING", "value": "hello"}],
            }
        ]
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {"app": name, "app.kubernetes.io/instance": f"{name}-gitops"},
            "annotations": {"team": "checkout"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": spec},
        },
    }


def service(name: str = "shop", selector: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": selector or {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def http_route(name: str = "shop", service_name: str = "shop") -> Obj:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "parentRefs": [{"name": "gateway", "namespace": "gateway-system"}],
            "hostnames": ["shop.example"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                    "backendRefs": [{"name": "cdn", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": service_name, "port": 80}],
                },
            ],
        },
    }


def virtual_service(name: str = "shop") -> Obj:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": ["shop.example"],
            "http": [
                {
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [{"destination": {"host": name, "port": {"number": 80}}}],
                    "timeout": "5s",
                }
            ],
        },
    }


def install_app(raw: Raw, ns: str, *, router: str, **deployment_args: Any) -> dict[str, Obj]:
    """The app's objects, created and (the Deployment) ready; returned as read back."""
    raw.create("Deployment", ns, deployment(**deployment_args))
    raw.create("Service", ns, service())
    if router == "gateway-api":
        raw.create("HTTPRoute", ns, http_route())
    if router == "istio":
        raw.create("VirtualService", ns, virtual_service())
    wait_until(
        lambda: (
            (raw.get("Deployment", ns, "shop") or {}).get("status", {}).get("readyReplicas")
            == deployment_args.get("replicas", 3)
        ),
        60,
        "the stable Deployment's pods to be ready",
    )
    return snapshot(raw, ns)


def snapshot(raw: Raw, ns: str) -> dict[str, Obj]:
    """Every object a release could touch, comparable."""
    found: dict[str, Obj] = {}
    for kind, name in (
        ("Deployment", "shop"),
        ("Deployment", "shop-candidate"),
        ("Service", "shop"),
        ("Service", "shop-candidate"),
        ("Service", "shop-preview"),
        ("HTTPRoute", "shop"),
        ("VirtualService", "shop"),
        ("DestinationRule", "shop"),
    ):
        obj = comparable(raw.get(kind, ns, name)) if _served(raw, kind) else None
        if obj is not None:
            found[f"{kind}/{name}"] = obj
    return found


_SERVED: dict[str, bool] = {}


def _served(raw: Raw, kind: str) -> bool:
    if kind not in ("VirtualService", "DestinationRule"):
        return True
    if kind not in _SERVED:
        status, _ = raw.request("GET", PATHS[kind].format(ns="default"))
        _SERVED[kind] = status == 200
    return _SERVED[kind]


def install_istio_crds(raw: Raw) -> None:
    """Istio's VirtualService and DestinationRule CRDs (objects only: no Istio runs)."""
    for path in ISTIO_CRDS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                raw.apply_crd(doc)
    for kind in ("VirtualService", "DestinationRule"):
        wait_until(_served_now(raw, PATHS[kind].format(ns="default")), 30, f"{kind} served")
        _SERVED[kind] = True


def _served_now(raw: Raw, collection: str) -> Callable[[], bool]:
    return lambda: raw.request("GET", collection)[0] == 200


# -- the gatekeeper's identity ----------------------------------------------------------------


def service_account_kubeconfig(bed: ClusterBed, raw: Raw, ns: str) -> Path:
    """A kubeconfig holding a TokenRequest token of ServiceAccount ``gatekeeper`` in ``ns``,
    bound to the minimal Role (deploy/kubernetes/role.yaml) and nothing else."""
    role = yaml.safe_load(ROLE_FILE.read_text())
    raw.create("ServiceAccount", ns, {"metadata": {"name": "gatekeeper"}})
    raw.create("Role", ns, role)
    raw.create(
        "RoleBinding",
        ns,
        {
            "metadata": {"name": "gatekeeper-target"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role["metadata"]["name"],
            },
            "subjects": [{"kind": "ServiceAccount", "name": "gatekeeper", "namespace": ns}],
        },
    )
    token = raw.ok(
        "POST",
        f"{PATHS['ServiceAccount'].format(ns=ns)}/gatekeeper/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    return bed.kubeconfig_for(f"gatekeeper-{ns}", token)


# -- the target -------------------------------------------------------------------------------


def release(ns: str, router: str, strategy: str = "canary", **target: Any) -> ReleaseSpec:
    strategies: dict[str, Obj] = {
        "canary": {"type": "canary", "steps": [10, 50, 100]},
        "blue-green": {"type": "blue-green"},
        "rolling": {"type": "rolling", "batches": [33, 67, 100]},
    }
    return parse_release(
        {
            "app": "shop",
            "environment": "production",
            "version": "v2",
            "image": "registry.invalid/shop:v2",
            "stable": {"version": "v1", "image": "registry.invalid/shop:v1"},
            "strategy": strategies[strategy],
            "target": {
                "type": "kubernetes",
                "namespace": ns,
                "router": router,
                "progress_deadline": "60s",
                "drain": "0s",  # no data plane behind kwok's pods: nothing to drain
                **target,
            },
        }
    )


def build(spec: ReleaseSpec, kubeconfig: Path) -> KubernetesWorkloads:
    """Workloads and router as `gatekeeper run` builds them (the router attaches itself)."""
    workloads = workloads_for(spec, Path("/nonexistent"), kubeconfig=str(kubeconfig))
    assert isinstance(workloads, KubernetesWorkloads)
    workloads.poll_s = 0.2
    router_for(spec, workloads)
    return workloads
