"""Releases run as Argo Workflows on the bed: the real workflow-controller runs each plan step as
a pod (`gatekeeper step run`, run by the bed's pod executor), the guard runs beside the steps,
and the exit handler rolls back; traffic moves through the real Gateway as a load generator
sees it, judged by the bed's Prometheus.

Time is compressed 30x as in the in-process release tests (a 5m analysis is 10 s); each step
transition costs a pod start under Argo, so the shares are checked per span as there.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from gatekeeper.domain.release import Phase
from gatekeeper.engine.runner import validate
from tests.e2e.argo_release import (
    nodes,
    run_on_argo,
    story,
    workflow_of,
)
from tests.e2e.kubernetes_release import (
    SETTLE_S,
    at,
    describe,
    events,
    install_demo_app,
    load_on,
    release_spec,
    share_ok,
    traffic_spans,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig, snapshot
from tests.e2e.testbed import ClusterBed
from workflows.names import node_name

RPS = 150.0
AFTER_S = 4.0  # the load runs this long after the release ends (past SETTLE_S after promotion)


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


@pytest.mark.parametrize(
    ("strategy", "weights"),
    [pytest.param("canary", [20, 50, 100], id="canary"), pytest.param("blue-green", [100])],
)
def test_a_good_release_runs_to_succeeded_as_a_workflow_and_is_promoted(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    workflow_service_account: str,
    strategy: str,
    weights: list[int],
) -> None:
    # Given the demo app at v1 behind the Gateway
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = release_spec(app, strategy, version="v2", environment=namespace)

    # When v2 is released as an Argo Workflow while users keep asking
    with load_on(bed, app, rps=RPS) as load:
        started = load.mark()
        outcome = run_on_argo(spec, bed, kubeconfig, tmp_path)
        time.sleep(AFTER_S)
    timeline = events(tmp_path, outcome.release_id)
    said = f"{outcome.phase.value}: {outcome.reason}\n{describe(load, timeline, started)}"
    wf = workflow_of(bed, spec.release_id, said)
    said = f"{said}\n{story(wf)}"

    # Then the workflow succeeded, every plan step a pod of its own, and v2 is promoted
    assert wf["status"]["phase"] == "Succeeded", said
    assert outcome.phase is Phase.PROMOTED, said
    pods = [n["displayName"] for n in nodes(wf).values() if n.get("type") == "Pod"]
    plan, _ = validate(spec)
    expected = {f"{node_name(i, s.name)}(0)" for i, s in enumerate(plan.steps)}
    assert expected | {"guard(0)"} == set(pods), said  # each step one pod, none retried

    # and users moved step by step through the Gateway, ending on v2 with nothing lost
    spans = [s for s in traffic_spans(timeline) if s.step != "promote"]
    assert [s.weight for s in spans] == weights, said
    for span in spans:
        ok, why = share_ok(load.between(*span.settled()), "v2", span.weight / 100)
        assert ok, f"{span.step} at {span.weight}%: {why}\n{said}"
    last = load.between(at(timeline, "promote", "is now stable") + SETTLE_S)
    assert set(last.by_version) == {"v2"} and last.sent > 0, f"after promotion: {last}\n{said}"
    everything = load.between(started)
    assert everything.failures == 0 and set(everything.by_code) == {200}, f"{everything}\n{said}"


def test_a_bad_release_fails_its_gate_and_the_exit_handler_rolls_it_back(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    workflow_service_account: str,
) -> None:
    # Given the demo app at v1 behind the Gateway
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = release_spec(app, "canary", version="v2", image="demo:v2-bad", environment=namespace)

    # When v2, which fails 8% of its requests, is released as an Argo Workflow
    with load_on(bed, app, rps=RPS) as load:
        started = load.mark()
        outcome = run_on_argo(spec, bed, kubeconfig, tmp_path)
        ended = load.mark()
        time.sleep(AFTER_S)
    timeline = events(tmp_path, outcome.release_id)
    said = f"{outcome.phase.value}: {outcome.reason}\n{describe(load, timeline, started)}"
    wf = workflow_of(bed, spec.release_id, said)
    said = f"{said}\n{story(wf)}"

    # Then a gate fails it, the workflow is Failed and its exit handler rolled back
    assert outcome.phase is Phase.ROLLED_BACK, said
    assert wf["status"]["phase"] == "Failed", said
    rollback = [n for n in nodes(wf).values() if n["displayName"] == "rollback"]
    assert rollback and rollback[0]["phase"] == "Succeeded", said
    gate = outcome.reason.split(":", 1)[0]
    assert gate in {"abort", "sustained", "gateway"}, said
    # the failed node says why, as Argo shows it (Argo leaves a failed DAG's own message empty)
    failed = [n.get("message", "") for n in nodes(wf).values() if n.get("phase") == "Failed"]
    assert any(outcome.reason in m for m in failed), said

    # and afterwards users see only stable; every object is as it was
    after = load.between(ended)
    assert after.by_version == {"v1": after.sent} and after.sent > 0, str(after)
    assert snapshot(raw, namespace) == app.before
