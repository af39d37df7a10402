"""The Kubernetes target's pure parts: the candidate Deployment derived from the user's, the marks
a release leaves on an object and takes back, merge patches, sizes, and the P0 signals."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatekeeper.domain.release import parse_release
from gatekeeper.targets.kubernetes import derive, marks, pods
from gatekeeper.targets.kubernetes.merge import merge_patch, object_patch
from gatekeeper.targets.kubernetes.settings import Settings

Obj = dict[str, Any]


def settings(**target: Any) -> Settings:
    return Settings.of(
        parse_release(
            {
                "app": "shop",
                "version": "v2",
                "image": "reg/shop:v2",
                "stable": {"version": "v1", "image": "reg/shop:v1"},
                "strategy": {"type": "canary"},
                "target": {"type": "kubernetes", "namespace": "team", **target},
            }
        )
    )


def stable(**changes: Any) -> Obj:
    d: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop",
            "namespace": "team",
            "uid": "u-1",
            "resourceVersion": "7",
            "labels": {"app": "shop", "app.kubernetes.io/instance": "shop-argocd"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
        },
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop", "version": "v1"}},
                "spec": {
                    "containers": [
                        {"name": "shop", "image": "reg/shop:v1", "ports": [{"containerPort": 80}]},
                        {"name": "proxy", "image": "reg/proxy:1"},
                    ]
                },
            },
        },
        "status": {"readyReplicas": 4},
    }
    for path, value in changes.items():
        node = d
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return d


def test_the_candidate_is_stable_with_its_image_version_and_role_and_nothing_else() -> None:
    s = settings()
    candidate = derive.candidate_from(stable(), s, 2, "v2", "reg/shop:v2")

    assert candidate["metadata"] == {
        "name": "shop-candidate",
        "namespace": "team",
        "labels": {
            "gatekeeper.dev/role": "candidate",
            "app.kubernetes.io/managed-by": "gatekeeper",
        },
        "annotations": {"gatekeeper.dev/release-id": "shop-production-v2"},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop", "uid": "u-1"}
        ],
    }
    expected = copy.deepcopy(stable()["spec"])
    expected["replicas"] = 2
    expected["selector"]["matchLabels"]["gatekeeper.dev/role"] = "candidate"
    expected["template"]["metadata"] = {
        "labels": {"app": "shop", "version": "v2", "gatekeeper.dev/role": "candidate"},
        "annotations": {"gatekeeper.dev/release-id": "shop-production-v2"},
    }
    expected["template"]["spec"]["containers"][0]["image"] = "reg/shop:v2"
    assert candidate["spec"] == expected
    assert "status" not in candidate


def test_the_named_container_takes_the_image() -> None:
    s = settings(container="proxy")
    candidate = derive.candidate_from(stable(), s, 1, "v2", "reg/proxy:2")
    images = [c["image"] for c in candidate["spec"]["template"]["spec"]["containers"]]
    assert images == ["reg/shop:v1", "reg/proxy:2"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param({}, None, id="fit"),
        pytest.param(
            {"spec.selector": {"matchLabels": {"app": "shop", "version": "v1"}}},
            "its selector uses the label 'version'",
            id="version-in-selector",
        ),
        pytest.param(
            {"spec.template.metadata": {"labels": {"app": "shop"}}},
            "its pod template has no 'version' label",
            id="no-version-label",
        ),
        pytest.param(
            {"spec.template.metadata": {"labels": {"app": "shop", "version": "v0"}}},
            "runs version v0 (label 'version'), but the release says stable is v1",
            id="another-version",
        ),
        pytest.param(
            {"spec.template.spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
            "2 containers and none named 'shop' (containers: a, b); set target.container",
            id="which-container",
        ),
    ],
)
def test_a_stable_deployment_unfit_for_release_is_named_with_the_reason(
    changes: dict[str, Any], problem: str | None
) -> None:
    found = derive.stable_problems(stable(**changes), settings())
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]
        assert found[0].startswith("Deployment team/shop")


@pytest.mark.parametrize(
    ("full", "percent", "replicas"),
    [(3, 0, 0), (3, 33, 1), (3, 67, 2), (3, 100, 3), (4, 25, 1), (4, 50, 2), (3, 5, 1), (10, 5, 1)],
)
def test_replicas_for_a_share_round_half_up_with_at_least_one(
    full: int, percent: int, replicas: int
) -> None:
    assert derive.replicas_for(full, percent) == replicas


def test_scaling_stable_records_its_size_once_and_restoring_gives_back_the_object() -> None:
    s = settings()
    original = stable()
    original["metadata"]["annotations"]["gatekeeper.dev/release-id"] = "shop-production-v1"

    scaled = derive.stable_scaled(original, s, 2)
    scaled_again = derive.stable_scaled(scaled, s, 1)
    assert scaled_again["spec"]["replicas"] == 1
    assert derive.full_size(scaled_again) == 4
    assert marks.original(scaled_again) == marks.original(scaled)
    assert scaled_again["metadata"]["annotations"]["gatekeeper.dev/release-id"] == (
        "shop-production-v2"
    )

    promoted = derive.stable_promoted(scaled_again, s)
    assert promoted["spec"]["replicas"] == 4
    assert promoted["spec"]["template"]["metadata"]["labels"]["version"] == "v2"
    assert promoted["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/shop:v2"

    assert derive.stable_restored(promoted, s) == original
    settled = derive.stable_settled(promoted, s)
    assert "gatekeeper.dev/original" not in settled["metadata"]["annotations"]
    assert settled["metadata"]["annotations"]["gatekeeper.dev/release-id"] == "shop-production-v2"


def test_an_unmarked_object_restores_to_itself() -> None:
    assert derive.stable_restored(stable(), settings()) == stable()


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, None),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1, "y": 3}}, {"a": {"y": 3}}),
        ({"l": [1, 2]}, {"l": [2]}, {"l": [2]}),
        ({}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ],
)
def test_merge_patch_writes_only_the_difference(old: Obj, new: Obj, patch: Obj | None) -> None:
    assert merge_patch(old, new) == patch


def test_object_patch_leaves_out_status_and_the_servers_metadata() -> None:
    old = stable()
    new = copy.deepcopy(old)
    new["status"] = {"readyReplicas": 0}
    new["metadata"]["resourceVersion"] = "8"
    assert object_patch(old, new) is None
    new["spec"]["replicas"] = 1
    assert object_patch(old, new) == {"spec": {"replicas": 1}}


# -- P0 signals -------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _t(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    *,
    created: float = 10,
    ready: bool = True,
    since: float = 10,
    restarts: int = 0,
    waiting: str | None = None,
    finished: float | None = None,
    deleting: bool = False,
) -> Obj:
    state: Obj = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    status: Obj = {
        "name": "shop",
        "restartCount": restarts,
        "state": state,
        "lastState": {"terminated": {"exitCode": 2, "finishedAt": _t(finished)}}
        if finished is not None
        else {},
    }
    meta: Obj = {"name": name, "creationTimestamp": _t(created)}
    if deleting:
        meta["deletionTimestamp"] = _t(50)
    return {
        "metadata": meta,
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": str(ready), "lastTransitionTime": _t(since)}
            ],
            "containerStatuses": [status],
        },
    }


@pytest.mark.parametrize(
    ("p", "problems"),
    [
        pytest.param(pod("a"), [], id="healthy"),
        pytest.param(
            pod("a", ready=False, restarts=2, waiting="CrashLoopBackOff", finished=40),
            [
                "pod a: container shop CrashLoopBackOff, restarts 2, last exit code 2",
                "pod a: 2 restarts since the candidate was deployed (max_restarts 0)",
            ],
            id="crash-loop",
        ),
        pytest.param(
            pod("a", created=-100, restarts=7, finished=-50),
            [],
            id="old-pod-restarts-before-the-release-do-not-count",
        ),
        pytest.param(
            pod("a", created=-100, restarts=8, finished=30),
            ["pod a: 1 restart since the candidate was deployed (max_restarts 0)"],
            id="old-pod-restarted-since",
        ),
        pytest.param(pod("a", ready=False, since=50), [], id="not-ready-within-grace"),
        pytest.param(
            pod("a", ready=False, since=10),
            ["pod a: Running, Ready=False; not ready for 50s (not_ready_grace 30s)"],
            id="not-ready-past-grace",
        ),
        pytest.param(pod("a", ready=False, since=0, deleting=True), [], id="terminating"),
    ],
)
def test_p0_problems_name_the_pod_and_the_value(p: Obj, problems: list[str]) -> None:
    found = pods.problems([p], since=T0, now=T0 + timedelta(seconds=60), grace_s=30, max_restarts=0)
    assert found == problems


def test_rollout_is_done_once_the_controller_saw_it_and_every_replica_is_available() -> None:
    d = stable()
    d["metadata"]["generation"] = 2
    d["status"] = {
        "observedGeneration": 2,
        "replicas": 4,
        "updatedReplicas": 4,
        "availableReplicas": 4,
    }
    assert pods.rollout_done(d)
    assert not pods.rollout_done({**d, "status": {**d["status"], "observedGeneration": 1}})
    assert not pods.rollout_done({**d, "status": {**d["status"], "replicas": 5}})
    assert not pods.rollout_done({**d, "status": {**d["status"], "availableReplicas": 3}})
