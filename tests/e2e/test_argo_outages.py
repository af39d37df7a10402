"""A release run by Argo rides out what goes wrong around it: argo-server killed and started
again mid-release (the follower re-syncs from the workflow's status; the cluster never stopped
running it), and the API server refusing a step's connections for a few seconds (the step
exits 75, Argo's retryStrategy runs it again, and the release completes).

Either way no change is repeated: the API server's audit log holds exactly the writes of a
canary never interrupted (`CANARY_WRITES`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from gatekeeper.domain.release import Phase
from gatekeeper.engine.runner import run_release
from tests.e2e.argo_release import (
    argo_options,
    argo_spec,
    in_background,
    nodes,
    story,
    wait_for_node,
    workflow_of,
)
from tests.e2e.kubernetes_release import (
    CANARY_WRITES,
    describe,
    events,
    install_demo_app,
    load_on,
    release_spec,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig
from tests.e2e.testbed import ClusterBed
from tests.e2e.testbed.audit import utcnow
from tests.support.tcp_proxy import TcpProxy
from workflows.names import node_name

RPS = 150.0  # the candidate's 20% is 120 requests in the abort gate's 4 s window (>= 100)
ARGO_DOWN_S = 8.0
API_REFUSED_S = 8.0


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


def gatekeeper_writes(
    bed: ClusterBed, since: dt.datetime, ns: str
) -> Counter[tuple[str, str, str]]:
    user = f"system:serviceaccount:{ns}:gatekeeper"
    writes = bed.audit.writes(since, user=user, succeeded_only=False)
    refused = [(e.verb, e.resource, e.name, e.code) for e in writes if e.code >= 300]
    assert refused == [], refused
    return Counter((e.verb, e.resource, e.name) for e in writes)


def test_argo_server_killed_mid_release_neither_stops_it_nor_repeats_a_change(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    workflow_service_account: str,
) -> None:
    # Given a canary run by Argo, followed by this process through argo-server
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = argo_spec(release_spec(app, "canary", version="v2", environment=namespace))
    since = utcnow()
    with load_on(bed, app, rps=RPS) as load:
        started = load.mark()
        with in_background(
            lambda: run_release(spec, argo_options(bed, kubeconfig, tmp_path))
        ) as running:
            # When argo-server is killed in the first analysis and stays down a while
            wait_for_node(bed, spec.release_id, f"{node_name(3, 'analyze-20')}(0)", "Running")
            down = bed.restart_argo_server(down_s=ARGO_DOWN_S)
            outcome = running.wait(400)
        time.sleep(1.0)
    timeline = events(tmp_path, spec.release_id)
    wf = workflow_of(bed, spec.release_id)
    said = f"{outcome.phase.value}: {outcome.reason} (argo-server down {down:.1f}s)\n"
    said += f"{story(wf)}\n{describe(load, timeline, started)}"

    # Then the release went on in the cluster and was promoted; the follower saw the outage
    # and re-synced when argo-server answered again
    assert outcome.phase is Phase.PROMOTED, said
    assert wf["status"]["phase"] == "Succeeded", said
    argo = [e.message for e in timeline if e.kind == "argo-server"]
    assert any("unreachable" in m for m in argo), said
    assert any("answers again" in m for m in argo), said
    # and no change was made twice
    assert gatekeeper_writes(bed, since, namespace) == CANARY_WRITES, said
    everything = load.between(started)
    assert everything.failures == 0 and set(everything.by_code) == {200}, f"{everything}\n{said}"


def test_a_step_whose_api_server_refuses_for_a_while_is_retried_by_argo(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    workflow_service_account: str,
) -> None:
    # Given a canary run by Argo whose step pods reach the API server through a link that
    # the test can cut, each giving up a request after 2 s of temporary errors (exit 75)
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = argo_spec(release_spec(app, "canary", version="v2", environment=namespace))
    api_port = int(bed.server.rsplit(":", 1)[1])
    since = utcnow()
    with TcpProxy(("127.0.0.1", api_port)) as link, load_on(bed, app, rps=RPS) as load:
        through_link = _kubeconfig_via(kubeconfig, f"https://127.0.0.1:{link.port}", tmp_path)
        options = argo_options(bed, kubeconfig, tmp_path)
        assert options.argo is not None
        steps_env = {
            **options.argo.step_env,
            "KUBECONFIG": str(through_link),
            "GATEKEEPER_KUBERNETES_RETRY_S": "2",
        }
        options = replace(options, argo=replace(options.argo, step_env=steps_env))
        started = load.mark()
        with in_background(lambda: run_release(spec, options)) as running:
            # When the API server refuses them from the end of the first analysis, before the
            # second shift's process reads anything (once the step's own retries hold a write,
            # they would ride out the outage inside the step)
            wait_for_node(
                bed, spec.release_id, f"{node_name(3, 'analyze-20')}(0)", "Succeeded", timeout=240
            )
            link.down()
            time.sleep(API_REFUSED_S)
            link.up()
            outcome = running.wait(400)
        time.sleep(1.0)
    timeline = events(tmp_path, spec.release_id)
    wf = workflow_of(bed, spec.release_id)
    said = f"{outcome.phase.value}: {outcome.reason}\n{story(wf)}\n"
    said += describe(load, timeline, started)

    # Then that step failed with a temporary error, Argo ran it again, and the release
    # completed
    shift = nodes(wf)
    first, second = f"{node_name(4, 'shift-50')}(0)", f"{node_name(4, 'shift-50')}(1)"
    assert first in shift and shift[first]["phase"] == "Failed", said
    assert "exit code 75" in shift[first].get("message", ""), said
    assert second in shift and shift[second]["phase"] == "Succeeded", said
    assert outcome.phase is Phase.PROMOTED and wf["status"]["phase"] == "Succeeded", said
    # and no change was made twice
    assert gatekeeper_writes(bed, since, namespace) == CANARY_WRITES, said


def _kubeconfig_via(kubeconfig: Path, server: str, folder: Path) -> Path:
    """``kubeconfig`` with its cluster reached at ``server``."""
    data = yaml.safe_load(kubeconfig.read_text())
    for cluster in data["clusters"]:
        cluster["cluster"]["server"] = server
    target = folder / "via-link.kubeconfig"
    target.write_text(yaml.safe_dump(data))
    return target
