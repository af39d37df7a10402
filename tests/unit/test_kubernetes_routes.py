"""The Kubernetes routers' pure parts: the HTTPRoute's weighted backendRefs and the Istio
VirtualService and DestinationRule subsets, each taken back to exactly what the user wrote."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gatekeeper.domain.release import parse_release
from gatekeeper.targets.kubernetes import marks
from gatekeeper.targets.kubernetes.settings import Settings
from gatekeeper.targets.routers import gateway_api, istio

Obj = dict[str, Any]


def settings(router: str = "gateway-api") -> Settings:
    return Settings.of(
        parse_release(
            {
                "app": "shop",
                "version": "v2",
                "image": "reg/shop:v2",
                "stable": {"version": "v1", "image": "reg/shop:v1"},
                "strategy": {"type": "canary"},
                "target": {"type": "kubernetes", "namespace": "team", "router": router},
            }
        )
    )


def route(stable_ref: Obj) -> Obj:
    return {
        "metadata": {"name": "shop", "namespace": "team", "annotations": {"owner": "web"}},
        "spec": {
            "hostnames": ["shop.example"],
            "rules": [
                {"backendRefs": [{"name": "cdn", "port": 80}]},
                {
                    "filters": [{"type": "RequestHeaderModifier"}],
                    "backendRefs": [stable_ref],
                },
            ],
        },
    }


@pytest.mark.parametrize(
    "stable_ref",
    [
        pytest.param({"name": "shop", "port": 80}, id="no-weight"),
        pytest.param(
            {"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1},
            id="defaulted-by-the-server",
        ),
    ],
)
def test_route_weights_move_then_the_route_comes_back_as_written(stable_ref: Obj) -> None:
    s = settings()
    original = route(stable_ref)

    weighted = gateway_api.weighted_route(original, s, 10)
    refs = weighted["spec"]["rules"][1]["backendRefs"]
    assert refs == [
        {**stable_ref, "weight": 90},
        {**stable_ref, "name": "shop-candidate", "weight": 10},
    ]
    assert weighted["spec"]["rules"][0] == original["spec"]["rules"][0]
    assert gateway_api.route_weight(weighted, s) == 10
    assert gateway_api.managed_rules(weighted, s) == [1]

    moved = gateway_api.weighted_route(weighted, s, 100)
    assert [r["weight"] for r in moved["spec"]["rules"][1]["backendRefs"]] == [0, 100]
    assert gateway_api.route_weight(moved, s) == 100
    assert marks.original(moved) == marks.original(weighted)

    assert gateway_api.restored_route(moved, s) == original
    assert gateway_api.weighted_route(moved, s, 0) == original
    assert gateway_api.route_weight(original, s) == 0


@pytest.mark.parametrize(
    ("ref", "refers"),
    [
        ({"name": "shop"}, True),
        ({"name": "shop", "namespace": "team", "kind": "Service", "group": ""}, True),
        ({"name": "shop", "namespace": "other"}, False),
        ({"name": "shop", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}, False),
        ({"name": "shop-api"}, False),
    ],
)
def test_a_backend_ref_refers_to_the_stable_service_by_kind_name_and_namespace(
    ref: Obj, refers: bool
) -> None:
    assert gateway_api.refers(ref, "shop", "team") is refers


def virtual_service() -> Obj:
    return {
        "metadata": {"name": "shop", "namespace": "team"},
        "spec": {
            "http": [
                {"route": [{"destination": {"host": "reviews"}}]},
                {
                    "timeout": "5s",
                    "route": [
                        {
                            "destination": {
                                "host": "shop.team.svc.cluster.local",
                                "port": {"number": 80},
                            }
                        }
                    ],
                },
            ]
        },
    }


def test_virtual_service_splits_over_subsets_then_comes_back_as_written() -> None:
    s = settings("istio")
    original = virtual_service()
    split = istio.weighted_vs(original, s, 25)
    host = {"host": "shop.team.svc.cluster.local", "port": {"number": 80}}
    assert split["spec"]["http"][1]["route"] == [
        {"destination": {**host, "subset": "stable"}, "weight": 75},
        {"destination": {**host, "subset": "candidate"}, "weight": 25},
    ]
    assert split["spec"]["http"][0] == original["spec"]["http"][0]
    assert istio.vs_weight(split, s) == 25
    assert istio.vs_weight(istio.weighted_vs(split, s, 60), s) == 60
    assert istio.restored_vs(istio.weighted_vs(split, s, 60), s) == original


def test_destination_rule_subsets_come_back_with_the_stable_subset_on_the_new_version() -> None:
    s = settings("istio")
    original: Obj = {
        "metadata": {"name": "shop", "namespace": "team"},
        "spec": {
            "host": "shop",
            "subsets": [
                {"name": "stable", "labels": {"version": "v1"}, "trafficPolicy": {"x": 1}},
                {"name": "legacy", "labels": {"version": "v0"}},
            ],
        },
    }
    with_subsets = istio.subsets_dr(original, s, {"version": "v1"})
    assert with_subsets["spec"]["subsets"] == [
        {"name": "stable", "labels": {"version": "v1"}, "trafficPolicy": {"x": 1}},
        {"name": "legacy", "labels": {"version": "v0"}},
        {"name": "candidate", "labels": {"version": "v2"}},
    ]
    assert istio.restored_dr(with_subsets, s, "v1") == original
    promoted = copy.deepcopy(original)
    promoted["spec"]["subsets"][0]["labels"]["version"] = "v2"
    assert (
        istio.restored_dr(istio.subsets_dr(with_subsets, s, {"version": "v2"}), s, "v2") == promoted
    )
