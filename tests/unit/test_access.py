"""Who may do what: the role x action table, four eyes, the expedited rule, denial messages."""

from __future__ import annotations

import pytest

from gatekeeper.domain.access import (
    EXPEDITED_APPROVAL_STEP,
    PERMISSIONS,
    AccessDenied,
    Action,
    Principal,
    ReleaseFacts,
    Role,
    Rule,
    Via,
    authorize,
    parse_roles,
    require,
)
from gatekeeper.domain.errors import InvalidInput
from strategies.expedite import EXPEDITED_APPROVAL_STEP as PLAN_STEP
from strategies.expedite import EXPEDITED_APPROVERS

V, C, RM, EL, CTO, AD = (
    Role.VIEWER,
    Role.CI,
    Role.RELEASE_MANAGER,
    Role.ENGINEERING_LEAD,
    Role.CTO,
    Role.ADMIN,
)

# The table as the issue states it: one row per action, the roles that may take it.
MATRIX: dict[Action, set[Role]] = {
    Action.VIEW: {V, C, RM, EL, CTO, AD},
    Action.SUBMIT: {C, AD},
    Action.APPROVE: {RM, EL, CTO, AD},
    Action.REJECT: {RM, EL, CTO, AD},
    Action.ABORT: {RM, EL, CTO, AD},
    Action.RETRY: {RM, EL, CTO, AD},
    Action.ROLLBACK: {RM, EL, CTO, AD},
    Action.AUDIT_READ: {RM, EL, CTO, AD},
    Action.MANAGE_TOKENS: {AD},
    Action.MANAGE_POLICY: {AD},
}


def who(name: str, *roles: Role) -> Principal:
    return Principal(name, frozenset(roles), Via.TOKEN)


def test_the_matrix_covers_every_action() -> None:
    assert set(MATRIX) == set(Action) == set(PERMISSIONS)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_role_by_action(role: Role, action: Action) -> None:
    decision = authorize(who("pat", role), action)
    assert decision.allowed is (role in MATRIX[action]), decision.reason
    if decision.allowed:
        assert decision.role is role and decision.rule is Rule.ALLOWED
    else:
        assert decision.rule is Rule.ROLE
        assert role.value in decision.reason  # says what the principal has
        assert set(decision.missing) <= MATRIX[action]


def test_admin_may_take_every_action() -> None:
    assert all(authorize(who("root", AD), a).allowed for a in Action)


def test_a_denial_names_the_missing_roles_and_what_the_principal_has() -> None:
    decision = authorize(who("alice", C), Action.APPROVE)
    assert not decision.allowed
    assert decision.reason == (
        "alice may not approve: needs role release-manager, engineering-lead or cto; has ci"
    )
    assert decision.missing == (RM, EL, CTO)


def test_a_denial_names_admin_where_it_is_the_only_role_that_may() -> None:
    decision = authorize(who("bob", RM, V), Action.MANAGE_TOKENS)
    assert (
        decision.reason
        == "bob may not manage-tokens: needs role admin; has viewer, release-manager"
    )


def test_a_principal_without_roles_is_told_so() -> None:
    decision = authorize(who("eve"), Action.VIEW, ReleaseFacts("shop-production-v2"))
    assert decision.reason.startswith("eve may not view shop-production-v2: needs role viewer")
    assert decision.reason.endswith("; has no role")


def test_require_raises_access_denied_carrying_the_decision() -> None:
    with pytest.raises(AccessDenied, match="needs role ci") as caught:
        require(who("carol", V), Action.SUBMIT)
    assert caught.value.decision.rule is Rule.ROLE
    assert require(who("ci-bot", C), "submit").allowed


def test_an_unknown_action_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(InvalidInput, match="action 'deploy' is not one of: view, submit"):
        authorize(who("pat", AD), "deploy")


# Four eyes


@pytest.mark.parametrize("action", [Action.APPROVE, Action.REJECT])
@pytest.mark.parametrize("roles", [(RM,), (CTO,), (AD,), (C, RM)], ids=str)
def test_the_submitter_may_not_approve_or_reject_their_own_release(
    action: Action, roles: tuple[Role, ...]
) -> None:
    facts = ReleaseFacts("shop-production-v2", submitted_by="alice")
    decision = authorize(who("alice", *roles), action, facts)
    assert not decision.allowed and decision.rule is Rule.FOUR_EYES
    assert decision.reason.startswith(f"alice may not {action.value} shop-production-v2: ")
    assert "alice submitted it" in decision.reason and "four eyes" in decision.reason


def test_another_person_may_approve_and_the_submitter_may_still_abort() -> None:
    facts = ReleaseFacts("shop-production-v2", submitted_by="alice")
    assert authorize(who("bob", RM), Action.APPROVE, facts).allowed
    assert authorize(who("alice", RM), Action.ABORT, facts).allowed
    assert authorize(who("alice", RM), Action.ROLLBACK, facts).allowed


