"""P0 signals on the bed: a candidate that never gets ready is rolled back at its progress
deadline, and one that crashes (at once, or after it took traffic) within 30 s, each with a
reason naming the pods; users stay on stable and every object ends as before.

The releases run in process with the bed's Prometheus and the default gates, as the
gatekeeper's ServiceAccount; the candidates are the demo app's images `demo:v2-never-ready`
(its readiness path answers 503), `demo:v2-crash` (exits with 1 at once) and
`demo:v2-crash-later` (healthy for 15 s, then exits with 1).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from kubernetes import client

from gatekeeper.domain.release import Phase
from tests.e2e.kubernetes_release import (
    at,
    describe,
    events,
    first_exit,
    install_demo_app,
    load_on,
    release_spec,
    run,
)
from tests.e2e.kubernetes_target import Raw, service_account_kubeconfig, snapshot
from tests.e2e.testbed import ClusterBed

CANDIDATE_POD = r"pod shop-candidate-[a-z0-9]+-[a-z0-9]+"
CRASH_LIMIT_S = 30.0


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


def test_a_candidate_that_never_gets_ready_is_rolled_back_at_its_progress_deadline(
    bed: ClusterBed, raw: Raw, namespace: str, tmp_path: Path
) -> None:
    # Given the demo app at v1, and a v2 whose readiness probe never passes
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = release_spec(app, "canary", image="demo:v2-never-ready", progress_deadline="15s")

    # When it is released
    with load_on(bed, app) as load:
        started = load.mark()
        outcome = run(spec, bed, kubeconfig, tmp_path)
        time.sleep(1.0)
    timeline = events(tmp_path, outcome.release_id)
    story = describe(load, timeline, started)

    # Then its deploy step gives up at the deadline, naming each pod and its conditions
    assert outcome.phase is Phase.ROLLED_BACK, f"{outcome.reason}\n{story}"
    reason = outcome.reason
    assert re.match(
        rf"Deployment {namespace}/shop-candidate not ready after 1[5-9](\.\d+)?s "
        r"\(progress_deadline 15s\): 0 of 2 available",
        reason,
    ), reason
    unready = (
        rf"{CANDIDATE_POD}: Running, ContainersReady=False \(ContainersNotReady: containers "
        r"with unready status: \[app\]\), Ready=False \(ContainersNotReady: containers with "
        r"unready status: \[app\]\)"
    )
    assert len(re.findall(unready, reason)) == 2, reason
    waited = at(timeline, "rollback") - at(timeline, "step-started", "deploy")
    assert 15.0 <= waited < 25.0, story

    # and users never left stable; every object is as it was
    seen = load.between(started)
    assert seen.by_version == {"v1": seen.sent} and seen.sent > 0, str(seen)
    assert snapshot(raw, namespace) == app.before


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        pytest.param(
            "demo:v2-crash",
            rf"Deployment \S+/shop-candidate not ready after [\d.]+m?s \(a pod cannot start\): .*"
            rf"{CANDIDATE_POD}: .*container app CrashLoopBackOff, restarts \d+",
            id="at-start",
        ),
        pytest.param(
            "demo:v2-crash-later",
            rf"p0: {CANDIDATE_POD}: [12] restarts? since the candidate was deployed "
            r"\(max_restarts 0\)",
            id="under-traffic",
        ),
    ],
)
def test_a_crash_looping_candidate_is_rolled_back_within_30s(
    bed: ClusterBed, raw: Raw, namespace: str, tmp_path: Path, image: str, reason: str
) -> None:
    # Given the demo app at v1, and a v2 that exits with 1 (at once, or after 15 s serving)
    app = install_demo_app(bed, raw, namespace, router="gateway-api")
    kubeconfig = service_account_kubeconfig(bed, raw, namespace)
    spec = release_spec(app, "canary", image=image)

    # When it is released
    with load_on(bed, app) as load:
        started = load.mark()
        outcome = run(spec, bed, kubeconfig, tmp_path)
        ended = load.mark()
        time.sleep(1.0)
    timeline = events(tmp_path, outcome.release_id)
    story = describe(load, timeline, started)

    # Then it is rolled back within 30 s of its first exit, the reason naming the pod
    assert outcome.phase is Phase.ROLLED_BACK, f"{outcome.reason}\n{story}"
    assert re.match(reason, outcome.reason), outcome.reason
    crashed = first_exit(bed, namespace, "shop-candidate-")
    assert crashed is not None, "the kubelet saw no candidate container exit"
    # (the kubelet's log stamps whole seconds: the exit was at most 1 s after `crashed`)
    assert at(timeline, "rollback") - crashed <= CRASH_LIMIT_S, story

    # and afterwards users see only stable; every object is as it was
    after = load.between(ended)
    assert after.by_version == {"v1": after.sent} and after.sent > 0, str(after)
    assert snapshot(raw, namespace) == app.before
