"""Whole releases on the bed, through its Gateway, judged by its Prometheus with the default
gates: for each router, a good version is promoted while a load generator on the Gateway sees
the traffic move step by step, and a bad one (8% of requests answer 500) is rolled back,
after which users see only stable and every object is exactly as before.

The releases run in process (`run_release`, what `gatekeeper run` calls) as the gatekeeper's
ServiceAccount bound to the minimal Role, with time compressed 30x (a 5m analysis is 10 s,
the abort gate's 2m window 4 s). The versions differ by their image only (`demo:v1`,
`demo:v2`, `demo:v2-bad` in the bed's image registry), as the target changes nothing else.

Tolerance of a step's share: the candidate's count among the versioned answers sent within
the step's span is within 4 binomial standard deviations of its weight (the data plane is
given 2 s after the shift's event to apply it, and the span ends 0.3 s before the next
change starts). Traefik's weighted round robin is deterministic, so the real spread is far
smaller.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from kubernetes import client

from gatekeeper.domain.release import Phase
from tests.e2e.kubernetes_release import (
    SETTLE_S,
    DemoApp,
    at,
    describe,
    events,
    install_demo_app,
    load_on,
    release_spec,
    run,
    share_ok,
    traffic_spans,
)
from tests.e2e.kubernetes_target import Obj, Raw, service_account_kubeconfig, snapshot
from tests.e2e.testbed import ClusterBed

RPS = 150.0  # the candidate's 20% is 120 requests in the abort gate's 4 s window (>= 100)
AFTER_S = 4.0  # the load runs this long after the release ends (past SETTLE_S after promotion)

CASES = [
    pytest.param("gateway-api", "canary", [20, 50, 100], id="canary-gateway-api"),
    pytest.param("gateway-api", "blue-green", [100], id="blue-green-gateway-api"),
    pytest.param("service-selector", "blue-green", [100], id="blue-green-service-selector"),
    pytest.param("replica-ratio", "rolling", [33, 67, 100], id="rolling-replica-ratio"),
]


@pytest.fixture
def raw(kube: client.ApiClient) -> Raw:
    return Raw(kube)


def install(bed: ClusterBed, raw: Raw, namespace: str, router: str) -> tuple[DemoApp, Path]:
    """The demo app (3 replicas for replica-ratio: steps of a third) and the gatekeeper's
    ServiceAccount kubeconfig."""
    replicas = 3 if router == "replica-ratio" else 2
    app = install_demo_app(bed, raw, namespace, router=router, replicas=replicas)
    return app, service_account_kubeconfig(bed, raw, namespace)


def promoted(before: dict[str, Obj], release_id: str) -> dict[str, Obj]:
    """The objects after promoting v2: the user's Deployment runs demo:v2 with version v2 and
    names the release that set it; everything else exactly as before."""
    after = copy.deepcopy(before)
    deployment = after["Deployment/shop"]
    template = deployment["spec"]["template"]
    template["metadata"]["labels"]["version"] = "v2"
    template["spec"]["containers"][0]["image"] = "demo:v2"
    deployment["metadata"].setdefault("annotations", {})["gatekeeper.dev/release-id"] = release_id
    return after


@pytest.mark.parametrize(("router", "strategy", "weights"), CASES)
def test_a_good_release_moves_users_step_by_step_onto_the_new_version(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    router: str,
    strategy: str,
    weights: list[int],
) -> None:
    # Given the demo app at v1, users on it through the Gateway
    app, kubeconfig = install(bed, raw, namespace, router)
    spec = release_spec(app, strategy, version="v2")

    # When v2 is released while users keep asking
    with load_on(bed, app, rps=RPS) as load:
        started = load.mark()
        outcome = run(spec, bed, kubeconfig, tmp_path)
        time.sleep(AFTER_S)
    timeline = events(tmp_path, outcome.release_id)
    story = describe(load, timeline, started)

    # Then it is promoted, and each step's share of users was the step's weight
    assert outcome.phase is Phase.PROMOTED, f"{outcome.reason}\n{story}"
    spans = [s for s in traffic_spans(timeline) if s.step != "promote"]
    assert [s.weight for s in spans] == weights, story
    first = load.between(started, spans[0].began)
    assert set(first.by_version) == {"v1"}, f"before the first traffic step: {first}\n{story}"
    for span in spans:
        ok, why = share_ok(load.between(*span.settled()), "v2", span.weight / 100)
        assert ok, f"{span.step} at {span.weight}%: {why}\n{story}"

    # and users end on v2, with no request lost on the way
    last = load.between(at(timeline, "promote", "is now stable") + SETTLE_S)
    assert set(last.by_version) == {"v2"} and last.sent > 0, f"after promotion: {last}\n{story}"
    everything = load.between(started)
    assert everything.failures == 0 and set(everything.by_code) == {200}, f"{everything}\n{story}"
    assert snapshot(raw, namespace) == promoted(app.before, spec.release_id)


@pytest.mark.parametrize(("router", "strategy", "weights"), CASES)
def test_a_bad_release_is_rolled_back_and_users_see_only_stable_again(
    bed: ClusterBed,
    raw: Raw,
    namespace: str,
    tmp_path: Path,
    router: str,
    strategy: str,
    weights: list[int],
) -> None:
    # Given the demo app at v1
    app, kubeconfig = install(bed, raw, namespace, router)
    spec = release_spec(app, strategy, version="v2", image="demo:v2-bad")

    # When v2, which fails 8% of its requests, is released while users keep asking
    with load_on(bed, app, rps=RPS) as load:
        started = load.mark()
        outcome = run(spec, bed, kubeconfig, tmp_path)
        ended = load.mark()
        time.sleep(AFTER_S)
    timeline = events(tmp_path, outcome.release_id)
    story = describe(load, timeline, started)

    # Then the abort gate rolls it back once it had its first share of users
    assert outcome.phase is Phase.ROLLED_BACK, f"{outcome.reason}\n{story}"
    assert outcome.reason.startswith("abort: error ratio"), f"{outcome.reason}\n{story}"
    first = traffic_spans(timeline)[0]
    assert first.weight == weights[0], story
    during = load.between(first.began, at(timeline, "rollback"))
    assert during.by_version["v2"] > 0, f"the candidate had users: {during}\n{story}"

    # and afterwards users see only stable, and every object is as it was
    after = load.between(ended)
    assert after.by_version == {"v1": after.sent} and after.sent > 0, f"{after}\n{story}"
    assert snapshot(raw, namespace) == app.before