def test_four_eyes_needs_a_known_submitter() -> None:
    assert authorize(who("alice", RM), Action.APPROVE, ReleaseFacts("shop-production-v2")).allowed


# Expedited releases


HOTFIX = ReleaseFacts(
    "shop-production-v3",
    submitted_by="ci-bot",
    expedited=True,
    expedited_reason="payment outage",
    step=EXPEDITED_APPROVAL_STEP,
    step_roles=("engineering-lead", "cto"),
)


def test_the_domain_and_the_plan_name_the_same_expedited_step_and_approvers() -> None:
    assert EXPEDITED_APPROVAL_STEP == PLAN_STEP
    assert set(EXPEDITED_APPROVERS) == {EL.value, CTO.value}


@pytest.mark.parametrize(
    ("roles", "allowed", "role"),
    [
        ((EL,), True, EL),
        ((CTO,), True, CTO),
        ((RM, EL), True, EL),
        ((RM,), False, None),
        ((AD,), False, None),
        ((C,), False, None),
    ],
    ids=["engineering-lead", "cto", "both", "release-manager", "admin", "ci"],
)
def test_an_expedited_release_is_approved_before_it_starts_by_an_engineering_lead_or_the_cto(
    roles: tuple[Role, ...], allowed: bool, role: Role | None
) -> None:
    decision = authorize(who("dana", *roles), Action.APPROVE, HOTFIX)
    assert decision.allowed is allowed, decision.reason
    assert decision.role is role


def test_the_expedited_denial_names_the_roles_and_says_before_it_starts() -> None:
    decision = authorize(who("bob", RM), Action.APPROVE, HOTFIX)
    assert decision.rule is Rule.EXPEDITED
    assert decision.reason == (
        "bob may not approve shop-production-v3: an expedited release is approved before it "
        "starts by role engineering-lead or cto; has release-manager"
    )
    assert decision.missing == (EL, CTO)


def test_the_expedited_rule_applies_to_the_release_as_a_whole_too() -> None:
    facts = ReleaseFacts("shop-production-v3", expedited=True, expedited_reason="outage")
    assert authorize(who("bob", RM), Action.APPROVE, facts).rule is Rule.EXPEDITED
    assert authorize(who("lee", EL), Action.APPROVE, facts).allowed


def test_later_approval_steps_of_an_expedited_release_take_their_own_roles() -> None:
    facts = ReleaseFacts(
        "shop-production-v3",
        expedited=True,
        expedited_reason="outage",
        step="approve-promote",
        step_roles=("release-manager",),
    )
    assert authorize(who("bob", RM), Action.APPROVE, facts).allowed


def test_four_eyes_holds_for_an_engineering_lead_who_submitted_the_hotfix() -> None:
    facts = ReleaseFacts("shop-production-v3", submitted_by="lee", expedited=True)
    decision = authorize(who("lee", EL, C), Action.APPROVE, facts)
    assert decision.rule is Rule.FOUR_EYES


def test_rejecting_an_expedited_release_needs_no_hotfix_approver() -> None:
    assert authorize(who("bob", RM), Action.REJECT, HOTFIX).allowed


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_an_expedited_release_must_say_why(reason: str | None) -> None:
    facts = ReleaseFacts("shop-production-v3", expedited=True, expedited_reason=reason)
    decision = authorize(who("ci-bot", C), Action.SUBMIT, facts)
    assert decision.rule is Rule.EXPEDITED_REASON
    assert decision.reason == (
        "ci-bot may not submit shop-production-v3: an expedited release must say why: "
        "expedited_reason is empty"
    )
    assert authorize(who("ci-bot", C), Action.SUBMIT, HOTFIX).allowed


# Approval steps that name their roles


def test_an_approval_step_takes_only_its_roles_and_the_decision_names_the_one_used() -> None:
    facts = ReleaseFacts("shop-production-v2", step="approve-promote", step_roles=("cto",))
    assert authorize(who("bob", RM), Action.APPROVE, facts).rule is Rule.STEP_ROLE
    denied = authorize(who("root", AD), Action.APPROVE, facts)
    assert denied.reason == (
        "root may not approve shop-production-v2: step approve-promote is approved by role cto; "
        "has admin"
    )
    allowed = authorize(who("kim", RM, CTO), Action.APPROVE, facts)
    assert allowed.allowed and allowed.role is CTO


def test_parse_roles_splits_known_from_unknown() -> None:
    known, unknown = parse_roles(["ci", " cto ", "boss", "ci", "", "boss"])
    assert known == {C, CTO}
    assert unknown == ("boss",)
