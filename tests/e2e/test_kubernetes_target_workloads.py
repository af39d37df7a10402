"""The Kubernetes workloads on a real API server (kwok nodes make ordinary pods ready): the
candidate derived from the user's Deployment, the readiness deadline, the P0 signals, and the
refusals that name the object."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gatekeeper.domain.errors import InvalidInput, StepFailed
from gatekeeper.targets.base import VersionRun
from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads
from tests.e2e.kubernetes_target import (
    Raw,
    build,
    install_app,
    release,
    service_account_kubeconfig,
    snapshot,
)
from tests.e2e.testbed import ClusterBed

STABLE = VersionRun("v1", image="registry.invalid/shop:v1")
CANDIDATE = VersionRun("v2", image="registry.invalid/shop:v2")
ROLE = "gatekeeper.dev/role"


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


@pytest.fixture
def sa_kubeconfig(bed: ClusterBed, raw: Raw, namespace: str) -> Path:
    return service_account_kubeconfig(bed, raw, namespace)


@pytest.fixture
def target_for(sa_kubeconfig: Path, namespace: str) -> Iterator[Any]:
    made: list[KubernetesWorkloads] = []

    def make(router: str = "gateway-api", **fields: Any) -> KubernetesWorkloads:
        workloads = build(release(namespace, router, **fields), sa_kubeconfig)
        made.append(workloads)
        return workloads

    yield make
    for w in made:
        w.close()


def test_candidate_is_derived_from_the_users_deployment_and_stable_keeps_its_pods(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    before = install_app(raw, namespace, router="gateway-api")
    stable_before = raw.get("Deployment", namespace, "shop")
    assert stable_before is not None
    stable_pods = sorted(p["metadata"]["name"] for p in raw.pods(namespace, "app=shop"))
    w = target_for()

    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)

    candidate = raw.get("Deployment", namespace, "shop-candidate")
    assert candidate is not None
    meta, spec = candidate["metadata"], candidate["spec"]
    # Its own labels only (a GitOps tool's tracking label is not copied), its release, its owner
    assert meta["labels"] == {ROLE: "candidate", "app.kubernetes.io/managed-by": "gatekeeper"}
    assert meta["annotations"]["gatekeeper.dev/release-id"] == "shop-production-v2"
    assert [(o["kind"], o["name"], o["uid"]) for o in meta["ownerReferences"]] == [
        ("Deployment", "shop", stable_before["metadata"]["uid"])
    ]
    # Stable's selector plus the role label: it never matches stable's pods
    assert spec["selector"] == {"matchLabels": {"app": "shop", ROLE: "candidate"}}
    assert spec["replicas"] == 3
    template = spec["template"]
    assert template["metadata"]["labels"] == {"app": "shop", "version": "v2", ROLE: "candidate"}
    assert template["metadata"]["annotations"] == {
        "gatekeeper.dev/release-id": "shop-production-v2"
    }
    # Stable's pod spec with the candidate's image, everything else as the user wrote it
    expected_pod_spec = stable_before["spec"]["template"]["spec"]
    expected_pod_spec["containers"][0]["image"] = "registry.invalid/shop:v2"
    assert template["spec"] == expected_pod_spec
    # The candidate's pods run; stable's are the same pods as before (not restarted)
    assert len([p for p in raw.pods(namespace, f"{ROLE}=candidate") if _ready(p)]) == 3
    assert sorted(p["metadata"]["name"] for p in raw.pods(namespace, "app=shop,version=v1")) == (
        stable_pods
    )
    assert snapshot(raw, namespace)["Deployment/shop"] == before["Deployment/shop"]
    # What the target reports, read from the objects
    state = w.state()
    assert (state.stable_version, state.candidate_version, state.candidate_ready) == (
        "v1",
        "v2",
        True,
    )
    assert (state.stable_scale_percent, state.candidate_scale_percent) == (100, 100)
    assert len(w.metrics_endpoints("v2")) == 3
    assert all(e.endswith(":8080") for e in w.metrics_endpoints())
    assert len(w.metrics_endpoints()) == 6

    # Deploying again changes nothing (a resumed release writes nothing twice)
    writes = w.api.writes
    w.deploy_candidate(CANDIDATE, 100)
    w.ensure_stable(STABLE)
    assert w.api.writes == writes, w.api.last_writes[writes - w.api.writes :]


def test_a_candidate_that_never_gets_ready_fails_at_its_deadline_naming_its_pods(
    raw: Raw, kube: client.ApiClient, namespace: str, target_for: Any
) -> None:
    # Given stable on nodes labelled for this test only, and then no node so labelled
    label = f"e2e-{secrets.token_hex(3)}"
    nodes = ["kwok-node-0", "kwok-node-1"]
    for node in nodes:
        raw.patch("Node", "", node, {"metadata": {"labels": {label: "yes"}}})
    try:
        install_app(raw, namespace, router="gateway-api", node_selector={label: "yes"})
        for node in nodes:
            raw.patch("Node", "", node, {"metadata": {"labels": {label: None}}})
        w = target_for(progress_deadline="4s")
        w.ensure_stable(STABLE)

        # When the candidate is deployed, its pods stay Pending
        with pytest.raises(StepFailed) as failed:
            w.deploy_candidate(CANDIDATE, 100)
    finally:
        for node in nodes:
            raw.patch("Node", "", node, {"metadata": {"labels": {label: None}}})

    # Then the failure names the Deployment, the deadline, each pod and its condition
    message = str(failed.value)
    pending = [p["metadata"]["name"] for p in raw.pods(namespace, f"{ROLE}=candidate")]
    assert len(pending) == 3
    assert f"Deployment {namespace}/shop-candidate not ready after" in message
    assert "progress_deadline 4s" in message
    assert "0 of 3 available" in message
    for name in pending:
        assert f"pod {name}: Pending, PodScheduled=False (Unschedulable:" in message
    assert "didn't match Pod's node affinity/selector" in message


def test_health_reports_a_crash_loop_restarts_and_a_pod_not_ready_past_its_grace(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    install_app(raw, namespace, router="gateway-api")
    w = target_for(not_ready_grace="30s")
    w.ensure_stable(STABLE)
    w.deploy_candidate(CANDIDATE, 100)
    assert w.health("v2").ok and w.health("v1").ok
    crashing, stuck, _ = sorted(
        p["metadata"]["name"] for p in raw.pods(namespace, f"{ROLE}=candidate")
    )

    # When one candidate pod crash-loops (as a kubelet reports it) and another has not been
    # ready for ten minutes
    now = datetime.now(UTC)
    raw.patch("Pod", namespace, crashing, {"status": _crash_looping(now)}, "status")
    raw.patch(
        "Pod", namespace, stuck, {"status": _not_ready_since(now - timedelta(minutes=10))}, "status"
    )

    # Then the candidate's health names each pod and the value; stable's stays healthy
    problems = w.health("v2").problems
    assert (
        f"pod {crashing}: container shop CrashLoopBackOff, restarts 4, last exit code 1 (Error)"
        in problems
    )
    assert (
        f"pod {crashing}: 4 restarts since the candidate was deployed (max_restarts 0)" in problems
    )
    assert any(
        p.startswith(f"pod {stuck}: Running, Ready=False (ContainersNotReady: app is not ready)")
        # ten minutes and the few seconds the test took since
        and re.search(r"not ready for 10m(\d+s)? \(not_ready_grace 30s\)$", p)
        for p in problems
    ), problems
    assert len(problems) == 3
    assert w.health("v1").ok


def test_refusals_name_the_object_the_verb_and_the_reason(
    bed: ClusterBed, raw: Raw, kube: client.ApiClient, namespace: str, sa_kubeconfig: Path
) -> None:
    install_app(raw, namespace, router="gateway-api")
    other = f"{namespace}-other"
    raw.ok("POST", "/api/v1/namespaces", {"metadata": {"name": other}})
    try:
        # A namespace the Role is not bound in: refused before anything starts
        elsewhere = build(release(other, "gateway-api"), sa_kubeconfig)
        with pytest.raises(InvalidInput) as refused:
            elsewhere.preflight()
        assert f"get Deployment {other}/shop: 403 Forbidden:" in str(refused.value)
        assert 'cannot get resource "deployments"' in str(refused.value)
        with pytest.raises(StepFailed, match=f"get Deployment {other}/shop: 403 Forbidden"):
            elsewhere.ensure_stable(STABLE)
        elsewhere.close()
    finally:
        raw.ok("DELETE", f"/api/v1/namespaces/{other}")

    # A verb outside the Role, in its own namespace
    w = build(release(namespace, "gateway-api"), sa_kubeconfig)
    from gatekeeper.targets.kubernetes.api import Ref

    with pytest.raises(StepFailed) as forbidden:
        w.api.delete(Ref("HTTPRoute", namespace, "shop"))
    assert str(forbidden.value).startswith(f"delete HTTPRoute {namespace}/shop: 403 Forbidden:")
    assert 'cannot delete resource "httproutes"' in str(forbidden.value)

    # An invalid change (422) names the object and the API's reason
    with pytest.raises(StepFailed) as invalid:
        w.api.update(Ref("Deployment", namespace, "shop"), _bad_replicas)
    assert f"patch Deployment {namespace}/shop: 422 Invalid:" in str(invalid.value)
    assert "spec.replicas" in str(invalid.value)
    w.close()


def test_a_deployment_not_fit_for_release_is_refused_before_anything_is_written(
    raw: Raw, namespace: str, target_for: Any
) -> None:
    raw.create("Deployment", namespace, _without_version_label())
    before = snapshot(raw, namespace)
    w = target_for(replicas=5)
    with pytest.raises(InvalidInput) as refused:
        w.preflight()
    message = str(refused.value)
    assert f"Deployment {namespace}/shop: its pod template has no 'version' label" in message
    assert "has 3 replicas but target.replicas is 5" in message
    assert f"Service {namespace}/shop not found" in message
    assert f"HTTPRoute {namespace}/shop not found" in message
    with pytest.raises(StepFailed, match="no 'version' label"):
        w.deploy_candidate(CANDIDATE, 100)
    assert snapshot(raw, namespace) == before


# -- helpers ----------------------------------------------------------------------------------


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _crash_looping(now: datetime) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "ContainersNotReady",
                "lastTransitionTime": _time(now),
            },
        ],
        "containerStatuses": [
            {
                "name": "shop",
                "image": "registry.invalid/shop:v2",
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "startedAt": _time(now - timedelta(seconds=2)),
                        "finishedAt": _time(now),
                    }
                },
            }
        ],
    }


def _not_ready_since(since: datetime) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "ContainersNotReady",
                "message": "app is not ready",
                "lastTransitionTime": _time(since),
            }
        ]
    }


def _bad_replicas(deployment: dict[str, Any]) -> dict[str, Any]:
    deployment["spec"]["replicas"] = -1
    return deployment


def _without_version_label() -> dict[str, Any]:
    from tests.e2e.kubernetes_target import deployment

    d = deployment()
    del d["spec"]["template"]["metadata"]["labels"]["version"]
    return d
