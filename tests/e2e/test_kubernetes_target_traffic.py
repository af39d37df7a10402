"""The gateway-api router with real traffic: the bed's app pods run as processes behind Traefik,
and a load generator on the Gateway sees the share move to the candidate, back on a rollback,
and over to the promoted stable Deployment without a failed request."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gatekeeper.targets.base import VersionRun
from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads
from tests.e2e.kubernetes_target import (
    Raw,
    build,
    release,
    service,
    service_account_kubeconfig,
    snapshot,
    wait_until,
)
from tests.e2e.testbed import ClusterBed
from tests.e2e.testbed.apps import demo_container
from tests.e2e.testbed.kubelet import APP_LABEL, APP_LABEL_VALUE
from tests.e2e.testbed.traffic import TrafficResult

STABLE = VersionRun("v1", image="demo:v1")
CANDIDATE = VersionRun("v2", image="demo:v2")
SIGMAS = 4.0  # a share within 4 binomial standard deviations of the weight


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


def install_demo(bed: ClusterBed, raw: Raw, ns: str) -> tuple[str, dict[str, Any]]:
    """The demo app as a user would deploy it: Deployment (2 pods, processes on the bed),
    Service, and an HTTPRoute on the bed's Gateway."""
    host = f"shop.{ns}.test"
    container = demo_container(image="demo:v1")
    container["name"] = "shop"
    raw.create(
        "Deployment",
        ns,
        {
            "metadata": {"name": "shop", "labels": {"app": "shop"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {
                    "metadata": {
                        "labels": {"app": "shop", "version": "v1", APP_LABEL: APP_LABEL_VALUE}
                    },
                    "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]},
                },
            },
        },
    )
    raw.create("Service", ns, service())
    raw.create(
        "HTTPRoute",
        ns,
        {
            "metadata": {"name": "shop"},
            "spec": {
                "parentRefs": [{"name": bed.gateway_name, "namespace": bed.gateway_namespace}],
                "hostnames": [host],
                "rules": [{"backendRefs": [{"name": "shop", "port": 80}]}],
            },
        },
    )
    wait_until(
        lambda: (
            (raw.get("Deployment", ns, "shop") or {}).get("status", {}).get("readyReplicas") == 2
        ),
        60,
        "the demo's stable pods to be ready",
    )
    wait_for_versions(bed, host, {"v1"})
    return host, snapshot(raw, ns)


def wait_for_versions(bed: ClusterBed, host: str, versions: set[str]) -> None:
    def seen() -> bool:
        probe = bed.send_traffic(host, requests=40, concurrency=4)
        return set(probe.by_version) == versions and set(probe.by_code) == {200}

    wait_until(seen, 30, f"the Gateway to serve exactly {sorted(versions)}")


def assert_share(result: TrafficResult, version: str, expected: float) -> None:
    total = sum(result.by_version.values())
    sigma = math.sqrt(total * expected * (1 - expected))
    count = result.by_version[version]
    assert abs(count - total * expected) <= SIGMAS * sigma, (
        f"{version}: {count}/{total}, expected {expected:.2f} ±{SIGMAS:g}σ: {result}"
    )


def under_load(bed: ClusterBed, host: str, action: Callable[[], object]) -> TrafficResult:
    """What users saw through the Gateway (50 requests a second) while ``action`` ran."""
    results: list[TrafficResult] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            results.append(bed.send_traffic(host, duration=1.0, rps=50, concurrency=8))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        action()
    finally:
        stop.set()
        thread.join()
    total = TrafficResult()
    for r in results:
        total.by_version.update(r.by_version)
        total.by_code.update(r.by_code)
        total.failures += r.failures
        total.sent += r.sent
    assert total.sent >= 50, "the load ran for at least a second"
    return total


@pytest.fixture
def target(bed: ClusterBed, raw: Raw, namespace: str) -> Any:
    made: list[KubernetesWorkloads] = []

    def make() -> KubernetesWorkloads:
        kubeconfig: Path = service_account_kubeconfig(bed, raw, namespace)
        w = build(release(namespace, "gateway-api", container="shop", drain="2s"), kubeconfig)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_traffic_moves_to_the_candidate_by_weight_and_back_on_rollback(
    bed: ClusterBed, raw: Raw, namespace: str, target: Any
) -> None:
    host, before = install_demo(bed, raw, namespace)
    w = target()
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)
    assert w.preview_url().startswith("http://")
    wait_for_versions(bed, host, {"v1"})  # deployed, but no traffic yet

    assert w.router is not None
    w.router.set_weight(30)
    wait_until(lambda: w.router is not None and w.router.verify_weight(30), 15, "Traefik's ack")
    wait_for_versions(bed, host, {"v1", "v2"})
    split = bed.send_traffic(host, requests=600, concurrency=8)
    assert split.by_code == {200: 600}, str(split)
    assert_share(split, "v2", 0.30)

    # The rollback step: traffic first, then the workloads; users keep asking meanwhile
    during = under_load(bed, host, lambda: (w.router and w.router.set_weight(0), w.rollback()))
    assert during.failures == 0 and set(during.by_code) == {200}, str(during)
    wait_for_versions(bed, host, {"v1"})
    after = bed.send_traffic(host, requests=200, concurrency=8)
    assert after.by_version == {"v1": 200}, str(after)
    assert snapshot(raw, namespace) == before


def test_promotion_moves_users_onto_the_promoted_stable_without_a_failed_request(
    bed: ClusterBed, raw: Raw, namespace: str, target: Any
) -> None:
    host, _ = install_demo(bed, raw, namespace)
    w = target()
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)
    assert w.router is not None
    w.router.set_weight(100)
    wait_for_versions(bed, host, {"v2"})

    # While stable is replaced in place and the route goes back to it, users keep asking
    router = w.router
    during = under_load(bed, host, lambda: (w.promote(0.0), router.finalize()))
    assert during.failures == 0 and set(during.by_code) == {200}, str(during)
    assert set(during.by_version) == {"v2"}, str(during)
    assert raw.get("Deployment", namespace, "shop-candidate") is None
    after = bed.send_traffic(host, requests=200, concurrency=8)
    assert after.by_version == {"v2": 200}, str(after)
