"""Approvals a release spec asks for: a wait for a release manager before each named step."""

from __future__ import annotations

from collections.abc import Iterable

from gatekeeper.domain.errors import InvalidInput
from gatekeeper.domain.plan import Step, WaitForApproval

APPROVER_ROLES: tuple[str, ...] = ("release-manager",)


def approval_name(step: str) -> str:
    return f"approve-{step}"


def insert_approvals(steps: tuple[Step, ...], names: Iterable[str]) -> tuple[Step, ...]:
    """``steps`` with an approval right before each step in ``names`` (each once).

    Raises InvalidInput naming every unknown step and listing the steps of the plan.
    """
    wanted = set(names)
    if not wanted:
        return steps
    known = [s.name for s in steps]
    unknown = sorted(wanted.difference(known))
    if unknown:
        raise InvalidInput(
            f"approvals: unknown step{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}; "
            f"the steps of this plan are: {', '.join(known)}"
        )
    out: list[Step] = []
    for step in steps:
        if step.name in wanted:
            out.append(WaitForApproval(name=approval_name(step.name), roles=APPROVER_ROLES))
        out.append(step)
    return tuple(out)
