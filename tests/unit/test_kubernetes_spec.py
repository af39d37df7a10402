"""The Kubernetes target's spec fields: defaults, and refusals that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import KubernetesTarget, parse_release
from gatekeeper.engine.specs import resolve_gates
from gatekeeper.targets.kubernetes.settings import Settings


def spec(strategy: str = "canary", **target: Any) -> dict[str, Any]:
    return {
        "app": "shop",
        "version": "v2",
        "image": "reg/shop:v2",
        "stable": {"version": "v1", "image": "reg/shop:v1"},
        "strategy": {"type": strategy},
        "target": {"type": "kubernetes", **target},
    }


def test_defaults_name_every_object_after_the_app() -> None:
    s = Settings.of(parse_release(spec()))
    assert (s.deployment, s.candidate, s.service, s.candidate_service, s.preview_service) == (
        "shop",
        "shop-candidate",
        "shop",
        "shop-candidate",
        "shop-preview",
    )
    assert (s.route, s.virtual_service, s.destination_rule) == ("shop", "shop", "shop")
    assert (s.namespace, s.router, s.version_label, s.replicas) == (
        "default",
        "gateway-api",
        "version",
        None,
    )
    assert (s.progress_deadline_s, s.not_ready_grace_s, s.max_restarts) == (600.0, 60.0, 0)


def test_durations_and_names_as_people_write_them() -> None:
    target = parse_release(
        spec(deployment="web", service="web-svc", progress_deadline="2m", router="istio")
    ).target
    assert isinstance(target, KubernetesTarget)
    assert (target.progress_deadline, target.router) == (120.0, "istio")
    assert Settings.of(parse_release(spec(deployment="web"))).candidate == "web-candidate"


@pytest.mark.parametrize(
    ("strategy", "target", "refusal"),
    [
        (
            "canary",
            {"router": "replica-ratio", "replicas": 3},
            "only the rolling strategy can use it",
        ),
        ("rolling", {"router": "replica-ratio"}, "target.replicas: the replica-ratio router"),
        ("canary", {"router": "nginx"}, "'gateway-api', 'service-selector', 'replica-ratio'"),
        ("canary", {"deployment": "x" * 54}, "at most 53 characters"),
        ("canary", {"version_label": "app version"}, "is not a label key"),
        ("canary", {"progress_deadline": 0}, "progress_deadline must be above 0"),
    ],
)
def test_refusals_name_the_field(strategy: str, target: dict[str, Any], refusal: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_release(spec(strategy, **target))
    assert refusal in str(refused.value)


def test_replica_ratio_runs_rolling_with_the_replica_count() -> None:
    target = parse_release(spec("rolling", router="replica-ratio", replicas=4)).target
    assert isinstance(target, KubernetesTarget) and target.replicas == 4


def _gateway_spec(**target: object) -> dict[str, object]:
    return {
        "app": "shop",
        "environment": "prod",
        "version": "v2",
        "image": "registry.example/shop:v2",
        "stable": {"version": "v1", "image": "registry.example/shop:v1"},
        "strategy": {"type": "canary", "steps": [50, 100], "analysis": "2m"},
        "target": {"type": "kubernetes", "namespace": "prod", **target},
    }


def test_gateway_metrics_add_an_abort_guard_on_the_candidates_backend() -> None:
    spec = parse_release(_gateway_spec(gateway_metrics="traefik", service="web"))
    gates = resolve_gates(spec)
    gate = gates.gates[-1]
    assert (gate.name, gate.guard, gate.threshold) == ("gateway", True, 0.05)
    assert gate.query is not None
    assert 'router=~"httproute-prod-shop-gw-.+@kubernetesgateway"' in gate.query
    assert 'service=~"prod-web-http-[0-9]+@kubernetesgateway"' in gate.query
    assert [g.name for g in resolve_gates(parse_release(_gateway_spec())).gates][-1] != "gateway"


def test_gateway_metrics_of_an_unknown_gateway_or_another_router_are_refused() -> None:
    with pytest.raises(
        InvalidInput, match="gateway_metrics 'envoy' is not known; allowed: traefik"
    ):
        resolve_gates(parse_release(_gateway_spec(gateway_metrics="envoy")))
    with pytest.raises(InvalidInput, match="only on the gateway-api router"):
        parse_release(
            {
                **_gateway_spec(gateway_metrics="traefik", router="service-selector"),
                "strategy": {"type": "blue-green", "bake": "1m"},
            }
        )
