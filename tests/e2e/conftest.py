"""Fixtures of the e2e suite: one test bed for the package, API clients and namespaces on it.

The bed lives while tests/e2e runs and is torn down before the rest of the suite goes on. A
test that needs the bed and cannot get it fails with the reason; it is never skipped.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from tests.e2e.testbed import BedError, ClusterBed, start_bed
from tests.e2e.testbed.audit import AuditLog

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def _data_plane_wanted() -> bool:
    """GATEKEEPER_TESTBED_DATA_PLANE=0 starts the bed without Traefik, Prometheus and app pods."""
    return os.environ.get("GATEKEEPER_TESTBED_DATA_PLANE", "1") not in ("0", "")


@pytest.fixture(scope="package")
def bed() -> Iterator[ClusterBed]:
    reason = ""
    try:
        started = start_bed(with_data_plane=_data_plane_wanted())
    except BedError as exc:
        reason = str(exc)
    if reason:
        pytest.fail(f"e2e test bed unavailable: {reason}", pytrace=False)
    print(
        f"\ne2e test bed up in {started.startup_seconds:.1f}s: "
        f"apiserver {started.server}, argo-server {started.argo_url}"
    )
    if started.gateway_url:
        print(
            f"data plane: gateway {started.gateway_url}, prometheus {started.prometheus_url}, "
            f"pods on {started.pod_network}"
        )
    if started.keep:
        print(f"bed files kept in {started.root}")
    if started.data_plane_note:
        print(f"data plane degraded: {started.data_plane_note}")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="package")
def kubeconfig(bed: ClusterBed) -> Path:
    """The bed admin's kubeconfig file."""
    return bed.kubeconfig


@pytest.fixture(scope="package")
def argo_url(bed: ClusterBed) -> str:
    """argo-server's base URL (plain HTTP on loopback; send a bearer token)."""
    return bed.argo_url


@pytest.fixture(scope="package")
def gateway_url(bed: ClusterBed) -> str:
    """The bed Gateway's HTTP listener through Traefik; send the route's hostname as Host."""
    if not bed.gateway_url:
        pytest.fail("the bed was started without its data plane (GATEKEEPER_TESTBED_DATA_PLANE=0)")
    return bed.gateway_url


@pytest.fixture(scope="package")
def prometheus_url(bed: ClusterBed) -> str:
    """The bed's Prometheus: app pods by kubernetes_sd (job `pods`) and Traefik (job `traefik`)."""
    if not bed.prometheus_url:
        pytest.fail("the bed was started without its data plane (GATEKEEPER_TESTBED_DATA_PLANE=0)")
    return bed.prometheus_url


@pytest.fixture(scope="package")
def audit(bed: ClusterBed) -> AuditLog:
    """The API server's audit log: count write requests since a moment."""
    return bed.audit


@pytest.fixture(scope="package")
def kube(bed: ClusterBed) -> Iterator[client.ApiClient]:
    """An API client for the bed's admin, built from the kubeconfig the bed hands out."""
    api = config.new_client_from_config(config_file=str(bed.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="package")
def narrow_kube(bed: ClusterBed) -> Iterator[client.ApiClient]:
    """An API client holding the token of a user with no rights but those a test grants."""
    kubeconfig = bed.kubeconfig_for(bed.narrow_user, bed.narrow_token)
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace with its default service account, deleted after the test."""
    core = client.CoreV1Api(kube)
    name = f"e2e-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while not core.list_namespaced_service_account(
        name, field_selector="metadata.name=default"
    ).items:
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name} got no default service account within 30s")
        time.sleep(0.2)
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="package")
def argo(bed: ClusterBed) -> Iterator[httpx.Client]:
    """argo-server's HTTP API, authenticated with the admin's bearer token (auth mode client)."""
    with httpx.Client(
        base_url=bed.argo_url, headers={"Authorization": f"Bearer {bed.admin_token}"}, timeout=30
    ) as http:
        yield http


@pytest.fixture(scope="package")
def workflow_service_account(bed: ClusterBed, kube: client.ApiClient) -> str:
    """The ServiceAccount a release's workflow pods run as, in Argo's namespace."""
    from tests.e2e.argo_release import WORKFLOW_SERVICE_ACCOUNT
    from tests.e2e.kubernetes_target import Raw

    raw = Raw(kube)
    if raw.get("ServiceAccount", bed.argo_namespace, WORKFLOW_SERVICE_ACCOUNT) is None:
        raw.create(
            "ServiceAccount", bed.argo_namespace, {"metadata": {"name": WORKFLOW_SERVICE_ACCOUNT}}
        )
    return WORKFLOW_SERVICE_ACCOUNT
