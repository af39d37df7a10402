"""The bed's real API server: workloads become ready on kwok nodes, writes read back, RBAC holds."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.testbed import ClusterBed


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def test_apiserver_reports_the_pinned_kubernetes_version(
    bed: ClusterBed, kube: client.ApiClient
) -> None:
    info = client.VersionApi(kube).get_code()

    assert info.git_version == bed.versions["KUBERNETES_VERSION"]
    assert (info.major, info.minor) == ("1", bed.versions["KUBERNETES_VERSION"].split(".")[1])


def test_deployment_of_three_replicas_gets_three_ready_pods(
    kube: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=3,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="web", image="registry.invalid/web:1.0")]
                ),
            ),
        ),
    )

    apps.create_namespaced_deployment(namespace, deployment)

    def ready_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        ready = [
            p
            for p in pods
            if p.status is not None
            and p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ready if len(ready) == 3 else []

    pods = wait_until(ready_pods, 60, "3 ready pods of deployment web")

    def reports_three_ready() -> client.V1DeploymentStatus | None:
        s = apps.read_namespaced_deployment_status("web", namespace).status
        assert s is not None
        return s if s.ready_replicas == 3 else None

    status = wait_until(reports_three_ready, 30, "deployment web to report 3 ready replicas")
    assert status.available_replicas == 3
    assert {p.spec.node_name for p in pods} <= {"kwok-node-0", "kwok-node-1"}


def test_service_selector_patch_reads_back(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="shop"),
            spec=client.V1ServiceSpec(
                selector={"app": "shop", "track": "stable"},
                ports=[client.V1ServicePort(port=80, target_port=8080)],
            ),
        ),
    )

    core.patch_namespaced_service("shop", namespace, {"spec": {"selector": {"track": "canary"}}})

    service = core.read_namespaced_service("shop", namespace)
    assert service.spec is not None
    assert service.spec.selector == {"app": "shop", "track": "canary"}
    assert service.spec.cluster_ip is not None
    assert service.spec.cluster_ip.startswith("10.96.")


def test_token_bound_to_a_narrow_role_is_refused_outside_it(
    bed: ClusterBed, kube: client.ApiClient, narrow_kube: client.ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="User", name=bed.narrow_user, api_group="rbac.authorization.k8s.io"
                )
            ],
        ),
    )
    narrow = client.CoreV1Api(narrow_kube)

    # Inside the role: allowed (RBAC may take a moment to see the new binding).
    wait_until(
        lambda: _allowed(lambda: narrow.list_namespaced_pod(namespace)),
        10,
        "the role binding to apply",
    )

    refused = {
        "secrets in its namespace": lambda: narrow.list_namespaced_secret(namespace),
        "pods in another namespace": lambda: narrow.list_namespaced_pod("default"),
        "creating a pod": lambda: narrow.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="sneaky"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
            ),
        ),
    }
    for what, call in refused.items():
        with pytest.raises(ApiException) as caught:
            call()
        assert caught.value.status == 403, f"{what}: {caught.value.status} {caught.value.reason}"


def _allowed(call) -> bool:
    try:
        call()
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True
