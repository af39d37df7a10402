"""The bed's data plane: app pods as processes, EndpointSlices, Traefik weights, Prometheus, audit.

Everything here is real: kube-controller-manager builds the EndpointSlices, Traefik routes by
the HTTPRoute's weights, Prometheus discovers the pods through the API server.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client, utils

from tests.e2e.testbed import ClusterBed
from tests.e2e.testbed.apps import DEMO_PORT, demo_deployment, http_route, service
from tests.e2e.testbed.audit import AuditLog, utcnow
from tests.e2e.testbed.data_plane import KUBELET_USER

T = TypeVar("T")
GATEWAY_API = ("gateway.networking.k8s.io", "v1")
# Shares are checked to 4 binomial standard deviations: a false alarm about 1 run in 15,000.
SIGMAS = 4.0


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


Pod = dict[str, Any]


def list_pods(kube: client.ApiClient, namespace: str, selector: str) -> list[Pod]:
    """Pods as JSON-shaped dicts (camelCase keys, as the API server writes them)."""
    items = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items
    pods: list[Pod] = [kube.sanitize_for_serialization(p) for p in items]
    return pods


def ready(pod: Pod) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(kube: client.ApiClient, namespace: str, selector: str, count: int) -> Any:
    live = [
        p
        for p in list_pods(kube, namespace, selector)
        if not p["metadata"].get("deletionTimestamp")
    ]
    return live if len(live) == count and all(ready(p) for p in live) else None


def slice_endpoints(
    discovery: client.DiscoveryV1Api, namespace: str, service_name: str
) -> dict[str, bool]:
    """address -> ready, over the Service's EndpointSlices built by kube-controller-manager."""
    slices = discovery.list_namespaced_endpoint_slice(
        namespace,
        label_selector=f"kubernetes.io/service-name={service_name},"
        "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io",
    ).items
    return {
        address: bool(endpoint.conditions and endpoint.conditions.ready)
        for s in slices
        for endpoint in s.endpoints or []
        for address in endpoint.addresses
    }


def wait_for_endpoints(
    discovery: client.DiscoveryV1Api,
    namespace: str,
    service_name: str,
    expected: dict[str, bool],
    timeout: float = 15,
) -> None:
    """Until the Service's EndpointSlices hold exactly `expected` (address -> ready)."""
    deadline = time.monotonic() + timeout
    while (seen := slice_endpoints(discovery, namespace, service_name)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"EndpointSlices of {service_name}: {seen}, expected {expected}")
        time.sleep(0.25)


def create(kube: client.ApiClient, namespace: str, *objects: dict[str, Any]) -> None:
    custom = client.CustomObjectsApi(kube)
    for obj in objects:
        if obj["kind"] == "HTTPRoute":
            custom.create_namespaced_custom_object(*GATEWAY_API, namespace, "httproutes", obj)
        else:
            utils.create_from_dict(kube, obj, namespace=namespace)


def test_demo_deployment_runs_ready_pods_on_their_own_addresses_behind_endpointslices(
    bed: ClusterBed, kube: client.ApiClient, namespace: str
) -> None:
    core, discovery = client.CoreV1Api(kube), client.DiscoveryV1Api(kube)
    create(
        kube,
        namespace,
        demo_deployment("shop-v1", "shop", "v1", replicas=2),
        service("shop", {"app": "shop"}),
    )

    pods = wait_until(lambda: ready_pods(kube, namespace, "app=shop", 2), 30, "2 Ready pods")

    ips = sorted(p["status"]["podIP"] for p in pods)
    assert len(set(ips)) == 2, f"pods share an address: {ips}"
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(bed.pod_network) for ip in ips)
    for pod in pods:
        assert pod["status"]["podIPs"] == [{"ip": pod["status"]["podIP"]}]
        (status,) = pod["status"]["containerStatuses"]
        assert (status["ready"], status["started"], status["restartCount"]) == (True, True, 0)
        assert "running" in status["state"]
        answer = httpx.get(f"http://{pod['status']['podIP']}:{DEMO_PORT}/", timeout=5)
        assert answer.status_code == 200
        assert answer.headers["X-Version"] == "v1"
        assert answer.text == "shop v1 ok\n"
    wait_for_endpoints(discovery, namespace, "shop", dict.fromkeys(ips, True))

    # Deleting a pod stops its process; the ReplicaSet's replacement gets another address.
    doomed, doomed_ip = pods[0]["metadata"]["name"], pods[0]["status"]["podIP"]
    core.delete_namespaced_pod(doomed, namespace)
    wait_until(
        lambda: (
            not list_pods(kube, namespace, "app=shop")
            or doomed not in {p["metadata"]["name"] for p in list_pods(kube, namespace, "app=shop")}
        ),
        10,
        f"pod {doomed} to be gone",
    )
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{doomed_ip}:{DEMO_PORT}/healthz", timeout=2)
    replaced = wait_until(
        lambda: ready_pods(kube, namespace, "app=shop", 2), 30, "the replacement pod"
    )
    assert doomed_ip not in {p["status"]["podIP"] for p in replaced}


