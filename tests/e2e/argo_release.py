"""Helpers of the Argo executor's tests on the bed: a release run as an Argo Workflow through
the real workflow-controller and argo-server, its step pods run by the bed's pod executor (the
repository's `gatekeeper step run`), judged by the bed's Prometheus.

The step pods share the test's store (a SQLite file) and reach the bed's API server with the
gatekeeper's ServiceAccount kubeconfig, both passed to them as env, as a chart passes them from
a Secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gatekeeper.domain.release import ReleaseSpec, parse_release
from gatekeeper.engine.argo_settings import ArgoSettings
from gatekeeper.engine.executor import Outcome
from gatekeeper.engine.runner import RunOptions, run_release
from gates.spec import default_gates
from tests.e2e.kubernetes_release import db_url, options
from tests.e2e.kubernetes_target import wait_until
from tests.e2e.testbed import ClusterBed
from workflows.names import workflow_name

WORKFLOW_SERVICE_ACCOUNT = "gatekeeper-workflow"


def argo_spec(spec: ReleaseSpec, **changes: Any) -> ReleaseSpec:
    """``spec`` run by the Argo executor, judged by the gates on the app's own error rate and
    latency (abort, sustained, latency: the resource gates' warm-ups would only lengthen
    what these tests are about, the orchestration), with ``changes`` applied."""
    data = spec.model_dump(mode="json", exclude_none=True)
    classic = default_gates().gates[:3]
    data.update(
        executor="argo",
        gates={"gates": [g.model_dump(mode="json", exclude_none=True) for g in classic]},
    )
    data.update(changes)
    return parse_release(data)


def argo_options(bed: ClusterBed, kubeconfig: Path, work: Path, **extra: Any) -> RunOptions:
    base = options(bed, kubeconfig, work)
    settings = ArgoSettings(
        server=bed.argo_url,
        namespace=bed.argo_namespace,
        token=bed.admin_token,
        service_account=WORKFLOW_SERVICE_ACCOUNT,
        step_env={"KUBECONFIG": str(kubeconfig)},
        poll_s=0.5,
    )
    return RunOptions(
        prometheus_url=base.prometheus_url,
        kubeconfig=base.kubeconfig,
        db_url=db_url(work),
        state_dir=base.state_dir,
        metrics_timeout_s=base.metrics_timeout_s,
        argo=settings,
        **extra,
    )


def run_on_argo(spec: ReleaseSpec, bed: ClusterBed, kubeconfig: Path, work: Path) -> Outcome:
    """`gatekeeper run --executor argo` in process: submits the workflow and follows it."""
    return run_release(argo_spec(spec), argo_options(bed, kubeconfig, work))


@dataclass
class Background:
    """A release followed in a thread, so the test can act while it runs."""

    outcome: Outcome | None = None
    error: BaseException | None = None
    thread: threading.Thread = field(default_factory=threading.Thread)

    def wait(self, timeout: float) -> Outcome:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the release did not end within {timeout:.0f}s")
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


@contextmanager
def in_background(run: Callable[[], Outcome]) -> Iterator[Background]:
    found = Background()

    def body() -> None:
        try:
            found.outcome = run()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            found.error = e

    found.thread = threading.Thread(target=body, daemon=True)
    found.thread.start()
    yield found


def workflow(bed: ClusterBed, name: str) -> dict[str, Any]:
    response = httpx.get(
        f"{bed.argo_url}/api/v1/workflows/{bed.argo_namespace}/{name}",
        headers={"Authorization": f"Bearer {bed.admin_token}"},
        timeout=10,
    )
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def workflow_of(bed: ClusterBed, release_id: str, said: str = "") -> dict[str, Any]:
    """The release's workflow (named after the release id), with ``said`` on a failure."""
    name = workflow_name(release_id)
    response = httpx.get(
        f"{bed.argo_url}/api/v1/workflows/{bed.argo_namespace}/{name}",
        headers={"Authorization": f"Bearer {bed.admin_token}"},
        timeout=10,
    )
    assert response.status_code == 200, f"Workflow {name}: {response.text}\n{said}"
    found: dict[str, Any] = response.json()
    assert found["metadata"]["labels"]["gatekeeper.dev/release-id"] == release_id, said
    return found


def nodes(wf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in (wf.get("status", {}).get("nodes") or {}).values()}


def wait_for_node(
    bed: ClusterBed, release_id: str, display_name: str, phase: str, timeout: float = 120
) -> None:
    def there() -> bool:
        try:
            node = nodes(workflow_of(bed, release_id)).get(display_name)
        except (AssertionError, httpx.HTTPError):
            return False
        return node is not None and node.get("phase") == phase

    wait_until(there, timeout, f"node {display_name} of {release_id}'s workflow {phase}")


def story(wf: dict[str, Any]) -> str:
    """The workflow's nodes, readably, for a failure message."""
    lines = [f"workflow {wf['metadata']['name']}: {wf.get('status', {}).get('phase')} "]
    lines[0] += str(wf.get("status", {}).get("message") or "")
    for node in sorted(nodes(wf).values(), key=lambda n: n.get("startedAt") or ""):
        lines.append(
            f"  {node['displayName']:<40} {node.get('type', ''):<8} {node.get('phase', ''):<9} "
            f"{node.get('message', '')}"
        )
    return "\n".join(lines)


def elapsed(since: float) -> float:
    return time.time() - since
