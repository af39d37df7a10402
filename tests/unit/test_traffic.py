"""Routers declare what they can carry out; a plan asking for more is refused up front."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gatekeeper.cli.main import app
from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.release import parse_release
from gatekeeper.domain.traffic import RouterAbility, WeightRule
from gatekeeper.engine.runner import validate
from gatekeeper.targets.routers.factory import ability_for


def _spec(strategy: Mapping[str, object], router: str | None = None, replicas: int = 3):
    target: dict[str, object] = {"type": "local"}
    if router is not None:
        target = {"type": "kubernetes", "router": router, "replicas": replicas}
    return {
        "app": "shop",
        "environment": "production",
        "version": "v2",
        "image": "registry.example/shop:v2",
        "command": "svc --port {port}",
        "stable": {
            "version": "v1",
            "image": "registry.example/shop:v1",
            "command": "svc --port {port}",
        },
        "strategy": strategy,
        "target": target,
    }


CANARY_5 = {"type": "canary", "steps": [5, 25, 50, 100]}
BLUE_GREEN = {"type": "blue-green"}
ROLLING = {"type": "rolling", "batches": [25, 50, 75, 100]}


@pytest.mark.parametrize(
    ("strategy", "router", "replicas", "refusal"),
    [
        pytest.param(CANARY_5, None, 3, None, id="local-router-any-percent"),
        pytest.param(CANARY_5, "gateway-api", 3, None, id="gateway-api-any-percent"),
        pytest.param(
            CANARY_5,
            "service-selector",
            3,
            "strategy canary: step shift-5 sends 5% of traffic to the candidate, but router "
            "'service-selector' can carry out only 0% or 100% (it flips a Service selector)",
            id="canary-5-on-selector-refused",
        ),
        pytest.param(BLUE_GREEN, "service-selector", 3, None, id="blue-green-on-selector"),
        pytest.param(ROLLING, "replica-ratio", 4, None, id="quarters-on-4-replicas"),
        pytest.param(
            ROLLING,
            "replica-ratio",
            3,
            "strategy rolling: step batch-25 sends 25% of traffic to the candidate, but router "
            "'replica-ratio' can carry out only whole replicas of 3 (steps of 1/3): 0%, 33%, "
            "67%, 100%",
            id="quarters-on-3-replicas-refused",
        ),
    ],
)
def test_plan_is_checked_against_the_router(
    strategy: Mapping[str, object], router: str | None, replicas: int, refusal: str | None
) -> None:
    spec = parse_release(_spec(strategy, router, replicas))
    if refusal is None:
        validate(spec)
        return
    with pytest.raises(InvalidInput) as refused:
        validate(spec)
    assert str(refused.value) == refusal


def test_gatekeeper_plan_refuses_a_plan_the_router_cannot_carry_out(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(_spec(CANARY_5, "service-selector")))
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "step shift-5 sends 5% of traffic" in text and "'service-selector'" in text


def test_the_router_of_a_spec_says_what_it_can_do() -> None:
    spec = parse_release(_spec(ROLLING, "replica-ratio", 5))
    assert ability_for(spec) == RouterAbility("replica-ratio", WeightRule.REPLICA_STEPS, 5)
    assert ability_for(parse_release(_spec(BLUE_GREEN))).rule is WeightRule.ANY


@pytest.mark.parametrize(
    ("replicas", "carried", "refused"),
    [(3, [0, 33, 67, 100], [34, 50, 66]), (4, [25, 50, 75], [10, 33]), (1, [0, 100], [50])],
)
def test_replica_steps(replicas: int, carried: list[int], refused: list[int]) -> None:
    ability = RouterAbility("replica-ratio", WeightRule.REPLICA_STEPS, replicas)
    assert all(ability.carries(w) for w in carried)
    assert not any(ability.carries(w) for w in refused)
