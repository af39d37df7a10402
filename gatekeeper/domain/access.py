"""Who may do what: roles, actions, the permission table, four eyes and the expedited rule.

Pure decisions. The service authenticates a caller into a ``Principal`` (a bearer token
or an OIDC token) and asks ``authorize`` before it acts; a denial names the action and
the role that was missing, so the caller knows whom to ask::

    alice may not approve: needs role release-manager, engineering-lead or cto; has ci

Rules, in the order they are checked:

1. The permission table (``PERMISSIONS``): each action and the roles that may take it.
   ``admin`` may take every action of the table.
2. Four eyes: whoever submitted a release may not approve or reject it, whatever their
   roles (``admin`` included).
3. The expedited rule (the runbook's): an expedited release (an emergency hotfix) is
   approved before it starts by an ``engineering-lead`` or the ``cto``; ``admin`` and
   ``release-manager`` are not enough. Submitting one needs a reason.
4. An approval step that names its roles (``ReleaseFacts.step_roles``) takes an approval
   only from one of them, since an approval given in another role would never let the
   step go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import GatekeeperError, InvalidInput

# The approval an expedited plan opens with (strategies/expedite.py builds it).
EXPEDITED_APPROVAL_STEP = "approve-expedited"


class Role(StrEnum):
    VIEWER = "viewer"  # reads releases
    CI = "ci"  # submits releases and reads them
    RELEASE_MANAGER = "release-manager"  # approves, rejects, aborts, retries, rolls back
    ENGINEERING_LEAD = "engineering-lead"  # a release manager who also approves hotfixes
    CTO = "cto"  # as an engineering lead
    ADMIN = "admin"  # every action of the table: tokens, policy, the audit log


class Action(StrEnum):
    VIEW = "view"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    ABORT = "abort"
    RETRY = "retry"
    ROLLBACK = "rollback"
    AUDIT_READ = "audit-read"
    MANAGE_TOKENS = "manage-tokens"
    MANAGE_POLICY = "manage-policy"


class Via(StrEnum):
    TOKEN = "token"  # a bearer token the gatekeeper issued
    OIDC = "oidc"  # a JWT from the configured OpenID Connect issuer


_EVERYONE = frozenset(Role)
_MANAGERS = frozenset({Role.RELEASE_MANAGER, Role.ENGINEERING_LEAD, Role.CTO, Role.ADMIN})
HOTFIX_APPROVERS: frozenset[Role] = frozenset({Role.ENGINEERING_LEAD, Role.CTO})

PERMISSIONS: Mapping[Action, frozenset[Role]] = {
    Action.VIEW: _EVERYONE,
    Action.SUBMIT: frozenset({Role.CI, Role.ADMIN}),
    Action.APPROVE: _MANAGERS,
    Action.REJECT: _MANAGERS,
    Action.ABORT: _MANAGERS,
    Action.RETRY: _MANAGERS,
    Action.ROLLBACK: _MANAGERS,
    Action.AUDIT_READ: _MANAGERS,
    Action.MANAGE_TOKENS: frozenset({Role.ADMIN}),
    Action.MANAGE_POLICY: frozenset({Role.ADMIN}),
}

# Actions the submitter of a release may not take on it.
FOUR_EYES: frozenset[Action] = frozenset({Action.APPROVE, Action.REJECT})


class Rule(StrEnum):
    """Which rule decided: "allowed", or the rule that denied."""

    ALLOWED = "allowed"
    ROLE = "role"  # the permission table
    FOUR_EYES = "four-eyes"
    EXPEDITED = "expedited"  # an expedited release's approval needs engineering-lead or cto
    EXPEDITED_REASON = "expedited-reason"  # an expedited release must say why
    STEP_ROLE = "step-role"  # the approval step takes other roles


@dataclass(frozen=True)
class Principal:
    """Someone the service has authenticated, with the roles they hold."""

    name: str
    roles: frozenset[Role]
    via: Via

    def has(self, *roles: Role) -> bool:
        return any(r in self.roles for r in roles)


@dataclass(frozen=True)
class ReleaseFacts:
    """What the rules need to know of the release an action is about."""

    release_id: str
    submitted_by: str | None = None  # the principal who submitted it, when known
    expedited: bool = False
    expedited_reason: str | None = None
    step: str | None = None  # the approval step acted on; None: the release as a whole
    step_roles: tuple[str, ...] = ()  # the roles that step takes; empty: any approver

    @property
    def expedited_approval(self) -> bool:
        """Whether this approval is the one an expedited release needs before it starts."""
        return self.expedited and self.step in (None, EXPEDITED_APPROVAL_STEP)


@dataclass(frozen=True)
class Decision:
    """The answer of ``authorize``: allowed, or denied with the reason and the missing roles.

    ``role`` is the role the action is taken in when allowed (the one an approval is
    recorded with); ``missing`` lists the roles any one of which would have allowed it.
    """

    principal: Principal
    action: Action
    allowed: bool
    rule: Rule
    reason: str
    role: Role | None = None
    missing: tuple[Role, ...] = field(default=())

    def raise_if_denied(self) -> Decision:
        if not self.allowed:
            raise AccessDenied(self)
        return self


class AccessDenied(GatekeeperError):
    """An authenticated principal may not take an action; the message says what is missing."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class AuthenticationFailed(GatekeeperError):
    """A request's credentials are missing, unknown, expired, revoked or do not verify."""


