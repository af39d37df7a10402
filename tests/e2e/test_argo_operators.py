"""People acting on a release that runs as an Argo Workflow: an approval suspends the workflow
until `gatekeeper approve` resumes it; `gatekeeper reject` fails the suspend node and the exit
handler rolls back; `gatekeeper abort` mid-analysis stops the workflow and it rolls back.

The operators' commands run as they would on a release manager's machine: against the store,
with argo-server's URL and token in their environment.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from gatekeeper.domain.release import Phase
from gatekeeper.engine.control import abort_release, approve, reject
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
    db_url,
    describe,
    events,
    install_demo_app,
    load_on,
    release_spec,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig, snapshot
from tests.e2e.testbed import ClusterBed
from workflows.names import node_name

RPS = 150.0  # the candidate's 20% is 120 requests in the abort gate's 4 s window (>= 100)
APPROVAL = "approve-shift-100"


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


@pytest.fixture
def operator_env(bed: ClusterBed, monkeypatch: pytest.MonkeyPatch) -> None:
    """argo-server's settings in the operator's environment."""
    monkeypatch.setenv("GATEKEEPER_ARGO_SERVER", bed.argo_url)
    monkeypatch.setenv("GATEKEEPER_ARGO_TOKEN", bed.admin_token)
    monkeypatch.setenv("GATEKEEPER_ARGO_NAMESPACE", bed.argo_namespace)


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_an_approval_suspends_the_workflow_until_a_person_decides(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    workflow_service_account: str,
    operator_env: None,
    decision: str,
) -> None:
    # Given a canary whose last shift needs a release manager's approval, run by Argo
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = argo_spec(
        release_spec(app, "canary", version="v2", environment=namespace),
        approvals=["shift-100"],
    )
    plan_index = 6  # deploy, verify, shift-20, analyze-20, shift-50, analyze-50, approve-...
    suspend = node_name(plan_index, APPROVAL, "-suspend")
    with load_on(bed, app, rps=RPS) as load:
        started = load.mark()
        with in_background(
            lambda: run_release(spec, argo_options(bed, kubeconfig, tmp_path))
        ) as running:
            # When the workflow reaches the approval, it waits there
            wait_for_node(bed, spec.release_id, suspend, "Running", timeout=240)
            time.sleep(3.0)
            wf = workflow_of(bed, spec.release_id)
            assert wf["status"]["phase"] == "Running", story(wf)
            assert node_name(plan_index + 1, "shift-100") not in nodes(wf), story(wf)
            # and a person decides
            act = approve if decision == "approve" else reject
            act(
                spec.release_id,
                APPROVAL,
                by="rm",
                role="release-manager",
                comment="checked the dashboards",
                db_url=db_url(tmp_path),
            )
            outcome = running.wait(300)
        ended = load.mark()
        time.sleep(1.5)
    timeline = events(tmp_path, spec.release_id)
    wf = workflow_of(bed, spec.release_id)
    said = f"{outcome.phase.value}: {outcome.reason}\n{story(wf)}\n"
    said += describe(load, timeline, started)

    if decision == "approve":
        # Then the suspend node was resumed and the release went on to its promotion
        assert nodes(wf)[suspend]["phase"] == "Succeeded", said
        assert outcome.phase is Phase.PROMOTED and wf["status"]["phase"] == "Succeeded", said
    else:
        # Then the suspend node failed, the workflow failed and its exit handler rolled back
        assert nodes(wf)[suspend]["phase"] == "Failed", said
        assert wf["status"]["phase"] == "Failed", said
        assert outcome.phase is Phase.ROLLED_BACK, said
        rejected = f"{APPROVAL} rejected by rm (release-manager): checked the dashboards"
        assert outcome.reason == rejected, said
        after = load.between(ended)
        assert after.by_version == {"v1": after.sent} and after.sent > 0, str(after)
        assert snapshot(raw, namespace) == app.before


def test_an_abort_mid_analysis_stops_the_workflow_and_rolls_back(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    workflow_service_account: str,
    operator_env: None,
) -> None:
    # Given a canary run by Argo, in its first analysis
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = argo_spec(
        release_spec(app, "canary", version="v2", environment=namespace, time_scale=5.0)
    )
    analyze = node_name(3, "analyze-20")
    with load_on(bed, app, rps=RPS) as load:
        started = load.mark()
        with in_background(lambda: run_release(spec, argo_options(bed, kubeconfig, tmp_path))) as (
            running
        ):
            wait_for_node(bed, spec.release_id, f"{analyze}(0)", "Running", timeout=240)
            # When a person aborts it
            said = abort_release(
                spec.release_id, by="rm", reason="bad timing", db_url=db_url(tmp_path)
            )
            aborted_at = time.time()
            outcome = running.wait(240)
        ended = load.mark()
        time.sleep(1.5)
    timeline = events(tmp_path, spec.release_id)
    wf = workflow_of(bed, spec.release_id)
    story_ = f"{outcome.phase.value}: {outcome.reason}\n{story(wf)}\n"
    story_ += describe(load, timeline, started)

    # Then the workflow was stopped, its exit handler rolled back, the release is aborted
    assert said == "aborted by rm: bad timing"
    assert outcome.phase is Phase.ABORTED, story_
    assert wf["status"]["phase"] == "Failed", story_
    assert "Stopped" in (wf["status"].get("message") or ""), story_
    assert nodes(wf)["rollback"]["phase"] == "Succeeded", story_
    # users were back on stable well before the analysis would have ended (5m at 5x: 60 s)
    back = max((s for s, counts in load.per_second(aborted_at) if counts.get("v2")), default=0)
    assert back < 30, story_
    after = load.between(ended)
    assert after.by_version == {"v1": after.sent} and after.sent > 0, str(after)
    assert snapshot(raw, namespace) == app.before