def test_crash_looping_pod_backs_off_and_its_endpoint_is_not_ready(
    kube: client.ApiClient, namespace: str
) -> None:
    discovery = client.DiscoveryV1Api(kube)
    create(
        kube,
        namespace,
        demo_deployment("good", "mixed", "v1"),
        demo_deployment("bad", "mixed", "v2", command=["python", "-c", "raise SystemExit(3)"]),
        service("mixed", {"app": "mixed"}),
    )

    def crash_looping() -> Pod | None:
        for pod in list_pods(kube, namespace, "version=v2"):
            for status in pod.get("status", {}).get("containerStatuses") or []:
                waiting = status["state"].get("waiting") or {}
                if waiting.get("reason") == "CrashLoopBackOff" and status["restartCount"] >= 2:
                    return pod
        return None

    started = time.monotonic()
    pod = wait_until(crash_looping, 30, "the v2 pod in CrashLoopBackOff after 2 restarts")
    took = time.monotonic() - started

    (status,) = pod["status"]["containerStatuses"]
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert status["ready"] is False
    assert not ready(pod)
    assert "back-off" in status["state"]["waiting"]["message"]
    # Restarts: at once, then after 1 s, 2 s...: the second restart comes about 1 s in.
    assert took < 15, f"two restarts took {took:.1f}s"
    good = wait_until(lambda: ready_pods(kube, namespace, "version=v1", 1), 30, "the v1 pod")
    expected = {good[0]["status"]["podIP"]: True, pod["status"]["podIP"]: False}
    wait_for_endpoints(discovery, namespace, "mixed", expected)


def test_kubelet_writes_its_status_again_when_another_writer_marks_the_pod_not_ready(
    kube: client.ApiClient, namespace: str, audit: AuditLog
) -> None:
    create(kube, namespace, demo_deployment("solo", "solo", "v1"))
    (pod,) = wait_until(lambda: ready_pods(kube, namespace, "app=solo", 1), 30, "the solo pod")
    name = pod["metadata"]["name"]
    since = utcnow()

    # As the node lifecycle controller does when it finds a node silent.
    client.CoreV1Api(kube).patch_namespaced_pod_status(
        name,
        namespace,
        {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "NodeLost"}]}},
    )

    wait_until(lambda: ready_pods(kube, namespace, "app=solo", 1), 10, "the pod Ready again")
    writers = audit.count_writes(since, resource="pods/status", namespace=namespace, name=name)
    assert writers[("testbed-admin", "pods/status", name)] == 1
    assert writers[(KUBELET_USER, "pods/status", name)] >= 1, writers


@dataclass
class RoutedApp:
    namespace: str
    route: str
    host: str
    services: dict[str, str]
    """version -> Service name."""


@pytest.fixture(scope="module")
def routed(bed: ClusterBed, kube: client.ApiClient) -> Iterator[RoutedApp]:
    """Two Deployments of `web` (v1, v2), a Service each, an HTTPRoute on the bed's Gateway."""
    core = client.CoreV1Api(kube)
    namespace = f"e2e-route-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    app = RoutedApp(namespace, "web", f"web.{namespace}.test", {"v1": "web-v1", "v2": "web-v2"})
    try:
        create(
            kube,
            namespace,
            demo_deployment("web-v1", "web", "v1"),
            demo_deployment("web-v2", "web", "v2"),
            service("web-v1", {"app": "web", "version": "v1"}),
            service("web-v2", {"app": "web", "version": "v2"}),
            http_route(
                app.route,
                app.host,
                [("web-v1", 80), ("web-v2", 20)],
                gateway_namespace=bed.gateway_namespace,
                gateway_name=bed.gateway_name,
            ),
        )
        wait_until(lambda: ready_pods(kube, namespace, "app=web", 2), 30, "web pods Ready")
        yield app
    finally:
        core.delete_namespace(namespace)


def set_weights(kube: client.ApiClient, app: RoutedApp, v1: int, v2: int) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        *GATEWAY_API,
        app.namespace,
        "httproutes",
        app.route,
        {
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"name": app.services["v1"], "port": 80, "weight": v1},
                            {"name": app.services["v2"], "port": 80, "weight": v2},
                        ]
                    }
                ]
            }
        },
    )