def parse_roles(values: Iterable[str]) -> tuple[frozenset[Role], tuple[str, ...]]:
    """The known roles among ``values`` and the unknown ones, in the order given."""
    known: set[Role] = set()
    unknown: list[str] = []
    for value in values:
        text = value.strip()
        try:
            known.add(Role(text))
        except ValueError:
            if text and text not in unknown:
                unknown.append(text)
    return frozenset(known), tuple(unknown)


def ordered(roles: Iterable[Role]) -> tuple[Role, ...]:
    """``roles`` in the order of ``Role`` (viewer first, admin last)."""
    wanted = set(roles)
    return tuple(r for r in Role if r in wanted)


def spell(roles: Iterable[str]) -> str:
    """ "a", "a or b", "a, b or c"."""
    names = [str(r) for r in roles]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def _has(principal: Principal) -> str:
    return ", ".join(ordered(principal.roles)) or "no role"


def _needed(roles: Iterable[Role]) -> tuple[Role, ...]:
    # admin may do everything the table lists; naming it in every denial would only hide
    # the people to ask, so it is named only where it is the one role that may.
    found = ordered(roles)
    people = tuple(r for r in found if r is not Role.ADMIN)
    return people or found


def _action(action: Action | str) -> Action:
    try:
        return Action(action)
    except ValueError:
        allowed = ", ".join(a.value for a in Action)
        raise InvalidInput(f"action {action!r} is not one of: {allowed}") from None


def authorize(
    principal: Principal, action: Action | str, facts: ReleaseFacts | None = None
) -> Decision:
    """Whether ``principal`` may take ``action`` (on the release ``facts`` describe)."""
    act = _action(action)
    subject = f"{principal.name} may not {act.value}"
    if facts is not None:
        subject += f" {facts.release_id}"

    def deny(rule: Rule, why: str, missing: Iterable[Role] = ()) -> Decision:
        return Decision(principal, act, False, rule, f"{subject}: {why}", None, ordered(missing))

    table = PERMISSIONS[act]
    granting = ordered(principal.roles & table)
    if not granting:
        needed = _needed(table)
        return deny(Rule.ROLE, f"needs role {spell(needed)}; has {_has(principal)}", needed)

    role = granting[-1]
    if facts is not None and act in FOUR_EYES:
        if facts.submitted_by is not None and facts.submitted_by == principal.name:
            return deny(
                Rule.FOUR_EYES,
                f"{principal.name} submitted it, and the submitter of a release may not "
                "approve or reject it (four eyes): another person must",
            )
    if facts is not None and act is Action.SUBMIT and facts.expedited:
        if not (facts.expedited_reason or "").strip():
            return deny(
                Rule.EXPEDITED_REASON,
                "an expedited release must say why: expedited_reason is empty",
            )
    if facts is not None and act is Action.APPROVE:
        if facts.expedited_approval:
            hotfix = ordered(principal.roles & HOTFIX_APPROVERS)
            if not hotfix:
                needed = ordered(HOTFIX_APPROVERS)
                return deny(
                    Rule.EXPEDITED,
                    f"an expedited release is approved before it starts by role "
                    f"{spell(needed)}; has {_has(principal)}",
                    needed,
                )
            role = hotfix[-1]
        if facts.step_roles:
            takes, _ = parse_roles(facts.step_roles)
            matching = ordered(principal.roles & takes)
            if not matching:
                return deny(
                    Rule.STEP_ROLE,
                    f"step {facts.step or '?'} is approved by role {spell(facts.step_roles)}; "
                    f"has {_has(principal)}",
                    takes,
                )
            role = matching[-1]
    return Decision(principal, act, True, Rule.ALLOWED, f"{principal.name} may {act.value}", role)


def require(
    principal: Principal, action: Action | str, facts: ReleaseFacts | None = None
) -> Decision:
    """``authorize``, raising ``AccessDenied`` on a denial."""
    return authorize(principal, action, facts).raise_if_denied()
