"""Tests for the strategies: plan shapes, expedited variants, approvals, time scale, rendering."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import (
    Analyze,
    DeployCandidate,
    Plan,
    Promote,
    ScaleBatch,
    ShiftTraffic,
    SmokeCheck,
    Verify,
    WaitForApproval,
)
from gatekeeper.domain.release import ReleaseSpec, parse_release
from strategies.base import Strategy
from strategies.blue_green import BlueGreen
from strategies.canary import Canary
from strategies.expedite import compress_duration
from strategies.registry import STRATEGIES, plan_for, strategy_for
from strategies.render import plan_json, plan_rows
from strategies.rolling import Rolling


def spec(strategy: dict[str, Any], **extra: Any) -> ReleaseSpec:
    data: dict[str, Any] = {
        "app": "shop",
        "version": "2.0.0",
        "command": "serve --port {port}",
        "stable": {"version": "1.0.0", "command": "serve --port {port}"},
        "strategy": strategy,
    }
    data.update(extra)
    return parse_release(data)


def expedited(strategy: dict[str, Any], **extra: Any) -> ReleaseSpec:
    return spec(strategy, expedited=True, expedited_reason="hotfix for checkout", **extra)


def shape(plan: Plan) -> list[tuple[str, str]]:
    return [(s.name, s.kind) for s in plan.steps]


def durations(plan: Plan) -> list[float]:
    out: list[float] = []
    for s in plan.steps:
        if isinstance(s, Analyze):
            out.append(s.duration)
        elif isinstance(s, Promote):
            out.append(s.scale_down_delay)
    return out


CANARY_DEFAULT = [
    ("deploy", "deploy"),
    ("verify", "verify"),
    ("shift-5", "shift"),
    ("analyze-5", "analyze"),
    ("shift-25", "shift"),
    ("analyze-25", "analyze"),
    ("shift-50", "shift"),
    ("analyze-50", "analyze"),
    ("shift-100", "shift"),
    ("analyze-100", "analyze"),
    ("promote", "promote"),
]
BLUE_GREEN_DEFAULT = [
    ("deploy", "deploy"),
    ("verify", "verify"),
    ("shift-100", "shift"),
    ("bake", "analyze"),
    ("promote", "promote"),
]
ROLLING_DEFAULT = [
    ("deploy", "deploy"),
    ("batch-10", "batch"),
    ("analyze-batch-10", "analyze"),
    ("batch-25", "batch"),
    ("analyze-batch-25", "analyze"),
    ("batch-50", "batch"),
    ("analyze-batch-50", "analyze"),
    ("batch-100", "batch"),
    ("analyze-batch-100", "analyze"),
    ("promote", "promote"),
]
APPROVE_FIRST = [("approve-expedited", "approval")]


# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        pytest.param({"type": "canary"}, CANARY_DEFAULT, id="canary-default"),
        pytest.param({"type": "blue-green"}, BLUE_GREEN_DEFAULT, id="blue-green-default"),
        pytest.param({"type": "rolling"}, ROLLING_DEFAULT, id="rolling-default"),
        pytest.param(
            {"type": "canary", "steps": [10, 100]},
            [
                ("deploy", "deploy"),
                ("verify", "verify"),
                ("shift-10", "shift"),
                ("analyze-10", "analyze"),
                ("shift-100", "shift"),
                ("analyze-100", "analyze"),
                ("promote", "promote"),
            ],
            id="canary-custom-weights",
        ),
        pytest.param(
            {"type": "canary", "steps": [100]},
            [
                ("deploy", "deploy"),
                ("verify", "verify"),
                ("shift-100", "shift"),
                ("analyze-100", "analyze"),
                ("promote", "promote"),
            ],
            id="canary-single-weight",
        ),
        pytest.param(
            {"type": "rolling", "batches": [33, 66, 100]},
            [
                ("deploy", "deploy"),
                ("batch-33", "batch"),
                ("analyze-batch-33", "analyze"),
                ("batch-66", "batch"),
                ("analyze-batch-66", "analyze"),
                ("batch-100", "batch"),
                ("analyze-batch-100", "analyze"),
                ("promote", "promote"),
            ],
            id="rolling-custom-batches",
        ),
        pytest.param(
            {"type": "canary"},
            APPROVE_FIRST
            + CANARY_DEFAULT[:2]
            + [
                ("shift-25", "shift"),
                ("analyze-25", "analyze"),
                ("shift-100", "shift"),
                ("analyze-100", "analyze"),
                ("promote", "promote"),
            ],
            id="canary-expedited",
        ),
        pytest.param(
            {"type": "blue-green"}, APPROVE_FIRST + BLUE_GREEN_DEFAULT, id="blue-green-expedited"
        ),
        pytest.param(
            {"type": "rolling"},
            APPROVE_FIRST
            + [
                ("deploy", "deploy"),
                ("batch-50", "batch"),
                ("analyze-batch-50", "analyze"),
                ("batch-100", "batch"),
                ("analyze-batch-100", "analyze"),
                ("promote", "promote"),
            ],
            id="rolling-expedited",
        ),
        pytest.param(
            {"type": "canary", "steps": [50, 100]},
            APPROVE_FIRST
            + CANARY_DEFAULT[:2]
            + [
                ("shift-50", "shift"),
                ("analyze-50", "analyze"),
                ("shift-100", "shift"),
                ("analyze-100", "analyze"),
                ("promote", "promote"),
            ],
            id="canary-expedited-short-ladder-kept",
        ),
        pytest.param(
            {"type": "rolling", "batches": [100]},
            APPROVE_FIRST
            + [
                ("deploy", "deploy"),
                ("batch-100", "batch"),
                ("analyze-batch-100", "analyze"),
                ("promote", "promote"),
            ],
            id="rolling-expedited-short-ladder-kept",
        ),
    ],
)
def test_plan_shape(strategy: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    is_expedited = expected[:1] == APPROVE_FIRST
    s = expedited(strategy) if is_expedited else spec(strategy)
    plan = plan_for(s)
    assert shape(plan) == expected
    assert plan.strategy == strategy["type"]
    assert plan.expedited is is_expedited
    assert plan.release == "shop-production-2.0.0"
    assert [(r.name, r.kind) for r in plan.rollback] == [("rollback", "rollback")]


@pytest.mark.parametrize("kind", ["canary", "blue-green", "rolling"])
@pytest.mark.parametrize("is_expedited", [False, True])
@pytest.mark.parametrize("approvals", [(), ("deploy", "promote")])
def test_step_names_are_unique(kind: str, is_expedited: bool, approvals: tuple[str, ...]) -> None:
    make = expedited if is_expedited else spec
    plan = plan_for(make({"type": kind}, approvals=list(approvals)))
    names = [s.name for s in plan.steps] + [s.name for s in plan.rollback]
    assert len(names) == len(set(names))


def test_plans_are_stable() -> None:
    s = spec({"type": "canary"}, approvals=["shift-50"])
    assert plan_for(s) == plan_for(s)


# --- step contents --------------------------------------------------------------------------


def test_canary_defaults() -> None:
    plan = plan_for(spec({"type": "canary"}))
    assert plan.steps[0] == DeployCandidate(name="deploy", scale_percent=100)
    assert plan.steps[1] == Verify(name="verify", checks=(SmokeCheck(path="/", expect_status=200),))
    shifts = [s.weight for s in plan.steps if isinstance(s, ShiftTraffic)]
    assert shifts == [5, 25, 50, 100]
    assert all(s.duration == 600.0 for s in plan.steps if isinstance(s, Analyze))
    assert plan.steps[-1] == Promote(name="promote", scale_down_delay=0.0)


def test_canary_custom_weights_and_analysis() -> None:
    plan = plan_for(spec({"type": "canary", "steps": [1, 10, 100], "analysis": "2m"}))
    assert [s.weight for s in plan.steps if isinstance(s, ShiftTraffic)] == [1, 10, 100]
    assert [s.duration for s in plan.steps if isinstance(s, Analyze)] == [120.0] * 3


def test_blue_green_defaults() -> None:
    plan = plan_for(spec({"type": "blue-green"}))
    assert plan.steps == (
        DeployCandidate(name="deploy", scale_percent=100),
        Verify(name="verify", checks=(SmokeCheck(path="/", expect_status=200),)),
        ShiftTraffic(name="shift-100", weight=100),
        Analyze(name="bake", duration=1800.0),
        Promote(name="promote", scale_down_delay=600.0),
    )


def test_blue_green_smoke_checks_from_spec() -> None:
    plan = plan_for(
        spec(
            {
                "type": "blue-green",
                "smoke": [{"path": "/healthz"}, {"path": "/missing", "expect_status": 404}],
            }
        )
    )
    verify = plan.steps[plan.index_of("verify")]
    assert isinstance(verify, Verify)
    assert [(c.path, c.expect_status) for c in verify.checks] == [
        ("/healthz", 200),
        ("/missing", 404),
    ]


@pytest.mark.parametrize("is_expedited", [False, True])
def test_blue_green_stable_stays_full_size_until_promote(is_expedited: bool) -> None:
    make = expedited if is_expedited else spec
    plan = plan_for(make({"type": "blue-green"}, approvals=["promote", "bake"]))
    before_promote = plan.steps[: plan.index_of("promote")]
    # Only a rolling batch scales stable down; the candidate is deployed at full size.
    assert not any(isinstance(s, ScaleBatch) for s in before_promote)
    deploys = [s for s in before_promote if isinstance(s, DeployCandidate)]
    assert [d.scale_percent for d in deploys] == [100]
    # Traffic moves once, all at once, after the smoke checks: a rollback is a flip back.
    shifts = [(plan.index_of(s.name), s.weight) for s in plan.steps if isinstance(s, ShiftTraffic)]
    assert shifts == [(plan.index_of("shift-100"), 100)]
    assert plan.index_of("verify") < plan.index_of("shift-100") < plan.index_of("bake")


def test_rolling_defaults() -> None:
    plan = plan_for(spec({"type": "rolling"}))
    assert plan.steps[0] == DeployCandidate(name="deploy", scale_percent=0)
    assert [s.percent for s in plan.steps if isinstance(s, ScaleBatch)] == [10, 25, 50, 100]
    assert all(s.duration == 300.0 for s in plan.steps if isinstance(s, Analyze))
    # Every batch is followed by its analysis, the last one (before promote) too.
    for s in plan.steps:
        if isinstance(s, ScaleBatch):
            nxt = plan.steps[plan.index_of(s.name) + 1]
            assert nxt == Analyze(name=f"analyze-batch-{s.percent}", duration=300.0)
    assert plan.steps[-1] == Promote(name="promote", scale_down_delay=0.0)


# --- expedited ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["canary", "blue-green", "rolling"])
def test_expedited_opens_with_lead_or_cto_approval(kind: str) -> None:
    plan = plan_for(expedited({"type": kind}))
    assert plan.expedited
    assert plan.steps[0] == WaitForApproval(
        name="approve-expedited", roles=("engineering-lead", "cto")
    )
    assert sum(isinstance(s, WaitForApproval) for s in plan.steps) == 1


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "canary"},
        {"type": "canary", "steps": [1, 2, 3, 100]},
        {"type": "blue-green"},
        {"type": "rolling"},
        {"type": "rolling", "batches": [20, 40, 60, 80, 100]},
    ],
)
def test_expedited_has_no_more_work_steps_and_shorter_waits(strategy: dict[str, Any]) -> None:
    plain = plan_for(spec(strategy))
    fast = plan_for(expedited(strategy))
    work = [s for s in fast.steps if not isinstance(s, WaitForApproval)]
    assert len(work) <= len(plain.steps)
    if strategy["type"] != "blue-green":
        assert len(work) < len(plain.steps)
    plain_analyses = [s.duration for s in plain.steps if isinstance(s, Analyze)]
    fast_analyses = [s.duration for s in fast.steps if isinstance(s, Analyze)]
    assert max(fast_analyses) < min(plain_analyses)
    assert sum(fast_analyses) < sum(plain_analyses)


@pytest.mark.parametrize(
    ("strategy", "name", "expected"),
    [
        pytest.param({"type": "canary"}, "analyze-25", 150.0, id="canary-10m-to-2m30s"),
        pytest.param({"type": "rolling"}, "analyze-batch-50", 75.0, id="rolling-5m-to-1m15s"),
        pytest.param({"type": "blue-green"}, "bake", 450.0, id="bake-30m-to-7m30s"),
        pytest.param(
            {"type": "canary", "analysis": "2m"}, "analyze-25", 60.0, id="floor-one-minute"
        ),
        pytest.param(
            {"type": "rolling", "analysis": "30s"},
            "analyze-batch-50",
            30.0,
            id="below-floor-kept",
        ),
    ],
)
def test_expedited_analysis_lengths(strategy: dict[str, Any], name: str, expected: float) -> None:
    plan = plan_for(expedited(strategy))
    step = plan.steps[plan.index_of(name)]
    assert isinstance(step, Analyze)
    assert step.duration == expected


def test_expedited_keeps_scale_down_delay() -> None:
    plan = plan_for(expedited({"type": "blue-green", "scale_down_delay": "20m"}))
    assert plan.steps[-1] == Promote(name="promote", scale_down_delay=1200.0)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (3600.0, 900.0),
        (600.0, 150.0),
        (240.0, 60.0),
        (120.0, 60.0),
        (60.0, 60.0),
        (45.0, 45.0),
        (0.0, 0.0),
    ],
)
def test_compress_duration(seconds: float, expected: float) -> None:
    assert compress_duration(seconds) == expected


def test_expedited_then_time_scale() -> None:
    plan = plan_for(expedited({"type": "canary"}, time_scale=10))
    assert [s.duration for s in plan.steps if isinstance(s, Analyze)] == [15.0, 15.0]


# --- approvals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "approvals", "expected_names"),
    [
        pytest.param(
            {"type": "blue-green"},
            ["promote"],
            ["deploy", "verify", "shift-100", "bake", "approve-promote", "promote"],
            id="before-promote",
        ),
        pytest.param(
            {"type": "blue-green"},
            ["deploy", "shift-100"],
            [
                "approve-deploy",
                "deploy",
                "verify",
                "approve-shift-100",
                "shift-100",
                "bake",
                "promote",
            ],
            id="before-first-and-middle",
        ),
        pytest.param(
            {"type": "blue-green"},
            ["promote", "promote"],
            ["deploy", "verify", "shift-100", "bake", "approve-promote", "promote"],
            id="named-twice-once",
        ),
        pytest.param(
            {"type": "canary", "steps": [50, 100]},
            ["shift-100"],
            [
                "deploy",
                "verify",
                "shift-50",
                "analyze-50",
                "approve-shift-100",
                "shift-100",
                "analyze-100",
                "promote",
            ],
            id="canary-before-full-traffic",
        ),
        pytest.param(
            {"type": "rolling", "batches": [50, 100]},
            ["batch-100"],
            [
                "deploy",
                "batch-50",
                "analyze-batch-50",
                "approve-batch-100",
                "batch-100",
                "analyze-batch-100",
                "promote",
            ],
            id="rolling-before-last-batch",
        ),
    ],
)
def test_approvals_inserted_before_named_steps(
    strategy: dict[str, Any], approvals: list[str], expected_names: list[str]
) -> None:
    plan = plan_for(spec(strategy, approvals=approvals))
    assert [s.name for s in plan.steps] == expected_names
    for s in plan.steps:
        if s.name.startswith("approve-"):
            assert s == WaitForApproval(name=s.name, roles=("release-manager",))


def test_approvals_apply_to_the_expedited_plan() -> None:
    plan = plan_for(expedited({"type": "rolling"}, approvals=["batch-100"]))
    names = [s.name for s in plan.steps]
    assert names[0] == "approve-expedited"
    assert names.index("approve-batch-100") == names.index("batch-100") - 1


def test_unknown_approval_step_lists_the_plan_steps() -> None:
    with pytest.raises(InvalidInput) as err:
        plan_for(spec({"type": "blue-green"}, approvals=["promote", "shift-50"]))
    text = str(err.value)
    assert "'shift-50'" in text
    assert "deploy, verify, shift-100, bake, promote" in text


def test_approval_names_refer_to_the_expedited_steps() -> None:
    # shift-5 is a step of the plain canary, not of the expedited one.
    with pytest.raises(InvalidInput) as err:
        plan_for(expedited({"type": "canary"}, approvals=["shift-5"]))
    text = str(err.value)
    assert "'shift-5'" in text
    assert "approve-expedited, deploy, verify, shift-25, analyze-25, shift-100" in text


def test_every_unknown_approval_step_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"unknown steps 'nope', 'rollback'"):
        plan_for(spec({"type": "rolling"}, approvals=["rollback", "nope", "deploy"]))


# --- time scale -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "time_scale", "expected"),
    [
        pytest.param({"type": "canary", "steps": [50, 100]}, 1, [600.0, 600.0, 0.0], id="canary-1"),
        pytest.param({"type": "canary", "steps": [50, 100]}, 60, [10.0, 10.0, 0.0], id="canary-60"),
        pytest.param({"type": "blue-green"}, 100, [18.0, 6.0], id="blue-green-100"),
        pytest.param(
            {"type": "rolling", "batches": [50, 100]}, 300, [1.0, 1.0, 0.0], id="rolling-300"
        ),
        pytest.param({"type": "blue-green"}, 10_000, [0.18, 0.06], id="blue-green-10000"),
        pytest.param(
            {"type": "rolling", "batches": [100], "analysis": "1s"},
            10_000,
            [0.001, 0.0],
            id="at-least-a-millisecond",
        ),
    ],
)
def test_time_scale_divides_durations(
    strategy: dict[str, Any], time_scale: float, expected: list[float]
) -> None:
    plan = plan_for(spec(strategy, time_scale=time_scale))
    assert durations(plan) == pytest.approx(expected)


def test_time_scale_leaves_smoke_timeouts() -> None:
    plan = plan_for(spec({"type": "blue-green"}, time_scale=1000))
    verify = plan.steps[plan.index_of("verify")]
    assert isinstance(verify, Verify)
    assert verify.checks[0].timeout == SmokeCheck().timeout


# --- registry and protocol ------------------------------------------------------------------


def test_registry_names_match_spec_types() -> None:
    assert sorted(STRATEGIES) == ["blue-green", "canary", "rolling"]
    for kind, cls in (("canary", Canary), ("blue-green", BlueGreen), ("rolling", Rolling)):
        chosen = strategy_for(spec({"type": kind}))
        assert isinstance(chosen, cls)
        assert chosen.name == kind


def test_strategies_satisfy_the_protocol() -> None:
    strategies: list[Strategy] = [Canary(), BlueGreen(), Rolling()]
    assert [s.name for s in strategies] == ["canary", "blue-green", "rolling"]


def test_a_strategy_refuses_another_strategy_type() -> None:
    with pytest.raises(InvalidInput, match="canary strategy cannot plan a 'rolling' release"):
        Canary().plan(spec({"type": "rolling"}))


def test_strategy_plan_equals_plan_for() -> None:
    s = expedited({"type": "rolling"}, approvals=["promote"], time_scale=5)
    assert Rolling().plan(s) == plan_for(s)


# --- rendering ------------------------------------------------------------------------------


def test_plan_rows() -> None:
    plan = plan_for(expedited({"type": "blue-green"}))
    rows = plan_rows(plan)
    assert rows[0] == (
        0,
        "approve-expedited",
        "approval",
        "wait for approval by engineering-lead or cto",
    )
    assert rows[1] == (
        1,
        "deploy",
        "deploy",
        "deploy candidate at 100% of stable's size, no traffic",
    )
    assert rows[-1] == (5, "promote", "promote", "promote; old version scales down after 10m")
    assert [r[0] for r in rows] == [plan.index_of(r[1]) for r in rows]


@pytest.mark.parametrize("kind", ["canary", "blue-green", "rolling"])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"expedited": True, "expedited_reason": "hotfix", "approvals": ["promote"]},
        {"time_scale": 7},
        {"time_scale": 9_999.5, "approvals": ["deploy"]},
    ],
)
def test_plan_round_trips_through_json(kind: str, extra: dict[str, Any]) -> None:
    plan = plan_for(spec({"type": kind}, **extra))
    data = plan_json(plan)
    assert data["steps"][0]["name"] == plan.steps[0].name
    assert Plan.model_validate(data) == plan


def test_plan_json_writes_durations_as_text() -> None:
    data = plan_json(plan_for(spec({"type": "blue-green"})))
    assert data["steps"][3] == {"name": "bake", "kind": "analyze", "duration": "30m"}
    assert data["steps"][4]["scale_down_delay"] == "10m"