def wait_for_versions(bed: ClusterBed, app: RoutedApp, versions: set[str], timeout: float) -> None:
    """Until a small probe through the Gateway sees exactly `versions`, all answering 200."""

    def seen() -> bool:
        probe = bed.send_traffic(app.host, requests=40, concurrency=4)
        return set(probe.by_version) == versions and set(probe.by_code) == {200}

    wait_until(seen, timeout, f"the Gateway to serve exactly {sorted(versions)}", every=0.2)


def assert_share(count: int, total: int, expected: float) -> None:
    sigma = math.sqrt(total * expected * (1 - expected))
    low, high = total * expected - SIGMAS * sigma, total * expected + SIGMAS * sigma
    assert low <= count <= high, (
        f"{count}/{total} = {count / total:.3f}, expected {expected:.2f} "
        f"(±{SIGMAS:g}σ: {low:.0f}..{high:.0f})"
    )


def test_gateway_splits_traffic_by_route_weights_then_moves_it_all_to_v2(
    bed: ClusterBed, kube: client.ApiClient, routed: RoutedApp
) -> None:
    set_weights(kube, routed, 80, 20)
    wait_for_versions(bed, routed, {"v1", "v2"}, 30)

    split = bed.send_traffic(routed.host, requests=500, concurrency=8)

    assert split.by_code == {200: 500}, str(split)
    assert split.failures == 0
    assert_share(split.by_version["v2"], 500, 0.20)
    assert_share(split.by_version["v1"], 500, 0.80)

    moved_at = time.monotonic()
    set_weights(kube, routed, 0, 100)
    wait_for_versions(bed, routed, {"v2"}, 15)
    took = time.monotonic() - moved_at

    after = bed.send_traffic(routed.host, requests=300, concurrency=8)
    assert after.by_version == {"v2": 300}, str(after)
    assert after.by_code == {200: 300}
    assert took < 10, f"Traefik took {took:.1f}s to apply the new weights"


Labels = tuple[tuple[str, str], ...]


def query(bed: ClusterBed, expr: str) -> dict[Labels, float]:
    """An instant query: each series' sorted labels -> value."""
    return {
        tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in bed.prometheus_query(expr)
    }


def test_prometheus_discovers_the_pods_and_scrapes_traefik(
    bed: ClusterBed, kube: client.ApiClient, routed: RoutedApp
) -> None:
    ns = routed.namespace
    pods = list_pods(kube, ns, "app=web")
    names = {p["metadata"]["labels"]["version"]: p["metadata"]["name"] for p in pods}
    set_weights(kube, routed, 50, 50)
    wait_for_versions(bed, routed, {"v1", "v2"}, 30)
    sent = bed.send_traffic(routed.host, requests=200, concurrency=8)
    assert sent.by_code == {200: 200}

    def up_series() -> dict[Labels, float] | None:
        found = query(bed, f'up{{job="pods",namespace="{ns}",app="web"}}')
        return found if len(found) == 2 else None

    up = wait_until(up_series, 30, "up{app=web} for both pods", every=0.5)
    assert sorted(up.values()) == [1.0, 1.0]
    labels = [dict(key) for key in up]
    assert {(lbl["version"], lbl["pod"]) for lbl in labels} == set(names.items())

    def app_requests() -> dict[Labels, float] | None:
        found = query(
            bed, f'sum by (version) (http_requests_total{{namespace="{ns}",app="web",code="200"}})'
        )
        return found if sum(found.values()) >= 200 else None

    by_version = wait_until(app_requests, 20, "the app's own request counts", every=0.5)
    assert {dict(k)["version"] for k in by_version} == {"v1", "v2"}

    def gateway_requests() -> dict[str, float] | None:
        found = query(
            bed,
            f'sum by (service) (traefik_service_requests_total{{service=~"{ns}-.*",code="200"}})',
        )
        per_service = {dict(k)["service"]: v for k, v in found.items()}
        return per_service if sum(per_service.values()) >= 200 else None

    per_service = wait_until(gateway_requests, 20, "Traefik's per-service counts", every=0.5)
    for svc in routed.services.values():
        assert any(svc in name for name in per_service), f"no series for {svc}: {per_service}"


def test_audit_log_counts_the_httproute_patch_once(
    bed: ClusterBed, kube: client.ApiClient, routed: RoutedApp, audit: AuditLog
) -> None:
    since = utcnow()

    set_weights(kube, routed, 90, 10)

    def patched() -> bool:
        return bool(audit.count_writes(since, resource="httproutes", namespace=routed.namespace))

    audit.wait_for(lambda _: patched(), 5, "the HTTPRoute patch in the audit log")
    counts = audit.count_writes(since, resource="httproutes", namespace=routed.namespace)
    assert counts == {("testbed-admin", "httproutes", routed.route): 1}
    (event,) = audit.writes(since, resource="httproutes", name=routed.route)
    assert event.verb == "patch" and event.code == 200
    assert event.api_group == "gateway.networking.k8s.io"
