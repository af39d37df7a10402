"""Each Kubernetes router on a real API server, run as the gatekeeper's ServiceAccount bound to the
minimal Role: the objects exactly as expected at every weight, after promotion, and after a
rollback exactly as before the release (but for what the API server owns)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gatekeeper.targets.base import VersionRun
from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads
from tests.e2e.kubernetes_target import (
    Obj,
    Raw,
    build,
    install_app,
    install_istio_crds,
    release,
    service_account_kubeconfig,
    snapshot,
)
from tests.e2e.testbed import ClusterBed

STABLE = VersionRun("v1", image="registry.invalid/shop:v1")
CANDIDATE = VersionRun("v2", image="registry.invalid/shop:v2")
ROLE = "gatekeeper.dev/role"
RELEASE_ID = "gatekeeper.dev/release-id"
ORIGINAL = "gatekeeper.dev/original"


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


@pytest.fixture
def sa_kubeconfig(bed: ClusterBed, raw: Raw, namespace: str) -> Path:
    return service_account_kubeconfig(bed, raw, namespace)


@pytest.fixture(scope="module")
def istio_crds(kube: client.ApiClient) -> None:
    install_istio_crds(Raw(kube))


@pytest.fixture
def target_for(sa_kubeconfig: Path, namespace: str) -> Iterator[Any]:
    made: list[KubernetesWorkloads] = []

    def make(router: str, strategy: str = "canary", **fields: Any) -> KubernetesWorkloads:
        workloads = build(release(namespace, router, strategy, **fields), sa_kubeconfig)
        made.append(workloads)
        return workloads

    yield make
    for w in made:
        w.close()


def router(w: KubernetesWorkloads) -> Any:
    assert w.router is not None
    return w.router


def without_marks(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    annotations = out["metadata"].get("annotations") or {}
    for key in (RELEASE_ID, ORIGINAL):
        annotations.pop(key, None)
    if "annotations" in out["metadata"] and not annotations:
        out["metadata"].pop("annotations")
    return out


def promoted_deployment(before: Obj) -> Obj:
    """The stable Deployment after promotion: the candidate's image and version, and the id
    of the release that set them."""
    out = copy.deepcopy(before)
    template = out["spec"]["template"]
    template["metadata"]["labels"]["version"] = "v2"
    template["spec"]["containers"][0]["image"] = "registry.invalid/shop:v2"
    out["metadata"]["annotations"][RELEASE_ID] = "shop-production-v2"
    return out


# -- Gateway API ------------------------------------------------------------------------------


def backend_refs(raw: Raw, ns: str) -> list[Obj]:
    route = raw.get("HTTPRoute", ns, "shop")
    assert route is not None
    refs: list[Obj] = route["spec"]["rules"][1]["backendRefs"]
    return refs


def test_gateway_api_weights_each_step_then_promotion_leaves_the_route_as_written(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    # Given the app as its user keeps it, and the gatekeeper's workloads and router
    before = install_app(raw, namespace, router="gateway-api")
    w = target_for("gateway-api")
    stable_pods = {p["metadata"]["name"] for p in raw.pods(namespace, "app=shop")}

    # When the candidate is deployed
    w.ensure_stable(STABLE)
    assert snapshot(raw, namespace) == before, "ensure_stable writes nothing"
    w.deploy_candidate(CANDIDATE, 100)

    # Then stable keeps its pods, the stable Service is pinned to v1, the candidate has its own
    # Service, and the route still sends everything to stable
    assert {p["metadata"]["name"] for p in raw.pods(namespace, "app=shop,version=v1")} == (
        stable_pods
    )
    svc = raw.get("Service", namespace, "shop")
    assert svc is not None
    assert svc["spec"]["selector"] == {"app": "shop", "version": "v1"}
    assert svc["metadata"]["annotations"][RELEASE_ID] == "shop-production-v2"
    candidate_svc = raw.get("Service", namespace, "shop-candidate")
    assert candidate_svc is not None
    assert candidate_svc["spec"]["selector"] == {"app": "shop", ROLE: "candidate"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in candidate_svc["spec"]["ports"]] == [
        ("http", 80, "http")
    ]
    assert candidate_svc["metadata"]["ownerReferences"][0]["name"] == "shop"
    assert backend_refs(raw, namespace) == [
        {"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1}
    ]
    assert router(w).weight() == 0

    # When traffic shifts step by step, Then both refs carry exactly the weights
    for weight in (10, 50, 100):
        router(w).set_weight(weight)
        assert backend_refs(raw, namespace) == [
            {"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 100 - weight},
            {
                "group": "",
                "kind": "Service",
                "name": "shop-candidate",
                "port": 80,
                "weight": weight,
            },
        ]
        route = raw.get("HTTPRoute", namespace, "shop")
        assert route is not None
        assert route["spec"]["rules"][0] == before["HTTPRoute/shop"]["spec"]["rules"][0]
        assert w.state().candidate_weight == weight
        assert router(w).verify_weight(weight)

    # When the candidate is promoted and the router finalized
    w.promote(0.0)
    router(w).finalize()

    # Then one stable Deployment runs v2, the route and Service are as their user wrote them,
    # and nothing of the candidate is left
    after = snapshot(raw, namespace)
    assert after["HTTPRoute/shop"] == before["HTTPRoute/shop"]
    assert after["Service/shop"] == before["Service/shop"]
    assert after["Deployment/shop"] == promoted_deployment(before["Deployment/shop"])
    assert set(after) == set(before)
    state = w.state()
    assert (state.stable_version, state.candidate_version, state.candidate_weight) == (
        "v2",
        None,
        0,
    )


def test_gateway_api_rollback_leaves_every_object_as_before(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    before = install_app(raw, namespace, router="gateway-api")
    w = target_for("gateway-api")
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)
    router(w).set_weight(50)

    # When the rollback step runs: traffic first, then the workloads
    router(w).set_weight(0)
    assert backend_refs(raw, namespace) == [
        {"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1}
    ]
    w.rollback()

    assert snapshot(raw, namespace) == before
    assert raw.pods(namespace, f"{ROLE}=candidate") == []
    w.rollback()  # again: nothing left to do, nothing written
    assert snapshot(raw, namespace) == before


# -- Service selector (blue-green) ------------------------------------------------------------


def test_service_selector_flips_with_a_preview_then_promotion_restores_the_selector(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    before = install_app(raw, namespace, router="service-selector")
    w = target_for("service-selector", "blue-green")
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)

    def selector() -> dict[str, str]:
        svc = raw.get("Service", namespace, "shop")
        assert svc is not None
        found: dict[str, str] = svc["spec"]["selector"]
        return found

    preview = raw.get("Service", namespace, "shop-preview")
    assert preview is not None
    assert preview["spec"]["selector"] == {"app": "shop", ROLE: "candidate"}
    assert selector() == {"app": "shop", "version": "v1"}
    assert router(w).weight() == 0
    assert w.preview_url().endswith(":8080/")

    router(w).set_weight(100)
    assert selector() == {"app": "shop", "version": "v2"}
    assert router(w).weight() == 100
    with pytest.raises(Exception, match="0% or 100% only"):
        router(w).set_weight(50)

    w.promote(0.0)
    router(w).finalize()
    after = snapshot(raw, namespace)
    assert after["Service/shop"] == before["Service/shop"]
    assert after["Deployment/shop"] == promoted_deployment(before["Deployment/shop"])
    assert set(after) == set(before)


def test_service_selector_rollback_leaves_every_object_as_before(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    before = install_app(raw, namespace, router="service-selector")
    w = target_for("service-selector", "blue-green")
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)
    router(w).set_weight(100)

    router(w).set_weight(0)
    svc = raw.get("Service", namespace, "shop")
    assert svc is not None and svc["spec"]["selector"] == {"app": "shop", "version": "v1"}
    w.rollback()

    assert snapshot(raw, namespace) == before


# -- replica ratio (rolling) ------------------------------------------------------------------


def sizes(raw: Raw, ns: str) -> tuple[int, int]:
    stable = raw.get("Deployment", ns, "shop")
    candidate = raw.get("Deployment", ns, "shop-candidate")
    assert stable is not None
    return stable["spec"]["replicas"], candidate["spec"]["replicas"] if candidate else 0


def test_replica_ratio_moves_one_replica_at_a_time_then_promotion_restores_the_size(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    before = install_app(raw, namespace, router="replica-ratio")
    w = target_for("replica-ratio", "rolling", replicas=3)
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 0)
    assert sizes(raw, namespace) == (3, 0)
    assert snapshot(raw, namespace)["Service/shop"] == before["Service/shop"]

    # As the rolling batch step does: the candidate grows, stable shrinks, traffic follows
    for percent, expected in ((33, (2, 1)), (67, (1, 2)), (100, (0, 3))):
        w.deploy_candidate(CANDIDATE, percent)
        w.scale_stable(100 - percent)
        router(w).set_weight(percent)
        assert sizes(raw, namespace) == expected
        assert router(w).weight() == percent
        stable = raw.get("Deployment", namespace, "shop")
        assert stable is not None
        assert stable["metadata"]["annotations"][RELEASE_ID] == "shop-production-v2"

    w.promote(0.0)
    router(w).finalize()
    after = snapshot(raw, namespace)
    assert after["Deployment/shop"] == promoted_deployment(before["Deployment/shop"])
    assert after["Service/shop"] == before["Service/shop"]
    assert set(after) == set(before)


def test_replica_ratio_rollback_restores_stable_at_full_size(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    before = install_app(raw, namespace, router="replica-ratio")
    w = target_for("replica-ratio", "rolling", replicas=3)
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 67)
    w.scale_stable(33)
    router(w).set_weight(67)
    assert sizes(raw, namespace) == (1, 2)

    router(w).set_weight(0)
    assert sizes(raw, namespace) == (3, 0)
    w.rollback()

    assert snapshot(raw, namespace) == before


# -- Istio ------------------------------------------------------------------------------------


def istio_objects(raw: Raw, ns: str) -> tuple[list[Obj], list[Obj]]:
    vs = raw.get("VirtualService", ns, "shop")
    dr = raw.get("DestinationRule", ns, "shop")
    assert vs is not None and dr is not None
    return vs["spec"]["http"][0]["route"], dr["spec"].get("subsets", [])


def split(weight: int) -> list[Obj]:
    return [
        {
            "destination": {"host": "shop", "port": {"number": 80}, "subset": "stable"},
            "weight": 100 - weight,
        },
        {
            "destination": {"host": "shop", "port": {"number": 80}, "subset": "candidate"},
            "weight": weight,
        },
    ]


def test_istio_routes_over_subsets_at_each_step_then_promotion_restores_the_routes(
    raw: Raw, namespace: str, target_for: Any, istio_crds: None
) -> None:
    before = install_app(raw, namespace, router="istio")
    w = target_for("istio")
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)

    subsets = [
        {"name": "stable", "labels": {"version": "v1"}},
        {"name": "candidate", "labels": {"version": "v2"}},
    ]
    assert istio_objects(raw, namespace) == (split(0), subsets)
    dr = raw.get("DestinationRule", namespace, "shop")
    assert dr is not None and dr["spec"]["host"] == "shop"
    for weight in (10, 50, 100):
        router(w).set_weight(weight)
        assert istio_objects(raw, namespace) == (split(weight), subsets)
        vs = raw.get("VirtualService", namespace, "shop")
        assert vs is not None and vs["spec"]["http"][0]["timeout"] == "5s"

    w.promote(0.0)
    router(w).finalize()
    after = snapshot(raw, namespace)
    assert after["VirtualService/shop"] == before["VirtualService/shop"]
    assert "DestinationRule/shop" not in after, "the DestinationRule it created is deleted"
    assert after["Deployment/shop"] == promoted_deployment(before["Deployment/shop"])
    assert set(after) == set(before)


def test_istio_rollback_restores_the_users_destination_rule(
    raw: Raw, namespace: str, target_for: Any, istio_crds: None
) -> None:
    raw.create(
        "DestinationRule",
        namespace,
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "shop"},
            "spec": {
                "host": "shop",
                "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                "subsets": [{"name": "canary-old", "labels": {"track": "canary"}}],
            },
        },
    )
    before = install_app(raw, namespace, router="istio")
    w = target_for("istio")
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)
    router(w).set_weight(50)
    _, subsets = istio_objects(raw, namespace)
    assert [s["name"] for s in subsets] == ["canary-old", "stable", "candidate"]

    router(w).set_weight(0)
    w.rollback()

    assert snapshot(raw, namespace) == before
