"""The Kubernetes target's API discipline and `gatekeeper run` on it, on a real API server: a
concurrent edit of the HTTPRoute is kept (409, read again, retried), and a release run by the
engine as the gatekeeper's ServiceAccount rolls back leaving every object as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from gatekeeper.cli.main import app
from gatekeeper.domain.release import Phase
from gatekeeper.engine.runner import RunOptions, run_release
from gatekeeper.targets.base import VersionRun
from gatekeeper.targets.kubernetes.api import Api, Ref
from gatekeeper.targets.kubernetes.connect import connect
from gatekeeper.targets.kubernetes.workloads import KubernetesWorkloads
from gatekeeper.targets.routers.factory import router_for
from tests.e2e.kubernetes_target import (
    Obj,
    Raw,
    install_app,
    release,
    service_account_kubeconfig,
    snapshot,
)
from tests.e2e.testbed import ClusterBed


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


@pytest.fixture
def sa_kubeconfig(bed: ClusterBed, raw: Raw, namespace: str) -> Path:
    return service_account_kubeconfig(bed, raw, namespace)


class RacingApi(Api):
    """Our API layer, with another writer's edit landing between an update's read and its
    write (once, on the kind given)."""

    def __init__(self, *args: Any, kind: str, edit: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.pending: Callable[[], None] | None = edit

    def update(self, ref: Ref, change: Callable[[Obj], Obj | None]) -> Obj | None:
        def racing(obj: Obj) -> Obj | None:
            wanted = change(obj)
            if ref.kind == self.kind and self.pending is not None:
                edit, self.pending = self.pending, None
                edit()
            return wanted

        return super().update(ref, racing)


def test_a_concurrent_edit_of_the_route_gets_a_409_and_is_kept(
    raw: Raw, namespace: str, sa_kubeconfig: Path
) -> None:
    install_app(raw, namespace, router="gateway-api")
    spec = release(namespace, "gateway-api")

    def someone_edits() -> None:  # e.g. a GitOps sync adding a hostname and a label
        raw.patch(
            "HTTPRoute",
            namespace,
            "shop",
            {
                "metadata": {"labels": {"edited-by": "gitops"}},
                "spec": {"hostnames": ["shop.example", "www.shop.example"]},
            },
        )

    api = RacingApi(
        connect(str(sa_kubeconfig)),
        release_id=spec.release_id,
        kind="HTTPRoute",
        edit=someone_edits,
    )
    w = KubernetesWorkloads(spec, api, poll_s=0.2)
    router = router_for(spec, w)
    w.ensure_stable(VersionRun("v1", image="registry.invalid/shop:v1"))
    w.deploy_candidate(VersionRun("v2", image="registry.invalid/shop:v2"), 100)

    router.set_weight(50)

    route = raw.get("HTTPRoute", namespace, "shop")
    assert route is not None
    assert api.conflicts == 1, "the write with the stale resourceVersion met a 409"
    assert route["metadata"]["labels"]["edited-by"] == "gitops"
    assert route["spec"]["hostnames"] == ["shop.example", "www.shop.example"]
    assert [(r["name"], r["weight"]) for r in route["spec"]["rules"][1]["backendRefs"]] == [
        ("shop", 50),
        ("shop-candidate", 50),
    ]
    assert router.weight() == 50
    w.close()


def test_gatekeeper_run_on_kubernetes_rolls_back_and_leaves_every_object_as_before(
    raw: Raw, namespace: str, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    # Given the app, and a release whose candidate is never scraped (kwok pods have no
    # process behind their address, so no /metrics answers)
    before = install_app(raw, namespace, router="gateway-api")
    spec = release(namespace, "gateway-api")

    # When `gatekeeper run` runs it (in process: the same function the CLI calls)
    outcome = run_release(
        spec,
        RunOptions(
            db_url=f"sqlite:///{tmp_path / 'gatekeeper.db'}",
            state_dir=tmp_path / "state",
            kubeconfig=str(sa_kubeconfig),
            metrics_timeout_s=2.0,
            scrape_interval_s=0.5,
        ),
    )

    # Then the deploy step fails on the missing metrics, the release rolls back, and the
    # cluster holds exactly what it held before
    assert outcome.phase is Phase.ROLLED_BACK, outcome.reason
    assert "has not seen" in outcome.reason and "metrics" in outcome.reason
    assert snapshot(raw, namespace) == before
    assert raw.pods(namespace, "gatekeeper.dev/role=candidate") == []


def test_gatekeeper_run_refuses_a_missing_deployment_before_writing_anything(
    raw: Raw, namespace: str, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    path = tmp_path / "release.yaml"
    spec = release(namespace, "gateway-api").model_dump(mode="json")
    path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "gatekeeper.db"

    result = CliRunner().invoke(
        app,
        ["run", str(path), "--kubeconfig", str(sa_kubeconfig), "--db", f"sqlite:///{db}"],
    )

    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"target: Deployment {namespace}/shop not found" in text
    assert f"target: HTTPRoute {namespace}/shop not found" in text
    assert not db.exists()
    assert snapshot(raw, namespace) == {}
